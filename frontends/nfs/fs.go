package nfs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	billy "github.com/go-git/go-billy/v5"
	gonfs "github.com/willscott/go-nfs"
	nfsfile "github.com/willscott/go-nfs/file"

	"github.com/gatewayd/gatewayd/fileshare"
)

// shareFS is a share as the billy.Filesystem go-nfs drives. Paths are
// relative to the share's root; every call goes straight to the share.
type shareFS struct {
	share *fileshare.Share
	root  string // the mounted directory within the share ("" for its root)
	ctx   context.Context
}

// full is the share path of a name relative to the mounted directory.
func (f *shareFS) full(name string) string {
	p := clean(name)
	if f.root == "" {
		return p
	}
	if p == "" {
		return f.root
	}
	return f.root + "/" + p
}

// shareErrors is how the frontend answers a share's errors: as the os
// error go-nfs maps to an NFS status (osErr, for the procedures go-nfs
// serves), and as the NFS status the procedures served here answer
// (nfsStatus). A file a handle named that is gone is NFS3ERR_STALE there;
// go-nfs answers a missing name NFS3ERR_NOENT.
var shareErrors = []struct {
	err error
	os  error
	st  gonfs.NFSStatus
}{
	{fileshare.ErrNotExist, os.ErrNotExist, gonfs.NFSStatusStale},
	{fileshare.ErrStale, os.ErrNotExist, gonfs.NFSStatusStale},
	{fileshare.ErrExist, os.ErrExist, gonfs.NFSStatusExist},
	{fileshare.ErrReadOnly, syscall.EROFS, gonfs.NFSStatusROFS},
	{fileshare.ErrNotEmpty, syscall.ENOTEMPTY, gonfs.NFSStatusNotEmpty},
	{fileshare.ErrNotDir, syscall.ENOTDIR, gonfs.NFSStatusNotDir},
	{fileshare.ErrIsDir, syscall.EISDIR, gonfs.NFSStatusIsDir},
	{fileshare.ErrNotSupp, syscall.ENOTSUP, gonfs.NFSStatusNotSupp},
	{fileshare.ErrNameTooLong, syscall.ENAMETOOLONG, gonfs.NFSStatusNameTooLong},
	{fileshare.ErrInvalid, syscall.EINVAL, gonfs.NFSStatusInval},
	{syscall.ENOSPC, syscall.ENOSPC, gonfs.NFSStatusNoSPC},
	{syscall.EDQUOT, syscall.EDQUOT, gonfs.NFSStatusDQuot},
}

// shareError finds err in shareErrors: the os error and NFS status it
// maps to, or nil and NFS3ERR_IO.
func shareError(err error) (error, gonfs.NFSStatus) {
	for _, e := range shareErrors {
		if errors.Is(err, e.err) {
			return e.os, e.st
		}
	}
	return nil, gonfs.NFSStatusIO
}

// osErr turns a share error into the os error go-nfs maps to an NFS status.
func osErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if target, _ := shareError(err); target != nil {
		err = target
	}
	return &os.PathError{Op: op, Path: name, Err: err}
}

// nfsStatus is the NFS status of a failed call served here.
func nfsStatus(err error) gonfs.NFSStatus {
	_, st := shareError(err)
	return st
}

func clean(name string) string { return strings.Trim(path.Clean("/"+name), "/") }

// owner is who new files belong to: go-nfs passes no caller credentials,
// so the share's default owner, squashed as the share says.
func (f *shareFS) owner() (uint32, uint32) {
	c := f.share.Config()
	return c.MapOwner(c.UID, c.GID)
}

func (f *shareFS) Create(name string) (billy.File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, os.FileMode(f.share.Config().FileMode))
}

func (f *shareFS) Open(name string) (billy.File, error) { return f.OpenFile(name, os.O_RDONLY, 0) }

