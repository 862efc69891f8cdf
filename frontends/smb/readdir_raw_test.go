package smb

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// rawView is the view of a share as the kernel sees it, with the options
// of a mounted view but without a mount: FUSE requests are made by the
// test.
func rawView(t *testing.T, files int) (fuse.RawFileSystem, map[string]bool) {
	t.Helper()
	m := newManager(t, t.TempDir(), fileshare.Options{Store: mem.New("smb"), SettleTime: time.Hour})
	if _, err := m.Create(context.Background(), fileshare.Config{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	sh, _ := m.Get("v")
	want := map[string]bool{}
	for i := range files {
		name := fmt.Sprintf("t%03d-%d.txt", i, i)
		if _, err := sh.Create(context.Background(), name, 0o644, 0, 0, true); err != nil {
			t.Fatal(err)
		}
		want[name] = true
	}
	return newRawFS(&node{share: sh, log: discardLogger()}, viewOptions(sh, discardLogger())), want
}

// readAt asks for the directory's entries from offset off in a reply of
// size bytes, as the kernel does for a getdents of that size after a
// seek to off.
func readAt(t *testing.T, raw fuse.RawFileSystem, fh uint64, off uint64, size uint32) []fuse.DirEntry {
	t.Helper()
	in := &fuse.ReadIn{Fh: fh, Offset: off, Size: size}
	in.NodeId = fuse.FUSE_ROOT_ID
	buf := make([]byte, size)
	out := fuse.NewDirEntryList(buf, off)
	if st := raw.ReadDir(nil, in, out); !st.Ok() {
		t.Fatalf("readdir at %d: %v", off, st)
	}
	return parseDirents(out.Bytes())
}

func parseDirents(b []byte) []fuse.DirEntry {
	es, err := fuse.ParseDirEntries(b)
	if err != nil {
		panic(err)
	}
	return es
}

// TestReaddirSmallerReadAfterSeekBack reads a directory as smbd does,
// through the FUSE requests the kernel makes: a read that takes the whole
// listing, a seek back to the last entry that fitted in the SMB reply, and
// a read from there whose buffer holds fewer entries than the rest of the
// listing (the kernel asked with one page instead of smbd's 1 MiB, traced
// on a loaded machine); then reads on to the end. Every name comes once.
// go-fuse answered such a read from its last reply and dropped what did
// not fit: smbtorture's smb2.dir.many listed 193 (686, 331) of 700 files.
func TestReaddirSmallerReadAfterSeekBack(t *testing.T) {
	const files = 700
	for _, c := range []struct{ seek, small uint64 }{{38, 1024}, {90, 4096}, {661, 1024}, {0, 1024}} {
		raw, want := rawView(t, files)
		var oo fuse.OpenOut
		in := &fuse.OpenIn{}
		in.NodeId = fuse.FUSE_ROOT_ID
		if st := raw.OpenDir(nil, in, &oo); !st.Ok() {
			t.Fatal(st)
		}
		all := readAt(t, raw, oo.Fh, 0, 1<<20)
		if len(all) != files {
			t.Fatalf("first read: %d entries", len(all))
		}
		var names []string
		for _, e := range all[:c.seek] {
			names = append(names, e.Name)
		}
		off := c.seek
		size := uint32(c.small)
		for {
			es := readAt(t, raw, oo.Fh, off, size)
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				names = append(names, e.Name)
			}
			off = es[len(es)-1].Off
			size = 1 << 20
		}
		checkOnce(t, fmt.Sprintf("seek back to %d, then a read of %d bytes", c.seek, c.small), names, want)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
