package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/freeport"
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

// TestSMBTortureWindows runs the smbtorture suites of ACLs, streams, EAs,
// file information and times against a gateway share and against plain
// smbd with the same vfs modules on a local directory, in the same run,
// and holds every test's result on both to windowsExpected.
func TestSMBTortureWindows(t *testing.T) {
	t.Parallel()
	d, gw, plain := tortureServers(t, "vfs objects = "+smb.WindowsVFS, "store dos attributes = yes", "ea support = yes")

	// The file smb2.zero-data-ioctl zeroes a range of, on both servers.
	local := t.TempDir()
	zeroData := testrand.Bytes(31, 128<<10)
	if err := os.WriteFile(filepath.Join(local, zeroFile), zeroData, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []tortureTarget{gw, plain} {
		if err := smbtest.Smbclient(srv.addr, srv.share, "root", smbPassword, "put "+zeroFile, local); err != nil {
			t.Fatal(err)
		}
	}

	r := runTorture(t, gw, plain, "root", windowsSuites, windowsOptions)
	t.Logf("smbtorture, per suite:\n%s", suiteTable(windowsSuites, r))
	// The zeroed range reads as zeroes, the rest as it was, on both.
	want := bytes.Clone(zeroData)
	clear(want[40000:100000])
	for _, srv := range []tortureTarget{gw, plain} {
		back := t.TempDir()
		if err := smbtest.Smbclient(srv.addr, srv.share, "root", smbPassword, "get "+zeroFile, back); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(back, zeroFile)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %s after FSCTL_SET_ZERO_DATA of [40000, 100000): %d bytes (%v), equal to the expected: %v", srv.share, zeroFile, len(got), err, bytes.Equal(got, want))
		}
	}
	checkTortureList(t, windowsExpected, r, d.stderr.String())
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
// more: the file's ACL) and returns its output. smbcacls gives up on a
// connection after a fixed 20 s, which a busy machine can take; one that
// was never made changed nothing, so it is tried again, for 5 minutes.
func smbcacls(t *testing.T, addr, share, file string, args ...string) string {
	t.Helper()
	host, _, _ := net.SplitHostPort(forward445(t, addr))
	for deadline := time.Now().Add(5 * time.Minute); ; {
		cmd := exec.Command("smbcacls", append([]string{"//" + host + "/" + share, file, "-U", "root%" + smbPassword, "--numeric"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return string(out)
		}
		if !bytes.Contains(out, []byte("cli_full_connection failed")) || time.Now().After(deadline) {
			t.Fatalf("smbcacls %s %v: %v\n%s", file, args, err, out)
		}
		t.Logf("smbcacls %s: no connection (%s), again", file, bytes.TrimSpace(out))
		time.Sleep(time.Second) // pacing between tries, not a wait for a state
	}
}

// TestSMBACLsKeptInTheBucket sets NT ACLs with smbcacls, one small enough
// for the object's metadata and one that needs the sidecar object, and
// reads them back the same after a restart of the gateway and from a second
// gateway attached to the same bucket.
func TestSMBACLsKeptInTheBucket(t *testing.T) {
	t.Parallel()
	smbtest.Require(t)
	srv, dir := initOnMinIO(t, "acl")
	s3args := minioFlags(srv)
	addr := freeport.Addr(t)
	d := serveSMB(t, dir, addr)
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
	addr2 := freeport.Addr(t)
	serve(t, dr, "--smb-listen", addr2)
	mustRun(t, "smb", "user", "add", "--data-dir", dr, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dr, "--name", "docs", "--protocols", "smb")
	same(addr2, "on a second gateway")
}
