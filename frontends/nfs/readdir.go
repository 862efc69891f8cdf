package nfs

import (
	"encoding/binary"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/fileshare"
)

// READDIR and READDIRPLUS (RFC 1813 sections 3.3.16 and 3.3.17) are
// served by rpcConn (rpc.go), not go-nfs: go-nfs reads the whole
// directory from the share for every call, and a listing of a big
// directory takes many calls (one page each).
//
// A listing with cookie 0 reads the directory from the share (its
// entries and their attributes, as the share keeps them: no store call
// per entry) and keeps the sorted entries as a snapshot under the
// directory's cookie verifier; the calls that continue it page through
// the snapshot, so a call costs its page, not the directory. The
// verifier is drawn from the directory's inode and its mtime and ctime,
// which move with every entry added, removed or renamed: an unchanged
// directory keeps its verifier (a client's cached listing stays valid),
// and a client that continues a listing of a directory changed since
// gets NFS3ERR_BAD_COOKIE and lists it again. A continuing call whose
// snapshot has expired (snapshotIdle) or was dropped to keep memory
// bounded (maxSnapshotEntries) reads the directory again.
//
// The cookies: "." is 1, ".." is 2, the directory's i-th entry (by
// name) is i+3. "." and ".." come first, as go-nfs gives them: "." with
// the directory's attributes, ".." with its parent's inode (the
// directory's own at the share's root), neither with a handle. Every
// other entry of READDIRPLUS carries the attributes GETATTR gives
// (attrOf) and the handle LOOKUP gives (fileHandle).
//
// The limits are honoured to the byte: READDIR's count and
// READDIRPLUS's maxcount bound the reply from the status on (the
// READDIR3resok or READDIRPLUS3resok), dircount bounds the entries'
// directory part (what a READDIR entry3 takes: fileid, name, cookie and
// the list's pointer); counts over maxTransfer are taken as maxTransfer.
// A call whose limits leave room for no entry, and not the end, gets
// NFS3ERR_TOOSMALL.

const (
	procReaddir     = 16
	procReaddirplus = 17
)

const (
	// snapshotIdle is how long a listing's snapshot is kept after its
	// last use.
	snapshotIdle = 2 * time.Minute
	// maxSnapshotEntries bounds the entries kept in snapshots, all
	// directories together; the least recently used go first (the
	// snapshot of a bigger directory alone is kept while in use).
	maxSnapshotEntries = 1 << 20
	// maxSnapshots bounds how many directories' snapshots are kept.
	maxSnapshots = 256

	// Sizes in XDR.
	resHead   = 4 + 4 + 84 + 8 // status, post_op_attr, cookieverf
	resTail   = 4 + 4          // the list's last pointer, eof
	entryHead = 4 + 8 + 4 + 8  // pointer, fileid, name's length, cookie
	entryPlus = 4 + 84 + 4 + 4 + handleLen
)

func (c *rpcConn) readdir(x *xdrReader, w *replyWriter)     { c.readdirAny(x, w, false) }
func (c *rpcConn) readdirplus(x *xdrReader, w *replyWriter) { c.readdirAny(x, w, true) }

func (c *rpcConn) readdirAny(x *xdrReader, w *replyWriter, plus bool) {
	fh := x.opaque(maxHandle)
	cookie, verf := x.u64(), x.u64()
	dircount := x.u32()
	maxcount := dircount // READDIR's count
	if plus {
		maxcount = x.u32()
	} else {
		dircount = maxTransfer
	}
	share, p, a, ok := c.args(x, w, fh)
	if !ok {
		return
	}
	dirAttr := attrOf(p, a)
	if a.Type != fileshare.TypeDir {
		w.status(gonfs.NFSStatusNotDir)
		w.postOp(dirAttr)
		return
	}
	v := cookieVerifier(a)
	if cookie != 0 && verf != 0 && verf != v {
		w.status(gonfs.NFSStatusBadCookie)
		w.postOp(dirAttr)
		return
	}
	snap, err := snapshots.get(c, share, p, a, v, cookie == 0)
	if err != nil {
		w.status(nfsStatus(err))
		w.postOp(dirAttr)
		return
	}
	if cookie > uint64(len(snap.entries))+2 {
		w.status(gonfs.NFSStatusBadCookie)
		w.postOp(dirAttr)
		return
	}
	maxcount, dircount = min(maxcount, maxTransfer), min(dircount, maxTransfer)
	statusAt := len(w.b)
	w.reserve(resHead)
	w.status(gonfs.NFSStatusOk)
	w.postOp(dirAttr)
	w.u64(v)
	size, dirSize := resHead+resTail, 0
	wrote, eof := 0, true
	for pos := int(cookie); pos < len(snap.entries)+2; pos++ {
		var name string
		var ino uint64
		var attr *gonfs.FileAttribute
		switch pos {
		case 0:
			name, ino, attr = ".", a.Ino, dirAttr
		case 1:
			name, ino = "..", snap.parent
		default:
			e := &snap.entries[pos-2]
			name, ino = e.Name, e.Attr.Ino
		}
		dirBytes := entryHead + (len(name)+3)&^3
		bytes := dirBytes
		if plus {
			bytes += 4 + 4 // post_op_attr and post_op_fh3 absent
			if pos >= 2 {
				bytes = dirBytes + entryPlus
			} else if attr != nil {
				bytes += 84
			}
		}
		if size+bytes > int(maxcount) || dirSize+dirBytes > int(dircount) {
			eof = false
			break
		}
		size, dirSize, wrote = size+bytes, dirSize+dirBytes, wrote+1
		w.reserve(bytes)
		w.u32(1)
		w.u64(ino)
		w.name(name)
		w.u64(uint64(pos) + 1)
		if !plus {
			continue
		}
		if pos < 2 {
			w.postOp(attr)
			w.u32(0)
			continue
		}
		e := &snap.entries[pos-2]
		w.postOp(attrOf(joinPath(p, e.Name), e.Attr))
		w.u32(1)
		w.u32(handleLen)
		w.b = append(w.b, fileHandle(share.Config().ID, e.Attr.Ino)...)
	}
	if wrote == 0 && !eof {
		w.b = w.b[:statusAt]
		w.status(gonfs.NFSStatusTooSmall)
		w.postOp(dirAttr)
		return
	}
	w.reserve(resTail)
	w.u32(0)
	if eof {
		w.u32(1)
	} else {
		w.u32(0)
	}
}

