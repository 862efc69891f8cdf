// Package localdir is the embedded default object store: a local directory
// that behaves like a bucket. Writes are atomic and durable (temp file,
// fsync, rename, fsync of the directory), concurrent use is safe, and
// listings come in the byte order of full keys, as S3 gives them.
//
// # Layout
//
// A key's segments become nested directories, but a bucket lets "a", "a/"
// and "a/b" exist side by side while a directory cannot hold a file and a
// subdirectory both named "a". So the three kinds of names are kept apart
// by their ending. In a directory, for a key segment s:
//
//	esc(s)      the object whose key ends in s
//	esc(s)%2F   the object whose key ends in s/ (a directory marker)
//	esc(s)%     the directory holding the keys that continue s/...
//
// esc percent-encodes '%', NUL, and a leading '.', so an escaped segment
// never ends in a bare '%' nor contains "%2F" (a segment has no '/'), and
// never starts with '.'. Objects with plain names are therefore plain files:
// key "share/docs/report.txt" is the file "share%/docs%/report.txt".
//
// Names starting with '.' belong to the store: temp files live in ".tmp" at
// the root, on the same filesystem as their destination so that rename is
// atomic; ".lock" at the root is the lock that makes conditional puts
// (objstore.ConditionalPutter) atomic between processes. An object's ETag
// names its file's inode, change time and size. Files that do not decode
// (put there by something else) are ignored. A segment must fit in a file name (255 bytes on most
// filesystems, counting the escaping and suffix); the filesystem must be
// case-sensitive.
package localdir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/fsutil"
	"github.com/gatewayd/gatewayd/objstore"
)

const (
	tmpDirName   = ".tmp"
	dirSuffix    = "%"
	markerSuffix = "%2F"
	// staleTempAge is how old a temp file must be before Open treats it as
	// left over by a crash and removes it.
	staleTempAge = time.Hour
	// commitAttempts bounds how often Put retries when a concurrent Delete
	// removes the (then empty) directory it is about to rename into.
	commitAttempts = 100
)

// Store is a directory used as an object store. It is safe for concurrent
// use, also by several Stores (or processes) on the same directory.
type Store struct {
	root string
	tmp  string
	// syncFile and syncDir make a file's data and a directory's entries
	// durable; tests wrap them to watch the order of the steps or to fail
	// them.
	syncFile func(*os.File) error
	syncDir  func(dir string) error
}

var (
	_ objstore.Copier            = (*Store)(nil)
	_ objstore.MetadataPutter    = (*Store)(nil)
	_ objstore.DirLister         = (*Store)(nil)
	_ objstore.ConditionalPutter = (*Store)(nil)
)

// Open returns the store in dir, creating dir if needed, and removes temp
// files left behind by a crash.
func Open(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("localdir: %w", err)
	}
	s := &Store{root: root, tmp: filepath.Join(root, tmpDirName), syncFile: (*os.File).Sync, syncDir: fsutil.SyncDir}
	if err := os.MkdirAll(s.tmp, 0o750); err != nil {
		return nil, classify(fmt.Errorf("localdir: create %s: %w", s.tmp, err))
	}
	if err := s.removeStaleTemps(time.Now().Add(-staleTempAge)); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) String() string { return "local:" + s.root }

func (s *Store) removeStaleTemps(before time.Time) error {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return classify(fmt.Errorf("%s: read temp dir: %w", s, err))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(filepath.Join(s.tmp, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return classify(fmt.Errorf("%s: remove stale temp file: %w", s, err))
		}
	}
	return nil
}

// esc escapes one key segment for use in a file name.
func esc(seg string) string {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' || c == 0 || c == '/' || (i == 0 && c == '.') {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unesc reverses esc. It rejects names esc would not have produced, so
// every object has exactly one file name.
func unesc(name string) (string, bool) {
	if !strings.Contains(name, "%") {
		return name, name != "" && name[0] != '.'
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '%' {
			b.WriteByte(name[i])
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		c, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(c))
		i += 2
	}
	seg := b.String()
	return seg, seg != "" && seg != "." && seg != ".." && esc(seg) == name
}

// location returns the directory holding key's file and the file's name.
func (s *Store) location(key string) (dir, name string, err error) {
	if err := objstore.ValidKey(key); err != nil {
		return "", "", err
	}
	marker := strings.HasSuffix(key, "/")
	segs := strings.Split(strings.TrimSuffix(key, "/"), "/")
	dir = s.dirOf(segs[:len(segs)-1])
	name = esc(segs[len(segs)-1])
	if marker {
		name += markerSuffix
	}
	return dir, name, nil
}

func (s *Store) dirOf(segs []string) string {
	parts := make([]string, 0, len(segs)+1)
	parts = append(parts, s.root)
	for _, seg := range segs {
		parts = append(parts, esc(seg)+dirSuffix)
	}
	return filepath.Join(parts...)
}

// classify marks local I/O errors: a full disk may drain, the rest will not
// go away by retrying. Context errors stay unmarked.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errkind.Mark(errkind.Retryable, err)
	case errkind.Of(err) != errkind.Unknown:
		return err
	}
	return errkind.Mark(errkind.Permanent, err)
}

