package smb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gatewayd/gatewayd/fileshare"
)

// attrTimeout is how long the kernel trusts attributes and names it got
// from the view, and the absence of a name it looked up: smbd looks each
// new name up twice before it makes it (its own lookup, then the
// kernel's at the create), and the second is answered by the kernel.
// Changes made over SMB go through the view and the kernel and are seen
// at once (a create, rename or mkdir through the mount replaces the
// kernel's negative entry); changes made over NFS or in S3, a file
// made as well as one changed or removed, show in smbd within this time
// (plus the share's own attribute TTL for S3).
const attrTimeout = time.Second

// View is a share mounted as a FUSE filesystem.
type View struct {
	share  *fileshare.Share
	dir    string
	server *fuse.Server
	breaks *breaker // oplocks on files changed by another path (leases.go)
	unhook func()   // ends the share subscriptions
}

// Mount mounts share at dir (which must exist and be empty) and serves it
// until Unmount. allow_other lets smbd's processes in whatever user they
// run as.
func Mount(share *fileshare.Share, dir string, logger *slog.Logger) (*View, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	root := &node{share: share, log: logger}
	opts := viewOptions(share, logger)
	srv, err := fuse.NewServer(newRawFS(root, opts), dir, &opts.MountOptions)
	if err == nil {
		go srv.Serve()
		err = srv.WaitMount()
	}
	if err != nil {
		return nil, fmt.Errorf("share %s: FUSE mount on %s: %w", share.Config().Name, dir, err)
	}
	closeFuseOnExec()
	b := newBreaker(dir, &root.Inode, logger)
	stopChange := share.OnChange(func(p string) { // changes made in the bucket (changes.go)
		invalidate(&root.Inode, p)
		b.add(p, false)
	})
	stopWrite := share.OnWrite(viewSource, func(p string) { b.add(p, true) }) // over NFS
	unhook := func() { stopChange(); stopWrite() }
	return &View{share: share, dir: dir, server: srv, breaks: b, unhook: unhook}, nil
}

// viewOptions are the view's mount and node options.
func viewOptions(share *fileshare.Share, logger *slog.Logger) *fs.Options {
	t := attrTimeout
	return &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   true,
			FsName:       "gatewayd:" + share.Config().Name,
			Name:         "gatewayd",
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			DirectMount:  true, // mount(2) as root; fusermount3 otherwise
			// Listings carry names only (READDIR): smbd stats each
			// name it reads, one lookup. With READDIRPLUS, every re-read
			// after smbd's seek back at the end of each SMB reply (its
			// buffer of the directory's 1 MiB block size takes the whole
			// rest of the listing) looked up every remaining entry again:
			// a search of n files made O(n²) lookups (5,000 to 8,000
			// for smbtorture's 700 files instead of 700), and the
			// searches that lost files on a loaded machine were far
			// slower than usual (docs/smb.md).
			DisableReadDirPlus: true,
			// Extended attributes are the share's (Windows ACLs, DOS
			// attributes, streams and EAs kept in object metadata). The
			// kernel asks for security.capability at the first write of
			// every new file: go-fuse answers it, and reads of the POSIX
			// ACLs, which a share does not keep, without a request to
			// the view.
			IgnoreSecurityLabels: true,
			Logger:               log.New(io.Discard, "", 0),
		},
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		UID:             share.Config().UID,
		GID:             share.Config().GID,
		Logger:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// newRawFS is the view's root as the FUSE server serves it.
func newRawFS(root *node, opts *fs.Options) fuse.RawFileSystem {
	root.dirs = &dirTable{open: map[dirKey]*dirHandle{}}
	return &tracedFS{RawFileSystem: fs.NewNodeFS(root, opts), dirs: root.dirs, log: root.log, debug: root.log.Enabled(context.Background(), slog.LevelDebug)}
}

