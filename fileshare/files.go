package fileshare

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// BlockSize is the unit in which file data is cached and fetched.
const BlockSize = 1 << 20

// MaxFileSize bounds a file: S3's largest object.
const MaxFileSize = 5 << 40

func errorsIs(err, target error) bool { return errors.Is(err, target) }

type fileKey struct {
	share string
	ino   uint64
}

// fileState is a file with writes the object store has not seen yet.
type fileState struct {
	mu        sync.Mutex
	attr      Attr // size, mode, owner and times as written
	base      Attr // the object the writes apply to (size, etag)
	minLSN    uploadbuffer.LSN
	lastLSN   uploadbuffer.LSN // the newest record (names an upload's event)
	failures  int              // uploads failed in a row
	lastWrite time.Time
	gen       uint64 // bumped by every change
	truncs    uint64 // bumped by every truncation
	data      bool   // the content changed (else only attributes: the upload sets the object's metadata)
	changing  int    // changes under way (state), which keep the state dirty
	cancelled bool
	upMu      sync.Mutex // held by the upload of the file
	// putGen is odd while an upload of the file puts its object and base
	// does not name that object yet, and counts those puts (stateBase).
	putGen uint64
}

func (st *fileState) overlay(a *Attr) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.attr.Type != 0 {
		a.Type = st.attr.Type
	}
	if st.attr.Target != "" {
		a.Target = st.attr.Target
	}
	if st.attr.Type.Special() {
		a.Rdev = st.attr.Rdev
	}
	a.Size, a.Mode, a.UID, a.GID, a.Mtime, a.Ctime = st.attr.Size, st.attr.Mode, st.attr.UID, st.attr.GID, st.attr.Mtime, st.attr.Ctime
	a.xa = st.attr.xa
}

// cacheVolume names a file in the cache; "~" cannot occur in share names.
func cacheVolume(share string, ino uint64) string { return fmt.Sprintf("fs~%s~%d", share, ino) }

func (m *Manager) dirtyState(share string, ino uint64) *fileState {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	return m.files[fileKey{share, ino}]
}

// ns is a share's path locks, which order its namespace changes (remove,
// rename) against its uploads (pathlock.go).
func (m *Manager) ns(share string) *pathLocks {
	l, ok := m.nsLocks.Load(share)
	if !ok { // the first: LoadOrStore's argument is built at every call
		l, _ = m.nsLocks.LoadOrStore(share, newPathLocks())
	}
	return l.(*pathLocks)
}

// cancel forgets a file's pending writes (it is being removed).
func (m *Manager) cancel(share string, ino uint64) {
	m.filesMu.Lock()
	st := m.files[fileKey{share, ino}]
	delete(m.files, fileKey{share, ino})
	m.filesMu.Unlock()
	if st != nil {
		st.mu.Lock()
		st.cancelled = true
		st.mu.Unlock()
	}
}

// Log records (big-endian): type (1 write, 2 truncate, 3 setattr,
// 11 new; 6 to 9 in deletes.go and moves.go; 4 create, 5 mkdir and 10
// symlink are only replayed), share name length and name, inode, then
//
//	write:    offset (8), data
//	truncate: size (8)
//	setattr:  mode, uid, gid (4 each), mtime unix nanoseconds (8)
//	new:      as setattr, then the kind (1: file, 2: directory, 3:
//	          symbolic link, 4: FIFO, 5: socket, 6: block device, 7:
//	          character device), the path's length (2) and the path, and
//	          for a symbolic link the target (1 to 4096 bytes), for a
//	          device its major and minor numbers (4 each): a new empty
//	          file, directory, link or special file (its object or marker
//	          comes with the upload), and its inode's mapping to the path
//	          (inodes.go)
//	create:   as setattr, for a new empty file
//	mkdir:    as setattr, for a new directory
//	symlink:  as setattr, then the target, for a new symbolic link
//
// docs/format.md specifies them byte by byte.
const (
	recWrite    byte = 1
	recTruncate byte = 2
	recSetattr  byte = 3
	recCreate   byte = 4  // as setattr: the new file's mode, owner and time
	recMkdir    byte = 5  // as setattr: the new directory's
	recSymlink  byte = 10 // as setattr, then the target
	recNew      byte = 11 // as setattr, then the kind, the path and a link's target
)

// The kinds of a new record.
var newKinds = map[FileType]byte{TypeFile: 1, TypeDir: 2, TypeSymlink: 3, TypeFIFO: 4, TypeSocket: 5, TypeBlock: 6, TypeChar: 7}

// maxTarget bounds a symbolic link's target.
const maxTarget = 4096

type record struct {
	typ    byte
	share  string
	ino    uint64
	offset int64 // write; truncate: the size
	data   []byte
	attr   Attr   // setattr, new
	path   string // new
}

// head appends the header every record starts with: type, share and
// inode.
func (r record) head(b []byte) []byte {
	b = append(b, r.typ, byte(len(r.share)))
	b = append(b, r.share...)
	return binary.BigEndian.AppendUint64(b, r.ino)
}

func (r record) encode() []byte {
	b := r.head(make([]byte, 0, 2+len(r.share)+8+28+len(r.data)))
	switch r.typ {
	case recWrite:
		b = binary.BigEndian.AppendUint64(b, uint64(r.offset))
		b = append(b, r.data...)
	case recTruncate:
		b = binary.BigEndian.AppendUint64(b, uint64(r.offset))
	case recRemove, recRemoved, recRename, recRenamed, recXattrs:
		b = append(b, r.data...)
	case recSetattr, recCreate, recMkdir, recSymlink, recNew:
		b = binary.BigEndian.AppendUint32(b, r.attr.Mode)
		b = binary.BigEndian.AppendUint32(b, r.attr.UID)
		b = binary.BigEndian.AppendUint32(b, r.attr.GID)
		b = binary.BigEndian.AppendUint64(b, uint64(r.attr.Mtime.UnixNano()))
		if r.typ == recNew {
			b = append(b, newKinds[r.attr.Type])
			b = binary.BigEndian.AppendUint16(b, uint16(len(r.path)))
			b = append(b, r.path...)
		}
		if r.typ == recSymlink || r.typ == recNew && r.attr.Type == TypeSymlink {
			b = append(b, r.attr.Target...)
		}
		if r.typ == recNew && (r.attr.Type == TypeBlock || r.attr.Type == TypeChar) {
			b = binary.BigEndian.AppendUint32(b, r.attr.Rdev.Major)
			b = binary.BigEndian.AppendUint32(b, r.attr.Rdev.Minor)
		}
	}
	return b
}