func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// copyBufs are the buffers copies into the store's files go through, 1 MiB
// so that a large object is written in few calls (io.Copy's own buffer is
// 32 KiB).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// writerOnly hides a file's ReadFrom, which for a reader that is not a
// file would copy through a 32 KiB buffer of its own.
type writerOnly struct{ io.Writer }

// copyIn copies size bytes of r to f: in the kernel when r is a file
// (copy_file_range), else through a pooled buffer, stopping when ctx ends.
func copyIn(ctx context.Context, f *os.File, r io.Reader, size int64) error {
	var n int64
	var err error
	if src, ok := r.(*os.File); ok {
		n, err = io.CopyN(f, src, size)
	} else {
		bp := copyBufs.Get().(*[]byte)
		n, err = io.CopyBuffer(writerOnly{f}, io.LimitReader(ctxReader{ctx, r}, size), *bp)
		copyBufs.Put(bp)
		if err == nil && n < size {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		return fmt.Errorf("wrote %d of %d bytes: %w", n, size, err)
	}
	return nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.PutMeta(ctx, key, r, size, nil)
}

// PutMeta implements objstore.MetadataPutter. The metadata is kept as JSON
// in the file's extended attribute user.gatewayd.meta, set before the file
// is synced and renamed into place, so it appears with the data at once.
// A filesystem without user extended attributes refuses metadata.
func (s *Store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	dir, name, err := s.location(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: negative size %d", s, key, size))
	}
	if err := objstore.ValidMetadata(meta); err != nil {
		return fmt.Errorf("%s: put %s: %w", s, key, err)
	}
	return s.writeAndCommit(ctx, "put", key, dir, name, func(f *os.File) error {
		if err := copyIn(ctx, f, r, size); err != nil {
			return err
		}
		return setMeta(f, meta)
	})
}

// SetMeta implements objstore.MetadataPutter: the attribute is replaced
// in place and synced; a reader sees the old metadata or the new.
func (s *Store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	dir, name, err := s.location(key)
	if err != nil {
		return err
	}
	if err := objstore.ValidMetadata(meta); err != nil {
		return fmt.Errorf("%s: set metadata of %s: %w", s, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: set metadata of %s: %w", s, key, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		if isMissing(err) {
			return objstore.NotFound(s, key)
		}
		return classify(fmt.Errorf("%s: set metadata of %s: %w", s, key, err))
	}
	defer f.Close()
	if len(meta) == 0 {
		err = unix.Fremovexattr(int(f.Fd()), metaXattr)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
	} else {
		err = setMeta(f, meta)
	}
	if err == nil {
		err = s.syncFile(f)
	}
	if err != nil {
		return classify(fmt.Errorf("%s: set metadata of %s: %w", s, key, err))
	}
	return nil
}

// ListDir implements objstore.DirLister by reading one directory.
func (s *Store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: list dir %q: prefix must end in /", s, prefix))
	}
	var segs []string
	if prefix != "" {
		segs = strings.Split(strings.TrimSuffix(prefix, "/"), "/")
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." {
				return nil
			}
		}
		// The marker named by prefix itself sits in the parent directory.
		oi, err := s.Stat(ctx, prefix)
		switch {
		case err == nil:
			oi.Metadata = nil // List gives no metadata
			if err := fn(oi, false); err != nil {
				return err
			}
		case !objstore.IsNotFound(err):
			return err
		}
	}
	dir := s.dirOf(segs)
	dirents, err := os.ReadDir(dir)
	if err != nil {
		if isMissing(err) {
			return nil
		}
		return classify(fmt.Errorf("%s: list %s: %w", s, prefix, err))
	}
	type item struct {
		name     string
		isPrefix bool
		d        fs.DirEntry
	}
	seen := map[string]bool{}
	var items []item
	for _, d := range dirents {
		name := d.Name()
		switch {
		case strings.HasSuffix(name, markerSuffix), strings.HasSuffix(name, dirSuffix):
			// A marker "x/" or a directory of keys below "x/": both are
			// the common prefix "x/" one level down.
			seg, ok := unesc(strings.TrimSuffix(strings.TrimSuffix(name, markerSuffix), dirSuffix))
			if ok && !seen[seg] {
				seen[seg] = true
				items = append(items, item{name: seg + "/", isPrefix: true})
			}
		default:
			if seg, ok := unesc(name); ok && d.Type().IsRegular() {
				items = append(items, item{name: seg, d: d})
			}
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: list %s: %w", s, prefix, err)
		}
		if it.isPrefix {
			if err := fn(objstore.ObjectInfo{Key: prefix + it.name}, true); err != nil {
				return err
			}
			continue
		}
		info, err := it.d.Info()
		if err != nil {
			if isMissing(err) {
				continue
			}
			return classify(fmt.Errorf("%s: list %s: %w", s, prefix, err))
		}
		if err := fn(objstore.ObjectInfo{Key: prefix + it.name, Size: info.Size(), ModTime: info.ModTime()}, false); err != nil {
			return err
		}
	}
	return nil
}

