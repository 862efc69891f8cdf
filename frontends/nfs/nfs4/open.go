package nfs4

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
)

// Opens (RFC 8881 sections 9 and 18.16): open owners, their stateids and
// share reservations. An open is kept per open owner and file; a second
// OPEN by the owner of the same file adds its access and deny bits to the
// same stateid (its seqid grows). Share reservations are checked between
// all opens of a file. Opens live in memory: after a restart their
// clients reclaim them (OPEN with CLAIM_PREVIOUS) in the grace period
// (state.go).

// Operations of this file.
const (
	opClose         = 4
	opCommit        = 5
	opCreate        = 6
	opOpen          = 18
	opOpenDowngrade = 21
	opRemove        = 28
	opRename        = 29
	opSetattr       = 34
	opWrite         = 38
	opTestStateID   = 55
	opFreeStateID   = 45
)

// Status codes of this file.
const (
	errShareDenied = 10015
	errOldStateID  = 10024
	errOpenMode    = 10038
	errBadType     = 10007
	errAttrNotSupp = 10032
	errXDev        = 18
	errLocksHeld   = 10037
)

// Share access and deny bits.
const (
	shareAccessRead  = 1
	shareAccessWrite = 2
	shareAccessBoth  = 3
	shareWantMask    = 0xff00 | 0x10000 | 0x20000
)

// OPEN's create modes and claims.
const (
	createUnchecked   = 0
	createGuarded     = 1
	createExclusive   = 2
	createExclusive41 = 3

	claimNull        = 0
	claimPrevious    = 1
	claimDelegateCur = 2
	claimFH          = 4
	claimDelegCurFH  = 6
)

type openArgs struct {
	access, deny uint32
	clientID     uint64
	owner        []byte
	create       bool
	mode         uint32 // createhow4 mode
	attrs        fattr
	verifier     [8]byte
	claim        uint32
	name         []byte
	deleg        stateid // CLAIM_DELEGATE_CUR and CLAIM_DELEG_CUR_FH: the delegation
}

type closeArgs struct {
	seq     uint32
	stateid stateid
}

type downgradeArgs struct {
	stateid      stateid
	seq          uint32
	access, deny uint32
}

type writeArgs struct {
	stateid stateid
	offset  uint64
	stable  uint32
	data    []byte
	at      int // where data starts in the COMPOUND's arguments
}

type commitArgs struct {
	offset uint64
	count  uint32
}

type createArgs struct {
	ftype  uint32
	target []byte
	rdev   fileshare.Device // block and character devices: specdata4
	name   []byte
	attrs  fattr
}

type renameArgs struct{ from, to []byte }

type setattrArgs struct {
	stateid stateid
	attrs   fattr
}

type stateidsArgs struct{ ids []stateid }

// fattr is a fattr4 a client sets: which attributes and their values, as
// far as this server sets them (size, mode, owner, group, times).
type fattr struct {
	mask  bitmap
	bad   uint32 // not ok: an attribute that cannot be set (INVAL or ATTRNOTSUPP)
	size  *uint64
	mode  *uint32
	uid   *uint32
	gid   *uint32
	mtime *time.Time // or now (setToServer)
	atime bool       // time_access_set: accepted, not kept
}

