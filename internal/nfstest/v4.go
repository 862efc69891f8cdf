package nfstest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

// An NFSv4.1 client for tests (RFC 8881): one connection, a client id and
// a session of one slot, every COMPOUND after a SEQUENCE. The calls are
// raw XDR, so a test sends exactly the operations it means and reads the
// results it checks, errors included; the helpers (Open, Lock, ...) send
// the common ones. A client made by DialV4Back has a back channel on its
// connection: it answers the server's callbacks (CB_NULL, CB_RECALL)
// while it waits for a reply, and keeps the delegations recalled.

// NFSv4.1 operation numbers and status codes the tests use.
const (
	V4Access, V4Close, V4Getattr, V4GetFH, V4Lock, V4LockT, V4LockU, V4Lookup = 3, 4, 9, 10, 12, 13, 14, 15
	V4Open, V4PutFH, V4PutRootFH, V4Read, V4ReadDir                           = 18, 22, 24, 25, 26
	V4Commit, V4DelegReturn, V4Write                                          = 5, 8, 38
	V4ExchangeID, V4CreateSession, V4Sequence, V4ReclaimComplete              = 42, 43, 53, 58

	V4OK, V4ErrDenied, V4ErrGrace, V4ErrStaleClientID, V4ErrBadSession = 0, 10010, 10013, 10022, 10052
	V4ErrNoGrace, V4ErrReclaimBad, V4ErrCompleteAlready                = 10033, 10034, 10054
)

// V4Stateid is a stateid4: seqid and other.
type V4Stateid [16]byte

// V4Client is one NFSv4.1 client.
type V4Client struct {
	t        testing.TB
	c        net.Conn
	xid      uint32
	Owner    string // co_ownerid
	ClientID uint64
	csSeq    uint32 // CREATE_SESSION's sequence id
	session  []byte
	seq      uint32
	back     bool        // CREATE_SESSION asks for a back channel on the connection
	Recalled []V4Stateid // the delegations CB_RECALL named, in order
}

// V4Args builds a COMPOUND's operations.
type V4Args struct {
	b []byte
	n uint32
}

func (a *V4Args) U32(v ...uint32) *V4Args {
	for _, x := range v {
		a.b = binary.BigEndian.AppendUint32(a.b, x)
	}
	return a
}

func (a *V4Args) U64(v uint64) *V4Args { a.b = binary.BigEndian.AppendUint64(a.b, v); return a }

// Opaque appends variable-length opaque data.
func (a *V4Args) Opaque(v []byte) *V4Args {
	a.U32(uint32(len(v)))
	return a.Fixed(v)
}

// Fixed appends fixed-length opaque data (a stateid, a session id).
func (a *V4Args) Fixed(v []byte) *V4Args {
	a.b = append(a.b, v...)
	a.b = append(a.b, make([]byte, (4-len(v)%4)%4)...)
	return a
}

// Op starts an operation; its arguments follow.
func (a *V4Args) Op(code uint32) *V4Args { a.n++; return a.U32(code) }

// Lookup appends PUTROOTFH and a LOOKUP of each name.
func (a *V4Args) Lookup(names ...string) *V4Args {
	a.Op(V4PutRootFH)
	for _, n := range names {
		a.Op(V4Lookup).Opaque([]byte(n))
	}
	return a
}

// V4Reply reads a COMPOUND's results in order; past its end every read
// gives zeros and Bad says so.
type V4Reply struct {
	b   []byte
	bad bool
}

func (r *V4Reply) U32() uint32 {
	if r.bad || len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *V4Reply) U64() uint64 { return uint64(r.U32())<<32 | uint64(r.U32()) }

// Fixed reads n bytes of fixed-length opaque data.
func (r *V4Reply) Fixed(n int) []byte {
	padded := (n + 3) &^ 3
	if r.bad || padded > len(r.b) {
		r.bad = true
		return nil
	}
	v := bytes.Clone(r.b[:n])
	r.b = r.b[padded:]
	return v
}

// Opaque reads variable-length opaque data of at most max bytes.
func (r *V4Reply) Opaque(max int) []byte {
	n := r.U32()
	if n > uint32(max) {
		r.bad = true
	}
	return r.Fixed(int(n))
}

// Bad says whether a read ran past the reply or over a bound.
func (r *V4Reply) Bad() bool { return r.bad }

// Result reads the next operation's code and status.
func (r *V4Reply) Result() (code, status uint32) { return r.U32(), r.U32() }

