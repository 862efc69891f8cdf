package nfs

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/vfs"
)

// TestNFS4DelegationRecalledByOtherPaths: a v4.1 client with a back
// channel holds a read delegation; it is recalled (CB_RECALL reaches the
// client) when the file is written through another frontend of the share
// (as the SMB view writes), when its object changes in the bucket and a
// bucket event says so (Manager.ApplyObjectChange), and when the share is
// refreshed: the file itself, and a directory above a delegated file
// (recursively); by an NFSv3 SETATTR of its size or mode (go-nfs's,
// which does not recall before it), RENAME and REMOVE of it; and when
// another frontend sets its times or renames a file over it. The
// holder's own WRITE over v4.1 recalls nothing.
func TestNFS4DelegationRecalledByOtherPaths(t *testing.T) {
	store := mem.New("nfs")
	f := startServer(t, store, vfs.Default, filepath.Join(t.TempDir(), "log"),
		func(s *Server) { s.ReadDelegations(true) }, fileshare.Config{Name: "s"})
	v, fh := f.newFile("s", "f.bin")
	if err := writeAll(v, fh, []byte("first version\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Create("d/g.bin", 0o644); err != nil {
		t.Fatal(err)
	}
	sh, err := f.shares.Get("s")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := nfstest.DialV4Back(t, f.addr, "holder")

	recalls := func() uint64 { return f.srv.Delegations().Recalled }

	deleg, _, handle := c.ReadDelegation("s", "f.bin")
	before := recalls()
	st, open, _ := c.Open("writer", "s", "f.bin")
	if st != nfstest.V4OK {
		t.Fatalf("the holder's OPEN for writing: %d", st)
	}
	var a nfstest.V4Args
	a.Op(nfstest.V4PutFH).Opaque(handle).Op(nfstest.V4Write).Fixed(open[:]).U64(0).U32(2).Opaque([]byte("FIRST")) // WRITE, FILE_SYNC
	if st, _ := c.Compound(&a); st != nfstest.V4OK {
		t.Fatalf("the holder's WRITE: %d", st)
	}
	if n := recalls(); n != before {
		t.Fatalf("the holder's own WRITE recalled %d delegations", n-before)
	}
	a = nfstest.V4Args{}
	a.Op(nfstest.V4PutFH).Opaque(handle).Op(nfstest.V4Close).U32(0).Fixed(open[:])
	if st, _ := c.Compound(&a); st != nfstest.V4OK { // else no read delegation of the file again
		t.Fatalf("CLOSE of the holder's open for writing: %d", st)
	}

	other := fileshare.QuietChanges(ctx, fileshare.NewChangeSource("other frontend"))
	if _, err := sh.Write(other, "f.bin", []byte("second version, through another frontend\n"), 0, fileshare.Durable); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after a write through another frontend", deleg, handle)

	deleg, _, _ = c.ReadDelegation("s", "f.bin")
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Size: nfsc.SetSize{SetIt: true, Size: 6}}); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after an NFSv3 SETATTR of the size", deleg, handle)

	deleg, reader, _ := c.ReadDelegation("s", "f.bin")
	third := []byte("third version, put in the bucket\n")
	smbtest.Eventually(t, "the bucket event applied", func() error {
		// Applied once the share's own upload is done (local changes win
		// before): the object is put again each time.
		if err := objstore.PutBytes(ctx, store, "s/f.bin", third); err != nil {
			return err
		}
		oi, err := store.Stat(ctx, "s/f.bin")
		if err != nil {
			return err
		}
		if out := f.shares.ApplyObjectChange(fileshare.ObjectChange{Key: "s/f.bin", ETag: oi.ETag}); out != fileshare.ChangeApplied {
			return fmt.Errorf("the event: %v", out)
		}
		return nil
	})
	c.WaitRecall("recall after a bucket event", deleg, handle)
	if st, got := c.Read(handle, reader, 0, 4096); st != nfstest.V4OK || !bytes.Equal(got, third) {
		t.Fatalf("READ after the recall: %q (status %d), want %q", got, st, third)
	}

	deleg, _, _ = c.ReadDelegation("s", "f.bin")
	if err := objstore.PutBytes(ctx, store, "s/f.bin", []byte("fourth version\n")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Refresh("f.bin", false); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after a refresh of the file", deleg, handle)

	deleg, _, _ = c.ReadDelegation("s", "f.bin")
	inner, _, innerHandle := c.ReadDelegation("s", "d", "g.bin")
	before = recalls()
	if err := sh.Refresh("d", true); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall of a file below a directory refreshed", inner, innerHandle)
	if n := recalls(); n != before+1 {
		t.Fatalf("a refresh of d recalled %d delegations, want 1 (d/g.bin's, not f.bin's)", n-before)
	}
	if slices.Contains(c.Recalled, deleg) {
		t.Fatal("a refresh of d recalled the delegation of f.bin")
	}

	// Attributes and names changed over NFSv3 or through another frontend
	// (as SMB clients change them through the view).
	mode := uint32(0o600)
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: mode}}); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after an NFSv3 SETATTR of the mode", deleg, handle)

	deleg, _, _ = c.ReadDelegation("s", "f.bin")
	mtime := time.Now().Add(-time.Hour)
	if _, err := sh.SetAttr(other, "f.bin", fileshare.SetAttr{Mtime: &mtime}); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after another frontend set the times", deleg, handle)

	deleg, _, _ = c.ReadDelegation("s", "f.bin")
	if err := v.Rename("f.bin", "renamed.bin"); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after an NFSv3 RENAME of the file", deleg, handle)

	if _, err := sh.Create(other, "replacement.bin", 0o644, 0, 0, true); err != nil {
		t.Fatal(err)
	}
	deleg, _, handle = c.ReadDelegation("s", "renamed.bin")
	if err := sh.Rename(other, "replacement.bin", "renamed.bin"); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after another frontend renamed a file over it", deleg, handle)

	deleg, _, handle = c.ReadDelegation("s", "renamed.bin")
	if err := v.Remove("renamed.bin"); err != nil {
		t.Fatal(err)
	}
	c.WaitRecall("recall after an NFSv3 REMOVE of the file", deleg, handle)
}