func init() {
	decoders[opOpen] = decodeOpen
	decoders[opClose] = func(d *dec) any { return closeArgs{seq: d.u32(), stateid: d.stateid()} }
	decoders[opOpenDowngrade] = func(d *dec) any {
		return downgradeArgs{stateid: d.stateid(), seq: d.u32(), access: d.u32(), deny: d.u32()}
	}
	decoders[opWrite] = func(d *dec) any {
		a := writeArgs{stateid: d.stateid(), offset: d.u64(), stable: d.u32()}
		a.at = d.at() + 4 // past the data's length
		a.data = d.opaque(maxRequest)
		return a
	}
	decoders[opCommit] = func(d *dec) any { return commitArgs{offset: d.u64(), count: d.u32()} }
	decoders[opCreate] = func(d *dec) any {
		a := createArgs{ftype: d.u32()}
		switch a.ftype {
		case typeLnk:
			a.target = d.opaque(4096)
		case typeBlk, typeChr:
			a.rdev = fileshare.Device{Major: d.u32(), Minor: d.u32()}
		}
		a.name = d.opaque(maxName)
		a.attrs = d.fattr()
		return a
	}
	decoders[opRemove] = func(d *dec) any { return nameArgs{d.opaque(maxName)} }
	decoders[opRename] = func(d *dec) any { return renameArgs{from: d.opaque(maxName), to: d.opaque(maxName)} }
	decoders[opSetattr] = func(d *dec) any { return setattrArgs{stateid: d.stateid(), attrs: d.fattr()} }
	decoders[opTestStateID] = func(d *dec) any {
		var a stateidsArgs
		for i, n := 0, d.count(maxOps, 16); i < n; i++ {
			a.ids = append(a.ids, d.stateid())
		}
		return a
	}
	decoders[opFreeStateID] = func(d *dec) any { return stateidsArgs{ids: []stateid{d.stateid()}} }
}

func decodeOpen(d *dec) any {
	a := openArgs{}
	d.u32() // seqid: unused in 4.1
	a.access, a.deny = d.u32(), d.u32()
	a.clientID, a.owner = d.u64(), d.opaque(opaqueLimit)
	if d.u32() == 1 { // OPEN4_CREATE
		a.create = true
		a.mode = d.u32()
		switch a.mode {
		case createUnchecked, createGuarded:
			a.attrs = d.fattr()
		case createExclusive:
			copy(a.verifier[:], d.fixed(8))
		case createExclusive41:
			copy(a.verifier[:], d.fixed(8))
			a.attrs = d.fattr()
		default:
			d.bad = true
		}
	}
	a.claim = d.u32()
	switch a.claim {
	case claimNull, 3: // CLAIM_NULL, CLAIM_DELEGATE_PREV: a name
		a.name = d.opaque(maxName)
	case 1: // CLAIM_PREVIOUS: delegation type
		d.u32()
	case claimDelegateCur: // stateid and name
		a.deleg = d.stateid()
		a.name = d.opaque(maxName)
	case claimFH, 5:
	case claimDelegCurFH:
		a.deleg = d.stateid()
	default:
		d.bad = true
	}
	return a
}

// fattr reads a fattr4 to set.
func (d *dec) fattr() fattr {
	f := fattr{mask: d.bitmap()}
	v := &dec{b: d.opaque(maxRequest)}
	for _, n := range f.mask.bits() {
		switch n {
		case attrSize:
			s := v.u64()
			f.size = &s
		case attrMode:
			m := v.u32()
			f.mode = &m
		case attrOwner, attrOwnerGroup:
			s := v.opaque(opaqueLimit)
			id, err := parseID(s)
			if err != nil && f.bad == ok {
				f.bad = errBadOwner
			}
			if n == attrOwner {
				f.uid = &id
			} else {
				f.gid = &id
			}
		case attrTimeAccessSet, attrTimeModifySet:
			var t time.Time
			if v.u32() == 1 { // SET_TO_CLIENT_TIME4
				sec, nsec := int64(v.u64()), v.u32()
				if nsec >= 1e9 && f.bad == ok {
					f.bad = errInval
				}
				t = time.Unix(sec, int64(nsec))
			}
			if n == attrTimeAccessSet {
				f.atime = true
			} else {
				f.mtime = &t
			}
		default:
			if f.bad == ok {
				if supported.has(n) {
					f.bad = errInval // read only
				} else {
					f.bad = errAttrNotSupp
				}
			}
			v.bad = true // the rest cannot be read
		}
		if v.bad {
			break
		}
	}
	if v.bad && f.bad == ok {
		f.bad = errBadXDR
	}
	return f
}

