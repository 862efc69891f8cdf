package nfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gonfs "github.com/willscott/go-nfs"
	"github.com/willscott/go-nfs-client/nfs/xdr"

	"github.com/gatewayd/gatewayd/fileshare"
)

// dirPage is a parsed READDIR3res or READDIRPLUS3res.
type dirPage struct {
	status  gonfs.NFSStatus
	dir     *gonfs.FileAttribute
	verf    uint64
	entries []dirEntry
	eof     bool
	size    int // the reply from the status on, in bytes
}

type dirEntry struct {
	fileid uint64
	name   string
	cookie uint64
	attr   *gonfs.FileAttribute
	handle []byte
	dir    int // the entry's directory part, in bytes (as dircount counts)
}

func readdirArgs(fh []byte, cookie, verf uint64, dircount, maxcount uint32, plus bool) []byte {
	b := xdrOpaque(nil, fh)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, verf)
	b = binary.BigEndian.AppendUint32(b, dircount)
	if plus {
		b = binary.BigEndian.AppendUint32(b, maxcount)
	}
	return b
}

// readdirCall sends READDIR (plus false: dircount is its count) or
// READDIRPLUS and parses the reply.
func readdirCall(t *testing.T, c *rawConn, xid uint32, fh []byte, cookie, verf uint64, dircount, maxcount uint32, plus bool) dirPage {
	t.Helper()
	proc := uint32(procReaddir)
	if plus {
		proc = procReaddirplus
	}
	accept, body := c.call(xid, proc, readdirArgs(fh, cookie, verf, dircount, maxcount, plus))
	if accept != acceptSuccess {
		t.Fatalf("READDIR(PLUS) %d: accept_stat %d", xid, accept)
	}
	p, err := parseDirPage(body, plus)
	if err != nil {
		t.Fatalf("READDIR(PLUS) %d: %v", xid, err)
	}
	return p
}

func parseDirPage(body []byte, plus bool) (dirPage, error) {
	p := dirPage{size: len(body)}
	rd := bytes.NewReader(body)
	st, err := xdr.ReadUint32(rd)
	if err != nil {
		return p, err
	}
	p.status = gonfs.NFSStatus(st)
	if p.dir, err = parsePostOp(rd); err != nil || p.status != gonfs.NFSStatusOk {
		return p, err
	}
	u32 := func() uint32 { v, e := xdr.ReadUint32(rd); err = e; return v }
	u64 := func() uint64 { hi := u32(); return uint64(hi)<<32 | uint64(u32()) }
	p.verf = u64()
	for u32() == 1 && err == nil {
		start := rd.Len() + 4
		var e dirEntry
		e.fileid = u64()
		n := u32()
		name := make([]byte, (n+3)&^3)
		rd.Read(name)
		e.name = string(name[:n])
		e.cookie = u64()
		e.dir = start - rd.Len()
		if plus {
			if e.attr, err = parsePostOp(rd); err != nil {
				return p, err
			}
			if u32() == 1 {
				h := make([]byte, u32())
				rd.Read(h)
				e.handle = h
			}
		}
		p.entries = append(p.entries, e)
	}
	p.eof = u32() == 1
	if err == nil && rd.Len() != 0 {
		err = fmt.Errorf("%d bytes after the reply", rd.Len())
	}
	return p, err
}

// listAll lists a directory whole, page after page, checking the limits
// on every reply and that the verifier stays.
func listAll(t *testing.T, c *rawConn, fh []byte, dircount, maxcount uint32, plus bool) ([]dirEntry, uint64, int) {
	t.Helper()
	var all []dirEntry
	var cookie, verf uint64
	for calls := 1; ; calls++ {
		p := readdirCall(t, c, uint32(1000+calls), fh, cookie, verf, dircount, maxcount, plus)
		if p.status != gonfs.NFSStatusOk {
			t.Fatalf("call %d (cookie %d): status %d", calls, cookie, p.status)
		}
		if p.size > int(maxcount) {
			t.Fatalf("call %d: a reply of %d bytes, maxcount %d", calls, p.size, maxcount)
		}
		dir := 0
		for _, e := range p.entries {
			dir += e.dir
		}
		if dir > int(dircount) {
			t.Fatalf("call %d: %d bytes of directory information, dircount %d", calls, dir, dircount)
		}
		if verf != 0 && p.verf != verf {
			t.Fatalf("call %d: verifier %x, then %x, of a directory not changed", calls, verf, p.verf)
		}
		verf = p.verf
		all = append(all, p.entries...)
		if p.eof {
			return all, verf, calls
		}
		if len(p.entries) == 0 {
			t.Fatalf("call %d: no entries and not the end", calls)
		}
		cookie = p.entries[len(p.entries)-1].cookie
	}
}