func decodeRecord(b []byte) (record, error) {
	bad := func(why string) (record, error) {
		return record{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("file share log record: %s", why))
	}
	if len(b) < 2 {
		return bad("short")
	}
	r := record{typ: b[0]}
	n := int(b[1])
	if len(b) < 2+n+8 {
		return bad("short header")
	}
	r.share = string(b[2 : 2+n])
	r.ino = binary.BigEndian.Uint64(b[2+n:])
	rest := b[2+n+8:]
	switch r.typ {
	case recWrite:
		if len(rest) < 8 {
			return bad("short write")
		}
		r.offset = int64(binary.BigEndian.Uint64(rest))
		r.data = rest[8:]
	case recTruncate:
		if len(rest) != 8 {
			return bad("bad truncate")
		}
		r.offset = int64(binary.BigEndian.Uint64(rest))
	case recRemove, recRemoved:
		if len(rest) == 0 {
			return bad("no key")
		}
		r.data = rest
	case recRename, recRenamed:
		if _, ok := decodeMoves(rest); !ok {
			return bad("bad rename")
		}
		r.data = rest
	case recXattrs:
		if _, err := decodeXattrs(rest); err != nil {
			return bad("bad extended attributes")
		}
		r.data = rest
	case recNew:
		if len(rest) < 23 {
			return bad("short new")
		}
		kind, n := rest[20], int(binary.BigEndian.Uint16(rest[21:]))
		if n == 0 || len(rest) < 23+n {
			return bad("bad new path")
		}
		r.path = string(rest[23 : 23+n])
		for t, k := range newKinds {
			if k == kind {
				r.attr.Type = t
			}
		}
		target := rest[23+n:]
		switch {
		case r.attr.Type == 0:
			return bad(fmt.Sprintf("new of kind %d", kind))
		case r.attr.Type == TypeSymlink && (len(target) == 0 || len(target) > maxTarget):
			return bad("bad new symlink")
		case r.attr.Type == TypeBlock || r.attr.Type == TypeChar:
			if len(target) != 8 {
				return bad("bad new device")
			}
			r.attr.Rdev = Device{binary.BigEndian.Uint32(target), binary.BigEndian.Uint32(target[4:])}
			target = nil
		case r.attr.Type != TypeSymlink && len(target) != 0:
			return bad("bad new")
		}
		r.attr.Target = string(target)
		r.attr.Mode = binary.BigEndian.Uint32(rest)
		r.attr.UID = binary.BigEndian.Uint32(rest[4:])
		r.attr.GID = binary.BigEndian.Uint32(rest[8:])
		r.attr.Mtime = time.Unix(0, int64(binary.BigEndian.Uint64(rest[12:])))
	case recSetattr, recCreate, recMkdir, recSymlink:
		if r.typ == recSymlink {
			if len(rest) <= 20 || len(rest) > 20+maxTarget {
				return bad("bad symlink")
			}
			r.attr.Target, rest = string(rest[20:]), rest[:20]
		}
		if len(rest) != 20 {
			return bad("bad setattr")
		}
		r.attr.Mode = binary.BigEndian.Uint32(rest)
		r.attr.UID = binary.BigEndian.Uint32(rest[4:])
		r.attr.GID = binary.BigEndian.Uint32(rest[8:])
		r.attr.Mtime = time.Unix(0, int64(binary.BigEndian.Uint64(rest[12:])))
	default:
		return bad(fmt.Sprintf("type %d", r.typ))
	}
	if r.offset < 0 || r.offset > MaxFileSize {
		return bad("offset out of range")
	}
	return r, nil
}

// logAndApply makes rec durable in the journal (or only written, when
// ctx asks for Written: WithDurability), then applies it; the journal
// keeps the log from being trimmed past the record until apply has
// registered it with its file.
func (m *Manager) logAndApply(ctx context.Context, rec record, apply func(uploadbuffer.LSN) error) error {
	if durabilityOf(ctx) == Written {
		return m.appendWritten(ctx, rec.encode(), apply)
	}
	_, err := m.j.Append(ctx, rec.encode(), apply)
	return err
}

// appendWritten appends b without waiting for a sync, applies it, and
// returns once the log has written it to its file.
func (m *Manager) appendWritten(ctx context.Context, b []byte, apply func(uploadbuffer.LSN) error) error {
	lsn, err := m.j.AppendBuffered(ctx, b, apply)
	if err != nil {
		return err
	}
	return m.j.Log().Written(ctx, lsn)
}

// create makes a new empty file, a directory, a symbolic link (holding
// target) or a special file (a device numbered rdev) without touching the
// store: the creation is durable in the log, and the object (a
// directory's marker) appears with the upload. Until then the share lists
// and stats it from its state, so creating works while the store is away.
func (m *Manager) create(ctx context.Context, s *Share, p string, t FileType, mode, uid, gid uint32, target string, rdev Device) (Attr, error) {
	// The inode reaches the table later, with those of other new paths:
	// the record carries it with the path (inodes.go).
	ino, err := s.newInode(ctx, p)
	if err != nil {
		return Attr{}, err
	}
	now := s.now()
	a := Attr{Ino: ino, Type: t, Mode: mode & 0o7777, UID: uid, GID: gid, Mtime: now, Ctime: now}
	if t == TypeSymlink {
		a.Target, a.Size = target, int64(len(target))
	}
	if t == TypeBlock || t == TypeChar {
		a.Rdev = rdev
	}
	rec := record{typ: recNew, share: s.cfg.Name, ino: ino, attr: a, path: p}
	err = m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
		s.logged(p, ino, lsn)
		m.born(s, p, ino, a, lsn)
		return nil
	})
	if err != nil {
		return Attr{}, err
	}
	s.attrMu.Lock()
	s.dropAttrLocked(p)
	s.noteEntry(p, t, true)
	if t == TypeDir {
		s.known(p)
	}
	s.attrMu.Unlock()
	return a, nil
}