const errBadOwner = 10039

// parseID reads an owner or group: a decimal id, or "id@domain".
func parseID(b []byte) (uint32, error) {
	s := string(b)
	for i := range len(s) {
		if s[i] == '@' {
			s = s[:i]
			break
		}
	}
	var id uint64
	if s == "" || len(s) > 10 {
		return 0, errNotNumeric
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, errNotNumeric
		}
		id = id*10 + uint64(s[i]-'0')
	}
	if id > 1<<32-1 {
		return 0, errNotNumeric
	}
	return uint32(id), nil
}

type idError struct{}

func (idError) Error() string { return "nfs4: owner is not a numeric id" }

var errNotNumeric = idError{}

// fileKey names a file across shares: share id and inode.
type fileKey struct {
	share uint32
	ino   uint64
}

// openState is an open of one file by one open owner.
type openState struct {
	other        [12]byte
	seq          uint32
	client       *client
	owner        string
	file         fileKey
	access, deny uint32
	locks        []*lockState // its lock owners' locks
}

func (o *openState) stateid() stateid { return stateid{seq: o.seq, other: o.other} }

// opens is the server's open state (under Server.mu).
type opens struct {
	byOther map[[12]byte]*openState
	byFile  map[fileKey][]*openState
	locks   map[[12]byte]*lockState
	last    uint64
	// exclusive are the verifiers of files made by exclusive creates, so
	// that a retry of one finds its file.
	exclusive map[fileKey][8]byte
	// Read delegations (deleg.go): by stateid (revoked ones until freed),
	// by file, and those recalled and not yet returned.
	delegs      map[[12]byte]*delegation
	delegByFile map[fileKey][]*delegation
	recalling   []*delegation
	// watched: the shares whose changes by other paths recall
	// delegations, with what ends the subscription (deleg.go).
	watched map[*fileshare.Share]func()
}

func (s *Server) newOther() [12]byte {
	s.open.last++
	var o [12]byte
	binary.BigEndian.PutUint32(o[:], s.boot)
	binary.BigEndian.PutUint64(o[4:], s.open.last)
	return o
}

// dropOpens forgets a client's opens (under mu).
func (s *Server) dropOpens(c *client) {
	for _, o := range s.open.byOther {
		if o.client == c {
			s.removeOpen(o)
		}
	}
}

func (s *Server) removeOpen(o *openState) {
	delete(s.open.byOther, o.other)
	for _, l := range o.locks {
		delete(s.open.locks, l.other)
	}
	dropFromFile(s.open.byFile, o.file, o)
}

// dropFromFile takes v off the list of file in m, and the file off m once
// its list is empty.
func dropFromFile[T comparable](m map[fileKey][]T, file fileKey, v T) {
	list := m[file]
	if i := slices.Index(list, v); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(m, file)
	} else {
		m[file] = list
	}
}

// findState resolves a stateid of the current client: the special ones
// give nil and ok.
func (x *exec) findState(id stateid) (*openState, uint32) {
	if id.special() {
		return nil, ok
	}
	if id.seq == 1 && id.other == [12]byte{} { // the current stateid
		switch {
		case x.curState != nil:
			id = stateid{other: x.curState.other}
		case x.curLock != nil:
			id = stateid{other: x.curLock.other}
		default:
			return nil, errBadStateID
		}
	}
	if _, st, found := x.findDeleg(id); found {
		return nil, st
	}
	if _, isLock := x.s.open.locks[id.other]; isLock {
		l, st := x.findLock(id)
		if st != ok {
			return nil, st
		}
		return l.open, ok
	}
	o := x.s.open.byOther[id.other]
	switch {
	case o == nil || x.sess == nil || o.client != x.sess.client:
		return nil, errBadStateID
	case id.seq != 0 && id.seq < o.seq:
		return nil, errOldStateID
	case id.seq > o.seq:
		return nil, errBadStateID
	}
	return o, ok
}
