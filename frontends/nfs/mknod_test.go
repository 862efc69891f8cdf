package nfs

import (
	"context"
	"testing"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
)

// mknodArgs is MKNOD3args with a sattr3 setting the mode only; Rdev is
// sent for NF3CHR and NF3BLK (Dev), not for NF3FIFO and NF3SOCK.
type mknodArgs struct {
	rpc.Header
	Dir     []byte
	Name    string
	Type    uint32
	SetMode uint32 // 1
	Mode    uint32
	Rest    [5]uint32 // uid, gid, size, atime, mtime: not set
}

type mknodDevArgs struct { // the client finds Header only at the top
	rpc.Header
	Dir          []byte
	Name         string
	Type         uint32
	SetMode      uint32
	Mode         uint32
	Rest         [5]uint32
	Major, Minor uint32
}

// TestMknod: MKNOD makes FIFOs, sockets and character and block devices
// (go-nfs answered a character device NFS3_OK and made nothing); LOOKUP
// and GETATTR give their type and numbers, also after a restart; other
// types are NFS3ERR_BADTYPE, an existing name NFS3ERR_EXIST.
func TestMknod(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	v, done := f.mount("s")
	defer done()
	root := nfstest.RootFH(v)
	header := rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Proc: procMknod, Cred: rpc.AuthNull, Verf: rpc.AuthNull}
	mknod := func(name string, typ, mode uint32, rdev [2]uint32) (uint32, *nfsc.Fattr) {
		t.Helper()
		a := mknodArgs{Header: header, Dir: root, Name: name, Type: typ, SetMode: 1, Mode: mode}
		var args any = &a
		if typ == 3 || typ == 4 {
			args = &mknodDevArgs{Header: header, Dir: root, Name: name, Type: typ, SetMode: 1, Mode: mode, Major: rdev[0], Minor: rdev[1]}
		}
		res, err := v.Call(args)
		if err != nil {
			t.Fatalf("mknod %s: %v", name, err)
		}
		st, err := xdr.ReadUint32(res)
		if err != nil || st != 0 {
			return st, nil
		}
		var r struct {
			HasFH   uint32
			FH      []byte
			HasAttr uint32
			Attr    nfsc.Fattr
		}
		if err := xdr.Read(res, &r); err != nil || r.HasFH != 1 || r.HasAttr != 1 || len(r.FH) != handleLen {
			t.Fatalf("mknod %s: reply %+v %v", name, r, err)
		}
		return st, &r.Attr
	}
	want := map[string]struct {
		typ, mode uint32
		rdev      [2]uint32
	}{
		"fifo": {7, 0o600, [2]uint32{}},
		"sock": {6, 0o755, [2]uint32{}},
		"null": {4, 0o666, [2]uint32{1, 3}},
		"sda":  {3, 0o660, [2]uint32{8, 0}},
	}
	for name, w := range want {
		st, a := mknod(name, w.typ, w.mode, w.rdev)
		if st != 0 || a.Type != w.typ || a.SpecData != w.rdev || a.FileMode&0o7777 != w.mode {
			t.Fatalf("mknod %s: status %d, %+v", name, st, a)
		}
	}
	if st, _ := mknod("fifo", 7, 0o600, [2]uint32{}); st != uint32(nfsc.NFS3ErrExist) {
		t.Fatalf("mknod of an existing name: status %d", st)
	}
	for _, typ := range []uint32{1, 2, 5, 8} {
		if st, _ := mknod("other", typ, 0o600, [2]uint32{}); st != 10007 { // NFS3ERR_BADTYPE
			t.Fatalf("mknod of type %d: status %d", typ, st)
		}
	}
	check := func(when string) {
		t.Helper()
		for name, w := range want {
			fi, _, err := v.Lookup(name, false)
			if err != nil {
				t.Fatalf("lookup %s %s: %v", name, when, err)
			}
			a := fi.(*nfsc.Fattr)
			if a.Type != w.typ || a.SpecData != w.rdev || a.Size() != 0 {
				t.Fatalf("lookup %s %s: %+v", name, when, a)
			}
		}
	}
	check("at once")
	if err := f.shares.Flush(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	sh, err := f.shares.Get("s")
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	check("from the store")
}