// dirFixture is a share "s" with directory "d" of n files, a
// subdirectory and a link.
func dirFixture(t *testing.T, n int, configs ...fileshare.Config) (*fixture, *fileshare.Share, []byte, []string) {
	t.Helper()
	f := start(t, append([]fileshare.Config{{Name: "s"}}, configs...)...)
	ctx := context.Background()
	sh, err := f.shares.Get("s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Mkdir(ctx, "d", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	names := []string{"sub", "link"}
	if _, err := sh.Mkdir(ctx, "d/sub", 0o700, 7, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Symlink(ctx, "d/link", "sub", 9, 10); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("file-%05d%s", i, "abcdefg"[:i%8])
		if _, err := sh.Create(ctx, "d/"+name, 0o640, uint32(i), 5, true); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	a, err := sh.Stat(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	return f, sh, fileHandle(sh.Config().ID, a.Ino), names
}

// A directory of 2,000 entries listed page by page with small limits,
// READDIRPLUS and READDIR: "." and ".." first, then every name once, in
// order; every reply within maxcount and dircount, to the byte; the
// verifier the same on every page and on a listing again; each entry's
// attributes those GETATTR gives of its handle, and its handle LOOKUP's.
// The pages after the first read no listing from the share.
func TestReaddirPages(t *testing.T) {
	f, sh, dirFH, names := dirFixture(t, 2000)
	c := dialRaw(t, f.addr)
	ctx := context.Background()
	root, err := sh.Stat(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dirA, _ := sh.Stat(ctx, "d")
	for _, plus := range []bool{true, false} {
		dircount, maxcount := uint32(1000), uint32(4096)
		if !plus {
			dircount = 4096
		}
		read := listingsRead.Load()
		all, verf, calls := listAll(t, c, dirFH, dircount, maxcount, plus)
		if calls < 20 {
			t.Fatalf("plus %v: %d calls for %d entries", plus, calls, len(names))
		}
		if got := listingsRead.Load() - read; got != 1 {
			t.Errorf("plus %v: the directory read from the share %d times in a listing of %d calls", plus, got, calls)
		}
		var got []string
		for i, e := range all {
			got = append(got, e.name)
			if e.cookie != uint64(i+1) {
				t.Fatalf("entry %d (%s): cookie %d", i, e.name, e.cookie)
			}
		}
		if len(got) < 2 || got[0] != "." || got[1] != ".." || !slices.Equal(got[2:], names) {
			t.Fatalf("plus %v: %d entries %q..., want . .. and %d names", plus, len(got), got[:min(5, len(got))], len(names))
		}
		if all[0].fileid != dirA.Ino || all[1].fileid != root.Ino {
			t.Errorf(". and ..: fileids %d %d, want %d %d", all[0].fileid, all[1].fileid, dirA.Ino, root.Ino)
		}
		if _, again, _ := listAll(t, c, dirFH, dircount, maxcount, plus); again != verf {
			t.Errorf("plus %v: verifier %x, then %x, of a directory not changed", plus, verf, again)
		}
		if !plus {
			continue
		}
		for i, e := range all[2:] {
			if i%97 != 0 && e.name != "sub" && e.name != "link" {
				continue
			}
			a, err := sh.Stat(ctx, "d/"+e.name)
			if err != nil {
				t.Fatal(err)
			}
			if want := fileHandle(sh.Config().ID, a.Ino); !bytes.Equal(e.handle, want) || e.fileid != a.Ino {
				t.Fatalf("%s: handle %x fileid %d, want %x %d", e.name, e.handle, e.fileid, want, a.Ino)
			}
			accept, body := c.call(uint32(5000+i), procGetattr, xdrOpaque(nil, e.handle))
			ga := new(gonfs.FileAttribute)
			if accept != acceptSuccess || binary.BigEndian.Uint32(body) != 0 || xdr.Read(bytes.NewReader(body[4:]), ga) != nil {
				t.Fatalf("GETATTR of %s: %d %x", e.name, accept, body)
			}
			if e.attr == nil || *e.attr != *ga {
				t.Fatalf("%s: READDIRPLUS attributes %+v, GETATTR's %+v", e.name, e.attr, ga)
			}
			lookup := xdrOpaque(xdrOpaque(nil, dirFH), []byte(e.name))
			accept, body = c.call(uint32(9000+i), 3, lookup)
			if accept != acceptSuccess || binary.BigEndian.Uint32(body) != 0 || !bytes.Equal(body[8:8+handleLen], e.handle) {
				t.Fatalf("LOOKUP of %s: %d %x, READDIRPLUS's handle %x", e.name, accept, body, e.handle)
			}
		}
	}
}

// A listing continued with the verifier of a directory changed since
// gets NFS3ERR_BAD_COOKIE, as does a cookie past the end; a listing again
// has a new verifier and the new name. A verifier of 0 is not checked.
func TestReaddirVerifier(t *testing.T) {
	f, sh, dirFH, names := dirFixture(t, 300)
	c := dialRaw(t, f.addr)
	first := readdirCall(t, c, 1, dirFH, 0, 0, 1000, 4096, true)
	if first.status != gonfs.NFSStatusOk || first.eof || first.verf == 0 {
		t.Fatalf("first page: status %d eof %v verifier %x", first.status, first.eof, first.verf)
	}
	next := first.entries[len(first.entries)-1].cookie
	if p := readdirCall(t, c, 2, dirFH, uint64(len(names))+3, first.verf, 1000, 4096, true); p.status != gonfs.NFSStatusBadCookie {
		t.Errorf("a cookie past the end: status %d", p.status)
	}
	if p := readdirCall(t, c, 3, dirFH, uint64(len(names))+2, first.verf, 1000, 4096, true); p.status != gonfs.NFSStatusOk || !p.eof || len(p.entries) != 0 {
		t.Errorf("the last cookie: status %d, eof %v, %d entries", p.status, p.eof, len(p.entries))
	}
	if _, err := sh.Create(context.Background(), "d/aaa-new", 0o644, 0, 0, true); err != nil {
		t.Fatal(err)
	}
	p := readdirCall(t, c, 4, dirFH, next, first.verf, 1000, 4096, true)
	if p.status != gonfs.NFSStatusBadCookie || p.dir == nil {
		t.Fatalf("continued after a create: status %d, directory attributes %v", p.status, p.dir)
	}
	all, verf, _ := listAll(t, c, dirFH, 1000, 4096, true)
	if verf == first.verf || len(all) != len(names)+3 || all[2].name != "aaa-new" {
		t.Fatalf("listed again: verifier %x (was %x), %d entries, first %q", verf, first.verf, len(all), all[2].name)
	}
	if p := readdirCall(t, c, 5, dirFH, next, 0, 1000, 4096, true); p.status != gonfs.NFSStatusOk || len(p.entries) == 0 {
		t.Errorf("verifier 0: status %d, %d entries", p.status, len(p.entries))
	}
}

// Limits: a maxcount or count with no room for one entry is
// NFS3ERR_TOOSMALL; one with room for exactly k entries gets k; a count
// over the largest transfer is taken as that. Errors: a file is
// NFS3ERR_NOTDIR, a stale handle NFS3ERR_STALE, a client the share does
// not allow NFS3ERR_ACCES, arguments cut short GARBAGE_ARGS.
func TestReaddirLimitsAndErrors(t *testing.T) {
	f, sh, dirFH, names := dirFixture(t, 50, fileshare.Config{Name: "other", Clients: []string{"127.0.0.2/32"}})
	c := dialRaw(t, f.addr)
	if p := readdirCall(t, c, 1, dirFH, 0, 0, 1000, resHead+resTail+10, true); p.status != gonfs.NFSStatusTooSmall {
		t.Errorf("READDIRPLUS with maxcount for no entry: status %d", p.status)
	}
	if p := readdirCall(t, c, 2, dirFH, 0, 0, 10, 4096, true); p.status != gonfs.NFSStatusTooSmall {
		t.Errorf("READDIRPLUS with dircount for no entry: status %d", p.status)
	}
	if p := readdirCall(t, c, 3, dirFH, 0, 0, resHead+resTail+10, 0, false); p.status != gonfs.NFSStatusTooSmall {
		t.Errorf("READDIR with count for no entry: status %d", p.status)
	}
	// Entries from cookie 2 on: file names of 10 to 17 bytes, "link", "sub".
	whole := readdirCall(t, c, 4, dirFH, 2, 0, 1<<20, 1<<20, true)
	if !whole.eof || len(whole.entries) != len(names) {
		t.Fatalf("whole: eof %v, %d entries", whole.eof, len(whole.entries))
	}
	for k := 1; k < 6; k++ {
		size, dir := resHead+resTail, 0
		for _, e := range whole.entries[:k] {
			size += e.dir + entryPlus
			dir += e.dir
		}
		for _, lim := range []struct{ dircount, maxcount int }{{1 << 20, size}, {1 << 20, size + entryPlus}, {dir, 1 << 20}, {dir + 7, 1 << 20}} {
			p := readdirCall(t, c, uint32(10+k), dirFH, 2, 0, uint32(lim.dircount), uint32(lim.maxcount), true)
			if p.status != gonfs.NFSStatusOk || len(p.entries) != k || p.eof || p.size > lim.maxcount {
				t.Errorf("room for %d entries (dircount %d, maxcount %d): status %d, %d entries, %d bytes, eof %v",
					k, lim.dircount, lim.maxcount, p.status, len(p.entries), p.size, p.eof)
			}
		}
	}
	if p := readdirCall(t, c, 20, dirFH, 0, 0, 1<<30, 1<<30, true); p.status != gonfs.NFSStatusOk || !p.eof {
		t.Errorf("counts of 1 GiB: status %d eof %v", p.status, p.eof)
	}
	a, _ := sh.Stat(context.Background(), "d/sub")
	stale := fileHandle(sh.Config().ID, 1<<40)
	other, _ := f.shares.Get("other")
	otherRoot, _ := other.Stat(context.Background(), "")
	fileA, _ := sh.Stat(context.Background(), "d/"+names[0])
	for _, k := range []struct {
		name string
		fh   []byte
		want gonfs.NFSStatus
	}{
		{"a file", fileHandle(sh.Config().ID, fileA.Ino), gonfs.NFSStatusNotDir},
		{"a stale handle", stale, gonfs.NFSStatusStale},
		{"a share not open to this client", fileHandle(other.Config().ID, otherRoot.Ino), gonfs.NFSStatusAccess},
		{"a subdirectory", fileHandle(sh.Config().ID, a.Ino), gonfs.NFSStatusOk},
	} {
		for _, plus := range []bool{true, false} {
			if p := readdirCall(t, c, 30, k.fh, 0, 0, 4096, 4096, plus); p.status != k.want {
				t.Errorf("%s (plus %v): status %d, want %d", k.name, plus, p.status, k.want)
			}
		}
	}
	if accept, _ := c.call(40, procReaddirplus, xdrOpaque(nil, dirFH)); accept != acceptGarbageArgs {
		t.Errorf("arguments cut short: accept_stat %d", accept)
	}
}

// libnfs's nfs-ls lists a directory of 3,000 entries (several
// READDIRPLUS replies) whole: every name once, with the sizes and modes
// the share keeps.
func TestReaddirLibnfs(t *testing.T) {
	f, _, _, names := dirFixture(t, 3000)
	out, err := libnfs(t, "nfs-ls", f.url("s", "d"))
	if err != nil {
		t.Fatalf("nfs-ls: %v\n%s", err, out)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		name := fields[len(fields)-1]
		seen[name]++
		if strings.HasPrefix(name, "file-") && !strings.HasPrefix(line, "-rw-r-----") {
			t.Errorf("nfs-ls: %q: want mode -rw-r-----", line)
		}
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Fatalf("nfs-ls: %s listed %d times\n%s", n, seen[n], out[:min(len(out), 2000)])
		}
	}
	if len(seen) > len(names)+2 {
		t.Errorf("nfs-ls: %d names, want %d (and . ..)", len(seen), len(names))
	}
}

// The snapshots kept stay within their bounds: past maxSnapshots
// directories the least recently used goes; one idle past snapshotIdle
// goes at the next put; the entries counted are those kept.
func TestReaddirSnapshotBounds(t *testing.T) {
	sc := snapshotCache{m: map[snapshotKey]*snapshot{}}
	t0 := time.Now()
	key := func(i int) snapshotKey { return snapshotKey{ino: uint64(i), verf: 1} }
	for i := range maxSnapshots + 10 {
		sc.put(key(i), &snapshot{entries: make([]fileshare.DirEntry, 3), used: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	if len(sc.m) != maxSnapshots || sc.entries != 3*maxSnapshots || sc.m[key(9)] != nil || sc.m[key(10)] == nil {
		t.Fatalf("%d snapshots, %d entries; the 10th kept %v, the 11th %v", len(sc.m), sc.entries, sc.m[key(9)] != nil, sc.m[key(10)] != nil)
	}
	later := t0.Add(snapshotIdle + time.Second)
	sc.m[key(100)].used = later
	sc.put(key(-1), &snapshot{entries: make([]fileshare.DirEntry, 5), used: later})
	if len(sc.m) != 2 || sc.entries != 8 || sc.m[key(100)] == nil {
		t.Fatalf("after the idle ones expired: %d snapshots, %d entries", len(sc.m), sc.entries)
	}
}