// tracedFS serves the directory reads the kernel asks of the view itself,
// each from the offset asked in the listing of the open directory
// (dirHandle.readAt), and logs them: a read that fails as a warning (smbd
// takes it for the end of the directory and ends the search there), and
// at debug level every read: the directory, the handle, the offset asked
// for, the offset reached (entries given) and the status.
//
// go-fuse (v2.12.1) answers a read at an offset inside its last reply
// from that reply, without asking the handle, and when that answer does
// not fit the read's buffer it drops the entries after the ones it sent:
// the next reads end the directory. smbd seeks back into the last reply
// after every SMB reply of a search, and the reads come with smbd's
// buffer (1 MiB) but now and then, on a loaded machine, with one page:
// traced in a failed smbtorture smb2.dir.many, a read at offset 90 of a
// 1 MiB read's 700 entries came with 4096 bytes, took entries 91 to 192,
// and the search ended at 193 of 700.
type tracedFS struct {
	fuse.RawFileSystem
	dirs  *dirTable
	log   *slog.Logger
	debug bool
}

// dirKey names an open directory as FUSE requests do.
type dirKey struct{ node, fh uint64 }

// dirTable maps the open directories to their handles. OpendirHandle
// leaves the handle it makes in made, which OpenDir, serialized by mu,
// files under the handle number go-fuse gave it.
type dirTable struct {
	mu   sync.Mutex
	made *dirHandle
	open map[dirKey]*dirHandle
}

func (t *tracedFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t.dirs.mu.Lock()
	defer t.dirs.mu.Unlock()
	t.dirs.made = nil
	st := t.RawFileSystem.OpenDir(cancel, in, out)
	if st.Ok() && t.dirs.made != nil {
		t.dirs.open[dirKey{in.NodeId, out.Fh}] = t.dirs.made
	}
	t.dirs.made = nil
	return st
}

func (t *tracedFS) ReleaseDir(in *fuse.ReleaseIn) {
	t.dirs.mu.Lock()
	delete(t.dirs.open, dirKey{in.NodeId, in.Fh})
	t.dirs.mu.Unlock()
	t.RawFileSystem.ReleaseDir(in)
}

func (t *tracedFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	t.dirs.mu.Lock()
	d := t.dirs.open[dirKey{in.NodeId, in.Fh}]
	t.dirs.mu.Unlock()
	var st fuse.Status
	if d != nil {
		st = fuse.Status(d.readAt(&fuse.Context{Caller: in.Caller, Cancel: cancel}, in.Offset, out))
	} else {
		st = t.RawFileSystem.ReadDir(cancel, in, out)
	}
	switch {
	case !st.Ok():
		t.log.Warn("view: a directory read failed", "node", in.NodeId, "fh", in.Fh, "offset", in.Offset, "status", st)
	case t.debug:
		t.log.Debug("view: readdir", "node", in.NodeId, "fh", in.Fh, "offset", in.Offset, "size", in.Size, "reached", out.Offset)
	}
	return st
}

// closeFuseOnExec marks this process's /dev/fuse descriptors close-on-exec.
// go-fuse's direct mount opens the device without it, and an smbd that
// inherited one would keep the view's connection open after gatewayd
// died: its own close of a file on the view would then wait forever for
// an answer only gatewayd could give. The caller holds the lock under
// which smbd is started.
func closeFuseOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

// Dir is where the view is mounted.
func (v *View) Dir() string { return v.dir }

// Unmount detaches the view. When smbd still holds files in it, the
// mount is detached lazily and goes when they are closed; Unmount does not
// wait for that.
func (v *View) Unmount() error {
	v.unhook()
	v.breaks.stop()
	if err := v.server.Unmount(); err != nil {
		if err2 := unmount(v.dir); err2 != nil {
			return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", v.dir, err, err2)
		}
		return nil
	}
	v.server.Wait()
	return nil
}

// node is a file or directory of the view. Its share path is its place in
// the tree go-fuse keeps (renames move nodes there).
type node struct {
	fs.Inode
	share *fileshare.Share
	log   *slog.Logger
	dirs  *dirTable
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeReader         = (*node)(nil)
	_ fs.NodeWriter         = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeFlusher        = (*node)(nil)
	_ fs.NodeReleaser       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeGetxattrer     = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeListxattrer    = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeAllocater      = (*node)(nil)
)

func (n *node) path() string { return n.Path(n.Root()) }

func (n *node) child(name string) string {
	if p := n.path(); p != "" {
		return p + "/" + name
	}
	return name
}

