package nfs

import (
	"testing"

	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
)

// TestNFS4CreateSpecial: CREATE makes FIFOs, sockets and block and
// character devices (NF4FIFO, NF4SOCK, NF4BLK, NF4CHR) with the mode
// asked; GETATTR gives their type and rawdev, over v4.1 and v3 alike;
// OPEN of one is NFS4ERR_WRONG_TYPE.
func TestNFS4CreateSpecial(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	c := nfstest.DialV4(t, f.addr, "special")
	v, done := f.mount("s")
	defer done()
	const create, open = 6, 18
	for _, w := range []struct {
		name       string
		typ, mode  uint32
		maj, minor uint32
	}{
		{"fifo", 7, 0o600, 0, 0},
		{"sock", 6, 0o644, 0, 0},
		{"sda", 3, 0o660, 8, 0},
		{"null", 4, 0o666, 1, 3},
	} {
		a := new(nfstest.V4Args).Lookup("s")
		a.Op(create).U32(w.typ)
		if w.typ == 3 || w.typ == 4 {
			a.U32(w.maj, w.minor)
		}
		// createattrs: mode (attribute 33: word 1, bit 1)
		a.Opaque([]byte(w.name)).U32(2, 0, 2).U32(4, w.mode)
		// GETATTR type (1), mode (33) and rawdev (41)
		a.Op(nfstest.V4Getattr).U32(2, 1<<1, 1<<1|1<<9)
		st, x := c.Compound(a)
		x.Skip(t, 2)
		if code, cst := x.Result(); st != 0 || code != create || cst != 0 {
			t.Fatalf("CREATE %s: status %d (op %d: %d)", w.name, st, code, cst)
		}
		x.U32() // change_info4: atomic
		x.U64() // before
		x.U64() // after
		bitmap := func() {
			for n := x.U32(); n > 0 && !x.Bad(); n-- {
				x.U32()
			}
		}
		bitmap() // attrset
		x.Result()
		bitmap()
		x.U32() // attribute bytes
		if typ, mode, maj, minor := x.U32(), x.U32(), x.U32(), x.U32(); x.Bad() || typ != w.typ || mode != w.mode ||
			maj != w.maj || minor != w.minor {
			t.Fatalf("GETATTR of %s: type %d, mode %o, rawdev %d,%d", w.name, typ, mode, maj, minor)
		}

		info, _, err := v.Lookup(w.name, false)
		fi, _ := info.(*nfsc.Fattr)
		if err != nil || fi == nil || fi.Type != w.typ || fi.SpecData != [2]uint32{w.maj, w.minor} {
			t.Fatalf("v3 LOOKUP of %s: %+v %v", w.name, fi, err)
		}

		// OPEN of it (CLAIM_FH): NFS4ERR_WRONG_TYPE.
		a = new(nfstest.V4Args).Lookup("s", w.name)
		a.Op(open).U32(0, 1, 0).U64(c.ClientID).Opaque([]byte("o")).U32(0, 4) // OPEN4_NOCREATE, CLAIM_FH
		st, _ = c.Compound(a)
		if st != 10083 {
			t.Fatalf("OPEN of %s: status %d, want NFS4ERR_WRONG_TYPE", w.name, st)
		}
	}
}
