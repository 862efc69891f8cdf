package nfs4

import "math"

// Byte-range locks (RFC 8881 sections 9 and 18.10-18.12): LOCK, LOCKT and
// LOCKU. A lock owner's locks of a file are one stateid holding its
// ranges; a range conflicts with another owner's (of the same client or
// another) when they overlap and either is a write lock. A lock owner's
// new range replaces what it held of that range (POSIX: a write lock over
// a read lock converts it; an unlock of the middle splits it). Blocking
// locks are answered as the others: NFS4ERR_DENIED while in conflict,
// and the client asks again. Locks live in memory beside the opens: after
// a restart their clients reclaim them (LOCK with reclaim) in the grace
// period (state.go).

const (
	opLock  = 12
	opLockT = 13
	opLockU = 14

	errDenied    = 10010
	errLockRange = 10028

	readLT   = 1
	writeLT  = 2
	readWLT  = 3
	writeWLT = 4
)

type lockOwner struct {
	clientID uint64
	owner    []byte
}

type lockArgs struct {
	ltype          uint32
	reclaim        bool
	offset, length uint64
	newOwner       bool
	openStateid    stateid
	lockStateid    stateid
	owner          lockOwner
}

type locktArgs struct {
	ltype          uint32
	offset, length uint64
	owner          lockOwner
}

type lockuArgs struct {
	ltype          uint32
	seq            uint32
	stateid        stateid
	offset, length uint64
}

func (d *dec) lockOwner() lockOwner {
	return lockOwner{clientID: d.u64(), owner: d.opaque(opaqueLimit)}
}

func init() {
	decoders[opLock] = func(d *dec) any {
		a := lockArgs{ltype: d.u32(), reclaim: d.bool(), offset: d.u64(), length: d.u64(), newOwner: d.bool()}
		if a.newOwner {
			d.u32() // open seqid
			a.openStateid = d.stateid()
			d.u32() // lock seqid
			a.owner = d.lockOwner()
		} else {
			a.lockStateid = d.stateid()
			d.u32()
		}
		return a
	}
	decoders[opLockT] = func(d *dec) any {
		return locktArgs{ltype: d.u32(), offset: d.u64(), length: d.u64(), owner: d.lockOwner()}
	}
	decoders[opLockU] = func(d *dec) any {
		return lockuArgs{ltype: d.u32(), seq: d.u32(), stateid: d.stateid(), offset: d.u64(), length: d.u64()}
	}
}

// lockRange is [start, end), end math.MaxUint64 for "to the end of the
// file".
type lockRange struct {
	start, end uint64
	write      bool
}

// lockState is a lock owner's locks of one file.
type lockState struct {
	other  [12]byte
	seq    uint32
	open   *openState
	owner  string
	ranges []lockRange
}

// lockSpan checks a lock type and turns an offset and length into a
// range; a length of 0, or one running past the largest offset without
// being "to the end", is NFS4ERR_INVAL.
func lockSpan(ltype uint32, offset, length uint64) (uint64, uint64, uint32) {
	switch {
	case ltype < readLT || ltype > writeWLT || length == 0:
		return 0, 0, errInval
	case length == math.MaxUint64:
		return offset, math.MaxUint64, ok
	case offset > math.MaxUint64-length:
		return 0, 0, errInval
	}
	return offset, offset + length, ok
}

// conflict finds a range of another lock owner of file that conflicts
// with [start, end) (under mu).
func (s *Server) conflict(file fileKey, c *client, owner string, start, end uint64, write bool) (*lockState, lockRange, bool) {
	for _, o := range s.open.byFile[file] {
		for _, l := range o.locks {
			if l.open.client == c && l.owner == owner {
				continue
			}
			for _, r := range l.ranges {
				if r.start < end && start < r.end && (write || r.write) {
					return l, r, true
				}
			}
		}
	}
	return nil, lockRange{}, false
}