// owner is who new files belong to: the share's owner, squashed as the
// share says, whoever smbd runs as (the same rule as over NFS).
func (n *node) owner() (uint32, uint32) {
	c := n.share.Config()
	return c.MapOwner(c.UID, c.GID)
}

// errno maps a share error to what the kernel returns to smbd.
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fileshare.ErrNoXattr):
		return syscall.ENODATA
	case errors.Is(err, fileshare.ErrXattrTooBig):
		return syscall.ENOSPC
	case errors.Is(err, fileshare.ErrNotExist), errors.Is(err, fileshare.ErrStale):
		return syscall.ENOENT
	case errors.Is(err, fileshare.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, fileshare.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, fileshare.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, fileshare.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, fileshare.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, fileshare.ErrNotSupp):
		return syscall.ENOTSUP
	case errors.Is(err, fileshare.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, fileshare.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	return syscall.EIO
}

// allocUnit is the allocation unit the view reports: a filesystem block.
const allocUnit = 4096

func typeBits(t fileshare.FileType) uint32 {
	switch t {
	case fileshare.TypeDir:
		return syscall.S_IFDIR
	case fileshare.TypeSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

func fillAttr(a fileshare.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Mode = typeBits(a.Type) | a.Mode&0o7777
	out.Size = uint64(a.Size)
	if a.Type == fileshare.TypeSymlink {
		out.Size = uint64(len(a.Target))
	}
	// Allocation in 4 KiB filesystem blocks, counted in 512-byte units
	// (smbd reports st_blocks*512 as a file's allocation size, which
	// Windows clients expect in whole clusters).
	out.Blocks = (out.Size + allocUnit - 1) / allocUnit * (allocUnit / 512)
	out.Blksize = fileshare.BlockSize
	out.Nlink = 1
	if a.Type == fileshare.TypeDir {
		out.Nlink = 2
	}
	out.Uid, out.Gid = a.UID, a.GID
	mtime, ctime := a.Mtime, a.Ctime
	out.SetTimes(&mtime, &mtime, &ctime)
}

// newChild makes (or finds, by inode number) the node of a share entry.
func (n *node) newChild(ctx context.Context, a fileshare.Attr, out *fuse.EntryOut) *fs.Inode {
	fillAttr(a, &out.Attr)
	return n.NewInode(ctx, &node{share: n.share, log: n.log, dirs: n.dirs}, fs.StableAttr{Mode: typeBits(a.Type), Ino: a.Ino})
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a, err := n.share.Stat(ctx, n.child(name))
	if err != nil {
		// smbd leaves out of a listing a listed name it cannot look up.
		n.logFailure("view: lookup failed", n.child(name), err)
		return nil, errno(err)
	}
	if old := n.GetChild(name); old != nil && (old.Mode() != typeBits(a.Type) || old.StableAttr().Ino != a.Ino) {
		n.log.Debug("view: lookup changed node", "path", n.child(name), "was", old.Mode(), "now", typeBits(a.Type), "ino", old.StableAttr().Ino, "newino", a.Ino)
	}
	return n.newChild(ctx, a, out), 0
}

// logFailure logs a failed lookup or getattr: at debug level when the
// path does not exist or cannot (smbd looks for every name before it
// makes it, and clients try names no file can have), as a warning when
// the gateway failed (smbd leaves a name it cannot look up out of a
// search without a word).
func (n *node) logFailure(msg, p string, err error) {
	switch e := errno(err); e {
	case syscall.ENOENT, syscall.ENOTDIR, syscall.ENAMETOOLONG, syscall.EINVAL:
		n.log.Debug(msg, "path", p, "errno", e, "err", err)
	default:
		n.log.Warn(msg, "path", p, "errno", e, "err", err)
	}
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.share.Stat(ctx, n.path())
	if err != nil {
		n.logFailure("view: getattr failed", n.path(), err)
		return errno(err)
	}
	fillAttr(a, &out.Attr)
	if n.IsRoot() {
		subSecondRoot(&out.Attr)
	}
	return 0
}

// subSecondRoot gives the root's atime a nanosecond when none of its times
// has one. smbd takes a share whose root times are all whole seconds for
// a filesystem that keeps only seconds, and then rounds every time it
// reports to whole seconds. The root of a share made before shares kept
// their creation time whole has the whole-second times of its creation,
// and a share keeps no atime, so this changes nothing a client relies on.
func subSecondRoot(out *fuse.Attr) {
	if out.Atimensec == 0 && out.Mtimensec == 0 && out.Ctimensec == 0 {
		out.Atimensec = 1
	}
}

// Setattr: mode, owner, size and mtime go to the share; an access time
// alone is accepted and not kept (a share keeps no atime). The file's
// attributes are read at most once, and a setattr that changes nothing
// (smbd sets each new file's mode to the one it has) answers with them.
func (n *node) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	ctx = written(ctx)
	var cur *fileshare.Attr
	stat := func() (fileshare.Attr, error) {
		if cur == nil {
			a, err := n.share.Stat(ctx, n.path())
			if err != nil {
				return a, err
			}
			cur = &a
		}
		return *cur, nil
	}
	var ch fileshare.SetAttr
	if m, ok := in.GetMode(); ok {
		// smbd sets the mode of each file it creates to the mode the file
		// already has. Setting a mode the file has is no change, so its
		// ctime stays: smbd derives a creation time from the earliest of
		// a file's times taken field by field (seconds, nanoseconds), and
		// a ctime in the next second than the creation gave the file a
		// creation time in listings before the one its create returned
		// (smbtorture's smb2.dir.find).
		m &= 0o7777
		a, err := stat()
		if err != nil {
			return errno(err)
		}
		if a.Mode != m {
			ch.Mode = &m
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		c := n.share.Config()
		a, err := stat()
		if err != nil {
			return errno(err)
		}
		if !uok {
			uid = a.UID
		}
		if !gok {
			gid = a.GID
		}
		uid, gid = c.MapOwner(uid, gid)
		ch.UID, ch.GID = &uid, &gid
	}
	if sz, ok := in.GetSize(); ok {
		s := int64(sz)
		ch.Size = &s
	}
	if mt, ok := in.GetMTime(); ok {
		ch.Mtime = &mt
	}
	var a fileshare.Attr
	var err error
	if ch == (fileshare.SetAttr{}) {
		a, err = stat()
	} else {
		a, err = n.share.SetAttr(ctx, n.path(), ch)
	}
	if err != nil {
		return errno(err)
	}
	fillAttr(a, &out.Attr)
	return 0
}

// OpendirHandle gives each open directory a listing of its own
// (dirHandle): reads that go on from an offset continue in that listing,
// so files that end their upload (or are made or removed) meanwhile shift
// no entry past another. A rewind (smbd's restart of a search) lists the
// directory again.
func (n *node) OpendirHandle(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	d := &dirHandle{n: n}
	if n.dirs != nil {
		n.dirs.made = d // OpenDir holds n.dirs.mu
	}
	return d, 0, 0
}

// dirHandle is an open directory's listing and the place reached in it.
// Offsets are places in the listing (entry i ends at offset i+1). The
// listing is read at the first read; go-fuse serializes the calls on one
// handle.
type dirHandle struct {
	mu      sync.Mutex // readAt's, which serves the kernel's reads
	n       *node
	listed  bool
	entries []fuse.DirEntry
	idx     int
	next    uint64 // the offset readAt's last read reached
	// What the handle did, logged when it is closed: listings read,
	// entries given, seeks.
	listings, given, seeks int
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
)

// list reads the directory's names (fileshare's ReadDirNames: no
// attributes, which smbd looks up name by name anyway, and no store call
// while the share's listing may be used). smbd lists a directory at every
// create of a new name, to look for it in another case.
func (d *dirHandle) list(ctx context.Context) syscall.Errno {
	names, err := d.n.share.ReadDirNames(ctx, d.n.path())
	if err != nil {
		d.n.log.Debug("view: listing failed", "path", d.n.path(), "err", err)
		return errno(err)
	}
	d.n.log.Debug("view: listed", "path", d.n.path(), "entries", len(names))
	d.entries = make([]fuse.DirEntry, len(names))
	for i, e := range names {
		d.entries[i] = fuse.DirEntry{Name: e.Name, Ino: e.Ino}
		if e.Type != 0 { // else DT_UNKNOWN: a reader stats the name
			d.entries[i].Mode = typeBits(e.Type)
		}
	}
	d.idx, d.listed = 0, true
	d.listings++
	return 0
}

// Readdirent returns the next entry, nil at the end. An empty listing is
// read again at each read: a read from offset 0 is then either the first
// or a rewind (go-fuse tells a rewind by a change of offset, and a
// listing that gave nothing stays at offset 0), and a rewind must show
// the files made since.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if !d.listed || len(d.entries) == 0 {
		if errno := d.list(ctx); errno != 0 {
			return nil, errno
		}
	}
	if d.idx >= len(d.entries) {
		return nil, 0
	}
	e := d.entries[d.idx]
	d.idx++
	d.given++
	e.Off = uint64(d.idx)
	return &e, 0
}

