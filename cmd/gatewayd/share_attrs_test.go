package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/internal/faultproxy"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// stored is what a test set on a path over NFS.
type stored struct {
	dir      bool
	mode     uint32
	uid, gid uint32
	mtime    time.Time
	size     uint64
}

// waitUploaded waits (with a deadline) until no file of share has writes
// the store has not seen.
func waitUploaded(t *testing.T, dir, share string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, ok := metric(t, dir, fmt.Sprintf(`gatewayd_share_files_pending{share=%q}`, share))
		if ok && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("share %s: %v files still pending after 3 minutes", share, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func nfsTimeEqual(a nfsc.NFS3Time, b time.Time) bool {
	return int64(a.Seconds) == b.Unix() && int64(a.Nseconds) == int64(b.Nanosecond())
}

// checkAttrs compares, for every path, what GETATTR, LOOKUP and
// READDIRPLUS (the Go client's and libnfs's nfs-ls) say with what was
// stored.
func checkAttrs(t *testing.T, addr, share, url string, tree map[string]stored, when string) {
	t.Helper()
	v, done := nfsMount(t, addr, share)
	defer done()
	listed := map[string]nfsc.Fattr{}
	lsLines := map[string][]string{}
	dirs := map[string]bool{"": true}
	for p, s := range tree {
		if s.dir {
			dirs[p] = true
		}
	}
	for d := range dirs {
		ents, err := v.ReadDirPlus(d)
		if err != nil {
			t.Fatalf("%s: READDIRPLUS %q: %v", when, d, err)
		}
		for _, e := range ents {
			if !e.Attr.IsSet {
				t.Fatalf("%s: READDIRPLUS %q: no attributes for %s", when, d, e.FileName)
			}
			listed[path.Join(d, e.FileName)] = e.Attr.Attr
		}
		out := nfsTool(t, "nfs-ls", strings.Replace(url, "/"+share+"/", "/"+share+"/"+d, 1))
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 {
				lsLines[path.Join(d, f[len(f)-1])] = f
			}
		}
	}
	for p, s := range tree {
		lookup, _, err := v.Lookup(p)
		if err != nil {
			t.Fatalf("%s: LOOKUP %s: %v", when, p, err)
		}
		getattr, err := v.Getattr(p)
		if err != nil {
			t.Fatalf("%s: GETATTR %s: %v", when, p, err)
		}
		rdp, ok := listed[p]
		if !ok {
			t.Fatalf("%s: %s not in READDIRPLUS", when, p)
		}
		for _, got := range []struct {
			how string
			a   nfsc.Fattr
		}{{"GETATTR", *getattr}, {"LOOKUP", *lookup.(*nfsc.Fattr)}, {"READDIRPLUS", rdp}} {
			a := got.a
			if a.FileMode&0o7777 != s.mode || a.UID != s.uid || a.GID != s.gid || !nfsTimeEqual(a.Mtime, s.mtime) || (!s.dir && a.Filesize != s.size) {
				t.Errorf("%s: %s %s: mode %o uid %d gid %d mtime %d.%09d size %d; stored mode %o uid %d gid %d mtime %v size %d",
					when, got.how, p, a.FileMode&0o7777, a.UID, a.GID, a.Mtime.Seconds, a.Mtime.Nseconds, a.Filesize, s.mode, s.uid, s.gid, s.mtime, s.size)
			}
		}
		// nfs-ls: mode string, links, uid, gid, size, name.
		f := lsLines[p]
		if len(f) < 6 {
			t.Errorf("%s: nfs-ls does not list %s", when, p)
			continue
		}
		if perm := modeString(s.mode, s.dir); f[0] != perm || f[2] != strconv.Itoa(int(s.uid)) || f[3] != strconv.Itoa(int(s.gid)) {
			t.Errorf("%s: nfs-ls %s: %v; stored %s uid %d gid %d", when, p, f, perm, s.uid, s.gid)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkView compares what the share's SMB view (the FUSE mount smbd
// serves) says of every path, looked up and listed, with what was stored.
func checkView(t *testing.T, view string, tree map[string]stored, when string) {
	t.Helper()
	listed := map[string]os.FileInfo{}
	for p, s := range tree {
		if !s.dir {
			continue
		}
		for _, d := range []string{p, path.Dir(p)} {
			ents, err := os.ReadDir(filepath.Join(view, d))
			if err != nil {
				t.Fatalf("%s: SMB view: readdir %s: %v", when, d, err)
			}
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatalf("%s: SMB view: %s/%s: %v", when, d, e.Name(), err)
				}
				listed[path.Join(d, e.Name())] = fi
			}
		}
	}
	for p, s := range tree {
		st, err := os.Lstat(filepath.Join(view, p))
		if err != nil {
			t.Fatalf("%s: SMB view: lstat %s: %v", when, p, err)
		}
		l, ok := listed[p]
		if !ok {
			t.Fatalf("%s: SMB view: %s not listed", when, p)
		}
		for _, got := range []struct {
			how string
			fi  os.FileInfo
		}{{"lstat", st}, {"listing", l}} {
			sys := got.fi.Sys().(*syscall.Stat_t)
			if uint32(got.fi.Mode().Perm()) != s.mode || sys.Uid != s.uid || sys.Gid != s.gid || !got.fi.ModTime().Equal(s.mtime) {
				t.Errorf("%s: SMB view %s %s: mode %o uid %d gid %d mtime %v; stored mode %o uid %d gid %d mtime %v",
					when, got.how, p, got.fi.Mode().Perm(), sys.Uid, sys.Gid, got.fi.ModTime(), s.mode, s.uid, s.gid, s.mtime)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// modeString is ls -l's rendering of permission bits.
func modeString(mode uint32, dir bool) string {
	b := []byte("-rwxrwxrwx")
	if dir {
		b[0] = 'd'
	}
	for i := 0; i < 9; i++ {
		if mode&(1<<(8-i)) == 0 {
			b[1+i] = '-'
		}
	}
	return string(b)
}

// TestShareAttributesEveryPath: a tree of files and directories with
// distinct modes, owners and times shows the same stored attributes over
// GETATTR, LOOKUP and READDIRPLUS (Go client and libnfs) and in the SMB
// view (lookup and listing), as written,
// after a daemon restart, after `share refresh` and after the attribute
// TTL expired. Listings used to show the share's defaults.
func TestShareAttributesEveryPath(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "attrs")
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://attrs/gw"}, minioFlags(srv)...)...)
	const ttl = 2 * time.Second
	setConfig(t, dir, map[string]map[string]any{"shares": {"attr_ttl": ttl.String()}})
	smbtest.Require(t)
	t.Cleanup(func() { cleanSMB(dir) })
	d := serve(t, dir, "--smb-listen", freeport.Addr(t))
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "tree", "--protocols", "nfs,smb")
	view := viewDir(t, dir, "tree")
	tree := map[string]stored{}
	check := func(addr, url, when string) {
		t.Helper()
		checkAttrs(t, addr, "tree", url, tree, when)
		checkView(t, view, tree, when)
	}
	url := shareInfo(t, dir, "tree").Mount.URL
	addr := nfsAddr(t, dir)

	v, done := nfsMount(t, addr, "tree")
	set := func(p string, s stored) {
		t.Helper()
		err := v.Setattr(p, nfsc.Sattr3{
			Mode:  nfsc.SetMode{SetIt: true, Mode: s.mode},
			UID:   nfsc.SetUID{SetIt: true, UID: s.uid},
			GID:   nfsc.SetUID{SetIt: true, UID: s.gid},
			Mtime: nfsc.SetTime{SetIt: nfsc.SetToClientTime, Time: nfsc.NFS3Time{Seconds: uint32(s.mtime.Unix()), Nseconds: uint32(s.mtime.Nanosecond())}},
		})
		if err != nil {
			t.Fatalf("SETATTR %s: %v", p, err)
		}
		tree[p] = s
	}
	dirs := []string{"d1", "d1/d2", "d3"}
	for _, p := range dirs {
		if _, err := v.Mkdir(p, 0o755); err != nil {
			t.Fatalf("MKDIR %s: %v", p, err)
		}
	}
	for i, p := range []string{"f0", "d1/f1", "d1/f2", "d1/d2/f3", "d3/f4", "d3/f5"} {
		f, err := v.OpenFile(p, 0o644)
		if err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		content := strings.Repeat(fmt.Sprint(i), 100+i)
		if _, err := io.WriteString(f, content); err != nil {
			t.Fatal(err)
		}
		f.Close()
		set(p, stored{mode: 0o600 + uint32(i)*0o10 + uint32(i%2)*4, uid: 1000 + uint32(i), gid: 100 + uint32(i),
			mtime: time.Unix(1_600_000_000+int64(i)*1000, int64(i)*7), size: uint64(len(content))})
	}
	// The directories' attributes last: a create in a directory moves its times.
	for i, p := range dirs {
		set(p, stored{dir: true, mode: 0o700 + uint32(i)*0o10, uid: 2000 + uint32(i), gid: 3000 + uint32(i),
			mtime: time.Unix(1_500_000_000+int64(i)*1000, int64(i)*1000)})
	}
	done()
	waitUploaded(t, dir, "tree")
	check(addr, url, "as written")

	d.stop(t)
	d = serve(t, dir)
	addr = nfsAddr(t, dir)
	url = shareInfo(t, dir, "tree").Mount.URL
	check(addr, url, "after a restart")

	mustRun(t, "share", "refresh", "--data-dir", dir, "tree")
	check(addr, url, "after share refresh")

	// The condition under test is time itself: what the share read from
	// the store is older than attr_ttl, so it reads it again.
	time.Sleep(ttl + time.Second)
	check(addr, url, "after the attribute TTL")
	d.stop(t)
}

// TestShareWorksThroughOutage: with the store behind a proxy in outage,
// creates, writes, renames, removes, mkdir and symlink over NFS in a
// directory the gateway knows succeed (the remove of a file uploaded before, too, and
// the rename of a directory tree the gateway has listed, with files
// uploaded before and made in the outage); a kill -9 after them loses
// nothing the server acknowledged; after the outage everything reaches the
// bucket, the tree under its new keys only.
func TestShareWorksThroughOutage(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "away")
	proxy, err := faultproxy.Start(srv.Endpoint, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir, "--store", "s3://away/gw", "--s3-endpoint", proxy.URL(), "--s3-path-style",
		"--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey)
	// A store call gives up after a few quick attempts (the test client
	// waits 5 s for a reply), then the share answers from what it knows.
	// What the share read from the store is soon old (attr_ttl), so calls
	// in the outage do find the store away.
	const ttl = time.Second
	setConfig(t, dir, map[string]map[string]any{
		"store":  {"retry": map[string]any{"max_attempts": 3, "base_delay": "50ms", "max_delay": "200ms"}},
		"shares": {"attr_ttl": ttl.String()},
	})
	d := serve(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "w")
	v, done := nfsMount(t, nfsAddr(t, dir), "w")
	write := func(p, content string) {
		t.Helper()
		f, err := v.OpenFile(p, 0o640)
		if err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		if _, err := io.WriteString(f, content); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close %s: %v", p, err)
		}
	}
	if _, err := v.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	write("d/old", "before the outage\n")
	waitObject(t, srv, "away", "gw/w/d/old", []byte("before the outage\n"))
	// Uploaded before the outage, renamed or changed in it.
	uploaded := map[string]string{"d/kept": "renamed in the outage after its upload\n", "d/chm": "chmod in the outage after its upload\n"}
	write("d/keep", uploaded["d/kept"])
	write("d/chm", uploaded["d/chm"])
	if _, err := v.Mkdir("d/edir", 0o710); err != nil {
		t.Fatal(err)
	}
	// A tree uploaded before the outage, renamed in it (d/tree to
	// d/renamed) with a file made in it: what each holds under d/renamed.
	tree := map[string]string{
		"a":          "top of the tree, changed in the outage\n",
		"sub/b":      "one level down\n",
		"sub/deep/c": "two levels down\n",
		"sub/fresh":  "made in the outage, then the tree renamed\n",
	}
	treeDirs := map[string]uint32{"": 0o750, "sub": 0o751, "sub/deep": 0o755}
	for _, p := range []string{"", "sub", "sub/deep"} {
		if _, err := v.Mkdir(path.Join("d/tree", p), os.FileMode(treeDirs[p])); err != nil {
			t.Fatal(err)
		}
	}
	write("d/tree/a", "top of the tree\n")
	for _, p := range []string{"sub/b", "sub/deep/c"} {
		write("d/tree/"+p, tree[p])
	}
	waitUploaded(t, dir, "w")
	for _, p := range []string{".", "d", "d/tree", "d/tree/sub", "d/tree/sub/deep"} {
		if _, err := v.ReadDirPlus(p); err != nil { // the gateway knows the directories
			t.Fatal(err)
		}
	}
	_, fhB, err := v.Lookup("d/tree/sub/b") // a handle taken before the rename
	if err != nil {
		t.Fatal(err)
	}

	proxy.SetOutage(true)
	time.Sleep(ttl) // the condition under test: all the share knows is older than attr_ttl
	// How long each step takes in the outage (the first waits for the
	// store's retries), for the log.
	last := time.Now()
	mark := func(step string) {
		t.Logf("in the outage: %s took %v", step, time.Since(last).Round(time.Millisecond))
		last = time.Now()
	}
	want := map[string]string{
		"d/new":      "created and written in the outage\n",
		"d/moved":    "renamed in the outage\n",
		"d/sub/deep": "in a directory made in the outage\n",
	}
	write("d/new", want["d/new"])
	mark("create and write d/new")
	write("d/tmp", want["d/moved"])
	if err := v.Rename("d/tmp", "d/moved"); err != nil {
		t.Fatalf("rename in the outage: %v", err)
	}
	mark("create, write, rename d/tmp")
	write("d/gone", "removed in the outage\n")
	if err := v.Remove("d/gone"); err != nil {
		t.Fatalf("remove in the outage: %v", err)
	}
	if _, err := v.Mkdir("d/sub", 0o750); err != nil {
		t.Fatalf("mkdir in the outage: %v", err)
	}
	write("d/sub/deep", want["d/sub/deep"])
	if _, err := v.Mkdir("d/rmd", 0o755); err != nil {
		t.Fatalf("mkdir in the outage: %v", err)
	}
	if err := v.RmDir("d/rmd"); err != nil {
		t.Fatalf("rmdir in the outage: %v", err)
	}
	mark("remove, mkdir, rmdir, create, write")
	if err := v.Remove("d/old"); err != nil {
		t.Fatalf("remove of a file uploaded before the outage: %v", err)
	}
	mark("remove d/old")
	if err := v.RmDir("d/sub"); err == nil {
		t.Fatal("rmdir of a directory holding a file not uploaded succeeded")
	}
	ents, err := v.ReadDirPlus("d")
	if err != nil {
		t.Fatalf("READDIRPLUS in the outage: %v", err)
	}
	mark("rmdir d/sub, READDIRPLUS d")
	if err := v.Rename("d/keep", "d/kept"); err != nil {
		t.Fatalf("rename of a file uploaded before the outage: %v", err)
	}
	mark("rename d/keep")
	if err := v.Rename("d/edir", "d/edir2"); err != nil {
		t.Fatalf("rename of an empty directory uploaded before the outage: %v", err)
	}
	mark("rename d/edir")
	if err := v.Setattr("d/chm", nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o600}}); err != nil {
		t.Fatalf("chmod of a file uploaded before the outage: %v", err)
	}
	mark("chmod d/chm")
	// Symbolic links made in the outage: one kept, one renamed and one
	// removed before their upload.
	links := map[string]string{"d/ln": "new", "d/lnmoved": "../d/renamed/sub/deep"}
	if err := v.Symlink(links["d/ln"], "d/ln"); err != nil {
		t.Fatalf("symlink in the outage: %v", err)
	}
	if err := v.Symlink(links["d/lnmoved"], "d/lntmp"); err != nil {
		t.Fatalf("symlink in the outage: %v", err)
	}
	if err := v.Rename("d/lntmp", "d/lnmoved"); err != nil {
		t.Fatalf("rename of a symlink made in the outage: %v", err)
	}
	if err := v.Symlink("removed in the outage", "d/lngone"); err != nil {
		t.Fatalf("symlink in the outage: %v", err)
	}
	if err := v.Remove("d/lngone"); err != nil {
		t.Fatalf("remove of a symlink made in the outage: %v", err)
	}
	mark("symlink d/ln, d/lntmp, d/lngone, rename d/lntmp, remove d/lngone")
	checkLinks := func(v *nfsc.Target, when string) {
		t.Helper()
		for p, target := range links {
			fi, _, err := v.Lookup(p)
			if err != nil {
				t.Fatalf("LOOKUP %s %s: %v", p, when, err)
			}
			if a, ok := fi.(*nfsc.Fattr); !ok || a.Type != nfsc.NF3Lnk || a.Filesize != uint64(len(target)) {
				t.Fatalf("LOOKUP %s %s: %+v, want a symbolic link of %d bytes", p, when, fi, len(target))
			}
			f, err := v.Open(p)
			if err != nil {
				t.Fatalf("open %s %s: %v", p, when, err)
			}
			got, err := f.Readlink()
			f.Close()
			if err != nil || got != target {
				t.Fatalf("READLINK %s %s: %q %v, want %q", p, when, got, err, target)
			}
		}
		for _, p := range []string{"d/lntmp", "d/lngone"} {
			if _, _, err := v.Lookup(p); err == nil {
				t.Fatalf("LOOKUP of %s %s: it is there", p, when)
			}
		}
	}
	checkLinks(v, "in the outage")
	write("d/tree/a", tree["a"]) // uploaded before, changed in the outage
	write("d/tree/sub/fresh", tree["sub/fresh"])
	if err := v.Rename("d/tree", "d/renamed"); err != nil {
		t.Fatalf("rename of a directory tree in the outage: %v", err)
	}
	mark("write d/tree/a, create d/tree/sub/fresh, rename d/tree")
	treeNames := map[string][]string{"d/renamed": {"a", "sub"}, "d/renamed/sub": {"b", "deep", "fresh"}, "d/renamed/sub/deep": {"c"}}
	checkTree := func(v *nfsc.Target, when string) {
		t.Helper()
		for d, want := range treeNames {
			ents, err := v.ReadDirPlus(d)
			if err != nil {
				t.Fatalf("READDIRPLUS %s %s: %v", d, when, err)
			}
			var got []string
			for _, e := range ents {
				if e.FileName != "." && e.FileName != ".." {
					got = append(got, e.FileName)
				}
				if mode, ok := treeDirs[strings.TrimPrefix(path.Join(strings.TrimPrefix(d, "d/renamed"), e.FileName), "/")]; ok && e.Attr.IsSet && e.Attr.Attr.FileMode&0o7777 != mode {
					t.Fatalf("READDIRPLUS %s %s: %s: mode %o, want %o", d, when, e.FileName, e.Attr.Attr.FileMode&0o7777, mode)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("READDIRPLUS %s %s: %v, want %v", d, when, got, want)
			}
		}
		if _, _, err := v.Lookup("d/tree"); err == nil {
			t.Fatalf("LOOKUP of d/tree %s: it is still there", when)
		}
		if a, err := v.GetAttr(fhB); err != nil || a.Filesize != uint64(len(tree["sub/b"])) {
			t.Fatalf("GETATTR of d/tree/sub/b's handle %s: %+v %v", when, a, err)
		}
	}
	checkTree(v, "in the outage")
	for p, w := range tree {
		want["d/renamed/"+p] = w
	}
	modes := map[string]uint32{"d/kept": 0o640, "d/chm": 0o600, "d/edir2": 0o710}
	checkModes := func(when string) {
		t.Helper()
		for p, mode := range modes {
			a, err := v.Getattr(p)
			if err != nil || a.FileMode&0o7777 != mode {
				t.Fatalf("GETATTR %s %s: %+v %v, want mode %o", p, when, a, err, mode)
			}
		}
		if _, _, err := v.Lookup("d/keep"); err == nil {
			t.Fatalf("LOOKUP of d/keep %s: it is still there", when)
		}
	}
	checkModes("in the outage")
	if ents, err = v.ReadDirPlus("d"); err != nil {
		t.Fatalf("READDIRPLUS in the outage: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.FileName)
		if mode, ok := modes["d/"+e.FileName]; ok && (!e.Attr.IsSet || e.Attr.Attr.FileMode&0o7777 != mode) {
			t.Fatalf("READDIRPLUS in the outage: %s: %+v, want mode %o", e.FileName, e.Attr, mode)
		}
		if target, ok := links["d/"+e.FileName]; ok && (!e.Attr.IsSet || e.Attr.Attr.Type != nfsc.NF3Lnk || e.Attr.Attr.Filesize != uint64(len(target))) {
			t.Fatalf("READDIRPLUS in the outage: %s: %+v, want a symbolic link of %d bytes", e.FileName, e.Attr, len(target))
		}
	}
	for _, n := range []string{"kept", "chm", "edir2", "renamed", "ln", "lnmoved"} {
		if !slices.Contains(names, n) {
			t.Fatalf("listing in the outage: %v lacks %s", names, n)
		}
	}
	for _, n := range []string{"keep", "edir", "tree", "lntmp", "lngone"} {
		if slices.Contains(names, n) {
			t.Fatalf("listing in the outage: %v has %s", names, n)
		}
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "moved") || !strings.Contains(got, "new") || strings.Contains(got, "tmp") || strings.Contains(got, "gone") || strings.Contains(got, "old") {
		t.Fatalf("listing in the outage: %s", got)
	}
	// checkFiles reads every file of want and uploaded over NFS (the
	// gateway wrote uploaded's, so in the outage their data is in its cache).
	checkFiles := func(v *nfsc.Target, when string) {
		t.Helper()
		for _, files := range []map[string]string{want, uploaded} {
			for p, w := range files {
				if got := string(readNFS(t, v, p)); got != w {
					t.Fatalf("%s %s: %q", p, when, got)
				}
			}
		}
	}
	checkFiles(v, "in the outage")

	// kill -9 in the outage. serve checks that it reaches the store before
	// it starts, so the restart comes with the store back; the log
	// replays what was acknowledged.
	done() // the test client cannot outlive its server
	d.kill(t)
	proxy.SetOutage(false)
	d = serve(t, dir)
	v, done = nfsMount(t, nfsAddr(t, dir), "w")
	checkFiles(v, "after kill -9 in the outage")
	checkModes("after kill -9 in the outage")
	checkTree(v, "after kill -9 in the outage")
	checkLinks(v, "after kill -9 in the outage")
	done()
	for p, w := range want {
		waitObject(t, srv, "away", "gw/w/"+p, []byte(w))
	}
	// A symbolic link's object: the target, flagged in its metadata.
	for p, target := range links {
		if md := waitObject(t, srv, "away", "gw/w/"+p, []byte(target)); md["gwd-type"] != "symlink" || md["gwd-mode"] != "777" {
			t.Fatalf("symbolic link %s in the bucket after the outage: metadata %v", p, md)
		}
	}
	waitUploaded(t, dir, "w")
	ctx := context.Background()
	if out, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("away"), Key: aws.String("gw/w/d/sub/")}); err != nil || out.Metadata["gwd-mode"] != "750" {
		t.Fatalf("marker of the directory made in the outage: %v %v", out, err)
	}
	for p, w := range uploaded {
		md := waitObject(t, srv, "away", "gw/w/"+p, []byte(w))
		if md["gwd-mode"] != strconv.FormatUint(uint64(modes[p]), 8) {
			t.Fatalf("%s in the bucket after the outage: metadata %v, want mode %o", p, md, modes[p])
		}
	}
	if out, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("away"), Key: aws.String("gw/w/d/edir2/")}); err != nil || out.Metadata["gwd-mode"] != "710" {
		t.Fatalf("marker of the directory renamed in the outage: %v %v", out, err)
	}
	for _, k := range []string{"gw/w/d/tmp", "gw/w/d/gone", "gw/w/d/rmd/", "gw/w/d/old", "gw/w/d/keep", "gw/w/d/edir/",
		"gw/w/d/tree/", "gw/w/d/tree/a", "gw/w/d/tree/sub/", "gw/w/d/tree/sub/b", "gw/w/d/tree/sub/deep/", "gw/w/d/tree/sub/deep/c",
		"gw/w/d/lntmp", "gw/w/d/lngone"} {
		// The delete of d/old waited in the log; the uploader does it.
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			_, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("away"), Key: aws.String(k)})
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is in the bucket 3 minutes after the outage", k)
			}
		}
	}
	// The tree is under its new keys only, each object once, the
	// directories' markers with their modes.
	wantKeys := []string{"gw/w/d/renamed/", "gw/w/d/renamed/a", "gw/w/d/renamed/sub/", "gw/w/d/renamed/sub/b",
		"gw/w/d/renamed/sub/deep/", "gw/w/d/renamed/sub/deep/c", "gw/w/d/renamed/sub/fresh"}
	if got := listKeys(t, srv, "away", "gw/w/d/renamed/", "gw/w/d/tree/"); !slices.Equal(got, wantKeys) {
		t.Fatalf("the renamed tree in the bucket after the outage:\n%v\nwant\n%v", got, wantKeys)
	}
	for p, mode := range treeDirs {
		k := strings.TrimSuffix("gw/w/d/renamed/"+p, "/") + "/"
		if out, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("away"), Key: aws.String(k)}); err != nil || out.Metadata["gwd-mode"] != strconv.FormatUint(uint64(mode), 8) {
			t.Fatalf("marker %s after the outage: %v %v, want mode %o", k, out, err, mode)
		}
	}
	mustRun(t, "share", "refresh", "--data-dir", dir, "w")
	v, done = nfsMount(t, nfsAddr(t, dir), "w")
	checkTree(v, "from the bucket after the outage")
	checkFiles(v, "from the bucket after the outage")
	checkModes("from the bucket after the outage")
	checkLinks(v, "from the bucket after the outage")
	done() // before the server goes: the test client cannot outlive it
	d.stop(t)
}
