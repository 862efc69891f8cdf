// Package diskclaim identifies the local disks stored volumes and restores
// write to, and holds them for one writer at a time.
//
// A disk is a regular file (an image) or a block device. Its identity does
// not depend on the path naming it: symlinks such as /dev/disk/by-id/... are
// resolved, a file is identified by the device and inode it lives on, a
// block device by its major:minor. Two paths naming one disk give one ID.
//
// Holding a disk keeps other programs from writing it while it is held: a
// regular file is locked with flock(LOCK_EX), a block device is opened with
// O_EXCL (on Linux, which also refuses a device that is mounted or part of
// an active device-mapper or RAID set). Both last as long as the descriptor
// is open and end with the process, so a gateway killed with -9 leaves no
// stale claim. The locks are advisory for files: they stop gatewayd's own
// commands (a second gateway, `gatewayd restore`), not every program.
package diskclaim

import (
	"errors"
	"fmt"
	"os"
)

// ID identifies a disk independently of the path naming it.
type ID struct {
	Block bool   // a block device, identified by Dev (its device number)
	Dev   uint64 // block device: its number; file: the number of the device holding it
	Ino   uint64 // file: its inode; 0 for a block device
}

func (id ID) String() string {
	if id.Block {
		return fmt.Sprintf("block device %d:%d", major(id.Dev), minor(id.Dev))
	}
	return fmt.Sprintf("file %d:%d/inode %d", major(id.Dev), minor(id.Dev), id.Ino)
}

// ErrBusy says another holder has the disk: a gateway serving it as a
// stored volume, a restore writing it, or (block devices) a mount.
var ErrBusy = errors.New("in use: a gatewayd on this host serves it as a stored volume or is restoring onto it, or (a block device) it is mounted")

// ErrNotDisk says the path is neither a regular file nor a block device.
var ErrNotDisk = errors.New("not a regular file or a block device")

// Disk is a disk held for this process, open for reading and writing.
type Disk struct {
	File *os.File
	ID   ID
	// Path is the path with symlinks resolved.
	Path string
}

// Close releases the disk.
func (d *Disk) Close() error { return d.File.Close() }

// Size is the disk's size in bytes: a file's length, a block device's
// capacity (BLKGETSIZE64 on Linux).
func (d *Disk) Size() (int64, error) {
	fi, err := d.File.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	return blockSize(d.File)
}