// readAt fills out with the entries from offset off on, as many as fit:
// every read is answered from the offset it asks, so a read after a seek
// back, of whatever size, goes on in the listing. A read at offset 0 is
// the first or a rewind (a listing that gave nothing ends at offset 0 as
// well): it lists the directory again, as rewinddir(3) gives on a local
// filesystem. An offset past the listing's end (a seek there) reads
// nothing.
func (d *dirHandle) readAt(ctx context.Context, off uint64, out *fuse.DirEntryList) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 || !d.listed {
		if errno := d.list(ctx); errno != 0 {
			return errno
		}
	}
	if off != d.next {
		d.seeks++
	}
	for i := off; i < uint64(len(d.entries)); i++ {
		e := d.entries[i]
		e.Off = i + 1
		if !out.AddDirEntry(e) {
			break
		}
		d.given++
		d.next = e.Off
	}
	return 0
}

// Seekdir to 0 is a rewind: the directory as it is now, as rewinddir(3)
// gives on a local filesystem. Another offset is a place in the listing
// the handle has.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.seeks++
	d.n.log.Debug("view: seek", "path", d.n.path(), "offset", off, "entries", len(d.entries))
	if off == 0 || !d.listed {
		if errno := d.list(ctx); errno != 0 {
			return errno
		}
	}
	if off > uint64(len(d.entries)) {
		d.n.log.Debug("view: seek past a listing's end", "path", d.n.path(), "offset", off, "entries", len(d.entries))
		return syscall.EINVAL
	}
	d.idx = int(off)
	return 0
}