// born records a created file's or directory's state (also from replay).
func (m *Manager) born(s *Share, p string, ino uint64, a Attr, lsn uploadbuffer.LSN) {
	st := m.state(s, ino, Attr{Ino: ino, Type: a.Type})
	st.mu.Lock()
	st.attr = a
	st.touched(lsn, s.now())
	st.mu.Unlock()
	st.release()
	s.attrMu.Lock()
	s.unborn[p] = ino
	s.attrMu.Unlock()
}

// state returns the file's pending-write state, creating it from the
// object's current attributes, and holds it for a change: an upload that
// ends meanwhile cannot retire it. The caller calls release when its
// change is recorded (touched).
func (m *Manager) state(s *Share, ino uint64, a Attr) *fileState {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	k := fileKey{s.cfg.Name, ino}
	st := m.files[k]
	if st == nil {
		st = &fileState{attr: a, base: a, minLSN: ^uploadbuffer.LSN(0)}
		m.files[k] = st
	}
	st.mu.Lock()
	st.changing++
	st.mu.Unlock()
	return st
}

func (st *fileState) release() {
	st.mu.Lock()
	st.changing--
	st.mu.Unlock()
}

func (st *fileState) touched(lsn uploadbuffer.LSN, now time.Time) {
	if lsn < st.minLSN {
		st.minLSN = lsn
	}
	st.lastLSN = max(st.lastLSN, lsn)
	st.lastWrite = now
	st.gen++
}

// blockBase returns the base content of block index of the file's object:
// what the object held there before the pending writes (nil: zeroes).
func (m *Manager) blockBase(ctx context.Context, s *Share, p string, base Attr, index int64) ([]byte, error) {
	start := index * BlockSize
	if start >= base.Size || base.etag == "" && base.Size == 0 {
		return nil, nil
	}
	n := min(BlockSize, base.Size-start)
	// Read into memory through the store's retry policy: a body cut
	// short is read again rather than failing the client's read.
	// The source is taken once: a move that settles during the read
	// leaves the old key gone and the source asked again pointing at the
	// new key, which must then be read.
	key := s.key(p)
	src := m.source(s.cfg.Name, key)
	b, err := objstore.ReadRange(ctx, m.opts.Store, src, start, n)
	if objstore.IsNotFound(err) && src != key {
		b, err = objstore.ReadRange(ctx, m.opts.Store, key, start, n) // moved meanwhile
	}
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("read %s [%d, %d): %d bytes: %w", p, start, start+n, len(b), io.ErrUnexpectedEOF)
	}
	buf := make([]byte, BlockSize)
	copy(buf, b)
	return buf, nil
}

// stateBase is blockBase for a change or a read of a file with pending
// writes, st: from its base as it is now. The file's own upload may
// replace its object during the read, and the base (its size) names the
// new object only once that upload ends; then the block is read again from
// the object there, whichever it is, up to its end: the old object and the
// new one both hold the block's base content up to their ends (the block
// is not cached, so the upload sent the base's bytes of it), and past the
// new one's end the file holds zeroes (a truncation sent with it).
func (m *Manager) stateBase(ctx context.Context, s *Share, p string, st *fileState, index int64) ([]byte, error) {
	st.mu.Lock()
	base, gen := st.base, st.putGen
	st.mu.Unlock()
	b, err := m.blockBase(ctx, s, p, base, index)
	st.mu.Lock()
	overlapped := gen%2 == 1 || st.putGen != gen
	st.mu.Unlock()
	if !overlapped {
		return b, err
	}
	start := index * BlockSize
	if start >= base.Size {
		return nil, nil
	}
	for try := 0; ; try++ {
		oi, err := m.statObject(ctx, s.cfg.Name, s.key(p))
		if objstore.IsNotFound(err) {
			return nil, nil // not uploaded yet: nothing is based on an object
		}
		if err != nil {
			return nil, err
		}
		n := min(BlockSize, base.Size-start, oi.Size-start)
		if n <= 0 {
			return nil, nil
		}
		b, err := m.blockBase(ctx, s, p, Attr{Size: start + n, etag: oi.ETag}, index)
		if errors.Is(err, objstore.ErrInvalidRange) && try < 8 {
			continue // replaced again between the stat and the read
		}
		return b, err
	}
}

// Durability says when a write is durable.
type Durability int

const (
	// Durable: the write is durable when it returns.
	Durable Durability = iota
	// Buffered: the write is applied (reads see it) when it returns, and
	// durable once a Sync called after it returns, or a later durable
	// write of any file of the manager's shares. A crash before that may
	// lose it.
	Buffered
	// Written: as Buffered, and in the upload buffer's file when it
	// returns, so it survives the end of the process (kill -9), not a
	// power loss before the next Sync: a filesystem's write without
	// fsync. Creates, attribute changes and removes logged with a context
	// of WithDurability(ctx, Written) are written the same way.
	Written
)

type durabilityKey struct{}

// WithDurability returns ctx asking the share's changes made with it
// that the log records (creates, attribute changes, removes and renames
// logged, extended attributes) for d: Durable (the default) or Written.
func WithDurability(ctx context.Context, d Durability) context.Context {
	return context.WithValue(ctx, durabilityKey{}, d)
}

func durabilityOf(ctx context.Context) Durability {
	if d, ok := ctx.Value(durabilityKey{}).(Durability); ok {
		return d
	}
	return Durable
}

// WriteAt writes p at off into a file and returns once it is durable.
func (s *Share) WriteAt(ctx context.Context, path string, p []byte, off int64) (Attr, error) {
	return s.Write(ctx, path, p, off, Durable)
}

// Sync returns once every write that returned before it was called, of
// any file of the manager's shares, is durable (Buffered writes), and
// every change of this share answered Written.
func (s *Share) Sync(ctx context.Context) error {
	if err := s.m.j.Sync(ctx); err != nil {
		return err
	}
	return s.syncTable(ctx) // removes answered Written (inodes.go)
}

// Write writes p at off into a file; d says whether it is durable when
// Write returns or at the next Sync. p may be reused once Write returns.
func (s *Share) Write(ctx context.Context, path string, p []byte, off int64, d Durability) (Attr, error) {
	_, post, err := s.write(ctx, path, nil, p, off, d, nil)
	return post, err
}

