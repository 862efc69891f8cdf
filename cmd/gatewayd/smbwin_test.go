package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// windowsSuites are the smbtorture suites of what Windows clients keep with
// a file: ACLs, streams, EAs, DOS attributes, times, zeroed ranges and the
// allocation size (one test of smb2.durable-open).
var windowsSuites = []string{"smb2.acls", "smb2.streams", "smb2.ea", "smb2.getinfo", "smb2.setinfo", "smb2.timestamps", "smb2.zero-data-ioctl", "smb2.durable-open.alloc-size"}

// windowsOptions are smbtorture's options a suite needs: smb2.ea reads the
// name the NT ACL is kept under; smb2.zero-data-ioctl zeroes a range of a
// file the test puts first (zeroFile), checked after.
var windowsOptions = map[string][]string{
	"smb2.ea":              {"--option=torture:acl_xattr_name=security.NTACL"},
	"smb2.zero-data-ioctl": {"--option=torture:filename=" + zeroFile, "--option=torture:offset=40000", "--option=torture:beyond_final_zero=100000"},
}

// zeroFile is the file smb2.zero-data-ioctl zeroes bytes 40000 to 100000 of.
const zeroFile = "zero-data.bin"

// windowsExpected is the file of expected results: every test of
// windowsSuites with its result on a gateway share and on plain smbd.
const windowsExpected = "testdata/smbtorture-windows.txt"

// expectedTorture is one test's expected results.
type expectedTorture struct{ gateway, plain, why string }

// readExpectedTorture reads the expected results: per line a full test
// name, its result on the gateway, its result on plain smbd, and, when
// they differ, why after a '#'.
func readExpectedTorture(path string) (map[string]expectedTorture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]expectedTorture{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, why, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want a test, its result on the gateway and on plain smbd", path, n)
		}
		if _, dup := out[fields[0]]; dup {
			return nil, fmt.Errorf("%s:%d: %s twice", path, n, fields[0])
		}
		e := expectedTorture{gateway: fields[1], plain: fields[2], why: strings.TrimSpace(why)}
		if e.gateway != e.plain && e.why == "" {
			return nil, fmt.Errorf("%s:%d: %s differs between the servers without a reason", path, n, fields[0])
		}
		out[fields[0]] = e
	}
	return out, sc.Err()
}