// Releasedir logs what the handle did.
func (d *dirHandle) Releasedir(context.Context, uint32) {
	d.n.log.Debug("view: directory closed", "path", d.n.path(), "listings", d.listings, "entries", len(d.entries), "given", d.given, "seeks", d.seeks)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ctx = written(ctx)
	uid, gid := n.owner()
	p := n.child(name)
	a, err := n.share.Create(ctx, p, mode&0o7777, uid, gid, flags&syscall.O_EXCL != 0)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	if flags&syscall.O_TRUNC != 0 && a.Size != 0 {
		zero := int64(0)
		if a, err = n.share.SetAttr(ctx, p, fileshare.SetAttr{Size: &zero}); err != nil {
			return nil, nil, 0, errno(err)
		}
	}
	return n.newChild(ctx, a, out), nil, 0, 0
}

// Open answers ENOSYS, which the kernel takes for "opens need no
// request" for the life of the mount: no OPEN and no RELEASE for a file
// opened (a created one still has both), and the kernel keeps a file's
// cached pages from one open to the next (FOPEN_KEEP_CACHE is its
// default then), so a file read again is read from them. Those pages go
// when the kernel sees the file's size or mtime change (go-fuse asks for
// auto_inval_data), or when the view drops them: at once for a write
// over NFS and a change applied from the bucket (leases.go, changes.go);
// changes through the view go through the kernel.
// A truncating open reaches the view as a setattr (the view does not ask
// for atomic O_TRUNC).
func (n *node) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

