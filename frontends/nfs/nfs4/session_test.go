package nfs4

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// The session state machine through COMPOUNDs encoded as a client does,
// with no shares (the session operations need none).

// call builds a COMPOUND4args of minor version 1.
type call struct{ e enc }

func newCall(tag string) *call {
	c := &call{}
	c.e.str(tag)
	c.e.u32(1)
	c.e.u32(0) // number of operations: set by done
	return c
}

func (c *call) op(code uint32, args func(e *enc)) *call {
	c.e.u32(code)
	if args != nil {
		args(&c.e)
	}
	at := 4 + (len(c.tagOf())+3)&^3 + 4
	putU32(c.e.b[at:], uint32(readU32(c.e.b[at:])+1))
	return c
}

func (c *call) tagOf() []byte { d := &dec{b: c.e.b}; return d.opaque(maxName) }

func readU32(b []byte) uint32 { d := &dec{b: b}; return d.u32() }

func exchangeIDOp(owner string, verf byte, flags uint32) func(e *enc) {
	return func(e *enc) {
		e.fixed([]byte{verf, 0, 0, 0, 0, 0, 0, 0})
		e.str(owner)
		e.u32(flags)
		e.u32(sp4None)
		e.u32(0)
	}
}

func createSessionOp(clientID uint64, seq uint32) func(e *enc) {
	return func(e *enc) {
		e.u64(clientID)
		e.u32(seq)
		e.u32(0)
		for range 2 {
			e.channelAttrs(channelAttrs{maxRequest: 1 << 20, maxResponse: 1 << 20, maxResponseCached: 8 << 10, maxOps: 8, maxReqs: 4})
		}
		e.u32(0x40000000)
		e.u32(0)
	}
}

func sequenceOp(id sessionID, seq, slot uint32, cacheThis bool) func(e *enc) {
	return func(e *enc) {
		e.fixed(id[:])
		e.u32(seq)
		e.u32(slot)
		e.u32(slot)
		e.bool(cacheThis)
	}
}

// result is a decoded COMPOUND4res: its status and each operation's code,
// status and the rest of its result.
type result struct {
	status uint32
	ops    []opResult
	raw    []byte
}

type opResult struct {
	code, status uint32
	body         *dec
}

func parseResult(t testing.TB, b []byte) result {
	t.Helper()
	d := &dec{b: b}
	r := result{status: d.u32(), raw: b}
	d.opaque(maxName)
	n := d.u32()
	// The operations' bodies are not delimited: only the last one's is
	// kept whole; a test reads the ones it needs in order.
	for i := uint32(0); i < n && !d.bad; i++ {
		o := opResult{code: d.u32(), status: d.u32()}
		o.body = d
		r.ops = append(r.ops, o)
		if i < n-1 {
			skipResult(t, o, d)
		}
	}
	if d.bad {
		t.Fatalf("reply does not decode: %x", b)
	}
	return r
}

// skipResult reads past the result bodies the tests put before others.
func skipResult(t testing.TB, o opResult, d *dec) {
	if o.status != ok {
		return
	}
	switch o.code {
	case opSequence:
		d.fixed(16)
		for range 5 {
			d.u32()
		}
	case opPutRootFH, opPutFH, opReclaimComplete, opSaveFH, opRestoreFH, opLookup, opLookupP:
	default:
		t.Fatalf("cannot skip the result of op %d", o.code)
	}
}

type sessionFixture struct {
	t   testing.TB
	s   *Server
	now time.Time
	c   *Conn
}

func newSessionFixture(t testing.TB) *sessionFixture {
	f := &sessionFixture{t: t, now: time.Unix(1e9, 0)}
	f.s = New(nil, nil, nil, Options{Now: func() time.Time { return f.now }, Lease: 90 * time.Second})
	f.c = NewConn(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 700})
	return f
}

func (f *sessionFixture) send(c *call) result {
	f.t.Helper()
	accept, body := f.s.Call(context.Background(), f.c, procCompound, Cred{}, c.e.b)
	if accept != AcceptSuccess {
		f.t.Fatalf("accept %d", accept)
	}
	return parseResult(f.t, body)
}

