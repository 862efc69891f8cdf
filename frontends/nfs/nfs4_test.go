package nfs

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// NFSv4.1 through the server's RPC layer, on real shares: what package
// nfs4's own tests cannot show, the version 4 calls on the v3 port, the
// v3 handles in v4.1, the client list applied to the pseudo root, and
// locks between two clients.

// v4client is one NFSv4.1 client on its own connection, with a session
// of one slot.
type v4client struct {
	t       *testing.T
	r       *rawConn
	xid     uint32
	session []byte
	seq     uint32
}

// v4args builds a COMPOUND's arguments.
type v4args struct {
	b []byte
	n uint32
}

func (a *v4args) u32(v ...uint32) *v4args {
	for _, x := range v {
		a.b = binary.BigEndian.AppendUint32(a.b, x)
	}
	return a
}

func (a *v4args) u64(v uint64) *v4args { a.b = binary.BigEndian.AppendUint64(a.b, v); return a }

func (a *v4args) opaque(v []byte) *v4args { a.b = xdrOpaque(a.b, v); return a }

func (a *v4args) op(code uint32) *v4args { a.n++; return a.u32(code) }

// NFSv4.1 numbers the test uses.
const (
	v4Access, v4Close, v4Getattr, v4GetFH, v4Lock, v4LockT, v4LockU, v4Lookup = 3, 4, 9, 10, 12, 13, 14, 15
	v4Open, v4PutFH, v4PutRootFH, v4Read, v4ReadDir                           = 18, 22, 24, 25, 26
	v4ExchangeID, v4CreateSession, v4Sequence                                 = 42, 43, 53
	v4Denied                                                                  = 10010
)

// compound sends the operations (after SEQUENCE once there is a session)
// and returns the compound's status and its results' bytes.
func (c *v4client) compound(ops *v4args) (uint32, *xdrReader) {
	c.t.Helper()
	var a v4args
	a.opaque([]byte("test")).u32(1)
	n := ops.n
	if c.session != nil {
		n++
	}
	a.u32(n)
	if c.session != nil {
		c.seq++
		a.u32(v4Sequence)
		a.b = append(a.b, c.session...)
		a.u32(c.seq, 0, 0, 0)
	}
	a.b = append(a.b, ops.b...)
	c.xid++
	b := make([]byte, 4, 64+len(a.b))
	// AUTH_SYS: stamp, machine name "t", uid 1000, gid 1000, no groups.
	cred := []uint32{0, 1, 't' << 24, 1000, 1000, 0}
	for _, v := range []uint32{c.xid, 0, 2, nfsProgram, 4, 1, 1, uint32(4 * len(cred))} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	for _, v := range cred {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = binary.BigEndian.AppendUint64(b, 0) // verifier: AUTH_NONE
	b = append(b, a.b...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4)|1<<31)
	if _, err := c.r.c.Write(b); err != nil {
		c.t.Fatal(err)
	}
	xid, accept, body, err := c.r.reply()
	if err != nil || xid != c.xid || accept != acceptSuccess {
		c.t.Fatalf("COMPOUND %d: reply %d, accept %d, %v", c.xid, xid, accept, err)
	}
	x := &xdrReader{b: body}
	status := x.u32()
	x.opaque(64)
	x.u32()
	if c.session != nil { // SEQUENCE's result
		x.u32()
		if x.u32() == 0 {
			x.b = x.b[16+5*4:]
		}
	}
	return status, x
}

// result reads the next operation's code and status.
func result(x *xdrReader) (code, status uint32) { return x.u32(), x.u32() }

func newV4Client(t *testing.T, addr, owner string) *v4client {
	t.Helper()
	c := &v4client{t: t, r: dialRaw(t, addr)}
	var a v4args
	a.op(v4ExchangeID).u64(1).opaque([]byte(owner)).u32(0, 0, 0)
	st, x := c.compound(&a)
	result(x)
	if st != 0 {
		t.Fatalf("EXCHANGE_ID: %d", st)
	}
	clientID, seq := x.u64(), x.u32()
	a = v4args{}
	a.op(v4CreateSession).u64(clientID).u32(seq, 0)
	for range 2 { // channel attributes: 1 MiB, 8 operations, 1 slot
		a.u32(0, 1<<20, 1<<20, 4096, 8, 1, 0)
	}
	a.u32(0x40000000, 0)
	st, x = c.compound(&a)
	result(x)
	if st != 0 {
		t.Fatalf("CREATE_SESSION: %d", st)
	}
	c.session = bytes.Clone(x.b[:16])
	return c
}

// lookupOps appends PUTROOTFH and a LOOKUP per name.
func lookupOps(a *v4args, names ...string) *v4args {
	a.op(v4PutRootFH)
	for _, n := range names {
		a.op(v4Lookup).opaque([]byte(n))
	}
	return a
}

// skip reads past n results that have no body.
func skip(t *testing.T, x *xdrReader, n int) {
	t.Helper()
	for range n {
		if code, st := result(x); st != 0 {
			t.Fatalf("op %d: status %d", code, st)
		}
	}
}