func (n *node) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	got, err := n.share.ReadAt(ctx, n.path(), dest, off)
	if err != nil && err != io.EOF {
		return nil, errno(err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// written asks the share to answer the view's changes once the upload
// buffer has written their records, not synced them: smbd's creates,
// writes and attribute changes are then what they are on a local
// filesystem, kept when gatewayd is killed, durable on the disk at the
// client's flush or write-through write (smbd's fsync, Fsync here), a
// sync of the upload buffer. One sync a file would be three (the create,
// the write, the times set at close), none of them asked for.
func written(ctx context.Context) context.Context {
	return fileshare.WithDurability(own(ctx), fileshare.Written)
}

// own marks ctx as the view's: the share does not report the changes made
// with it back to the view (OnWrite), which would break smbd's own oplock.
func own(ctx context.Context) context.Context { return fileshare.QuietChanges(ctx, viewSource) }

// viewSource names the views' own changes to the shares.
var viewSource = fileshare.NewChangeSource("smb")

// Write returns once the data is written in the share upload buffer (see
// written): durable at the next Fsync.
func (n *node) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if _, err := n.share.Write(own(ctx), n.path(), data, off, fileshare.Written); err != nil {
		return 0, errno(err)
	}
	return uint32(len(data)), 0
}

// Fsync (smbd's fsync of a file or directory, at an SMB flush or a
// write-through write) makes every change the view has answered durable:
// one sync of the upload buffer, shared with whatever else waits for it.
func (n *node) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	return errno(n.share.Sync(ctx))
}

// Flush has nothing to do: a close asks for no durability. It answers
// ENOSYS, which the kernel takes for success and for "do not ask again"
// for the life of the mount: no FLUSH at every close. Release has nothing
// to do either (the kernel sends it without waiting for it).
func (n *node) Flush(context.Context, fs.FileHandle) syscall.Errno   { return syscall.ENOSYS }
func (n *node) Release(context.Context, fs.FileHandle) syscall.Errno { return 0 }

// rename flags (renameat2).
const (
	renameNoReplace = 1
	renameExchange  = 2
)

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	from, to := n.child(name), np.child(newName)
	if flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	if flags&renameNoReplace != 0 {
		if _, err := n.share.Stat(ctx, to); err == nil {
			return syscall.EEXIST
		} else if !errors.Is(err, fileshare.ErrNotExist) {
			return errno(err)
		}
	}
	return errno(n.share.Rename(ctx, from, to))
}

// Unlink and Rmdir return once the remove's record is written, as the
// view's other changes do (see written): the store's delete follows in
// the background.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	ctx = written(ctx)
	p := n.child(name)
	a, err := n.share.Stat(ctx, p)
	if err != nil {
		return errno(err)
	}
	if a.Type == fileshare.TypeDir {
		return syscall.EISDIR
	}
	return errno(n.share.Remove(ctx, p))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	ctx = written(ctx)
	p := n.child(name)
	a, err := n.share.Stat(ctx, p)
	if err != nil {
		return errno(err)
	}
	if a.Type != fileshare.TypeDir {
		return syscall.ENOTDIR
	}
	return errno(n.share.Remove(ctx, p))
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = written(ctx)
	uid, gid := n.owner()
	a, err := n.share.Mkdir(ctx, n.child(name), mode&0o7777, uid, gid)
	if err != nil {
		return nil, errno(err)
	}
	return n.newChild(ctx, a, out), 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ctx = written(ctx)
	uid, gid := n.owner()
	a, err := n.share.Symlink(ctx, n.child(name), target, uid, gid)
	if err != nil {
		return nil, errno(err)
	}
	return n.newChild(ctx, a, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.share.Readlink(ctx, n.path())
	if err != nil {
		return nil, errno(err)
	}
	return []byte(t), 0
}

// Statfs reports an object store's room: as good as unlimited.
func (n *node) Statfs(_ context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	out.Bsize, out.Frsize = bsize, bsize
	out.Blocks = 1 << 50 / bsize // 1 PiB
	out.Bfree, out.Bavail = out.Blocks, out.Blocks
	out.Files, out.Ffree = 1<<40, 1<<40
	out.NameLen = 255
	return 0
}

// Extended attributes go to the share, which keeps them with the file
// (fileshare/xattrs.go): a file that has none is answered from its
// attributes (cached, or the file's pending state), with no store call.
// The POSIX ACLs are not kept: their reads never reach the view
// (IgnoreSecurityLabels) and their writes fail, so smbd maps an NT ACL to
// the mode as it does on a filesystem without POSIX ACLs.

