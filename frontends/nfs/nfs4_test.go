package nfs

import (
	"bytes"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// NFSv4.1 through the server's RPC layer, on real shares: what package
// nfs4's own tests cannot show, the version 4 calls on the v3 port, the
// v3 handles in v4.1, the client list applied to the pseudo root, and
// locks between two clients.

// The client is nfstest's (nfstest.V4Client), which cmd/gatewayd's tests
// use too.

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
	c := nfstest.DialV4(t, f.addr, "handles")

	var a nfstest.V4Args
	a.Op(nfstest.V4PutFH).Opaque(fh).Op(nfstest.V4Read).U32(0, 0, 0, 0).U64(0).U32(1 << 20)
	st, x := c.Compound(&a)
	x.Skip(t, 1)
	x.Result()
	if eof, got := x.U32(), x.Opaque(1<<20); st != 0 || eof != 1 || !bytes.Equal(got, data) {
		t.Fatalf("READ with the v3 handle: status %d, eof %d, %d bytes of %d match", st, eof, len(got), len(data))
	}

	st, x = c.Compound(new(nfstest.V4Args).Lookup("s", "f.bin").Op(nfstest.V4GetFH))
	x.Skip(t, 3)
	x.Result()
	if got := x.Opaque(128); st != 0 || !bytes.Equal(got, fh) {
		t.Fatalf("v4.1 LOOKUP's handle %x (status %d), v3's %x", got, st, fh)
	}

	st, _ = c.Compound(new(nfstest.V4Args).Lookup("hidden"))
	if st != 2 { // NFS4ERR_NOENT
		t.Fatalf("LOOKUP of a share not exported to the client: status %d", st)
	}
	a = nfstest.V4Args{}
	a.Op(nfstest.V4PutRootFH).Op(nfstest.V4ReadDir).U64(0).U64(0).U32(4096, 4096, 0)
	st, x = c.Compound(&a)
	x.Skip(t, 1)
	x.Result()
	x.U64() // verifier
	var names []string
	for x.U32() == 1 {
		x.U64()
		names = append(names, string(x.Opaque(255)))
		x.Opaque(64) // bitmap, no words: reads the count 0 as empty
		x.Opaque(64) // attributes
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
	open := func(c *nfstest.V4Client) (nfstest.V4Stateid, []byte) {
		st, sid, fh := c.Open("open-owner", "s", "f.bin")
		if st != nfstest.V4OK {
			t.Fatalf("OPEN: %d", st)
		}
		return sid, fh
	}
	lock := func(c *nfstest.V4Client, open nfstest.V4Stateid, fh []byte) (uint32, nfstest.V4Stateid) {
		return c.Lock(fh, nfstest.V4LockArgs{Owner: "lock-owner", Open: open, Write: true, Off: 0, N: 100})
	}
	a, b := nfstest.DialV4(t, f.addr, "a"), nfstest.DialV4(t, f.addr, "b")
	openA, fh := open(a)
	openB, _ := open(b)
	st, lockA := lock(a, openA, fh)
	if st != nfstest.V4OK {
		t.Fatalf("first LOCK: %d", st)
	}
	if st, _ := lock(b, openB, fh); st != nfstest.V4ErrDenied {
		t.Fatalf("a conflicting LOCK of another client: %d, want DENIED", st)
	}
	if st := b.LockTest(fh, "lock-owner", 50, 1); st != nfstest.V4ErrDenied {
		t.Fatalf("LOCKT of a locked range: %d, want DENIED", st)
	}
	if st := a.Unlock(fh, lockA, 0, 100); st != nfstest.V4OK {
		t.Fatalf("LOCKU: %d", st)
	}
	if st, _ := lock(b, openB, fh); st != nfstest.V4OK {
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