// Skip reads past n results that have no body (PUTFH, LOOKUP, ...),
// failing the test if one of them failed.
func (r *V4Reply) Skip(t testing.TB, n int) {
	t.Helper()
	for range n {
		if code, st := r.Result(); st != V4OK {
			t.Fatalf("op %d: status %d", code, st)
		}
	}
}

// DialV4 connects to the server at addr and makes a client of owner
// with a session; it sends RECLAIM_COMPLETE, as a client with nothing to
// reclaim does before it opens.
func DialV4(t testing.TB, addr, owner string) *V4Client {
	t.Helper()
	c := NewV4(t, addr, owner)
	if st := c.ReclaimComplete(); st != V4OK {
		t.Fatalf("RECLAIM_COMPLETE: %d", st)
	}
	return c
}

// NewV4 is DialV4 without the RECLAIM_COMPLETE: for a client that
// reclaims state first.
func NewV4(t testing.TB, addr, owner string) *V4Client {
	t.Helper()
	return newV4(t, addr, owner, false)
}

// DialV4Back is DialV4 for a client whose connection is its session's
// back channel too (CONN_BACK_CHAN, callbacks with AUTH_NONE), as a
// client that takes delegations has.
func DialV4Back(t testing.TB, addr, owner string) *V4Client {
	t.Helper()
	c := newV4(t, addr, owner, true)
	if st := c.ReclaimComplete(); st != V4OK {
		t.Fatalf("RECLAIM_COMPLETE: %d", st)
	}
	return c
}

func newV4(t testing.TB, addr, owner string, back bool) *V4Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &V4Client{t: t, c: nc, Owner: owner, back: back}
	if st := c.ExchangeID(); st != V4OK {
		t.Fatalf("EXCHANGE_ID: %d", st)
	}
	if st := c.CreateSession(); st != V4OK {
		t.Fatalf("CREATE_SESSION: %d", st)
	}
	return c
}

// Redial connects the client again, to addr (a restarted server); its
// client id and session stay as they were, for the server to judge.
func (c *V4Client) Redial(addr string) {
	c.t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { nc.Close() })
	c.c.Close()
	c.c = nc
}

// ExchangeID sends EXCHANGE_ID (verifier 1) and keeps the client id it
// gives.
func (c *V4Client) ExchangeID() uint32 {
	c.t.Helper()
	session := c.session
	c.session = nil
	defer func() { c.session = session }()
	var a V4Args
	a.Op(V4ExchangeID).U64(1).Opaque([]byte(c.Owner)).U32(0, 0, 0)
	st, r := c.Compound(&a)
	r.Result()
	if st == V4OK {
		c.ClientID, c.csSeq = r.U64(), r.U32()
	}
	return st
}

// CreateSession sends CREATE_SESSION for the client id and, when it
// succeeds, uses the new session from then on.
func (c *V4Client) CreateSession() uint32 {
	c.t.Helper()
	session := c.session
	c.session = nil
	var a V4Args
	flags, secParms := uint32(0), []uint32{0} // no callback security
	if c.back {
		flags, secParms = 2, []uint32{1, 0} // CONN_BACK_CHAN; AUTH_NONE
	}
	a.Op(V4CreateSession).U64(c.ClientID).U32(c.csSeq, flags)
	for range 2 { // channel attributes: requests of a 1 MiB WRITE, 1 MiB replies, 8 operations, 1 slot
		a.U32(0, 1<<20+64<<10, 1<<20+64<<10, 4096, 8, 1, 0)
	}
	a.U32(0x40000000) // callback program
	a.U32(secParms...)
	st, r := c.Compound(&a)
	r.Result()
	if st != V4OK {
		c.session = session
		return st
	}
	c.session, c.seq = r.Fixed(16), 0
	c.csSeq++
	return st
}

// ReclaimComplete sends RECLAIM_COMPLETE for every file system.
func (c *V4Client) ReclaimComplete() uint32 {
	c.t.Helper()
	var a V4Args
	a.Op(V4ReclaimComplete).U32(0)
	st, _ := c.Compound(&a)
	return st
}

