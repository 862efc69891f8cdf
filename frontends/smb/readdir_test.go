package smb

import (
	"bytes"
	"context"
	"encoding/binary"
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
		n, err := eintr(func() (int, error) { return syscall.Getdents(fd, buf) })
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
	fd, err := eintr(func() (int, error) { return syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0) })
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
	fd, err := eintr(func() (int, error) { return syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0) })
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

// dirent is a name read with getdents64 and the offset after it.
type dirent struct {
	name string
	off  int64
}

// dirReader reads a directory as glibc's readdir, telldir and seekdir do:
// getdents64 into a buffer of the directory's block size (at least 32 KiB,
// at most 1 MiB), the offset of the last entry returned as the place, a
// seek that drops what the buffer holds.
type dirReader struct {
	t    *testing.T
	fd   int
	buf  []byte
	pend []dirent
	pos  int64
}

// eintr repeats a call the Go runtime's own signals interrupted: the
// kernel interrupts a FUSE request when its caller gets a signal, and the
// call ends in EINTR. The os package repeats these itself; these tests
// make the system calls directly, as smbd does.
func eintr[T any](call func() (T, error)) (T, error) {
	for {
		v, err := call()
		if err != syscall.EINTR {
			return v, err
		}
	}
}

func newDirReader(t *testing.T, fd int) *dirReader {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return &dirReader{t: t, fd: fd, buf: make([]byte, min(max(int(st.Blksize), 32<<10), 1<<20))}
}

func (r *dirReader) next() (dirent, bool) {
	for len(r.pend) == 0 {
		n, err := eintr(func() (int, error) { return syscall.Getdents(r.fd, r.buf) })
		if err != nil {
			r.t.Fatalf("getdents: %v", err)
		}
		if n == 0 {
			return dirent{}, false
		}
		for b := r.buf[:n]; len(b) > 0; {
			off := int64(binary.LittleEndian.Uint64(b[8:16]))
			reclen := int(binary.LittleEndian.Uint16(b[16:18]))
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			r.pend = append(r.pend, dirent{string(name), off})
			b = b[reclen:]
		}
	}
	e := r.pend[0]
	r.pend = r.pend[1:]
	r.pos = e.off
	return e, true
}

func (r *dirReader) seek(off int64) {
	if _, err := syscall.Seek(r.fd, off, 0); err != nil {
		r.t.Fatalf("seekdir %d: %v", off, err)
	}
	r.pend, r.pos = nil, off
}

// TestReaddirSeekBackAfterLookup reads a directory as smbd answers a
// search: it reads names, stats each one (a lookup the kernel had not
// cached) and, when the reply is full, seeks back to the place before
// the last name read, to read that name again for the next reply.
// Between two reads the kernel may change from READDIR to READDIRPLUS
// (its choice follows the lookups made meanwhile), whose entries are
// four times larger: the rest of the last READDIR's entries, which the
// seek back asks for again, then no longer fit in one reply. Every name
// shows exactly once (smbtorture's smb2.dir.many listed 570 of 700
// files once under load).
func TestReaddirSeekBackAfterLookup(t *testing.T) {
	f := start(t, fileshare.Config{Name: "v", Protocols: []string{"smb"}})
	ctx := context.Background()
	sh, _ := f.shares.Get("v")
	if _, err := sh.Mkdir(ctx, "many", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Made through the share, not the view: the kernel has no entry for
	// any of them, so a stat of one is a lookup.
	const files = 700
	want := map[string]bool{}
	for i := range files {
		name := fmt.Sprintf("t%03d-%d.txt", i, i)
		if _, err := sh.Create(ctx, "many/"+name, 0o644, 0, 0, true); err != nil {
			t.Fatal(err)
		}
		want[name] = true
	}
	dir := filepath.Join(f.dir, "mnt", "v", "many")
	for _, c := range []struct{ perReply, rewindAt int }{{34, 0}, {1, 0}, {7, 0}, {120, 0}, {34, 300}} {
		checkOnce(t, fmt.Sprintf("%d names a reply, rewound after %d", c.perReply, c.rewindAt), searchAll(t, dir, c.perReply, c.rewindAt), want)
	}
}

// searchAll lists dir as smbd answers a search of it: names read on one
// open handle, each one stat'ed (smbd leaves out a name it cannot stat),
// perReply names a reply and the name that did not fit read again for
// the next one. When rewindAt > 0, the handle is rewound once that many
// names were read, and the listing starts over (a restarted search).
func searchAll(t *testing.T, dir string, perReply, rewindAt int) []string {
	t.Helper()
	fd, err := eintr(func() (int, error) { return syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0) })
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	r := newDirReader(t, fd)
	var names []string
	for more := true; more; {
		for n := 0; ; n++ {
			if rewindAt > 0 && len(names) == rewindAt {
				r.seek(0)
				names, rewindAt = nil, 0
			}
			prev := r.pos
			e, ok := r.next()
			if !ok {
				more = false
				break
			}
			if e.name == "." || e.name == ".." {
				n--
				continue
			}
			var st syscall.Stat_t
			if _, err := eintr(func() (int, error) { return 0, syscall.Lstat(filepath.Join(dir, e.name), &st) }); err != nil {
				t.Errorf("stat of listed %s: %v", e.name, err)
			}
			if n == perReply {
				r.seek(prev)
				break
			}
			names = append(names, e.name)
		}
	}
	return names
}
