package nfs

import (
	"context"
	"testing"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
)

// TestNFS4CloseAfterRenameOver: a file renamed over while a client has it
// open is gone, but its open is not: the client may still CLOSE it with
// the file's handle (pynfs RNM21), which is stale to anything else, and
// stale to CLOSE too once the open is closed.
func TestNFS4CloseAfterRenameOver(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	f.newFile("s", "a.bin")
	f.newFile("s", "b.bin")
	c := nfstest.DialV4(t, f.addr, "gone")
	st, sid, fh := c.Open("open-owner", "s", "b.bin")
	if st != nfstest.V4OK {
		t.Fatalf("OPEN: %d", st)
	}
	sh, err := f.shares.Get("s")
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Rename(context.Background(), "a.bin", "b.bin"); err != nil {
		t.Fatal(err)
	}
	const stale = 70 // NFS4ERR_STALE
	if st, _ := c.Compound(new(nfstest.V4Args).Op(nfstest.V4PutFH).Opaque(fh).Op(nfstest.V4Getattr).U32(1, 1<<4)); st != stale {
		t.Fatalf("GETATTR of the file renamed over: %d, want NFS4ERR_STALE", st)
	}
	closeIt := func() uint32 {
		var a nfstest.V4Args
		a.Op(nfstest.V4PutFH).Opaque(fh).Op(nfstest.V4Close).U32(0).Fixed(sid[:])
		st, _ := c.Compound(&a)
		return st
	}
	if st := closeIt(); st != nfstest.V4OK {
		t.Fatalf("CLOSE of the open of the file renamed over: %d", st)
	}
	if st := closeIt(); st != stale {
		t.Fatalf("CLOSE again: %d, want NFS4ERR_STALE", st)
	}
}