// WriteFrom is Write for a caller that hands its buffer over, so that the
// data is not copied again on its way to the log: buf[head:] is the data,
// and buf[:head] is room the share may overwrite (the log record's header
// goes there when it fits). release is called once the share no longer
// reads buf, which for a Buffered write is when its log record has been
// written, perhaps after WriteFrom returns; buf must not change before.
// Then the log's writer calls it with the log's lock held: release must
// be quick, must not block and must not call the share.
// If that cannot be known (a Durable write whose ctx ended while the log
// waited for space on its filesystem: the record may still be written),
// release is not called and buf is left to the garbage collector.
//
// It also returns the file's attributes before the write (as Stat gives
// them), whenever the file was found, with an error too: an NFS reply
// carries both.
func (s *Share) WriteFrom(ctx context.Context, path string, buf []byte, head int, off int64, d Durability, release func()) (pre, post Attr, err error) {
	return s.write(ctx, path, buf[:head], buf[head:], off, d, release)
}

// write is Write and WriteFrom: room, when not nil, is the part of p's
// array just before p that may be overwritten, and release is then called
// as WriteFrom says.
func (s *Share) write(ctx context.Context, path string, room, p []byte, off int64, d Durability, release func()) (pre, post Attr, err error) {
	var lsn uploadbuffer.LSN
	if release != nil {
		defer func() { s.m.released(ctx, lsn, d, release) }()
	}
	path, err = cleanPath(path)
	if err != nil {
		return Attr{}, Attr{}, err
	}
	if err := s.writable(); err != nil {
		return Attr{}, Attr{}, err
	}
	a, err := s.Stat(ctx, path)
	if err != nil {
		return Attr{}, Attr{}, err
	}
	if a.Type != TypeFile {
		return a, Attr{}, fmt.Errorf("%s: %w", path, ErrIsDir)
	}
	if off < 0 || off+int64(len(p)) > MaxFileSize {
		return a, Attr{}, fmt.Errorf("write at %d: %w", off, ErrInvalid)
	}
	rec := record{typ: recWrite, share: s.cfg.Name, ino: a.Ino, offset: off, data: p}
	var b []byte
	if n := int(writeDataOffset(s.cfg.Name)); room != nil && len(room) >= n {
		// The header in the room before the data: the record is the
		// caller's buffer from there on, with no copy.
		h := binary.BigEndian.AppendUint64(rec.head(room[len(room)-n:len(room)-n:len(room)]), uint64(off))
		b = room[len(room)-n : len(room)+len(p)]
		if len(h) != n || &h[0] != &b[0] {
			panic("fileshare: write record header misplaced") // cannot happen: h has exactly n bytes of room
		}
	} else {
		b = rec.encode()
	}
	appendRec := s.m.j.Append
	if d != Durable {
		appendRec = s.m.j.AppendBuffered
	}
	lsn, err = appendRec(ctx, b, func(lsn uploadbuffer.LSN) error {
		st := s.m.state(s, a.Ino, a)
		defer st.release()
		if err := s.m.applyWrite(ctx, s, path, a.Ino, st, off, p, lsn, false); err != nil {
			return err
		}
		now := s.now()
		st.mu.Lock()
		st.touched(lsn, now)
		st.attr.Mtime, st.attr.Ctime = now, now
		post = st.attr
		st.mu.Unlock()
		return nil
	})
	post.Ino, post.Type = a.Ino, TypeFile
	if err == nil && d == Written {
		err = s.m.j.Log().Written(ctx, lsn)
	}
	if err == nil {
		s.wrote(ctx, path)
	}
	return a, post, err
}

// released calls release once the log no longer reads a write's record:
// at once if it was not queued (lsn 0) or was durable when appended, else
// once the log has written it. A durable append cut off by its ctx may
// still be written (see WriteFrom): then never.
func (m *Manager) released(ctx context.Context, lsn uploadbuffer.LSN, d Durability, release func()) {
	switch {
	case lsn == 0 && d == Durable && ctx.Err() != nil:
	case lsn == 0, d == Durable:
		release()
	default:
		// Once the record is written (not synced: that is COMMIT's), or
		// will never be (the log failed or was closed): either way the
		// log is done with it. Called by the log's writer, with no
		// goroutine waiting per write.
		m.j.Log().OnWritten(lsn, release)
	}
}

// writeDataOffset is where a write record's data starts in it (encode).
func writeDataOffset(share string) int64 { return int64(2 + len(share) + 8 + 8) }

// applyWrite puts p, the data of write record lsn, into the file's cached
// blocks. The bytes stay in the record until the file is uploaded: the
// cache reads them from there and writes them into its block files once,
// after the upload (MarkClean). replayed says the record is replayed from
// the log (cacheWrite).
func (m *Manager) applyWrite(ctx context.Context, s *Share, path string, ino uint64, st *fileState, off int64, p []byte, lsn uploadbuffer.LSN, replayed bool) error {
	src := cache.Source{R: m.j.Log(), LSN: lsn, Off: writeDataOffset(s.cfg.Name)}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		index, in := pos/BlockSize, pos%BlockSize
		n := min(int64(len(p)-done), BlockSize-in)
		key := cache.Key{Volume: cacheVolume(s.cfg.Name, ino), Index: uint64(index)}
		err := m.cacheWrite(ctx, key, p[done:done+int(n)], in, func() ([]byte, error) {
			return m.stateBase(ctx, s, path, st, index)
		}, &src, replayed)
		src.Off += n
		if err != nil {
			return fmt.Errorf("%s: cache write: %w", path, err)
		}
		done += int(n)
	}
	st.mu.Lock()
	st.data = true
	if end := off + int64(len(p)); end > st.attr.Size {
		st.attr.Size = end
	}
	st.mu.Unlock()
	return nil
}

// cacheWrite writes p at off into a file's cached block: from write
// record src, or (src nil) written into the block's file. A replayed
// record's write never waits for room in the cache (cache.WriteReplayed):
// the uploads that make room start after the replay, and the records are
// durable already and bounded by the log's capacity.
func (m *Manager) cacheWrite(ctx context.Context, key cache.Key, p []byte, off int64, base func() ([]byte, error), src *cache.Source, replayed bool) error {
	switch {
	case replayed:
		return m.opts.Cache.WriteReplayed(ctx, key, BlockSize, p, off, base, src)
	case src != nil:
		return m.opts.Cache.WriteLogged(ctx, key, BlockSize, p, off, base, *src)
	default:
		return m.opts.Cache.WriteAt(ctx, key, BlockSize, p, off, base)
	}
}