// session makes a client and a session and returns its id and client id.
func (f *sessionFixture) session(owner string) (sessionID, uint64) {
	f.t.Helper()
	r := f.send(newCall("eid").op(opExchangeID, exchangeIDOp(owner, 1, 0)))
	if r.status != ok {
		f.t.Fatalf("EXCHANGE_ID: %d", r.status)
	}
	d := r.ops[0].body
	clientID, seq := d.u64(), d.u32()
	r = f.send(newCall("cs").op(opCreateSession, createSessionOp(clientID, seq)))
	if r.status != ok {
		f.t.Fatalf("CREATE_SESSION: %d", r.status)
	}
	var id sessionID
	copy(id[:], r.ops[0].body.fixed(16))
	return id, clientID
}

func statuses(r result) string {
	s := fmt.Sprint(r.status, ":")
	for _, o := range r.ops {
		s += fmt.Sprintf(" %d=%d", o.code, o.status)
	}
	return s
}

// TestReplyCache: a retransmitted request (same slot, same sequence id,
// same bytes) gets the reply of its first run, byte for byte, and is not
// run again: RECLAIM_COMPLETE, which a second run answers
// NFS4ERR_COMPLETE_ALREADY, answers NFS4_OK again. A new request on the
// slot runs.
func TestReplyCache(t *testing.T) {
	f := newSessionFixture(t)
	id, _ := f.session("replay")
	req := newCall("rc").op(opSequence, sequenceOp(id, 1, 0, true)).op(opReclaimComplete, func(e *enc) { e.bool(false) })
	first := f.send(req)
	if first.status != ok {
		t.Fatalf("first: %s", statuses(first))
	}
	again := f.send(req)
	if !bytes.Equal(again.raw, first.raw) {
		t.Fatalf("retransmission answered %s, not the cached reply %s", statuses(again), statuses(first))
	}
	next := f.send(newCall("rc").op(opSequence, sequenceOp(id, 2, 0, true)).op(opReclaimComplete, func(e *enc) { e.bool(false) }))
	if next.status != errCompleteAlready {
		t.Fatalf("a new request on the slot: %s, want RECLAIM_COMPLETE to have run again (COMPLETE_ALREADY)", statuses(next))
	}
}

// TestSequenceSlots: the slot table's errors.
func TestSequenceSlots(t *testing.T) {
	f := newSessionFixture(t)
	id, _ := f.session("slots")
	seq := func(seq, slot uint32, extra ...uint32) result {
		c := newCall("s").op(opSequence, sequenceOp(id, seq, slot, false))
		for _, code := range extra {
			c.op(code, nil)
		}
		return f.send(c)
	}
	for _, tc := range []struct {
		name string
		r    result
		want uint32
	}{
		{"first request of slot 1", seq(1, 1), ok},
		{"sequence id skipped", seq(3, 1), errSeqMisordered},
		{"slot past the table", seq(1, 4), errBadSlot},
		{"retry of a different request", seq(1, 1, opPutRootFH), errSeqFalseRetry},
		{"more operations than ca_maxoperations", seq(2, 1, opPutRootFH, opPutRootFH, opPutRootFH, opPutRootFH, opPutRootFH, opPutRootFH, opPutRootFH, opPutRootFH), errTooManyOps},
		{"next request", seq(2, 1, opPutRootFH, opGetFH), ok},
		{"SEQUENCE not first", f.send(newCall("s").op(opPutRootFH, nil).op(opSequence, sequenceOp(id, 3, 1, false))), errOpNotInSession},
		{"SEQUENCE twice", f.send(newCall("s").op(opSequence, sequenceOp(id, 3, 1, false)).op(opSequence, sequenceOp(id, 3, 1, false))), errSequencePos},
		{"unknown session", f.send(newCall("s").op(opSequence, sequenceOp(sessionID{9}, 1, 0, false))), errBadSession},
	} {
		if tc.r.status != tc.want {
			t.Errorf("%s: %s, want %d", tc.name, statuses(tc.r), tc.want)
		}
	}
}