const metaXattr = "user.gatewayd.meta"

func setMeta(f *os.File, meta map[string]string) error {
	if len(meta) == 0 {
		return nil
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := unix.Fsetxattr(int(f.Fd()), metaXattr, b, 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("object metadata needs user extended attributes, which this filesystem does not support: %w", err))
		}
		return fmt.Errorf("set metadata: %w", err)
	}
	return nil
}

// getMeta reads the metadata of the file at path; none is not an error.
func getMeta(path string) (map[string]string, error) {
	buf := make([]byte, objstore.MaxMetadataBytes*4)
	n, err := unix.Lgetxattr(path, metaXattr, buf)
	if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var meta map[string]string
	if err := json.Unmarshal(buf[:n], &meta); err != nil {
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("metadata of %s: %w", path, err))
	}
	return meta, nil
}

// writeAndCommit fills a temp file with write, makes it durable and renames
// it to dir/name. The temp file never outlives a failure.
func (s *Store) writeAndCommit(ctx context.Context, op, key, dir, name string, write func(*os.File) error) error {
	return s.writeThen(ctx, op, key, write, func(tmpPath string) error { return s.commit(tmpPath, dir, name) })
}

// writeThen fills a temp file with write, makes it durable and hands it to
// commit. The temp file never outlives a failure.
func (s *Store) writeThen(ctx context.Context, op, key string, write func(*os.File) error, commit func(tmpPath string) error) (err error) {
	f, err := os.CreateTemp(s.tmp, strings.ReplaceAll(op, " ", "-")+"-*")
	if err != nil {
		return classify(fmt.Errorf("%s: %s %s: %w", s, op, key, err))
	}
	tmpPath := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmpPath)
			err = classify(fmt.Errorf("%s: %s %s: %w", s, op, key, err))
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := s.syncFile(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return commit(tmpPath)
}

// commit renames a durable temp file into place and makes the rename
// durable. A concurrent Delete may remove dir, empty, between ensureDir and
// the rename; the loop then recreates it.
func (s *Store) commit(tmpPath, dir, name string) error {
	target := filepath.Join(dir, name)
	for attempt := 0; ; attempt++ {
		if err := s.ensureDir(dir); err != nil {
			return err
		}
		err := os.Rename(tmpPath, target)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt >= commitAttempts {
			return err
		}
	}
	if err := s.syncDir(dir); err != nil && !isMissing(err) {
		return err
	}
	return nil
}

// ensureDir creates dir and its missing parents below the root, syncing
// each parent that gained an entry.
func (s *Store) ensureDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	rel, err := filepath.Rel(s.root, dir)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := s.mkdirs(strings.Split(rel, string(filepath.Separator)))
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt >= commitAttempts {
			return err
		}
	}
}

func (s *Store) mkdirs(parts []string) error {
	parent := s.root
	for _, p := range parts {
		path := filepath.Join(parent, p)
		err := os.Mkdir(path, 0o750)
		switch {
		case err == nil:
			if err := s.syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
		default:
			return err
		}
		parent = path
	}
	return nil
}

// Get implements objstore.Store.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	dir, name, err := s.location(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		if isMissing(err) {
			return nil, objstore.NotFound(s, key)
		}
		return nil, classify(fmt.Errorf("%s: get %s: %w", s, key, err))
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, classify(fmt.Errorf("%s: get %s: %w", s, key, err))
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, objstore.NotFound(s, key)
	}
	n, err := objstore.RangeLength(info.Size(), offset, length)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	return &rangeReader{r: io.NewSectionReader(f, offset, n), f: f}, nil
}