func (f *shareFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	p := f.full(name)
	a, err := f.share.Stat(f.ctx, p)
	switch {
	case err == nil:
		if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
			return nil, osErr("open", name, fileshare.ErrExist)
		}
		if a.Type == fileshare.TypeDir && flag&(os.O_WRONLY|os.O_RDWR) != 0 {
			return nil, osErr("open", name, fileshare.ErrIsDir)
		}
		if flag&os.O_TRUNC != 0 && a.Size != 0 {
			zero := int64(0)
			if a, err = f.share.SetAttr(f.ctx, p, fileshare.SetAttr{Size: &zero}); err != nil {
				return nil, osErr("truncate", name, err)
			}
		}
	case errors.Is(err, fileshare.ErrNotExist) && flag&os.O_CREATE != 0:
		uid, gid := f.owner()
		if a, err = f.share.Create(f.ctx, p, uint32(perm.Perm()), uid, gid, flag&os.O_EXCL != 0); err != nil {
			return nil, osErr("create", name, err)
		}
	default:
		return nil, osErr("open", name, err)
	}
	return &file{fs: f, name: name, path: p, flag: flag}, nil
}

func (f *shareFS) Stat(name string) (os.FileInfo, error) {
	a, err := f.share.Stat(f.ctx, f.full(name))
	if err != nil {
		return nil, osErr("stat", name, err)
	}
	return info{name: path.Base("/" + f.full(name)), a: a}, nil
}

func (f *shareFS) Lstat(name string) (os.FileInfo, error) { return f.Stat(name) }

func (f *shareFS) Rename(oldpath, newpath string) error {
	return osErr("rename", oldpath, f.share.Rename(f.ctx, f.full(oldpath), f.full(newpath)))
}

func (f *shareFS) Remove(name string) error {
	return osErr("remove", name, f.share.Remove(f.ctx, f.full(name)))
}

func (f *shareFS) Join(elem ...string) string { return path.Join(elem...) }

func (f *shareFS) TempFile(dir, prefix string) (billy.File, error) {
	return nil, osErr("tempfile", dir, fileshare.ErrNotSupp)
}

func (f *shareFS) ReadDir(name string) ([]os.FileInfo, error) {
	entries, err := f.share.ReadDir(f.ctx, f.full(name))
	if err != nil {
		return nil, osErr("readdir", name, err)
	}
	out := make([]os.FileInfo, len(entries))
	for i, e := range entries {
		out[i] = info{name: e.Name, a: e.Attr}
	}
	return out, nil
}

// MkdirAll makes one directory; go-nfs calls it for MKDIR, whose parent
// exists.
func (f *shareFS) MkdirAll(name string, perm os.FileMode) error {
	uid, gid := f.owner()
	_, err := f.share.Mkdir(f.ctx, f.full(name), uint32(perm.Perm()), uid, gid)
	return osErr("mkdir", name, err)
}

func (f *shareFS) Symlink(target, link string) error {
	uid, gid := f.owner()
	_, err := f.share.Symlink(f.ctx, f.full(link), target, uid, gid)
	return osErr("symlink", link, err)
}

func (f *shareFS) Readlink(link string) (string, error) {
	t, err := f.share.Readlink(f.ctx, f.full(link))
	return t, osErr("readlink", link, err)
}

func (f *shareFS) Chroot(string) (billy.Filesystem, error) {
	return nil, osErr("chroot", "", fileshare.ErrNotSupp)
}

func (f *shareFS) Root() string { return "/" }

// Capabilities: no writes on a read-only share.
func (f *shareFS) Capabilities() billy.Capability {
	if f.share.Config().ReadOnly {
		return billy.ReadCapability | billy.SeekCapability
	}
	return billy.ReadCapability | billy.WriteCapability | billy.ReadAndWriteCapability | billy.SeekCapability | billy.TruncateCapability
}

// billy.Change, for SETATTR.

