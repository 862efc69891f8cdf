package uploadbuffer

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// copyFileRange copies n bytes from src at srcOff to dst at dstOff with
// copy_file_range. ok false with no error: the kernel does not copy
// between these files (no such call, filesystems it does not copy across,
// a file it refuses), perhaps after a part: the caller copies the range
// again itself. A copy cut short is an error.
func copyFileRange(src uintptr, srcOff int64, dst uintptr, dstOff int64, n int64) (ok bool, err error) {
	for done := int64(0); done < n; {
		m, err := unix.CopyFileRange(int(src), &srcOff, int(dst), &dstOff, int(n-done), 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) ||
			errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF)):
			return false, nil
		case err != nil:
			return false, err
		case m == 0:
			return false, fmt.Errorf("copy_file_range: %d of %d bytes: %w", done, n, io.ErrUnexpectedEOF)
		}
		done += int64(m)
	}
	return true, nil
}
