package vfs

import (
	"errors"
	"io"
	"path/filepath"
	"syscall"
	"testing"
)

// runFS checks the behaviour every FS must share.
func runFS(t *testing.T, fs FS, root string) {
	dir := filepath.Join(root, "a", "b")
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("world"), 6); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 11 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	f.Close()

	r, err := fs.Open(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "hello world" {
		t.Fatalf("read %q %v", b, err)
	}
	p := make([]byte, 5)
	if n, err := r.ReadAt(p, 8); n != 3 || err != io.EOF {
		t.Fatalf("ReadAt past the end: %d %v", n, err)
	}
	if _, err := r.Write([]byte("x")); err == nil {
		t.Fatal("wrote through a read-only handle")
	}
	r.Close()

	rw, err := fs.OpenReadWrite(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.Truncate(5); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	if fi, err := fs.Stat(filepath.Join(dir, "f")); err != nil || fi.Size() != 5 || fi.IsDir() {
		t.Fatalf("after truncate: %v %v", fi, err)
	}
	if err := fs.Rename(filepath.Join(dir, "f"), filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	names, err := fs.List(dir)
	if err != nil || len(names) != 1 || names[0] != "g" {
		t.Fatalf("list: %v %v", names, err)
	}
	if err := fs.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Open(filepath.Join(dir, "f")); err == nil {
		t.Fatal("old name still opens after rename")
	}
	if err := fs.Remove(filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(filepath.Join(dir, "g")); err == nil {
		t.Fatal("removed file still there")
	}
}

func TestOSFS(t *testing.T)  { runFS(t, Default, t.TempDir()) }
func TestMemFS(t *testing.T) { runFS(t, NewMem(), "/data") }

func TestMemFSCrashDropsUnsynced(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string, sync bool) {
		f, err := m.OpenReadWrite(name)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if _, err := f.WriteAt([]byte(data), fi.Size()); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	write("/d/durable", "synced;", true)
	write("/d/durable", "lost", false)
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	write("/d/unlisted", "synced but its directory entry is not", true)
	if err := m.Remove("/d/durable"); err != nil { // remove not synced: undone
		t.Fatal(err)
	}

	c := m.Crash()
	f, err := c.Open("/d/durable")
	if err != nil {
		t.Fatalf("synced file lost: %v", err)
	}
	b, _ := io.ReadAll(f)
	if string(b) != "synced;" {
		t.Fatalf("after crash: %q", b)
	}
	if _, err := c.Stat("/d/unlisted"); err == nil {
		t.Fatal("a file whose directory was never synced survived")
	}
	// The crashed FS is independent of the old one.
	write("/d/durable", "more", true)
	if fi, _ := c.Stat("/d/durable"); fi.Size() != 7 {
		t.Fatalf("crash copy shares data: size %d", fi.Size())
	}
}

func TestErrorFS(t *testing.T) {
	fs := NewErrorFS(NewMem(), InjectAfter(OpWrite, 1, ErrNoSpace))
	if err := fs.MkdirAll("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("full")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("second write: %v", err)
	}
}

func TestMemFSKillKeepsUnsynced(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := m.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("synced;"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("written"), 7); err != nil {
		t.Fatal(err)
	}
	f.Close()
	k := m.Kill()
	g, err := k.Open("/d/f")
	if err != nil {
		t.Fatalf("written file lost at a kill: %v", err)
	}
	b, _ := io.ReadAll(g)
	if string(b) != "synced;written" {
		t.Fatalf("after kill: %q", b)
	}
	// What was synced before the kill is still all a power loss keeps.
	c := k.Crash()
	if _, err := c.Stat("/d/f"); err == nil {
		t.Fatal("a file whose directory was never synced survived a power loss after the kill")
	}
	if err := k.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	h, err := k.Crash().Open("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(h); string(b) != "synced;" {
		t.Fatalf("power loss after the kill kept %q, want the synced part", b)
	}
}
