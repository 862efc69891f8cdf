// Package vfs is the small filesystem interface every piece of gatewayd that
// keeps data on local disk (upload buffer, cache, stored volumes) does its
// I/O through (pebble's vfs is the model). Default is the operating
// system's filesystem; tests swap in NewMem, whose Crash drops everything
// not yet synced, or wrap either in an error-injecting FS, so durability and
// disk-full handling are tested without pulling power cords.
package vfs

import (
	"io"
	"os"
	"path/filepath"
)

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's data durable (fdatasync semantics are enough).
	Sync() error
	Stat() (os.FileInfo, error)
	Truncate(size int64) error
}

// FS is a filesystem. Names are slash-separated paths as the os package takes them.
type FS interface {
	// Create creates or truncates name for reading and writing.
	Create(name string) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	// OpenReadWrite opens name for reading and writing, creating it empty
	// if it does not exist, never truncating it.
	OpenReadWrite(name string) (File, error)
	Remove(name string) error
	// Rename replaces newname with oldname atomically.
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	// List returns the names (not paths) of dir's entries, sorted.
	List(dir string) ([]string, error)
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes dir's entries (creates, renames, removes) durable.
	SyncDir(dir string) error
}

// Default is the operating system's filesystem.
var Default FS = osFS{}

type osFS struct{}

func (osFS) Create(name string) (File, error) {
	return wrapOSFile(os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600))
}
func (osFS) Open(name string) (File, error) { return wrapOSFile(os.Open(name)) }
func (osFS) OpenReadWrite(name string) (File, error) {
	return wrapOSFile(os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600))
}
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }

func (osFS) List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
