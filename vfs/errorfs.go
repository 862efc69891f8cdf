package vfs

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
)

// Op names a filesystem operation an ErrorFS can fail.
type Op string

const (
	OpCreate   Op = "create"
	OpOpen     Op = "open"
	OpWrite    Op = "write"
	OpRead     Op = "read"
	OpSync     Op = "sync"
	OpRemove   Op = "remove"
	OpRename   Op = "rename"
	OpMkdir    Op = "mkdir"
	OpList     Op = "list"
	OpStat     Op = "stat"
	OpSyncDir  Op = "syncdir"
	OpTruncate Op = "truncate"
)

// ErrNoSpace is a disk-full error, as the kernel reports it.
var ErrNoSpace error = syscall.ENOSPC

// NewErrorFS wraps inner so that inject is asked before every operation; a
// non-nil answer is returned instead of doing the operation.
func NewErrorFS(inner FS, inject func(op Op, path string) error) FS {
	return &errorFS{inner: inner, inject: inject}
}

// InjectAfter returns an inject func that lets n calls of op through, then
// fails every later one with err.
func InjectAfter(op Op, n int64, err error) func(Op, string) error {
	var count atomic.Int64
	return func(o Op, path string) error {
		if o == op && count.Add(1) > n {
			return fmt.Errorf("%s %s: %w", o, path, err)
		}
		return nil
	}
}

type errorFS struct {
	inner  FS
	inject func(Op, string) error
}

func (e *errorFS) check(op Op, path string) error {
	if err := e.inject(op, path); err != nil {
		return &os.PathError{Op: string(op), Path: path, Err: err}
	}
	return nil
}

func (e *errorFS) wrap(f File, err error, path string) (File, error) {
	if err != nil {
		return nil, err
	}
	return &errorFile{File: f, fs: e, path: path}, nil
}

func (e *errorFS) Create(name string) (File, error) {
	if err := e.check(OpCreate, name); err != nil {
		return nil, err
	}
	f, err := e.inner.Create(name)
	return e.wrap(f, err, name)
}

func (e *errorFS) Open(name string) (File, error) {
	if err := e.check(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.inner.Open(name)
	return e.wrap(f, err, name)
}

func (e *errorFS) OpenReadWrite(name string) (File, error) {
	if err := e.check(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.inner.OpenReadWrite(name)
	return e.wrap(f, err, name)
}

func (e *errorFS) Remove(name string) error {
	if err := e.check(OpRemove, name); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

func (e *errorFS) Rename(oldname, newname string) error {
	if err := e.check(OpRename, oldname); err != nil {
		return err
	}
	return e.inner.Rename(oldname, newname)
}

func (e *errorFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := e.check(OpMkdir, dir); err != nil {
		return err
	}
	return e.inner.MkdirAll(dir, perm)
}

func (e *errorFS) List(dir string) ([]string, error) {
	if err := e.check(OpList, dir); err != nil {
		return nil, err
	}
	return e.inner.List(dir)
}

func (e *errorFS) Stat(name string) (os.FileInfo, error) {
	if err := e.check(OpStat, name); err != nil {
		return nil, err
	}
	return e.inner.Stat(name)
}

func (e *errorFS) SyncDir(dir string) error {
	if err := e.check(OpSyncDir, dir); err != nil {
		return err
	}
	return e.inner.SyncDir(dir)
}

type errorFile struct {
	File
	fs   *errorFS
	path string
}

func (f *errorFile) Write(p []byte) (int, error) {
	if err := f.fs.check(OpWrite, f.path); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *errorFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpWrite, f.path); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *errorFile) Read(p []byte) (int, error) {
	if err := f.fs.check(OpRead, f.path); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpRead, f.path); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *errorFile) Sync() error {
	if err := f.fs.check(OpSync, f.path); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *errorFile) Truncate(size int64) error {
	if err := f.fs.check(OpTruncate, f.path); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