func (f *shareFS) Chmod(name string, mode os.FileMode) error {
	m := uint32(mode.Perm())
	_, err := f.share.SetAttr(f.ctx, f.full(name), fileshare.SetAttr{Mode: &m})
	return osErr("chmod", name, err)
}

func (f *shareFS) Lchown(name string, uid, gid int) error { return f.Chown(name, uid, gid) }

func (f *shareFS) Chown(name string, uid, gid int) error {
	c := f.share.Config()
	u, g := c.MapOwner(uint32(uid), uint32(gid))
	_, err := f.share.SetAttr(f.ctx, f.full(name), fileshare.SetAttr{UID: &u, GID: &g})
	return osErr("chown", name, err)
}

func (f *shareFS) Chtimes(name string, atime, mtime time.Time) error {
	_, err := f.share.SetAttr(f.ctx, f.full(name), fileshare.SetAttr{Mtime: &mtime})
	return osErr("chtimes", name, err)
}

// info is a file's attributes as an os.FileInfo, with the inode as the
// NFS fileid.
type info struct {
	name string
	a    fileshare.Attr
}

func (i info) Name() string       { return i.name }
func (i info) Size() int64        { return i.a.Size }
func (i info) ModTime() time.Time { return i.a.Mtime }
func (i info) IsDir() bool        { return i.a.Type == fileshare.TypeDir }
func (i info) Mode() fs.FileMode {
	m := fs.FileMode(i.a.Mode & 0o777)
	if i.a.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if i.a.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if i.a.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch i.a.Type {
	case fileshare.TypeDir:
		m |= fs.ModeDir
	case fileshare.TypeSymlink:
		m |= fs.ModeSymlink
	case fileshare.TypeFIFO:
		m |= fs.ModeNamedPipe
	case fileshare.TypeSocket:
		m |= fs.ModeSocket
	case fileshare.TypeBlock:
		m |= fs.ModeDevice
	case fileshare.TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	}
	return m
}
func (i info) Sys() any {
	return &nfsfile.FileInfo{Nlink: 1, UID: i.a.UID, GID: i.a.GID, Fileid: i.a.Ino,
		Major: i.a.Rdev.Major, Minor: i.a.Rdev.Minor}
}

// file is an open file: a position over the share's ReadAt and WriteAt.
// go-nfs opens, seeks, reads or writes, and closes a file for every call.
type file struct {
	fs   *shareFS
	name string
	path string
	flag int
	pos  int64
}

func (f *file) Name() string { return f.name }

func (f *file) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.fs.share.ReadAt(f.fs.ctx, f.path, p, off)
	if err == io.EOF {
		return n, io.EOF
	}
	return n, osErr("read", f.name, err)
}

// Write returns once the data is durable. NFS WRITE calls do not come
// here: stable.go serves them.
func (f *file) Write(p []byte) (int, error) {
	if f.flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return 0, osErr("write", f.name, syscall.EBADF)
	}
	if f.flag&os.O_APPEND != 0 {
		a, err := f.fs.share.Stat(f.fs.ctx, f.path)
		if err != nil {
			return 0, osErr("write", f.name, err)
		}
		f.pos = a.Size
	}
	if _, err := f.fs.share.WriteAt(f.fs.ctx, f.path, p, f.pos); err != nil {
		return 0, osErr("write", f.name, err)
	}
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *file) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		a, err := f.fs.share.Stat(f.fs.ctx, f.path)
		if err != nil {
			return 0, osErr("seek", f.name, err)
		}
		off += a.Size
	}
	if off < 0 {
		return 0, osErr("seek", f.name, syscall.EINVAL)
	}
	f.pos = off
	return off, nil
}

func (f *file) Close() error  { return nil }
func (f *file) Lock() error   { return nil }
func (f *file) Unlock() error { return nil }

func (f *file) Truncate(size int64) error {
	_, err := f.fs.share.SetAttr(f.fs.ctx, f.path, fileshare.SetAttr{Size: &size})
	return osErr("truncate", f.name, err)
}