// Compound sends the operations (after SEQUENCE once there is a session)
// and returns the compound's status and its results, SEQUENCE's read.
func (c *V4Client) Compound(ops *V4Args) (uint32, *V4Reply) {
	c.t.Helper()
	var a V4Args
	a.Opaque([]byte("test")).U32(1)
	n := ops.n
	if c.session != nil {
		n++
	}
	a.U32(n)
	if c.session != nil {
		c.seq++
		a.Op(V4Sequence).Fixed(c.session).U32(c.seq, 0, 0, 0)
	}
	a.b = append(a.b, ops.b...)
	c.xid++
	// RPC call header: AUTH_SYS (stamp, machine name "t", uid and gid
	// 1000, no groups), verifier AUTH_NONE.
	var h V4Args
	h.U32(c.xid, 0, 2, 100003, 4, 1)
	h.U32(1, 24, 0, 1, 't'<<24, 1000, 1000, 0)
	h.U32(0, 0)
	if err := c.c.SetDeadline(time.Now().Add(CallTimeout)); err != nil {
		c.t.Fatal(err)
	}
	if err := writeRecord(c.c, append(h.b, a.b...)); err != nil {
		c.t.Fatalf("COMPOUND %d: %v", c.xid, err)
	}
	var rec []byte
	for {
		var err error
		rec, err = readRecord(c.c)
		if err != nil {
			c.t.Fatalf("COMPOUND %d: no reply within %v: %v", c.xid, CallTimeout, err)
		}
		if len(rec) < 8 || binary.BigEndian.Uint32(rec[4:]) != 0 {
			break // a reply
		}
		c.callback(rec) // a call over the back channel
	}
	r := &V4Reply{b: rec}
	xid, mtype, stat, flavor := r.U32(), r.U32(), r.U32(), r.U32()
	r.Opaque(400)
	accept := r.U32()
	if r.bad || xid != c.xid || mtype != 1 || stat != 0 || flavor != 0 || accept != 0 {
		c.t.Fatalf("COMPOUND %d: not an accepted reply: %x", c.xid, rec)
	}
	status := r.U32()
	r.Opaque(1024) // tag
	r.U32()        // number of results
	if c.session != nil {
		if _, st := r.Result(); st == V4OK {
			r.Fixed(16 + 5*4)
		} else if st != status {
			c.t.Fatalf("COMPOUND %d: SEQUENCE failed (%d), the compound says %d", c.xid, st, status)
		}
	}
	if r.bad {
		c.t.Fatalf("COMPOUND %d: reply does not decode: %x", c.xid, rec)
	}
	return status, r
}

// callback answers a call of the server over the back channel: CB_NULL,
// and CB_COMPOUND of CB_SEQUENCE and CB_RECALL, whose delegation it
// keeps in Recalled.
func (c *V4Client) callback(rec []byte) {
	c.t.Helper()
	r := &V4Reply{b: rec}
	xid := r.U32()
	r.U32() // CALL
	r.U32() // RPC version
	prog, vers := r.U32(), r.U32()
	proc := r.U32()
	r.U32()
	r.Opaque(400) // credential
	r.U32()
	r.Opaque(400) // verifier
	if r.bad || prog != 0x40000000 || vers != 1 || proc > 1 {
		c.t.Fatalf("a call over the back channel that is no callback: %x", rec)
	}
	var res V4Args
	if proc == 1 { // CB_COMPOUND
		tag := r.Opaque(1024)
		r.U32() // minor version
		r.U32() // callback_ident
		n := r.U32()
		res.U32(V4OK).Opaque(tag).U32(n)
		for range n {
			switch op := r.U32(); op {
			case 11: // CB_SEQUENCE
				session, seq, slot, highest := r.Fixed(16), r.U32(), r.U32(), r.U32()
				r.U32() // cachethis
				if r.U32() != 0 {
					c.t.Fatalf("CB_SEQUENCE with referring calls: %x", rec)
				}
				res.U32(op, V4OK).Fixed(session).U32(seq, slot, highest, highest)
			case 4: // CB_RECALL
				sid := V4Stateid(r.Fixed(16))
				r.U32() // truncate
				r.Opaque(128)
				c.Recalled = append(c.Recalled, sid)
				res.U32(op, V4OK)
			default:
				c.t.Fatalf("callback operation %d: not one the client answers", op)
			}
		}
		if r.bad {
			c.t.Fatalf("a callback that does not decode: %x", rec)
		}
	}
	var h V4Args
	h.U32(xid, 1, 0, 0, 0, 0) // REPLY, MSG_ACCEPTED, AUTH_NONE verifier, SUCCESS
	if err := writeRecord(c.c, append(h.b, res.b...)); err != nil {
		c.t.Fatalf("reply to callback %d: %v", xid, err)
	}
}

