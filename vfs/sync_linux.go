package vfs

import (
	"os"
	"syscall"
)

// osFile syncs with fdatasync: the data and the metadata needed to read it
// back (size), not timestamps, which is all the write log needs and saves a
// journal commit per sync.
type osFile struct{ *os.File }

func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

func wrapOSFile(f *os.File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}
