//go:build unix

package diskclaim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

func major(dev uint64) uint32 { return unix.Major(dev) }
func minor(dev uint64) uint32 { return unix.Minor(dev) }

// Identify resolves the symlinks in path and returns the disk it names and
// the resolved path.
func Identify(path string) (ID, string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ID{}, "", err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return ID{}, "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return ID{}, "", &os.PathError{Op: "stat", Path: real, Err: err}
	}
	return idOf(&st, real)
}

func idOf(st *unix.Stat_t, path string) (ID, string, error) {
	switch uint32(st.Mode) & unix.S_IFMT {
	case unix.S_IFREG:
		return ID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, path, nil
	case unix.S_IFBLK:
		return ID{Block: true, Dev: uint64(st.Rdev)}, path, nil
	}
	return ID{}, "", fmt.Errorf("%s: %w", path, ErrNotDisk)
}

// Open opens an existing disk for reading and writing and holds it. A disk
// another holder has gives an error wrapping ErrBusy.
func Open(path string) (*Disk, error) {
	id, real, err := Identify(path)
	if err != nil {
		return nil, err
	}
	if id.Block {
		f, err := openBlock(real)
		if err != nil {
			return nil, err
		}
		return check(&Disk{File: f, ID: id, Path: real})
	}
	f, err := os.OpenFile(real, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return lockFile(f, real)
}

// Create creates a new file (failing if path exists) and holds it.
func Create(path string, perm os.FileMode) (*Disk, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	real, err := filepath.Abs(path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return lockFile(f, real)
}

func lockFile(f *os.File, path string) (*Disk, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == unix.EINTR {
			continue
		}
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrBusy)
		}
		if err != nil {
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: path, Err: err}
		}
		break
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	id, _, err := idOf(&st, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Disk{File: f, ID: id, Path: path}, nil
}

// check makes sure the descriptor is the disk identified before opening
// (a symlink can change in between).
func check(d *Disk) (*Disk, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.File.Fd()), &st); err != nil {
		d.File.Close()
		return nil, &os.PathError{Op: "fstat", Path: d.Path, Err: err}
	}
	id, _, err := idOf(&st, d.Path)
	if err == nil && id != d.ID {
		err = fmt.Errorf("%s changed while it was opened", d.Path)
	}
	if err != nil {
		d.File.Close()
		return nil, err
	}
	return d, nil
}