// rangeReader reads a range of an open file. The file was opened before
// any later rename replaced it, so it reads one version whole.
type rangeReader struct {
	r *io.SectionReader
	f *os.File
}

func (r *rangeReader) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r *rangeReader) Close() error               { return r.f.Close() }

// Stat implements objstore.Store.
func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	dir, name, err := s.location(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("%s: stat %s: %w", s, key, err)
	}
	info, err := os.Lstat(filepath.Join(dir, name))
	if err != nil {
		if isMissing(err) {
			return objstore.ObjectInfo{}, objstore.NotFound(s, key)
		}
		return objstore.ObjectInfo{}, classify(fmt.Errorf("%s: stat %s: %w", s, key, err))
	}
	if !info.Mode().IsRegular() {
		return objstore.ObjectInfo{}, objstore.NotFound(s, key)
	}
	meta, err := getMeta(filepath.Join(dir, name))
	if err != nil {
		if isMissing(err) {
			return objstore.ObjectInfo{}, objstore.NotFound(s, key)
		}
		return objstore.ObjectInfo{}, classify(fmt.Errorf("%s: stat %s: %w", s, key, err))
	}
	return objstore.ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime(), ETag: etagOf(info), Metadata: meta}, nil
}

// etagOf names one version of an object's file: every Put renames a new
// file (a new inode) into place, and renaming or changing the metadata
// changes its ctime.
func etagOf(info os.FileInfo) string {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x", st.Ino, st.Ctim.Nano(), info.Size())
}

// lockName is the file conditional puts lock, in the store's root, so that
// they are atomic also between processes sharing the directory.
const lockName = ".lock"

// PutIfAbsent implements objstore.ConditionalPutter.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (string, error) {
	return s.putIf(ctx, "put if absent", key, r, size, func(cur os.FileInfo) string {
		if cur != nil {
			return "an object exists"
		}
		return ""
	})
}

// PutIfMatch implements objstore.ConditionalPutter.
func (s *Store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (string, error) {
	return s.putIf(ctx, "put if match", key, r, size, func(cur os.FileInfo) string {
		if cur == nil {
			return "no object"
		}
		if now := etagOf(cur); now != etag {
			return fmt.Sprintf("ETag is %s, not %s", now, etag)
		}
		return ""
	})
}

// putIf writes the temp file, then, holding the store's lock, checks the
// object in place with refuse (nil when there is none) and renames the
// temp file over it unless refuse says why not.
func (s *Store) putIf(ctx context.Context, op, key string, r io.ReadSeeker, size int64, refuse func(cur os.FileInfo) string) (string, error) {
	dir, name, err := s.location(key)
	if err != nil {
		return "", err
	}
	if size < 0 {
		return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: negative size %d", s, op, key, size))
	}
	target := filepath.Join(dir, name)
	var etag string
	err = s.writeThen(ctx, op, key, func(f *os.File) error {
		return copyIn(ctx, f, r, size)
	}, func(tmpPath string) error {
		unlock, err := s.lock()
		if err != nil {
			return err
		}
		defer unlock()
		cur, err := os.Lstat(target)
		switch {
		case isMissing(err):
			cur = nil
		case err != nil:
			return err
		case !cur.Mode().IsRegular():
			cur = nil
		}
		if why := refuse(cur); why != "" {
			return errkind.Mark(errkind.PreconditionFailed, fmt.Errorf("%s: %w", why, objstore.ErrPreconditionFailed))
		}
		if err := s.commit(tmpPath, dir, name); err != nil {
			return err
		}
		info, err := os.Lstat(target)
		if err != nil {
			return err
		}
		etag = etagOf(info)
		return nil
	})
	return etag, err
}

// lock takes the store's lock file, shared with other processes.
func (s *Store) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.root, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Delete implements objstore.Store. It removes the directories the delete
// leaves empty, up to the root.
func (s *Store) Delete(ctx context.Context, key string) error {
	dir, name, err := s.location(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %s: %w", s, key, err)
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		if isMissing(err) {
			return nil
		}
		return classify(fmt.Errorf("%s: delete %s: %w", s, key, err))
	}
	if err := s.syncDir(dir); err != nil && !isMissing(err) {
		return classify(fmt.Errorf("%s: delete %s: %w", s, key, err))
	}
	for dir != s.root {
		// Fails, harmlessly, when the directory is not empty (or a
		// concurrent Delete got there first).
		if err := os.Remove(dir); err != nil {
			break
		}
		dir = filepath.Dir(dir)
		if err := s.syncDir(dir); err != nil && !isMissing(err) {
			return classify(fmt.Errorf("%s: delete %s: %w", s, key, err))
		}
	}
	return nil
}

// Copy implements objstore.Copier: a new file with the same bytes (not a
// hard link, so the copy has its own modification time).
func (s *Store) Copy(ctx context.Context, srcKey, dstKey string) error {
	srcDir, srcName, err := s.location(srcKey)
	if err != nil {
		return err
	}
	dir, name, err := s.location(dstKey)
	if err != nil {
		return err
	}
	src, err := os.Open(filepath.Join(srcDir, srcName))
	if err != nil {
		if isMissing(err) {
			return objstore.NotFound(s, srcKey)
		}
		return classify(fmt.Errorf("%s: copy %s: %w", s, srcKey, err))
	}
	defer src.Close()
	if info, err := src.Stat(); err != nil || !info.Mode().IsRegular() {
		return objstore.NotFound(s, srcKey)
	}
	meta, err := getMeta(filepath.Join(srcDir, srcName))
	if err != nil {
		return classify(fmt.Errorf("%s: copy %s: %w", s, srcKey, err))
	}
	return s.writeAndCommit(ctx, "copy", dstKey, dir, name, func(f *os.File) error {
		if _, err := io.Copy(f, src); err != nil {
			return err
		}
		return setMeta(f, meta)
	})
}

// entry is one decoded name in a store directory.
type entry struct {
	sortKey string // the key part it stands for; directories end in "/"
	isDir   bool
	d       fs.DirEntry
}

// List implements objstore.Store. Each directory is read whole and sorted
// by the key part its names stand for, which yields the byte order of full
// keys: all keys below "s/" sort together, after "s" and after every name
// that sorts before "s/" ("s-", "s.txt") and before those after it ("s0").
// Objects created or deleted during a listing may or may not appear.
func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	// Start in the deepest directory the prefix names completely.
	base := prefix[:strings.LastIndex(prefix, "/")+1]
	var segs []string
	if base != "" {
		segs = strings.Split(strings.TrimSuffix(base, "/"), "/")
		for _, seg := range segs {
			if seg == "" || seg == "." || seg == ".." {
				return nil // no valid key has this prefix
			}
		}
		// The marker named by base itself sits in the parent directory.
		if strings.HasPrefix(base, prefix) {
			oi, err := s.Stat(ctx, base)
			switch {
			case err == nil:
				if err := fn(oi); err != nil {
					return err
				}
			case !objstore.IsNotFound(err):
				return err
			}
		}
	}
	return s.walk(ctx, s.dirOf(segs), base, prefix, fn)
}