// denied appends a LOCK4denied.
func (x *exec) denied(l *lockState, r lockRange) {
	x.keepBody = true
	x.out.u64(r.start)
	if r.end == math.MaxUint64 {
		x.out.u64(math.MaxUint64)
	} else {
		x.out.u64(r.end - r.start)
	}
	if r.write {
		x.out.u32(writeLT)
	} else {
		x.out.u32(readLT)
	}
	x.out.u64(l.open.client.id)
	x.out.str(l.owner)
}

// cut removes [start, end) from ranges.
func cut(ranges []lockRange, start, end uint64) []lockRange {
	var out []lockRange
	for _, r := range ranges {
		if r.end <= start || end <= r.start {
			out = append(out, r)
			continue
		}
		if r.start < start {
			out = append(out, lockRange{r.start, start, r.write})
		}
		if end < r.end {
			out = append(out, lockRange{end, r.end, r.write})
		}
	}
	return out
}

func (x *exec) lock(a lockArgs) uint32 {
	write := a.ltype == writeLT || a.ltype == writeWLT
	start, end, st := lockSpan(a.ltype, a.offset, a.length)
	if st != ok {
		return st
	}
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.reclaim {
		st = x.mayReclaim(s.opts.Now())
	} else {
		st = x.mayLock(s.opts.Now())
	}
	if st != ok {
		return st
	}
	var l *lockState
	if a.newOwner {
		o, st := x.findState(a.openStateid)
		switch {
		case st != ok:
			return st
		case o == nil:
			return errBadStateID
		}
		for _, p := range o.locks {
			if p.owner == string(a.owner.owner) {
				l = p
			}
		}
		if l == nil {
			l = &lockState{other: s.newOther(), open: o, owner: string(a.owner.owner)}
		}
	} else {
		var st uint32
		if l, st = x.findLock(a.lockStateid); st != ok {
			return st
		}
	}
	o := l.open
	switch {
	case write && o.access&shareAccessWrite == 0, !write && o.access&shareAccessRead == 0:
		return errOpenMode
	}
	if cl, r, found := s.conflict(o.file, o.client, l.owner, start, end, write); found {
		if a.reclaim {
			return errReclaimConflict
		}
		x.denied(cl, r)
		return errDenied
	}
	if l.seq == 0 { // a new lock stateid
		o.locks = append(o.locks, l)
		s.open.locks[l.other] = l
	}
	l.ranges = append(cut(l.ranges, start, end), lockRange{start, end, write})
	l.seq++
	x.curState, x.curLock = nil, l
	x.out.u32(l.seq)
	x.out.fixed(l.other[:])
	return ok
}

func (x *exec) lockT(a locktArgs) uint32 {
	start, end, st := lockSpan(a.ltype, a.offset, a.length)
	if st != ok {
		return st
	}
	o, st := x.regularFile()
	if st != ok {
		return st
	}
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inGrace(s.opts.Now()) {
		return errGrace
	}
	write := a.ltype == writeLT || a.ltype == writeWLT
	key := fileKey{x.cur.share.Config().ID, o.attr.Ino}
	if cl, r, found := s.conflict(key, x.sess.client, string(a.owner.owner), start, end, write); found {
		x.denied(cl, r)
		return errDenied
	}
	return ok
}

func (x *exec) lockU(a lockuArgs) uint32 {
	start, end, st := lockSpan(a.ltype, a.offset, a.length)
	if st != ok {
		return st
	}
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	l, st := x.findLock(a.stateid)
	if st != ok {
		return st
	}
	l.ranges = cut(l.ranges, start, end)
	l.seq++
	x.curState, x.curLock = nil, l
	x.out.u32(l.seq)
	x.out.fixed(l.other[:])
	return ok
}

// findLock resolves a lock stateid of the current client (under mu).
func (x *exec) findLock(id stateid) (*lockState, uint32) {
	if id.seq == 1 && id.other == [12]byte{} && x.curLock != nil { // the current stateid
		id = stateid{other: x.curLock.other}
	}
	l := x.s.open.locks[id.other]
	switch {
	case l == nil || l.open.client != x.sess.client:
		return nil, errBadStateID
	case id.seq != 0 && id.seq < l.seq:
		return nil, errOldStateID
	case id.seq > l.seq:
		return nil, errBadStateID
	}
	return l, ok
}
