package smb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/fileshare"
)

// readNames reads directory entries from fd with getdents64 until the
// end, or until max names were read when max > 0 (a small buffer, so a
// listing takes several READDIR requests, as smbd's do).
func readNames(t *testing.T, fd, max int) []string {
	t.Helper()
	var names []string
	buf := make([]byte, 1024)
	for max <= 0 || len(names) < max {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents: %v", err)
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(b[16]) | int(b[17])<<8
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				names = append(names, s)
			}
			b = b[reclen:]
		}
	}
	return names
}

// checkOnce fails unless names holds each of want exactly once, and
// nothing else.
func checkOnce(t *testing.T, what string, names []string, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, n := range names {
		seen[n]++
	}
	var missing, twice, extra int
	for n := range want {
		switch seen[n] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	for n := range seen {
		if !want[n] {
			extra++
		}
	}
	if missing+twice+extra > 0 {
		t.Fatalf("%s: %d names read for %d files: %d missing, %d more than once, %d not made", what, len(names), len(want), missing, twice, extra)
	}
}

// TestReaddirWhileUploading lists a directory of 700 new files through
// the view, as smbd does for smbtorture's smb2.dir.many: in small batches
// on one handle, with every file's upload ending between two batches (the
// files move from the not-yet-uploaded set to the store listing), then
// after files are made and a rewind (a search restarted on the same
// handle). Every name shows exactly once each time.
func TestReaddirWhileUploading(t *testing.T) {
	f := start(t, fileshare.Config{Name: "v", Protocols: []string{"smb"}})
	ctx := context.Background()
	sh, _ := f.shares.Get("v")
	dir := filepath.Join(f.dir, "mnt", "v", "many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	create := func(from, to int) {
		for i := from; i < to; i++ {
			name := fmt.Sprintf("f%04d.txt", i)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
				t.Fatal(err)
			}
			want[name] = true
		}
	}
	create(0, 350)
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	first := readNames(t, fd, 50)
	// Every upload ends before the rest is read.
	if err := f.shares.Flush(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, "read across uploads", append(first, readNames(t, fd, 0)...), want)

	create(350, 700)
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	first = readNames(t, fd, 50)
	if err := f.shares.Flush(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, "read after a rewind", append(first, readNames(t, fd, 0)...), want)
	if _, err := sh.Stat(ctx, "many/f0699.txt"); err != nil {
		t.Fatal(err)
	}
}

// TestReaddirRewindAfterEmpty reads a directory to its end while it is
// empty, makes files in it, rewinds the same handle and reads again: the
// files show, as on a local filesystem. An SMB client's restarted search
// on a directory handle it listed while empty is such a rewind; the kernel
// asks again from offset 0, the offset the empty listing ended at.
func TestReaddirRewindAfterEmpty(t *testing.T) {
	f := start(t, fileshare.Config{Name: "v", Protocols: []string{"smb"}})
	dir := filepath.Join(f.dir, "mnt", "v", "later")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if names := readNames(t, fd, 0); len(names) != 0 {
		t.Fatalf("a new directory lists %q", names)
	}
	want := map[string]bool{}
	for i := range 40 {
		name := fmt.Sprintf("f%02d.txt", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = true
	}
	if _, err := syscall.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, "read after a rewind of an empty listing", readNames(t, fd, 0), want)
	// Read again at the end without a rewind: nothing more.
	if names := readNames(t, fd, 0); len(names) != 0 {
		t.Fatalf("a read at the end lists %q", names)
	}
}