// checkExpectedTorture holds the results of both servers to the expected
// ones, test by test and whole: a test that ran and is not listed, a
// listed one that did not run, and any other result are problems.
func checkExpectedTorture(want map[string]expectedTorture, gw, plain map[string]string) []string {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		if g, p := gw[name], plain[name]; g != w.gateway || p != w.plain {
			problems = append(problems, fmt.Sprintf("%s: gateway %s, plain smbd %s; expected %s and %s", name, orNone(g), orNone(p), w.gateway, w.plain))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(gw)) {
		if _, ok := want[name]; !ok {
			problems = append(problems, fmt.Sprintf("%s: ran (gateway %s, plain smbd %s) and is not listed", name, gw[name], orNone(plain[name])))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(plain)) {
		if _, ok := want[name]; !ok && gw[name] == "" {
			problems = append(problems, fmt.Sprintf("%s: ran on plain smbd (%s) and is not listed", name, plain[name]))
		}
	}
	return problems
}

func orNone(res string) string {
	if res == "" {
		return "did not run"
	}
	return res
}

// suiteTable is the per-suite count of tests and passes, as docs/smb.md
// shows it.
func suiteTable(suites []string, gw, plain map[string]string) string {
	var b strings.Builder
	b.WriteString("| suite | tests | passed on gatewayd | passed on plain smbd |\n|---|---|---|---|\n")
	for _, s := range suites {
		var n, g, p int
		for name := range maps.Keys(plain) {
			if strings.HasPrefix(name, s+".") {
				n++
				if plain[name] == "success" {
					p++
				}
				if gw[name] == "success" {
					g++
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", s, n, g, p)
	}
	return b.String()
}

// TestSMBTortureWindows runs the smbtorture suites of ACLs, streams, EAs,
// file information and times against a gateway share and against plain
// smbd with the same vfs modules on a local directory, in the same run,
// and holds every test's result on both to windowsExpected.
func TestSMBTortureWindows(t *testing.T) {
	t.Parallel()
	smbtest.Require(t)
	expected, err := readExpectedTorture(windowsExpected)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	addr := smbtest.FreeAddr(t)
	d := serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "torture", "--protocols", "smb")
	plainAddr, _ := smbtest.StartPlain(t, "plain", smbPassword, "vfs objects = "+smb.WindowsVFS, "store dos attributes = yes", "ea support = yes")

	// The file smb2.zero-data-ioctl zeroes a range of, on both servers.
	local := t.TempDir()
	zeroData := testrand.Bytes(31, 128<<10)
	if err := os.WriteFile(filepath.Join(local, zeroFile), zeroData, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, srv := range [][2]string{{addr, "torture"}, {plainAddr, "plain"}} {
		if err := smbtest.Smbclient(srv[0], srv[1], "root", smbPassword, "put "+zeroFile, local); err != nil {
			t.Fatal(err)
		}
	}

	plain, gw, gwLines, plainLines := map[string]string{}, map[string]string{}, map[string]string{}, map[string]string{}
	for _, suite := range windowsSuites {
		var p, pl map[string]string
		var plainErr error
		plainDone := make(chan struct{})
		go func() {
			defer close(plainDone)
			p, pl, plainErr = smbtest.Torture(plainAddr, "plain", "root", smbPassword, suite, windowsOptions[suite]...)
		}()
		g, lines, err := smbtest.Torture(addr, "torture", "root", smbPassword, suite, windowsOptions[suite]...)
		<-plainDone
		if err != nil {
			t.Fatal(err)
		}
		if plainErr != nil {
			t.Fatal(plainErr)
		}
		maps.Copy(plain, p)
		maps.Copy(gw, g)
		maps.Copy(gwLines, lines)
		maps.Copy(plainLines, pl)
	}
	t.Logf("smbtorture, per suite:\n%s", suiteTable(windowsSuites, gw, plain))
	// The zeroed range reads as zeroes, the rest as it was, on both.
	want := bytes.Clone(zeroData)
	clear(want[40000:100000])
	for _, srv := range [][2]string{{addr, "torture"}, {plainAddr, "plain"}} {
		back := t.TempDir()
		if err := smbtest.Smbclient(srv[0], srv[1], "root", smbPassword, "get "+zeroFile, back); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(back, zeroFile)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %s after FSCTL_SET_ZERO_DATA of [40000, 100000): %d bytes (%v), equal to the expected: %v", srv[1], zeroFile, len(got), err, bytes.Equal(got, want))
		}
	}
	if problems := checkExpectedTorture(expected, gw, plain); len(problems) > 0 {
		var why []string
		for _, name := range slices.Sorted(maps.Keys(gw)) {
			if w, ok := expected[name]; (!ok || gw[name] != w.gateway) && gw[name] != "success" {
				why = append(why, fmt.Sprintf("smbtorture on the gateway, %s:\n%s", name, gwLines[name]))
			}
			if w, ok := expected[name]; (!ok || plain[name] != w.plain) && plain[name] != "success" {
				why = append(why, fmt.Sprintf("smbtorture on plain smbd, %s:\n%s", name, plainLines[name]))
			}
		}
		var all []string
		for _, name := range slices.Sorted(maps.Keys(plain)) {
			all = append(all, fmt.Sprintf("%-60s %-8s %s", name, orNone(gw[name]), plain[name]))
		}
		t.Fatalf("smbtorture against %s:\n  %s\nall results (test, gateway, plain smbd):\n%s\n%s%s", windowsExpected,
			strings.Join(problems, "\n  "), strings.Join(all, "\n"), strings.Join(why, ""), warnings(d.stderr.String()))
	}
}

func TestCheckExpectedTorture(t *testing.T) {
	want := map[string]expectedTorture{"s.a": {"success", "success", ""}, "s.b": {"failure", "success", "why"}}
	if p := checkExpectedTorture(want, map[string]string{"s.a": "success", "s.b": "failure"}, map[string]string{"s.a": "success", "s.b": "success"}); len(p) != 0 {
		t.Fatalf("the expected results: %q", p)
	}
	for _, c := range []struct {
		what      string
		gw, plain map[string]string
		wants     string
	}{
		{"a result that changed", map[string]string{"s.a": "success", "s.b": "success"}, map[string]string{"s.a": "success", "s.b": "success"}, "s.b: gateway success, plain smbd success; expected failure and success"},
		{"a test that did not run", map[string]string{"s.a": "success"}, map[string]string{"s.a": "success"}, "s.b: gateway did not run"},
		{"a test not listed", map[string]string{"s.a": "success", "s.b": "failure", "s.c": "skip"}, map[string]string{"s.a": "success", "s.b": "success", "s.c": "skip"}, "s.c: ran"},
		{"a test only plain smbd ran", map[string]string{"s.a": "success", "s.b": "failure"}, map[string]string{"s.a": "success", "s.b": "success", "s.d": "skip"}, "s.d: ran on plain smbd"},
	} {
		if p := checkExpectedTorture(want, c.gw, c.plain); !strings.Contains(strings.Join(p, "\n"), c.wants) {
			t.Errorf("%s: problems %q, want one with %q", c.what, p, c.wants)
		}
	}
	dir := t.TempDir()
	for _, c := range []struct{ text, wants string }{
		{"s.a success\n", "want a test"},
		{"s.a success failure\n", "without a reason"},
		{"s.a success success\ns.a success success\n", "twice"},
	} {
		f := dir + "/x"
		if err := os.WriteFile(f, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readExpectedTorture(f); err == nil || !strings.Contains(err.Error(), c.wants) {
			t.Errorf("%q: %v, want %q", c.text, err, c.wants)
		}
	}
}

// forward445 forwards connections to a loopback address of its own, port
// 445, to addr, until t ends, and returns that address: smbcacls connects
// to port 445 (or 139) whatever it is told.
func forward445(t *testing.T, addr string) string {
	t.Helper()
	var l net.Listener
	for i := 0; l == nil && i < 100; i++ {
		a := fmt.Sprintf("127.%d.%d.%d:445", 100+rand.IntN(100), rand.IntN(256), 1+rand.IntN(254))
		l, _ = net.Listen("tcp", a)
	}
	if l == nil {
		t.Fatal("no free loopback address with port 445")
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, s)
			}()
		}
	}()
	return l.Addr().String()
}

// smbcacls runs smbcacls on a file of //addr/share with args (nothing
// more: the file's ACL) and returns its output.
func smbcacls(t *testing.T, addr, share, file string, args ...string) string {
	t.Helper()
	host, _, _ := net.SplitHostPort(forward445(t, addr))
	cmd := exec.Command("smbcacls", append([]string{"//" + host + "/" + share, file, "-U", "root%" + smbPassword, "--numeric"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smbcacls %s %v: %v\n%s", file, args, err, out)
	}
	return string(out)
}

// TestSMBACLsKeptInTheBucket sets NT ACLs with smbcacls, one small enough
// for the object's metadata and one that needs the sidecar object, and
// reads them back the same after a restart of the gateway and from a second
// gateway attached to the same bucket.
func TestSMBACLsKeptInTheBucket(t *testing.T) {
	t.Parallel()
	smbtest.Require(t)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "acl")
	s3args := []string{"--s3-endpoint", srv.Endpoint, "--s3-path-style", "--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey}
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://acl/gw"}, s3args...)...)
	addr := smbtest.FreeAddr(t)
	d := serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--protocols", "smb")

	local := t.TempDir()
	for _, f := range []string{"small.txt", "big.txt"} {
		if err := os.WriteFile(filepath.Join(local, f), []byte("acl test "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := smbtest.Smbclient(addr, "docs", "root", smbPassword, "put small.txt; put big.txt; mkdir sub", local); err != nil {
		t.Fatal(err)
	}
	smbcacls(t, addr, "docs", "small.txt", "--add", "ACL:S-1-5-21-1-2-3-1001:ALLOWED/0x0/0x001200a9")
	smbcacls(t, addr, "docs", "sub", "--add", "ACL:S-1-5-21-1-2-3-1002:ALLOWED/0x3/0x001f01ff")
	var aces []string
	for i := 0; i < 60; i++ { // about 36 bytes each: past S3's 2 KiB of metadata
		aces = append(aces, fmt.Sprintf("ACL:S-1-5-21-1000-2000-3000-%d:ALLOWED/0x0/0x%08x", 2000+i, 0x001200a9+i%2))
	}
	smbcacls(t, addr, "docs", "big.txt", "--add", strings.Join(aces, ","))
	want := map[string]string{}
	for _, f := range []string{"small.txt", "big.txt", "sub"} {
		want[f] = smbcacls(t, addr, "docs", f)
	}
	for f, sid := range map[string]string{"small.txt": "S-1-5-21-1-2-3-1001", "sub": "S-1-5-21-1-2-3-1002", "big.txt": "S-1-5-21-1000-2000-3000-2059"} {
		if !strings.Contains(want[f], sid) {
			t.Fatalf("%s's ACL lacks the entry set for %s:\n%s", f, sid, want[f])
		}
	}
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	// In the bucket: the small ACL in the object's metadata, the big one
	// in a sidecar object the metadata names.
	for key, meta := range map[string]string{"gw/docs/small.txt": "gwd-xattr", "gw/docs/big.txt": "gwd-xattr-ref"} {
		out, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("acl"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if out.Metadata[meta] == "" {
			t.Fatalf("%s: metadata %v, want %s", key, out.Metadata, meta)
		}
	}
	same := func(addr, when string) {
		t.Helper()
		for f, w := range want {
			if got := smbcacls(t, addr, "docs", f); got != w {
				t.Errorf("%s: %s's ACL:\n%s\nwant (as set):\n%s", when, f, got, w)
			}
		}
	}

	d.stop(t)
	d = serve(t, dir, "--smb-listen", addr)
	same(addr, "after a restart")
	d.stop(t)

	// A second gateway with the same key attached to the bucket.
	dr := t.TempDir()
	t.Cleanup(func() { cleanSMB(dr) })
	mustRun(t, append([]string{"init", "--data-dir", dr, "--store", "s3://acl/gw", "--master-key-file", filepath.Join(dir, "master.key")}, s3args...)...)
	addr2 := smbtest.FreeAddr(t)
	serve(t, dr, "--smb-listen", addr2)
	mustRun(t, "smb", "user", "add", "--data-dir", dr, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dr, "--name", "docs", "--protocols", "smb")
	same(addr2, "on a second gateway")
}