// TestLeaseExpiry: SEQUENCE renews the lease; a client silent for longer
// than the lease loses its sessions and its client id.
func TestLeaseExpiry(t *testing.T) {
	f := newSessionFixture(t)
	id, clientID := f.session("lease")
	for i := uint32(1); i <= 3; i++ {
		f.now = f.now.Add(60 * time.Second) // each within the lease of the last
		if r := f.send(newCall("s").op(opSequence, sequenceOp(id, i, 0, false))); r.status != ok {
			t.Fatalf("SEQUENCE after %v: %s", 60*time.Second*time.Duration(i), statuses(r))
		}
	}
	f.now = f.now.Add(91 * time.Second)
	if r := f.send(newCall("s").op(opSequence, sequenceOp(id, 4, 0, false))); r.status != errBadSession {
		t.Fatalf("SEQUENCE after the lease: %s, want BADSESSION", statuses(r))
	}
	if r := f.send(newCall("cs").op(opCreateSession, createSessionOp(clientID, 2))); r.status != errStaleClientID {
		t.Fatalf("CREATE_SESSION after the lease: %s, want STALE_CLIENTID", statuses(r))
	}
}

// TestDestroy: DESTROY_CLIENTID waits for the client's sessions to go.
func TestDestroy(t *testing.T) {
	f := newSessionFixture(t)
	id, clientID := f.session("destroy")
	destroyClient := newCall("dc").op(opDestroyClientID, func(e *enc) { e.u64(clientID) })
	if r := f.send(destroyClient); r.status != errClientIDBusy {
		t.Fatalf("DESTROY_CLIENTID with a session: %s", statuses(r))
	}
	if r := f.send(newCall("ds").op(opDestroySession, func(e *enc) { e.fixed(id[:]) })); r.status != ok {
		t.Fatalf("DESTROY_SESSION: %s", statuses(r))
	}
	if r := f.send(newCall("s").op(opSequence, sequenceOp(id, 1, 0, false))); r.status != errBadSession {
		t.Fatalf("SEQUENCE on a destroyed session: %s", statuses(r))
	}
	if r := f.send(destroyClient); r.status != ok {
		t.Fatalf("DESTROY_CLIENTID: %s", statuses(r))
	}
	if r := f.send(destroyClient); r.status != errStaleClientID {
		t.Fatalf("DESTROY_CLIENTID again: %s", statuses(r))
	}
}

// TestCreateSessionReplay: CREATE_SESSION sent again with the same
// sequence id gets the same session; a sequence id out of order does not
// make one.
func TestCreateSessionReplay(t *testing.T) {
	f := newSessionFixture(t)
	r := f.send(newCall("eid").op(opExchangeID, exchangeIDOp("cs", 1, 0)))
	d := r.ops[0].body
	clientID, seq := d.u64(), d.u32()
	cs := newCall("cs").op(opCreateSession, createSessionOp(clientID, seq))
	first, again := f.send(cs), f.send(cs)
	if first.status != ok || !bytes.Equal(first.raw, again.raw) {
		t.Fatalf("CREATE_SESSION %s, its replay %s: not the same reply", statuses(first), statuses(again))
	}
	if r := f.send(newCall("cs").op(opCreateSession, createSessionOp(clientID, seq+5))); r.status != errSeqMisordered {
		t.Fatalf("CREATE_SESSION out of order: %s", statuses(r))
	}
}

// TestHashArgs: a request's hash tells apart requests that differ in
// length or in their operations (the front) or the end, and reads only
// both ends of a large request, not a WRITE's data in between.
func TestHashArgs(t *testing.T) {
	req := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	for _, n := range []int{0, 1, 100, 2 * argsHashSpan, 2*argsHashSpan + 1, 1 << 20} {
		a, b := req(n), req(n)
		if hashArgs(a) != hashArgs(b) {
			t.Fatalf("%d bytes: the same request hashes differently", n)
		}
		if hashArgs(a) == hashArgs(req(n+1)) {
			t.Fatalf("%d bytes: a request one byte longer hashes the same", n)
		}
		if n == 0 {
			continue
		}
		for _, at := range []int{0, n / 2, n - 1} {
			c := req(n)
			c[at]++
			inData := n > 2*argsHashSpan && at >= argsHashSpan && at < n-argsHashSpan
			if got := hashArgs(c) == hashArgs(a); got != inData {
				t.Fatalf("%d bytes, byte %d changed: same hash %v, want %v", n, at, got, inData)
			}
		}
	}
}