// Ping sends a COMPOUND of SEQUENCE alone (renewing the lease, and
// answering the callbacks sent meanwhile) and returns its status.
func (c *V4Client) Ping() uint32 {
	c.t.Helper()
	st, _ := c.Compound(&V4Args{})
	return st
}

// Open opens the file at path (from the pseudo root) for reading and
// writing as open owner, without creating it, and returns the status, the
// open's stateid and the file's handle.
func (c *V4Client) Open(owner string, path ...string) (uint32, V4Stateid, []byte) {
	c.t.Helper()
	var a V4Args
	a.Lookup(path[:len(path)-1]...)
	c.openArgs(&a, owner, 0).Opaque([]byte(path[len(path)-1])) // CLAIM_NULL
	a.Op(V4GetFH)
	st, r := c.Compound(&a)
	if st != V4OK {
		return st, V4Stateid{}, nil
	}
	r.Skip(c.t, len(path))
	sid, _ := c.openResult(r)
	r.Result()
	return st, sid, r.Opaque(128)
}

// OpenRead opens the file at path for reading only, as open owner, and
// returns the status, the open's stateid, the read delegation's stateid
// (zero when the server gave none) and the file's handle.
func (c *V4Client) OpenRead(owner string, path ...string) (uint32, V4Stateid, V4Stateid, []byte) {
	c.t.Helper()
	var a V4Args
	a.Lookup(path[:len(path)-1]...)
	a.Op(V4Open).U32(0, 1, 0).U64(c.ClientID).Opaque([]byte(owner)).U32(0, 0) // read, deny none, CLAIM_NULL
	a.Opaque([]byte(path[len(path)-1]))
	a.Op(V4GetFH)
	st, r := c.Compound(&a)
	if st != V4OK {
		return st, V4Stateid{}, V4Stateid{}, nil
	}
	r.Skip(c.t, len(path))
	sid, deleg := c.openResult(r)
	r.Result()
	return st, sid, deleg, r.Opaque(128)
}

// ReadDelegation opens the file at path for reading, as open owner
// "reader", until the server hands out a read delegation (it gives none
// before the back channel answered its CB_NULL), and returns the
// delegation's stateid, the open's and the file's handle.
func (c *V4Client) ReadDelegation(path ...string) (deleg, open V4Stateid, fh []byte) {
	c.t.Helper()
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		st, sid, d, h := c.OpenRead("reader", path...)
		if st != V4OK {
			c.t.Fatalf("OPEN of %v for reading: %d", path, st)
		}
		if d != (V4Stateid{}) {
			return d, sid, h
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("OPEN of %v for reading: no read delegation", path)
		}
	}
}

// WaitRecall waits for the server's CB_RECALL of deleg (sending SEQUENCE
// to hear it), then returns the delegation of the file of handle fh.
func (c *V4Client) WaitRecall(what string, deleg V4Stateid, fh []byte) {
	c.t.Helper()
	for deadline := time.Now().Add(10 * time.Minute); !slices.Contains(c.Recalled, deleg); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: no CB_RECALL of the delegation (recalled: %x)", what, c.Recalled)
		}
		if st := c.Ping(); st != V4OK {
			c.t.Fatalf("%s: SEQUENCE: %d", what, st)
		}
	}
	if st := c.DelegReturn(fh, deleg); st != V4OK {
		c.t.Fatalf("%s: DELEGRETURN: %d", what, st)
	}
}

// Read reads up to n bytes from off of the file of handle fh with
// stateid sid and returns the status and the data.
func (c *V4Client) Read(fh []byte, sid V4Stateid, off uint64, n uint32) (uint32, []byte) {
	c.t.Helper()
	var a V4Args
	a.Op(V4PutFH).Opaque(fh)
	a.Op(V4Read).Fixed(sid[:]).U64(off).U32(n)
	st, r := c.Compound(&a)
	if st != V4OK {
		return st, nil
	}
	r.Skip(c.t, 1)
	r.Result()
	r.U32() // eof
	data := r.Opaque(int(n))
	if r.bad {
		c.t.Fatal("READ's result does not decode")
	}
	return st, data
}

// DelegReturn returns the delegation of the file of handle fh.
func (c *V4Client) DelegReturn(fh []byte, deleg V4Stateid) uint32 {
	c.t.Helper()
	var a V4Args
	a.Op(V4PutFH).Opaque(fh)
	a.Op(V4DelegReturn).Fixed(deleg[:])
	st, _ := c.Compound(&a)
	return st
}

