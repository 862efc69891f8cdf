package smb

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// mountView mounts the view of a new share of a manager with o, without
// smbd, and returns the manager, the share and the mount point.
func mountView(t *testing.T, o fileshare.Options) (*fileshare.Manager, *fileshare.Share, string) {
	t.Helper()
	smbtest.Require(t)
	dir := t.TempDir()
	m := newManager(t, dir, o)
	if _, err := m.Create(context.Background(), fileshare.Config{Name: "v", Protocols: []string{"smb"}}); err != nil {
		t.Fatal(err)
	}
	sh, _ := m.Get("v")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := Mount(sh, mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return m, sh, mnt
}

// memOptions are a manager's options on an in-memory store that uploads
// at once.
func memOptions() fileshare.Options {
	return fileshare.Options{Store: mem.New("smb"), SettleTime: 50 * time.Millisecond, UploadInterval: 20 * time.Millisecond}
}

// missing fails unless p does not exist.
func missing(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat %s: %v, want not found", p, err)
	}
}

// TestNegativeLookupCached: a lookup of a name the share lacks answers
// with an entry the kernel keeps for the view's TTL (no node), not an
// error it would ask again for at once: smbd looks each new name up
// twice before it makes it.
func TestNegativeLookupCached(t *testing.T) {
	raw, _ := rawView(t, 1)
	var out fuse.EntryOut
	in := &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}
	st := raw.Lookup(nil, in, "no-such-name", &out)
	if !st.Ok() || out.NodeId != 0 {
		t.Fatalf("lookup of a missing name: status %v, node %d; want OK and no node (a negative entry)", st, out.NodeId)
	}
	if got := time.Duration(out.EntryValid)*time.Second + time.Duration(out.EntryValidNsec); got != attrTimeout {
		t.Fatalf("negative entry kept for %v, want %v (the TTL of positive entries)", got, attrTimeout)
	}
	if st := raw.Lookup(nil, in, "t000-0.txt", &out); !st.Ok() || out.NodeId == 0 {
		t.Fatalf("lookup of a file: status %v, node %d", st, out.NodeId)
	}
}

// TestNegativeEntryGoneAtOwnCreate: a name looked up and found missing
// through the view (the kernel keeps that) and then made through the
// view, by create, mkdir, symlink or rename, is there at once.
func TestNegativeEntryGoneAtOwnCreate(t *testing.T) {
	_, _, mnt := mountView(t, memOptions())
	p := func(name string) string { return filepath.Join(mnt, name) }
	for _, name := range []string{"new.txt", "dir", "link", "moved.txt"} {
		missing(t, p(name))
		missing(t, p(name)) // the kernel's entry now, within the TTL
	}
	data := []byte("made through the view")
	if err := os.WriteFile(p("new.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p("new.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after the create: %q, %v", got, err)
	}
	if err := os.Mkdir(p("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p("dir")); err != nil || !st.IsDir() {
		t.Fatalf("stat after mkdir: %v, %v", st, err)
	}
	if err := os.Symlink("new.txt", p("link")); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(p("link")); err != nil || target != "new.txt" {
		t.Fatalf("readlink after symlink: %q, %v", target, err)
	}
	if err := os.Rename(p("new.txt"), p("moved.txt")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p("moved.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after the rename: %q, %v", got, err)
	}
	missing(t, p("new.txt"))
}

// TestNameMadeElsewhereShows: a name looked up and found missing
// through the view, then made in the share without the view (as NFS
// makes it), shows in the view once the kernel's negative entry has
// lived its TTL, as a change to a file made elsewhere does; and a name
// removed elsewhere goes the same way.
func TestNameMadeElsewhereShows(t *testing.T) {
	_, sh, mnt := mountView(t, memOptions())
	ctx := context.Background()
	p := filepath.Join(mnt, "over-nfs.txt")
	missing(t, p)
	data := []byte("made over NFS")
	if _, err := sh.Create(ctx, "over-nfs.txt", 0o644, 0, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.WriteAt(ctx, "over-nfs.txt", data, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file made elsewhere to show", func() bool {
		_, err := os.Stat(p)
		return err == nil
	})
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %q, %v", got, err)
	}
	if err := sh.Remove(ctx, "over-nfs.txt"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file removed elsewhere to go", func() bool {
		_, err := os.Stat(p)
		return errors.Is(err, os.ErrNotExist)
	})
}

// waitFor polls cond until it holds, failing after a deadline far above
// any TTL of the view.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 2 minutes for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFileChangedElsewhereShows: the kernel keeps a file's pages from one
// open to the next (the view's opens need no request); a change of the
// file made without the view (as NFS makes it), even of the same size,
// shows in reads through the view once the kernel looks at the file's
// attributes again, and a file removed and made again elsewhere too.
func TestFileChangedElsewhereShows(t *testing.T) {
	_, sh, mnt := mountView(t, memOptions())
	ctx := context.Background()
	p := filepath.Join(mnt, "f.txt")
	old, changed := []byte("written through the view"), []byte("written over NFS, same size")[:24]
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, old) {
			t.Fatalf("read back: %q, %v", got, err)
		}
	}
	if _, err := sh.WriteAt(ctx, "f.txt", changed, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the change made elsewhere to show", func() bool {
		got, err := os.ReadFile(p)
		return err == nil && bytes.Equal(got, changed)
	})
	if err := sh.Remove(ctx, "f.txt"); err != nil {
		t.Fatal(err)
	}
	again := []byte("made again elsewhere")
	if _, err := sh.Create(ctx, "f.txt", 0o644, 0, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.WriteAt(ctx, "f.txt", again, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file made again elsewhere to show", func() bool {
		got, err := os.ReadFile(p)
		return err == nil && bytes.Equal(got, again)
	})
}

// TestViewChangesWrittenSyncedAtFsync: a file created, written and given
// its times through the view costs no sync of the upload buffer (its
// records are written to the log's file before each answer, which kill -9
// keeps); an fsync of it (smbd's, at an SMB flush or a write-through
// write) syncs it.
func TestViewChangesWrittenSyncedAtFsync(t *testing.T) {
	o := memOptions()
	o.SettleTime, o.UploadInterval = time.Hour, time.Hour // no upload round beside the count
	m, _, mnt := mountView(t, o)
	syncs := func() uint64 { return m.JournalStats().Log.Syncs }
	before := syncs()
	const files = 20
	for i := range files {
		p := filepath.Join(mnt, "small."+string(rune('a'+i)))
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1700000000+int64(i), 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	st := m.JournalStats().Log
	if got := st.Syncs - before; got != 0 {
		t.Fatalf("%d syncs of the upload buffer for %d files made through the view, want 0", got, files)
	}
	if st.Appends < 3*files {
		t.Fatalf("%d records for %d files: the changes did not go to the log", st.Appends, files)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "small.a"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync through the view: %v", err)
	}
	if syncs() == before {
		t.Fatal("fsync through the view synced nothing")
	}
}