// truncate sets a file's size: blocks past it are dropped, the tail of
// the last one zeroed. replayed is as for applyWrite.
func (m *Manager) applyTruncate(ctx context.Context, s *Share, path string, ino uint64, st *fileState, size int64, replayed bool) error {
	st.mu.Lock()
	old := st.attr.Size
	st.attr.Size = size
	st.truncs++
	st.data = true
	st.mu.Unlock()
	if size < old {
		if truncateHook != nil {
			truncateHook()
		}
		vol := cacheVolume(s.cfg.Name, ino)
		for index := (size + BlockSize - 1) / BlockSize; index*BlockSize < old; index++ {
			if err := m.opts.Cache.Drop(cache.Key{Volume: vol, Index: uint64(index)}); err != nil {
				return err
			}
		}
		if in := size % BlockSize; in != 0 {
			index := size / BlockSize
			zero := make([]byte, BlockSize-in)
			err := m.cacheWrite(ctx, cache.Key{Volume: vol, Index: uint64(index)}, zero, in, func() ([]byte, error) {
				return m.stateBase(ctx, s, path, st, index)
			}, nil, replayed)
			if err != nil {
				return err
			}
		}
		// Blocks past the new end must not come back from the old object
		// if the file grows again.
		st.mu.Lock()
		if st.base.Size > size {
			st.base.Size = size
		}
		st.mu.Unlock()
	}
	return nil
}

// truncateHook, when a test sets it, runs in a truncation that shortens
// a file once its size is set, before its last block's tail is zeroed.
var truncateHook func()

// setattrLogged changes a file with pending writes (or its size) through
// the log, so the change and the data go up together.
func (m *Manager) setattrLogged(ctx context.Context, s *Share, path string, a Attr, ch SetAttr) (Attr, error) {
	var out Attr
	err := func() error {
		if ch.Size != nil {
			rec := record{typ: recTruncate, share: s.cfg.Name, ino: a.Ino, offset: *ch.Size}
			err := m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
				st := m.state(s, a.Ino, a)
				defer st.release()
				if err := m.applyTruncate(ctx, s, path, a.Ino, st, *ch.Size, false); err != nil {
					return err
				}
				st.mu.Lock()
				st.touched(lsn, s.now())
				st.attr.Mtime, st.attr.Ctime = s.now(), s.now()
				st.mu.Unlock()
				return nil
			})
			if err != nil {
				return err
			}
		}
		if ch.Mode == nil && ch.UID == nil && ch.GID == nil && ch.Mtime == nil {
			return nil
		}
		st := m.state(s, a.Ino, a)
		defer st.release()
		st.mu.Lock()
		na := st.attr
		st.mu.Unlock()
		if ch.Mode != nil {
			na.Mode = *ch.Mode & 0o7777
		}
		if ch.UID != nil {
			na.UID = *ch.UID
		}
		if ch.GID != nil {
			na.GID = *ch.GID
		}
		if ch.Mtime != nil {
			na.Mtime = *ch.Mtime
		}
		st.mu.Lock()
		same := na.Mode == st.attr.Mode && na.UID == st.attr.UID && na.GID == st.attr.GID && na.Mtime.Equal(st.attr.Mtime)
		st.mu.Unlock()
		if same {
			// Nothing changes (smbd sets a file's write time again at
			// close): no record, and the ctime stays.
			return nil
		}
		rec := record{typ: recSetattr, share: s.cfg.Name, ino: a.Ino, attr: na}
		return m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
			st.mu.Lock()
			st.attr.Mode, st.attr.UID, st.attr.GID, st.attr.Mtime = na.Mode, na.UID, na.GID, na.Mtime
			st.attr.Ctime = s.now()
			st.touched(lsn, s.now())
			st.mu.Unlock()
			return nil
		})
	}()
	if err != nil {
		return Attr{}, err
	}
	out, err = s.Stat(ctx, path)
	return out, err
}

// ReadAt reads from a file at off; it returns fewer bytes at the end.
func (s *Share) ReadAt(ctx context.Context, path string, p []byte, off int64) (int, error) {
	for try := 0; ; try++ {
		n, err := s.readAt(ctx, path, p, off)
		if errors.Is(err, objstore.ErrInvalidRange) && try < 3 {
			// The object changed between the file's stat and the read
			// (written and uploaded meanwhile): the file as it is now.
			continue
		}
		return n, err
	}
}

func (s *Share) readAt(ctx context.Context, path string, p []byte, off int64) (int, error) {
	a, err := s.Stat(ctx, path)
	if err != nil {
		return 0, err
	}
	if a.Type != TypeFile {
		return 0, fmt.Errorf("%s: %w", path, ErrIsDir)
	}
	path, _ = cleanPath(path)
	if off >= a.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), a.Size-off)
	st := s.m.dirtyState(s.cfg.Name, a.Ino)
	vol := cacheVolume(s.cfg.Name, a.Ino)
	for done := int64(0); done < want; {
		pos := off + done
		index, in := pos/BlockSize, pos%BlockSize
		n := min(want-done, BlockSize-in)
		key := cache.Key{Volume: vol, Index: uint64(index)}
		buf := p[done : done+n]
		ok, err := s.m.opts.Cache.ReadAt(key, buf, in)
		if err != nil {
			return int(done), err
		}
		if !ok {
			var data []byte
			if st != nil {
				data, err = s.m.stateBase(ctx, s, path, st, index)
			} else {
				data, err = s.m.blockBase(ctx, s, path, a, index)
			}
			if err != nil {
				return int(done), err
			}
			if data == nil {
				clear(buf)
			} else {
				copy(buf, data[in:])
				_ = s.m.opts.Cache.PutClean(key, data)
			}
		}
		done += n
	}
	if want < int64(len(p)) {
		return int(want), io.EOF
	}
	return int(want), nil
}

// journalClient is the file shares' side of the journal: how a record is
// applied, which files wait for upload and how one goes up.
type journalClient struct{ m *Manager }

