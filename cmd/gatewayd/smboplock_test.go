package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// TestSMBKernelOplocks runs smbtorture's smb2.kernel-oplocks against a
// share served over NFS and SMB, with its FUSE view as the "local"
// directory the tests open files in beside smbd: smbd's oplocks there are
// kernel leases on the view, and an open by another process breaks them
// (as the view's own open does for a change over NFS or in the bucket,
// frontends/smb TestLeaseBrokenByOtherPaths). With oplocks kept inside
// smbd, kernel_oplocks5 and kernel_oplocks7 fail (a level II oplock is
// granted).
func TestSMBKernelOplocks(t *testing.T) {
	smbtest.Require(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	addr := freeport.Addr(t)
	d := serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "both", "--protocols", "nfs,smb")
	view := viewDir(t, dir, "both")
	results, lines, err := smbtest.Torture(addr, "both", "root", smbPassword, "smb2.kernel-oplocks", "--option=torture:localdir="+view)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 8 {
		t.Errorf("smb2.kernel-oplocks ran %d tests, want 8: %v", len(results), results)
	}
	for name, res := range results {
		if res != "success" {
			t.Errorf("%s: %s\n%s", name, res, lines[name])
		}
	}
	d.stop(t)
}

// oplockClient is an SMB2 client holding one file open with a batch
// oplock: Samba's client library (python3-samba) through
// testdata/oplock_client.py.
type oplockClient struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func openWithOplock(t *testing.T, host, share, name string) *oplockClient {
	t.Helper()
	// The distribution's python3 has Samba's module; another first on
	// PATH may not.
	py := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import samba.samba3.libsmb_samba_internal").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Fatal("no python3 with Samba's client library: apt-get install python3-samba")
	}
	cmd := exec.Command(py, "testdata/oplock_client.py", host, share, "root", smbPassword, name)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &oplockClient{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(c.close)
	if line := c.send(t, ""); line != "open" {
		t.Fatalf("SMB open of %s with a batch oplock: %q", name, line)
	}
	return c
}

// send sends a command (none: only reads) and returns the answer; the
// library's own timeouts end a call to a server that does not answer.
func (c *oplockClient) send(t *testing.T, cmd string) string {
	t.Helper()
	if cmd != "" {
		if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
			t.Fatalf("oplock client: %v", err)
		}
	}
	s, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("oplock client: %v", err)
	}
	return strings.TrimSpace(s)
}

func (c *oplockClient) read(t *testing.T) []byte {
	t.Helper()
	b, err := hex.DecodeString(c.send(t, "read"))
	if err != nil {
		t.Fatalf("oplock client read: %v", err)
	}
	return b
}

// gotBreak checks that the client was sent an oplock break (see
// oplock_client.py) and waits for it to end.
func (c *oplockClient) gotBreak(t *testing.T) {
	t.Helper()
	if out := c.send(t, "read"); out != "broken" {
		t.Fatalf("SMB client after its oplock was broken: %q, want to have been sent a break", out)
	}
	c.close()
}

// smbRead reads name from share docs over a new SMB connection.
func smbRead(t *testing.T, host, name string, want []byte) {
	t.Helper()
	fs, done := smbtest.MustDial(t, net.JoinHostPort(host, "445"), "docs", "root", smbPassword)
	defer done()
	if got, err := fs.ReadFile(name); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("SMB read of %s: %q, %v; want %q", name, got, err, want)
	}
}

// close closes the file (which gives its oplock up) and ends the client.
func (c *oplockClient) close() {
	if c.cmd.ProcessState != nil {
		return
	}
	_, _ = io.WriteString(c.in, "quit\n")
	c.in.Close()
	_ = c.cmd.Wait()
}