// ReclaimOpen opens the file of handle fh again after a restart (OPEN
// with CLAIM_PREVIOUS) and returns the status and the open's stateid.
func (c *V4Client) ReclaimOpen(owner string, fh []byte) (uint32, V4Stateid) {
	c.t.Helper()
	var a V4Args
	a.Op(V4PutFH).Opaque(fh)
	c.openArgs(&a, owner, 1).U32(0) // CLAIM_PREVIOUS, no delegation
	st, r := c.Compound(&a)
	if st != V4OK {
		return st, V4Stateid{}
	}
	r.Skip(c.t, 1)
	sid, _ := c.openResult(r)
	return st, sid
}

// openArgs appends OPEN's arguments up to its claim's type: read and
// write, deny none, no create.
func (c *V4Client) openArgs(a *V4Args, owner string, claim uint32) *V4Args {
	return a.Op(V4Open).U32(0, 3, 0).U64(c.ClientID).Opaque([]byte(owner)).U32(0, claim)
}

// openResult reads an OPEN4resok: the stateid, the read delegation's
// (zero if none), and past the rest.
func (c *V4Client) openResult(r *V4Reply) (sid, deleg V4Stateid) {
	c.t.Helper()
	if code, st := r.Result(); code != V4Open || st != V4OK {
		c.t.Fatalf("op %d: status %d, want OPEN's result", code, st)
	}
	sid = V4Stateid(r.Fixed(16))
	r.Fixed(20) // change_info
	r.U32()     // rflags
	for n := r.U32(); n > 0 && !r.bad; n-- {
		r.U32() // attrset
	}
	switch r.U32() {
	case 1: // OPEN_DELEGATE_READ
		deleg = V4Stateid(r.Fixed(16))
		r.U32()        // recall
		r.U32()        // permissions: ACE type,
		r.U32()        // flags,
		r.U32()        // access mask,
		r.Opaque(1024) // who
	case 3: // OPEN_DELEGATE_NONE_EXT
		if why := r.U32(); why == 1 || why == 2 { // contention, resource
			r.U32() // will the server push one
		}
	}
	if r.bad {
		c.t.Fatal("OPEN's result does not decode")
	}
	return sid, deleg
}

// V4LockArgs is a byte range to lock: a write or read lock of n bytes from
// off, by lock owner Owner from the open stateid Open; Reclaim asks for
// it again after a restart.
type V4LockArgs struct {
	Owner   string
	Open    V4Stateid
	Write   bool
	Reclaim bool
	Off, N  uint64
}

// Lock sends LOCK for the file of handle fh, and returns the status and
// the lock stateid. A denied lock's holder is read past.
func (c *V4Client) Lock(fh []byte, l V4LockArgs) (uint32, V4Stateid) {
	c.t.Helper()
	ltype, reclaim := uint32(1), uint32(0)
	if l.Write {
		ltype = 2
	}
	if l.Reclaim {
		reclaim = 1
	}
	var a V4Args
	a.Op(V4PutFH).Opaque(fh)
	a.Op(V4Lock).U32(ltype, reclaim).U64(l.Off).U64(l.N).U32(1, 0).Fixed(l.Open[:])
	a.U32(0).U64(c.ClientID).Opaque([]byte(l.Owner))
	st, r := c.Compound(&a)
	if st != V4OK {
		return st, V4Stateid{}
	}
	r.Skip(c.t, 1)
	r.Result()
	return st, V4Stateid(r.Fixed(16))
}

// Unlock sends LOCKU of n bytes from off for the lock stateid and returns
// the status.
func (c *V4Client) Unlock(fh []byte, lock V4Stateid, off, n uint64) uint32 {
	c.t.Helper()
	var a V4Args
	a.Op(V4PutFH).Opaque(fh)
	a.Op(V4LockU).U32(2, 0).Fixed(lock[:]).U64(off).U64(n)
	st, _ := c.Compound(&a)
	return st
}

// LockTest sends LOCKT for a write lock of n bytes from off by lock owner
// and returns the status.
func (c *V4Client) LockTest(fh []byte, owner string, off, n uint64) uint32 {
	c.t.Helper()
	var a V4Args
	a.Op(V4PutFH).Opaque(fh)
	a.Op(V4LockT).U32(2).U64(off).U64(n).U64(c.ClientID).Opaque([]byte(owner))
	st, _ := c.Compound(&a)
	return st
}

// String names the client in messages.
func (c *V4Client) String() string { return fmt.Sprintf("client %q (%#x)", c.Owner, c.ClientID) }