// Apply applies a replayed record to the file it names, as if written
// now; the files are then uploaded as usual.
func (c journalClient) Apply(ctx context.Context, lsn uploadbuffer.LSN, b []byte) error {
	m := c.m
	r, err := decodeRecord(b)
	if err != nil {
		return err
	}
	s, err := m.Get(r.share)
	if err != nil {
		return nil // share deleted since
	}
	switch r.typ {
	case recRemove, recRemoved:
		m.filesMu.Lock()
		if r.typ == recRemove {
			m.deletes[deleteKey(r.share, string(r.data))] = lsn
		} else {
			delete(m.deletes, deleteKey(r.share, string(r.data)))
		}
		m.filesMu.Unlock()
		return nil
	case recRename, recRenamed:
		m.replayMove(r.share, lsn, r)
		return nil
	}
	if r.typ != recCreate && r.typ != recMkdir && r.typ != recSymlink && r.typ != recNew {
		if !m.replayWaits[fileKey{r.share, r.ino}] {
			wait, err := m.replayFileRecord(ctx, lsn, r)
			if err != nil || !wait {
				return err
			}
		}
		// The store is away and the file is not known without it (or
		// its object is not where the log read so far puts it): this
		// record and the file's next ones wait.
		m.replayWaits[fileKey{r.share, r.ino}] = true
		r.data = bytes.Clone(r.data) // b is the replay's buffer, read again for the next record
		m.filesMu.Lock()
		m.later = append(m.later, laterRecord{lsn: lsn, rec: r})
		m.filesMu.Unlock()
		return nil
	}
	path, err := s.PathOf(ctx, r.ino)
	if errors.Is(err, ErrStale) && r.typ == recNew {
		// Not in the inode table: removed since, or its mapping was not
		// written before the crash (inodes.go).
		restored, err := s.restoreInode(ctx, r.path, r.ino, lsn)
		if err != nil || !restored {
			return err
		}
		path = r.path
	} else if err != nil {
		if errors.Is(err, ErrStale) {
			return nil // file removed since
		}
		return err
	}
	r.attr.Ino, r.attr.Ctime = r.ino, r.attr.Mtime // made then
	switch r.typ {
	case recCreate:
		r.attr.Type = TypeFile
	case recMkdir:
		r.attr.Type = TypeDir
	case recSymlink:
		r.attr.Type = TypeSymlink
	}
	key := s.key(path)
	switch r.attr.Type {
	case TypeDir:
		key += "/"
	case TypeSymlink:
		r.attr.Size = int64(len(r.attr.Target))
	}
	if exists, err := m.inStore(ctx, key); err == nil && exists && !m.deleting(r.share, key) {
		// Uploaded before the crash: the records after this one
		// apply to the object.
		return nil
	} else if err != nil {
		// The store is away. Every record of the file since its
		// creation is still in the log (trimming keeps a suffix),
		// so it is rebuilt whole from them and uploaded again.
		m.log.Warn("file share replay: store away, replaying a created file from the log", "share", r.share, "path", path, "err", err)
	}
	m.born(s, path, r.ino, r.attr, lsn)
	return nil
}

// inStore says whether the store holds key, for a replayed creation: from
// the replay's listing of its directory (replaylist.go).
func (m *Manager) inStore(ctx context.Context, key string) (bool, error) {
	if m.replayObjects == nil { // not replaying: the store itself
		return statExists(ctx, m.opts.Store, key)
	}
	return m.replayObjects.exists(ctx, key)
}

// replayFileRecord applies a write, truncate or setattr record to its
// file. wait says the store is away and the file not known without it:
// the record is to be applied later.
func (m *Manager) replayFileRecord(ctx context.Context, lsn uploadbuffer.LSN, r record) (wait bool, err error) {
	s, err := m.Get(r.share)
	if err != nil {
		return false, nil // share deleted since
	}
	path, err := s.PathOf(ctx, r.ino)
	if err != nil {
		if errors.Is(err, ErrStale) {
			return false, nil // file removed since
		}
		return false, err
	}
	a, err := s.statNow(ctx, path)
	if err != nil {
		if isNotExist(err) && m.replayWaits != nil {
			// A rename later in the log may bring the file's object here
			// (moves.go): the record waits until the whole log is read.
			s.forgetAttr(path)
			return true, nil
		}
		if isNotExist(err) {
			return false, nil
		}
		if m.storeFailed(ctx, err) {
			return true, nil
		}
		return false, err
	}
	st := m.state(s, r.ino, a)
	defer st.release()
	switch r.typ {
	case recWrite:
		err = m.applyWrite(ctx, s, path, r.ino, st, r.offset, r.data, lsn, true)
	case recTruncate:
		err = m.applyTruncate(ctx, s, path, r.ino, st, r.offset, true)
	case recSetattr:
		st.mu.Lock()
		st.attr.Mode, st.attr.UID, st.attr.GID, st.attr.Mtime = r.attr.Mode, r.attr.UID, r.attr.GID, r.attr.Mtime
		st.mu.Unlock()
	case recXattrs:
		set, _ := decodeXattrs(r.data) // checked by decodeRecord
		var x *xattrSet
		if set != nil {
			x = &xattrSet{m: set}
		}
		st.mu.Lock()
		st.attr.xa = x
		st.mu.Unlock()
	}
	if err != nil {
		return false, err
	}
	st.mu.Lock()
	st.touched(lsn, m.opts.Clock.Now())
	st.mu.Unlock()
	return false, nil
}

// Flush uploads every pending file of a share (all shares if name is
// empty) now, ignoring the settle time, before any background upload.
func (m *Manager) Flush(ctx context.Context, name string) error {
	if err := m.j.Flush(ctx, func(u uploadbuffer.Unit) bool { return name == "" || u.Value.(fileKey).share == name }); err != nil {
		return err
	}
	// Then the directories' times the entry changes moved, as an upload
	// round does after its uploads: a flushed share's markers are current.
	return m.uploadDirTimes(ctx, name)
}

func (m *Manager) flushTree(ctx context.Context, s *Share, dir string) error {
	return m.round(ctx, true, func(k fileKey, path string) bool {
		return k.share == s.cfg.Name && strings.HasPrefix(path, dir+"/")
	})
}

// round runs one upload round now: with all set, of every pending file
// pick accepts (given its path); else a background round of the files
// that are due.
func (m *Manager) round(ctx context.Context, all bool, pick func(fileKey, string) bool) error {
	if !all && pick == nil {
		return m.j.Round(ctx)
	}
	return m.j.Flush(ctx, func(u uploadbuffer.Unit) bool {
		k := u.Value.(fileKey)
		s, err := m.Get(k.share)
		if err != nil {
			return false
		}
		path, err := s.PathOf(ctx, k.ino)
		return err == nil && pick(k, path)
	})
}