// loopback445 adds a loopback address of its own for t (removed after)
// and returns it: the client library connects to port 445 only, and there
// the gateway's smbd meets no other server of the host.
func loopback445(t *testing.T) string {
	t.Helper()
	for range 100 {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		if out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil {
			if strings.Contains(string(out), "exists") {
				continue
			}
			t.Fatalf("ip addr add %s/32 dev lo: %v: %s", ip, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").Run() })
		return ip
	}
	t.Fatal("no free loopback address")
	return ""
}

// kernelLease returns the state of a kernel lease on file (ACTIVE,
// BREAKING...) from /proc/locks, "" when there is none.
func kernelLease(t *testing.T, file string) string {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[1] == "LEASE" && f[5] == id {
			return f[2]
		}
	}
	return ""
}

// TestSMBOplockBrokenOverNFS: a real SMB client holding a batch oplock on
// a file of a share served over NFS and SMB (smbd's kernel lease on the
// view) keeps it through its own write, and loses it, reading the new
// content, when the file is written over NFS and when its object is
// overwritten in the bucket and the share refreshed.
func TestSMBOplockBrokenOverNFS(t *testing.T) {
	srv, dir, host, d, view := oplockShare(t, "oplock", "nfs,smb")

	v, nfsDone := nfsMount(t, nfsAddr(t, dir), "docs")
	defer nfsDone()
	writeNFS := func(data []byte) {
		t.Helper()
		w, err := v.OpenFile("f.txt", 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	broken := func(what string) { t.Helper(); leaseBroken(t, view, what) }
	first := []byte("first version, written over NFS\n")
	writeNFS(first)

	c := openWithOplock(t, host, "docs", "f.txt")
	if got := c.read(t); !bytes.Equal(got, first) {
		t.Fatalf("SMB read: %q, want %q", got, first)
	}
	if st := kernelLease(t, view); st != "ACTIVE" {
		t.Fatalf("smbd's kernel lease for the batch oplock: %q, want ACTIVE", st)
	}
	if out := c.send(t, "write "+hex.EncodeToString([]byte("FIRST"))); out != "ok" {
		t.Fatalf("SMB write: %q", out)
	}
	if st := kernelLease(t, view); st != "ACTIVE" {
		t.Fatalf("smbd's kernel lease after the client's own write: %q, want ACTIVE", st)
	}

	second := []byte("second version, written over NFS, longer\n")
	writeNFS(second)
	broken("oplock broken by a write over NFS")
	c.gotBreak(t)
	smbRead(t, host, "f.txt", second)

	c = openWithOplock(t, host, "docs", "f.txt")
	if st := kernelLease(t, view); st != "ACTIVE" {
		t.Fatalf("smbd's kernel lease for a new batch oplock: %q, want ACTIVE", st)
	}
	waitObject(t, srv, "oplock", "gw/docs/f.txt", second)
	third := []byte("third version, put in the bucket\n")
	putAndRefresh(t, srv, dir, "oplock", "gw/docs/f.txt", third)
	broken("oplock broken by a refresh after a change in the bucket")
	c.gotBreak(t)
	smbRead(t, host, "f.txt", third)
	d.stop(t)
}

// TestSMBOplockBrokenOnSMBOnlyShare: on a share served over SMB alone,
// oplocks stay inside smbd (no kernel lease on the view) until the share
// asks for kernel oplocks (share update --smb-kernel-oplocks); then a
// change in the bucket followed by a refresh breaks a real client's batch
// oplock, and the file reads with the new content over SMB.
func TestSMBOplockBrokenOnSMBOnlyShare(t *testing.T) {
	srv, dir, host, d, view := oplockShare(t, "smbonly", "smb")
	first := []byte("first version, written over SMB\n")
	fs, done := smbtest.MustDial(t, net.JoinHostPort(host, "445"), "docs", "root", smbPassword)
	err := fs.WriteFile("f.txt", first, 0o644)
	done()
	if err != nil {
		t.Fatal(err)
	}

	c := openWithOplock(t, host, "docs", "f.txt")
	if got := c.read(t); !bytes.Equal(got, first) {
		t.Fatalf("SMB read: %q, want %q", got, first)
	}
	if st := kernelLease(t, view); st != "" {
		t.Fatalf("a kernel lease on a file of an SMB-only share without kernel oplocks: %q", st)
	}
	c.close()

	mustRun(t, "share", "update", "--data-dir", dir, "docs", "--smb-kernel-oplocks")
	// smbd rereads smb.conf when told to: opens after that take leases.
	smbtest.Eventually(t, "a kernel lease for a batch oplock once the share asks for kernel oplocks", func() error {
		c = openWithOplock(t, host, "docs", "f.txt")
		if st := kernelLease(t, view); st != "ACTIVE" {
			c.close()
			return fmt.Errorf("smbd's kernel lease: %q, want ACTIVE", st)
		}
		return nil
	})
	waitObject(t, srv, "smbonly", "gw/docs/f.txt", first)
	second := []byte("second version, put in the bucket, longer\n")
	putAndRefresh(t, srv, dir, "smbonly", "gw/docs/f.txt", second)
	leaseBroken(t, view, "oplock broken by a refresh after a change in the bucket")
	c.gotBreak(t)
	smbRead(t, host, "f.txt", second)
	d.stop(t)
}

// oplockShare serves, on MinIO bucket, share docs over protocols with smbd
// on port 445 of a loopback address of its own, and gives the view's path
// of docs/f.txt.
func oplockShare(t *testing.T, bucket, protocols string) (srv *miniotest.Server, dir, host string, d *daemon, view string) {
	t.Helper()
	smbtest.Require(t)
	srv, dir = initOnMinIO(t, bucket)
	host = loopback445(t)
	d = serveSMB(t, dir, net.JoinHostPort(host, "445"))
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--protocols", protocols)
	return srv, dir, host, d, filepath.Join(viewDir(t, dir, "docs"), "f.txt")
}

// leaseBroken waits until smbd's kernel lease on file (a path in a view)
// is no longer ACTIVE.
func leaseBroken(t *testing.T, file, what string) {
	t.Helper()
	smbtest.Eventually(t, what, func() error {
		if st := kernelLease(t, file); st == "ACTIVE" {
			return errors.New("smbd's kernel lease still ACTIVE")
		}
		return nil
	})
}