func isPosixACL(name string) bool {
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

func (n *node) Getxattr(ctx context.Context, name string, dest []byte) (uint32, syscall.Errno) {
	if isPosixACL(name) {
		return 0, syscall.ENODATA
	}
	v, err := n.share.Xattr(ctx, n.path(), name)
	if name == ntaclName && errors.Is(err, fileshare.ErrNoXattr) {
		v, err = n.inheritedNTACL(ctx)
	}
	if err != nil {
		return 0, errno(err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// inheritedNTACL is the NT ACL of a file or directory that has none of
// its own (ntacl.go).
func (n *node) inheritedNTACL(ctx context.Context) ([]byte, error) {
	a, err := n.share.Stat(ctx, n.path())
	if err != nil {
		return nil, err
	}
	return inheritedNTACL(ctx, n.share, n.path(), a.Type == fileshare.TypeDir)
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	set, err := n.share.Xattrs(ctx, n.path())
	if err != nil {
		return 0, errno(err)
	}
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(set)) {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

func (n *node) Setxattr(ctx context.Context, name string, value []byte, flags uint32) syscall.Errno {
	if isPosixACL(name) {
		return syscall.EOPNOTSUPP
	}
	return errno(n.share.SetXattr(written(ctx), n.path(), name, value, fileshare.XattrFlags(flags)))
}

func (n *node) Removexattr(ctx context.Context, name string) syscall.Errno {
	if isPosixACL(name) {
		return syscall.ENODATA
	}
	return errno(n.share.RemoveXattr(written(ctx), n.path(), name))
}

// fallocate modes the view serves.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// Allocate serves fallocate: a share allocates nothing ahead (the store
// has the room), so a plain allocation only extends the size when asked
// to; punching a hole or zeroing a range (smbd's FSCTL_SET_ZERO_DATA)
// writes zeroes there, durable when it returns, as a write is. A range
// that reaches the end of the file is zeroed by truncating to its start
// and back.
func (n *node) Allocate(ctx context.Context, _ fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	ctx = own(ctx)
	if mode&^(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0 || mode&fallocPunchHole != 0 && mode&fallocKeepSize == 0 ||
		mode&fallocPunchHole != 0 && mode&fallocZeroRange != 0 {
		return syscall.EOPNOTSUPP
	}
	if size == 0 || off > fileshare.MaxFileSize || size > fileshare.MaxFileSize-off {
		return syscall.EINVAL
	}
	p := n.path()
	a, err := n.share.Stat(ctx, p)
	if err != nil {
		return errno(err)
	}
	if a.Type != fileshare.TypeFile {
		return syscall.ENODEV
	}
	start, end := int64(off), int64(off+size)
	if mode&(fallocPunchHole|fallocZeroRange) != 0 && start < a.Size {
		if e := n.zero(ctx, p, start, min(end, a.Size), a.Size); e != 0 {
			return e
		}
	}
	if mode&fallocKeepSize == 0 && end > a.Size {
		_, err := n.share.SetAttr(ctx, p, fileshare.SetAttr{Size: &end})
		return errno(err)
	}
	return 0
}

// zero writes zeroes over [start, end) of a file of the given size.
func (n *node) zero(ctx context.Context, p string, start, end, size int64) syscall.Errno {
	if end == size {
		for _, sz := range []int64{start, size} {
			if _, err := n.share.SetAttr(ctx, p, fileshare.SetAttr{Size: &sz}); err != nil {
				return errno(err)
			}
		}
		return 0
	}
	buf := make([]byte, min(end-start, fileshare.BlockSize))
	for pos := start; pos < end; {
		k := min(end-pos, int64(len(buf)))
		if _, err := n.share.WriteAt(ctx, p, buf[:k], pos); err != nil {
			return errno(err)
		}
		pos += k
	}
	return 0
}

// isMountpoint reports whether dir is mounted on, per mountinfo.
func isMountpoint(dir string) bool {
	points, err := mountpoints()
	if err != nil {
		return false
	}
	for _, p := range points {
		if p == dir {
			return true
		}
	}
	return false
}

// ensureDir makes dir as a mount point: an empty directory. A dead FUSE
// mount on it (transport endpoint not connected) is detached first.
func ensureDir(dir string) error {
	if isMountpoint(dir) {
		if err := unmount(dir); err != nil {
			return err
		}
	}
	return os.MkdirAll(dir, 0o755)
}
