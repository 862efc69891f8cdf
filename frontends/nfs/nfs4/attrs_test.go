package nfs4

import "testing"

// TestSupportedAttrsNameSettable: supported_attrs names every attribute
// SETATTR sets, the write-only times included (a client sends only what
// it lists: Linux's dropped the times of cp -a and touch -d without an
// error); GETATTR still refuses to read those (NFS4ERR_INVAL), and
// returns every other one it lists.
func TestSupportedAttrsNameSettable(t *testing.T) {
	f := newSessionFixture(t)
	id, _ := f.session("attrs")
	getattr := func(seq uint32, m bitmap) result {
		return f.send(newCall("ga").op(opSequence, sequenceOp(id, seq, 0, false)).op(opPutRootFH, nil).
			op(opGetattr, func(e *enc) { e.bitmap(m) }))
	}
	var m bitmap
	m.set(attrSupportedAttrs)
	r := getattr(1, m)
	if r.status != ok {
		t.Fatalf("GETATTR supported_attrs: %s", statuses(r))
	}
	d := r.ops[2].body
	d.bitmap()
	vals := &dec{b: d.opaque(maxRequest)}
	got := vals.bitmap()
	for _, n := range []int{attrSize, attrMode, attrOwner, attrOwnerGroup, attrTimeAccessSet, attrTimeModifySet} {
		if !got.has(n) {
			t.Errorf("supported_attrs %v lacks attribute %d, which SETATTR sets", got.bits(), n)
		}
	}
	m = nil
	m.set(attrTimeModifySet)
	if r := getattr(2, m); r.status != errInval {
		t.Errorf("GETATTR time_modify_set: %s, want NFS4ERR_INVAL", statuses(r))
	}
	var readable bitmap
	for _, n := range got.bits() {
		if !writeOnly(n) {
			readable.set(n)
		}
	}
	r = getattr(3, readable)
	if r.status != ok {
		t.Fatalf("GETATTR of every readable supported attribute: %s", statuses(r))
	}
	d = r.ops[2].body
	if back := d.bitmap(); len(back.bits()) != len(readable.bits()) {
		t.Errorf("GETATTR of %v returned %v", readable.bits(), back.bits())
	}
}
