package nfs4

import (
	"bytes"
	"context"
	"testing"
)

// TestMalformedCompounds: each malformed COMPOUND gets the protocol's
// error, in the compound's status and as the failing operation's result.
func TestMalformedCompounds(t *testing.T) {
	f := newSessionFixture(t)
	id, _ := f.session("malformed")
	valid := newCall("ok").op(opSequence, sequenceOp(id, 1, 0, false)).op(opPutRootFH, nil).op(opGetFH, nil).e.b
	tooMany := newCall("many")
	for range maxOps + 1 {
		tooMany.op(opPutRootFH, nil)
	}
	for _, tc := range []struct {
		name   string
		args   []byte
		want   uint32
		nops   int
		lastOp uint32
	}{
		{"empty", nil, errBadXDR, 0, 0},
		{"tag longer than the call", []byte{0, 0, 1, 0, 'a'}, errBadXDR, 0, 0},
		{"tag not UTF-8", newCall("\xff").e.b, errInval, 0, 0},
		{"minor version 0", func() []byte { c := newCall("v0"); putU32(c.e.b[8:], 0); return c.e.b }(), errMinorVersMismatch, 0, 0},
		{"minor version 2", func() []byte { c := newCall("v0"); putU32(c.e.b[8:], 2); return c.e.b }(), errMinorVersMismatch, 0, 0},
		{"too many operations", tooMany.e.b, errResource, 0, 0},
		{"operation number out of range", newCall("ill").op(2, nil).e.b, errOpIllegal, 1, opIllegal},
		{"operation number past 4.1", newCall("ill").op(59, nil).e.b, errOpIllegal, 1, opIllegal},
		{"operation of 4.0 only", newCall("v40").op(35, nil).e.b, errNotSupp, 1, 35},
		{"operation cut short", valid[:len(valid)-2], errBadXDR, 3, opIllegal},
		{"arguments cut short", newCall("cut").op(opExchangeID, func(e *enc) { e.fixed(make([]byte, 8)); e.u32(5000) }).e.b, errBadXDR, 1, opExchangeID},
		{"count of operations past the data", func() []byte { c := newCall("n"); putU32(c.e.b[12:], 5); return c.e.b }(), errBadXDR, 1, opIllegal},
	} {
		accept, body := f.s.Call(context.Background(), f.c, procCompound, Cred{}, tc.args)
		if accept != AcceptSuccess {
			t.Errorf("%s: accept %d", tc.name, accept)
			continue
		}
		r := parseResult(t, body)
		if r.status != tc.want || len(r.ops) != tc.nops || tc.nops > 0 && r.ops[tc.nops-1].code != tc.lastOp {
			t.Errorf("%s: %s, want status %d with %d results, the last of op %d", tc.name, statuses(r), tc.want, tc.nops, tc.lastOp)
		}
	}
	if accept, _ := f.s.Call(context.Background(), f.c, 7, Cred{}, nil); accept != AcceptProcUnavail {
		t.Errorf("procedure 7: accept %d, want PROC_UNAVAIL", accept)
	}
}

// FuzzCompound: whatever the bytes, a COMPOUND is answered with a reply
// that decodes (never a panic), and an operation that does not decode is
// the last result.
func FuzzCompound(f *testing.F) {
	fx := newSessionFixture(f)
	id, clientID := fx.session("fuzz")
	f.Add(newCall("").e.b)
	f.Add(newCall("t").op(opSequence, sequenceOp(id, 1, 0, true)).op(opPutRootFH, nil).op(opGetattr, func(e *enc) { e.bitmap(supported) }).e.b)
	f.Add(newCall("t").op(opSequence, sequenceOp(id, 1, 1, false)).op(opPutRootFH, nil).op(opReadDir, func(e *enc) {
		e.u64(0)
		e.fixed(make([]byte, 8))
		e.u32(4096)
		e.u32(4096)
		e.bitmap(supported)
	}).e.b)
	f.Add(newCall("t").op(opExchangeID, exchangeIDOp("o", 2, exchgidSuppMovedRefer)).e.b)
	f.Add(newCall("t").op(opCreateSession, createSessionOp(clientID, 2)).e.b)
	f.Add(newCall("t").op(opSequence, sequenceOp(id, 1, 2, false)).op(opLookup, func(e *enc) { e.str("x") }).op(opRead, func(e *enc) {
		e.u32(0)
		e.fixed(make([]byte, 12))
		e.u64(0)
		e.u32(10)
	}).e.b)
	// The decoders of the operations that change files and lock.
	f.Add(newCall("t").op(opSequence, sequenceOp(id, 1, 3, false)).op(opPutRootFH, nil).op(opOpen, func(e *enc) {
		e.u32(0)
		e.u32(shareAccessBoth)
		e.u32(0)
		e.u64(clientID)
		e.str("owner")
		e.u32(1) // create
		e.u32(createExclusive41)
		e.fixed(make([]byte, 8))
		e.bitmap(bitmap{1 << attrSize, 1<<(attrMode-32) | 1<<(attrOwner-32)})
		e.opaque([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xa4, 0, 0, 0, 1, '0', 0, 0, 0})
		e.u32(claimNull)
		e.str("f")
	}).op(opLock, func(e *enc) {
		e.u32(writeLT)
		e.bool(false)
		e.u64(0)
		e.u64(100)
		e.bool(true)
		e.u32(0)
		e.u32(1)
		e.fixed(make([]byte, 12))
		e.u32(0)
		e.u64(clientID)
		e.str("lock owner")
	}).e.b)
	f.Add(newCall("t").op(opSequence, sequenceOp(id, 1, 3, false)).op(opWrite, func(e *enc) {
		e.u32(0)
		e.fixed(make([]byte, 12))
		e.u64(0)
		e.u32(0)
		e.opaque([]byte("data"))
	}).op(opSetattr, func(e *enc) {
		e.u32(0)
		e.fixed(make([]byte, 12))
		e.bitmap(bitmap{0, 1<<(attrTimeModifySet-32) | 1<<(attrTimeAccessSet-32)})
		e.opaque([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0})
	}).e.b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c := decodeCompound(b)
		if c.status == ok {
			for i, o := range c.ops {
				if o.err != ok && i != len(c.ops)-1 {
					t.Fatalf("operation %d failed to decode (%d) and is not the last", i, o.err)
				}
			}
		}
		accept, body := fx.s.Call(context.Background(), fx.c, procCompound, Cred{Flavor: authSys, Body: b}, b)
		if accept != AcceptSuccess {
			t.Fatalf("accept %d", accept)
		}
		d := &dec{b: body}
		status := d.u32()
		tag := d.opaque(maxName)
		if d.bad || c.status == ok && !bytes.Equal(tag, c.tag) {
			t.Fatalf("reply %x: tag %q, the call's %q", body, tag, c.tag)
		}
		if c.status != ok && status != c.status {
			t.Fatalf("reply status %d, decoding said %d", status, c.status)
		}
	})
}