func (s *Store) walk(ctx context.Context, dir, keyPrefix, prefix string, fn func(objstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: list %s: %w", s, prefix, err)
	}
	dirents, err := os.ReadDir(dir)
	if err != nil {
		if isMissing(err) {
			return nil
		}
		return classify(fmt.Errorf("%s: list %s: %w", s, prefix, err))
	}
	entries := make([]entry, 0, len(dirents))
	for _, d := range dirents {
		name := d.Name()
		var e entry
		var seg string
		var ok bool
		switch {
		case strings.HasSuffix(name, markerSuffix):
			seg, ok = unesc(strings.TrimSuffix(name, markerSuffix))
			e = entry{sortKey: seg + "/"}
			ok = ok && d.Type().IsRegular()
		case strings.HasSuffix(name, dirSuffix):
			seg, ok = unesc(strings.TrimSuffix(name, dirSuffix))
			e = entry{sortKey: seg + "/", isDir: true}
			ok = ok && d.IsDir()
		default:
			seg, ok = unesc(name)
			e = entry{sortKey: seg}
			ok = ok && d.Type().IsRegular()
		}
		if ok {
			e.d = d
			entries = append(entries, e)
		}
	}
	// A marker "s/" sorts before the keys below it, so before its directory.
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].sortKey != entries[j].sortKey {
			return entries[i].sortKey < entries[j].sortKey
		}
		return !entries[i].isDir && entries[j].isDir
	})
	for _, e := range entries {
		key := keyPrefix + e.sortKey
		if e.isDir {
			if strings.HasPrefix(key, prefix) || strings.HasPrefix(prefix, key) {
				if err := s.walk(ctx, filepath.Join(dir, e.d.Name()), key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		info, err := e.d.Info()
		if err != nil {
			if isMissing(err) {
				continue // deleted since ReadDir
			}
			return classify(fmt.Errorf("%s: list %s: %w", s, prefix, err))
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: list %s: %w", s, prefix, err)
		}
		if err := fn(objstore.ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}
