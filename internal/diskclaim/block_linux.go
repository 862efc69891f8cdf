package diskclaim

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openBlock opens a block device with O_EXCL: the kernel refuses a second
// exclusive opener (another gateway, a restore) and a mounted device.
func openBlock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("%s: %w", path, ErrBusy)
	}
	return f, err
}

// blockSize is a block device's capacity, from BLKGETSIZE64.
func blockSize(f *os.File) (int64, error) {
	var n uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return 0, &os.PathError{Op: "BLKGETSIZE64", Path: f.Name(), Err: errno}
	}
	return int64(n), nil
}