// TestNFS4HandlesAndPseudoRoot: a handle a v3 client got reads the file
// in v4.1 and is the one v4.1's LOOKUP gives; the pseudo root lists the
// shares the client may use, not the others.
func TestNFS4HandlesAndPseudoRoot(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"}, fileshare.Config{Name: "hidden", Clients: []string{"10.9.0.0/16"}})
	v, fh := f.newFile("s", "f.bin")
	data := testrand.Bytes(4, 100<<10)
	if err := writeAll(v, fh, data); err != nil {
		t.Fatal(err)
	}
	c := newV4Client(t, f.addr, "handles")

	var a v4args
	a.op(v4PutFH).opaque(fh).op(v4Read).u32(0, 0, 0, 0).u64(0).u32(1 << 20)
	st, x := c.compound(&a)
	skip(t, x, 1)
	result(x)
	if eof, got := x.u32(), x.opaque(1<<20); st != 0 || eof != 1 || !bytes.Equal(got, data) {
		t.Fatalf("READ with the v3 handle: status %d, eof %d, %d bytes of %d match", st, eof, len(got), len(data))
	}

	st, x = c.compound(lookupOps(&v4args{}, "s", "f.bin").op(v4GetFH))
	skip(t, x, 3)
	result(x)
	if got := x.opaque(128); st != 0 || !bytes.Equal(got, fh) {
		t.Fatalf("v4.1 LOOKUP's handle %x (status %d), v3's %x", got, st, fh)
	}

	st, _ = c.compound(lookupOps(&v4args{}, "hidden"))
	if st != 2 { // NFS4ERR_NOENT
		t.Fatalf("LOOKUP of a share not exported to the client: status %d", st)
	}
	a = v4args{}
	a.op(v4PutRootFH).op(v4ReadDir).u64(0).u64(0).u32(4096, 4096, 0)
	st, x = c.compound(&a)
	skip(t, x, 1)
	result(x)
	x.u64() // verifier
	var names []string
	for x.u32() == 1 {
		x.u64()
		names = append(names, string(x.opaque(255)))
		x.opaque(64) // bitmap, no words: reads the count 0 as empty
		x.opaque(64) // attributes
	}
	if st != 0 || len(names) != 1 || names[0] != "s" {
		t.Fatalf("the pseudo root lists %q (status %d), want [s]", names, st)
	}
}

// TestNFS4Locks: two clients open one file; a write lock of one is denied
// to the other (LOCK and LOCKT), which gets it once it is unlocked.
func TestNFS4Locks(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	f.newFile("s", "f.bin")
	open := func(c *v4client) []byte {
		var a v4args
		lookupOps(&a, "s").op(v4Open).u32(0, 3, 0).u64(0).opaque([]byte("open-owner")).u32(0, 0).opaque([]byte("f.bin"))
		st, x := c.compound(&a)
		skip(t, x, 2)
		result(x)
		if st != 0 {
			t.Fatalf("OPEN: %d", st)
		}
		return bytes.Clone(x.b[:16])
	}
	lock := func(c *v4client, open []byte) (uint32, []byte) {
		var a v4args
		lookupOps(&a, "s", "f.bin").op(v4Lock).u32(2, 0).u64(0).u64(100).u32(1, 0)
		a.b = append(a.b, open...)
		a.u32(0).u64(0).opaque([]byte("lock-owner"))
		st, x := c.compound(&a)
		if st != 0 {
			return st, nil
		}
		skip(t, x, 3)
		result(x)
		return st, bytes.Clone(x.b[:16])
	}
	a, b := newV4Client(t, f.addr, "a"), newV4Client(t, f.addr, "b")
	openA, openB := open(a), open(b)
	st, lockA := lock(a, openA)
	if st != 0 {
		t.Fatalf("first LOCK: %d", st)
	}
	if st, _ := lock(b, openB); st != v4Denied {
		t.Fatalf("a conflicting LOCK of another client: %d, want DENIED", st)
	}
	var lt v4args
	lookupOps(&lt, "s", "f.bin").op(v4LockT).u32(1).u64(50).u64(1).u64(0).opaque([]byte("lock-owner"))
	if st, _ := b.compound(&lt); st != v4Denied {
		t.Fatalf("LOCKT of a locked range: %d, want DENIED", st)
	}
	var u v4args
	lookupOps(&u, "s", "f.bin").op(v4LockU).u32(2, 0)
	u.b = append(u.b, lockA...)
	u.u64(0).u64(100)
	if st, _ := a.compound(&u); st != 0 {
		t.Fatalf("LOCKU: %d", st)
	}
	if st, _ := lock(b, openB); st != 0 {
		t.Fatalf("LOCK once unlocked: %d", st)
	}
	// The calls are timed as COMPOUNDs, not as the v3 procedure of the
	// same number (GETATTR). A reply is timed once written: wait for one.
	for deadline := time.Now().Add(time.Minute); f.calls.count("COMPOUND") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no call timed as COMPOUND: %v", f.calls.n)
		}
	}
}