// name appends an XDR string.
func (w *replyWriter) name(s string) {
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
	w.b = append(w.b, make([]byte, (4-len(s)%4)%4)...)
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// cookieVerifier is a directory's cookie verifier: its inode and times,
// hashed; never 0 (the verifier of a listing's first call).
func cookieVerifier(a fileshare.Attr) uint64 {
	h := fnv.New64a()
	var b [24]byte
	binary.BigEndian.PutUint64(b[:], a.Ino)
	binary.BigEndian.PutUint64(b[8:], uint64(a.Mtime.UnixNano()))
	binary.BigEndian.PutUint64(b[16:], uint64(a.Ctime.UnixNano()))
	h.Write(b[:])
	if v := h.Sum64(); v != 0 {
		return v
	}
	return 1
}

// snapshot is a directory's listing as a call with cookie 0 read it.
type snapshot struct {
	entries []fileshare.DirEntry // by name
	parent  uint64               // the parent's inode (the directory's own at the root)
	used    time.Time
}

type snapshotKey struct {
	share *fileshare.Share
	ino   uint64
	verf  uint64
}

// snapshotCache keeps the snapshots of the directories being listed.
type snapshotCache struct {
	mu      sync.Mutex
	m       map[snapshotKey]*snapshot
	entries int // in m, all snapshots together
}

var snapshots = snapshotCache{m: map[snapshotKey]*snapshot{}}

// listingsRead counts the directories read from the share for READDIR
// and READDIRPLUS.
var listingsRead atomic.Int64

// get returns the snapshot of directory p (attributes a, verifier v): the
// one kept, unless fresh asks for a new one or none is kept; then it
// reads the directory from the share and keeps it.
func (sc *snapshotCache) get(c *rpcConn, share *fileshare.Share, p string, a fileshare.Attr, v uint64, fresh bool) (*snapshot, error) {
	k := snapshotKey{share, a.Ino, v}
	now := time.Now()
	if !fresh {
		sc.mu.Lock()
		sc.expire(now, nil)
		s := sc.m[k]
		if s != nil {
			s.used = now
		}
		sc.mu.Unlock()
		if s != nil {
			return s, nil
		}
	}
	listingsRead.Add(1)
	entries, err := share.ReadDir(c.ctx, p)
	if err != nil {
		return nil, err
	}
	s := &snapshot{entries: entries, parent: a.Ino, used: now}
	if p != "" {
		parent := ""
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			parent = p[:i]
		}
		if pa, err := share.Stat(c.ctx, parent); err == nil {
			s.parent = pa.Ino
		}
	}
	sc.put(k, s)
	return s, nil
}

// put keeps s under k, dropping the snapshots idle past snapshotIdle and
// then the least recently used while past the bounds.
func (sc *snapshotCache) put(k snapshotKey, s *snapshot) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if old := sc.m[k]; old != nil {
		sc.entries -= len(old.entries)
	}
	sc.m[k] = s
	sc.entries += len(s.entries)
	sc.expire(s.used, s)
	for sc.entries > maxSnapshotEntries || len(sc.m) > maxSnapshots {
		var lru snapshotKey
		var oldest *snapshot
		for ok, o := range sc.m {
			if o != s && (oldest == nil || o.used.Before(oldest.used)) {
				lru, oldest = ok, o
			}
		}
		if oldest == nil {
			return
		}
		sc.drop(lru)
	}
}

// expire drops the snapshots but keep idle past snapshotIdle at now.
func (sc *snapshotCache) expire(now time.Time, keep *snapshot) {
	for k, o := range sc.m {
		if o != keep && now.Sub(o.used) > snapshotIdle {
			sc.drop(k)
		}
	}
}

func (sc *snapshotCache) drop(k snapshotKey) {
	sc.entries -= len(sc.m[k].entries)
	delete(sc.m, k)
}