// Pending applies the replayed changes that waited for the store and
// does the removes and moves that wait for it (an upload may write where
// one was), then lists the files with changes not yet uploaded.
func (c journalClient) Pending(ctx context.Context) ([]uploadbuffer.Unit, error) {
	m := c.m
	firstErr := m.applyLater(ctx)
	for _, cfg := range m.List() {
		// The inodes of the paths made since the last round, in one
		// transaction a share (inodes.go).
		if s, err := m.Get(cfg.Name); err == nil {
			if err := s.saveInodes(ctx); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	for _, cfg := range m.List() {
		if err := m.settleDeletes(ctx, cfg.Name); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	m.filesMu.Lock()
	units := make([]uploadbuffer.Unit, 0, len(m.files))
	for k, st := range m.files {
		st.mu.Lock()
		units = append(units, uploadbuffer.Unit{Key: k.share + "\x00" + strconv.FormatUint(k.ino, 10), Changed: st.lastWrite, Value: k})
		st.mu.Unlock()
	}
	m.filesMu.Unlock()
	sort.Slice(units, func(i, j int) bool { return units[i].Value.(fileKey).ino < units[j].Value.(fileKey).ino })
	return units, firstErr
}

// Upload uploads one file.
func (c journalClient) Upload(ctx context.Context, u uploadbuffer.Unit) (int64, error) {
	k := u.Value.(fileKey)
	s, err := c.m.Get(k.share)
	if err != nil {
		return 0, nil // share deleted since
	}
	return c.m.upload(ctx, s, k)
}

// putByUs reports whether oi, read right after an upload of attr, can be
// the object put: the same size and, on a store that keeps metadata, the
// modification and change times put with it to the nanosecond, which
// another application's object does not carry. (The store's put gives no
// ETag to compare.)
func putByUs(oi objstore.ObjectInfo, attr Attr, keepsMeta bool) bool {
	if oi.Size != attr.Size {
		return false
	}
	if !keepsMeta {
		return true // the size is all there is to compare
	}
	want := attr.metadata()
	return oi.Metadata[metaMtime] == want[metaMtime] && oi.Metadata[metaCtime] == want[metaCtime]
}

// upload puts a file's current content as its object and returns its
// size. If nothing changed it meanwhile, the file is clean: its log
// records are released.
func (m *Manager) upload(ctx context.Context, s *Share, k fileKey) (int64, error) {
	m.filesMu.Lock()
	st := m.files[k]
	m.filesMu.Unlock()
	if st == nil {
		return 0, nil
	}
	// One upload of a file at a time; a second caller (a flush while the
	// uploader runs) waits for the first, then uploads what is still dirty.
	st.upMu.Lock()
	defer st.upMu.Unlock()
	isCurrent := func() bool {
		m.filesMu.Lock()
		current := m.files[k] == st
		m.filesMu.Unlock()
		st.mu.Lock()
		defer st.mu.Unlock()
		return current && !st.cancelled
	}
	// Hold the file's path against a remove or rename of it (or of a
	// directory above it) for the upload; one may have moved it before
	// the hold was granted, so the path is looked up again under it.
	var path string
	for {
		p, err := s.PathOf(ctx, k.ino)
		if err != nil {
			if !isCurrent() {
				return 0, nil // removed meanwhile
			}
			return 0, err
		}
		unlock := m.ns(k.share).upload(p)
		if q, err := s.PathOf(ctx, k.ino); err == nil && q == p {
			defer unlock()
			path = p
			break
		}
		unlock()
	}
	if !isCurrent() {
		return 0, nil
	}
	st.mu.Lock()
	gen, truncs, attr, base, data, lastLSN := st.gen, st.truncs, st.attr, st.base, st.data, st.lastLSN
	st.mu.Unlock()
	r := &fileReader{ctx: ctx, m: m, s: s, path: path, vol: cacheVolume(k.share, k.ino), size: attr.Size, base: base, gens: map[int64]uint64{}}
	key := s.key(path)
	var body io.ReadSeeker = r
	switch attr.Type {
	case TypeDir:
		// A new directory: its marker, carrying its attributes (the
		// root's is the object at the share's prefix).
		key, body, attr.Size = key+"/", bytes.NewReader(nil), 0
		if path == "" {
			key = s.cfg.Prefix
		}
	case TypeSymlink:
		// A new symbolic link: an object holding the target.
		body, attr.Size = strings.NewReader(attr.Target), int64(len(attr.Target))
	case TypeFIFO, TypeSocket, TypeBlock, TypeChar:
		// A special file: an empty object, its type in the metadata.
		body, attr.Size = bytes.NewReader(nil), 0
	default:
		attr.Type = TypeFile
	}
	if m.pendingKey(k.share, key) {
		return 0, fmt.Errorf("share %s: upload %s: a remove or rename there is not done in the store yet", k.share, path)
	}
	if err := m.eventsFull(); err != nil {
		return 0, fmt.Errorf("share %s: upload %s: %w", k.share, path, err)
	}
	release, err := m.sealXattrs(ctx, &attr)
	if err != nil {
		m.uploadErrors.Add(1)
		return 0, fmt.Errorf("share %s: upload %s: %w", k.share, path, err)
	}
	defer release()
	// From here until the base names the object put, a read of the base
	// may meet either object (stateBase).
	st.mu.Lock()
	st.putGen++
	st.mu.Unlock()
	putting := true
	defer func() {
		if putting {
			st.mu.Lock()
			st.putGen++
			st.mu.Unlock()
		}
	}()
	sent := attr.Size
	if attr.Type == TypeFile && !data && base.etag != "" && attr.Size == base.Size {
		// Only attributes changed (a chmod while the store was away): the
		// object's metadata, as SetAttr does.
		err = m.opts.Store.(objstore.MetadataPutter).SetMeta(ctx, key, attr.metadata())
	} else {
		sent, err = m.putFile(ctx, s, key, body, r, attr, base) // ranges.go: only the changed blocks, when it can
	}
	if err != nil {
		m.uploadErrors.Add(1)
		st.mu.Lock()
		st.failures++
		attempt := st.failures
		st.mu.Unlock()
		m.notifyUploadFailed(ctx, s, key, attr.Type, attempt, err)
		return 0, fmt.Errorf("share %s: upload %s: %w", k.share, path, err)
	}
	m.storeBack()
	m.bytesUploaded.Add(uint64(sent))
	m.filesUploaded.Add(1)
	oi, err := m.opts.Store.Stat(ctx, key)
	if err != nil {
		return attr.Size, err
	}
	// The ETag comes from a stat after the put: another application may
	// have replaced the object in between. Then the cached blocks are not
	// its, and its attributes are not the file's as uploaded.
	_, keepsMeta := m.opts.Store.(objstore.MetadataPutter)
	replaced := attr.Type == TypeFile && !putByUs(oi, attr, keepsMeta)
	etag := oi.ETag
	if replaced {
		etag = ""
	}
	s.attrMu.Lock()
	if replaced {
		m.uploadsReplaced.Add(1)
		m.log.Info("file share: the object uploaded was replaced by another application before it was read back; the file reads as that object", "share", k.share, "path", "/"+path)
		s.etags[k.ino] = replacedETag // the next stat drops the blocks
	} else {
		s.etags[k.ino] = oi.ETag // the cached blocks are this object's
	}
	s.attrMu.Unlock()
	// Blocks not in the cache now come from the uploaded object, up to its
	// size, unless a truncation meanwhile cut the file shorter: past that
	// point the object still holds what the truncation removed.
	m.filesMu.Lock()
	st.mu.Lock()
	size := oi.Size
	if st.truncs != truncs {
		size = min(size, st.base.Size, st.attr.Size)
	}
	st.base = attr
	st.base.Size, st.base.etag = size, etag // no ETag: the next upload goes whole
	st.putGen++
	putting = false
	st.failures = 0
	st.mu.Unlock()
	m.filesMu.Unlock()
	// The blocks read for the upload are clean, unless written since.
	// MarkClean writes the bytes the cache keeps in log records into the
	// block files, so it runs before the state is retired below, which
	// releases those records; and after the base above, since a clean
	// block may be evicted and then read from the base. It writes files,
	// so it runs without filesMu, which every change takes: the state
	// stays meanwhile (only this upload, which holds upMu, and a remove,
	// which the path hold keeps out, retire it).
	for index, g := range r.gens {
		if _, err := m.opts.Cache.MarkClean(cache.Key{Volume: r.vol, Index: uint64(index)}, g); err != nil {
			// The block is in the store and the cache dropped it: the
			// failing disk only shows in health.
			m.localWriteFailed(k.share, fmt.Sprintf("%s block %d", path, index), err)
		}
	}
	// The upload's event is durable before the state is retired, which
	// lets the file's records go (notify.go). A replaced object's ETag is
	// not the upload's: the event carries none.
	if err := m.notifyUploaded(ctx, s, k.ino, st, gen, key, attr, etag, lastLSN); err != nil {
		return attr.Size, fmt.Errorf("share %s: upload %s: %w", k.share, path, err)
	}
	// The state is retired under filesMu, the lock state() takes to hold
	// it, so a change either holds the state first (and it stays) or finds
	// it gone and starts a new one on the uploaded object.
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	s.attrMu.Lock()
	if s.unborn[path] == k.ino {
		delete(s.unborn, path) // the object exists now
		if s.listings > 0 {
			s.landed[path] = attr.Type
		}
		s.noteEntry(path, attr.Type, true)
	}
	s.attrMu.Unlock()
	if st.gen != gen || st.changing > 0 {
		return attr.Size, nil // changed meanwhile: it goes up again
	}
	delete(m.files, k)
	if replaced {
		// The next stat reads the replacing object's attributes.
		s.invalidateFile(path)
		return attr.Size, nil
	}
	a := attr
	a.Size, a.etag = oi.Size, oi.ETag
	if a.Type == TypeDir {
		a.etag = ""
	}
	s.remember(path, a, true)
	s.attrMu.Lock()
	s.noteEntry(path, a.Type, true)
	s.attrMu.Unlock()
	return attr.Size, nil
}

// fileReader reads a file's content for upload: cached blocks (dirty ones
// are pinned), the old object for the rest. It can seek, for retries.
type fileReader struct {
	ctx  context.Context
	m    *Manager
	s    *Share
	path string
	vol  string
	size int64
	base Attr
	pos  int64
	gens map[int64]uint64 // cache generation of each block read
	cur  []byte
	curI int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	index, in := r.pos/BlockSize, r.pos%BlockSize
	if r.cur == nil || r.curI != index {
		// Only the bytes the file has in the block: a small file's upload
		// then copies and zeroes kilobytes, not a whole block.
		data, gen, err := r.m.opts.Cache.SnapshotHead(cache.Key{Volume: r.vol, Index: uint64(index)}, min(BlockSize, r.size-index*BlockSize))
		if errors.Is(err, cache.ErrNotCached) {
			data, err = r.m.blockBase(r.ctx, r.s, r.path, r.base, index)
			if data == nil && err == nil {
				data = make([]byte, BlockSize)
			}
		} else if err == nil {
			r.gens[index] = gen
		}
		if err != nil {
			return 0, err
		}
		r.cur, r.curI = data, index
	}
	n := copy(p, r.cur[in:min(int64(len(r.cur)), r.size-index*BlockSize)])
	r.pos += int64(n)
	return n, nil
}

func (r *fileReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	}
	if off < 0 {
		return 0, errors.New("seek before start")
	}
	r.pos = off
	return off, nil
}

// Needs is the oldest record a file, a remove, a move or a replayed
// change waiting for the store still needs.
func (c journalClient) Needs() (uploadbuffer.LSN, bool) {
	m := c.m
	upTo := ^uploadbuffer.LSN(0)
	for _, cfg := range m.List() {
		if s, err := m.Get(cfg.Name); err == nil {
			if lsn, ok := s.needs(); ok {
				upTo = min(upTo, lsn) // creations whose inodes are not in the table yet
			}
		}
	}
	m.filesMu.Lock()
	for _, lsn := range m.deletes {
		upTo = min(upTo, lsn)
	}
	for lsn := range m.moves {
		upTo = min(upTo, lsn)
	}
	for _, lr := range m.later {
		upTo = min(upTo, lr.lsn)
	}
	for _, st := range m.files {
		st.mu.Lock()
		upTo = min(upTo, st.minLSN)
		st.mu.Unlock()
	}
	m.filesMu.Unlock()
	return upTo, upTo != ^uploadbuffer.LSN(0)
}
