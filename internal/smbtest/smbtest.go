// Package smbtest holds what SMB tests share: the check that Samba's tools
// are installed (a test without them fails with the install command, it is
// never skipped), free ports, smbclient runs, and one sequence of file
// operations through the go-smb2 client, run against a share served by
// frontends/smb and by the daemon.
package smbtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudsoda/go-smb2"

	"github.com/gatewayd/gatewayd/internal/childproc"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// InstallCommand installs what SMB tests need (.ci/run does).
const InstallCommand = "apt-get install -y --no-install-recommends samba smbclient samba-testsuite fuse3"

// Require fails t unless smbd, smbclient and /dev/fuse are there.
func Require(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"smbd", "smbclient", "smbpasswd", "pdbedit"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", tool)); err != nil {
				t.Fatalf("%s not found: install Samba with `%s`", tool, InstallCommand)
			}
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse missing: the SMB frontend needs FUSE (%v)", err)
	}
}

// Smbclient runs smbclient's commands (";"-separated) on //host/share.
func Smbclient(addr, share, user, password, commands string, dir ...string) error {
	_, err := SmbclientOutput(addr, share, user, password, commands, dir...)
	return err
}

// SmbclientOutput is Smbclient returning what smbclient printed. smbclient
// stops at the first failing command (-E) and exits non-zero.
func SmbclientOutput(addr, share, user, password, commands string, dir ...string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "smbclient", "//"+host+"/"+share, "-p", port, "-U", user+"%"+password, "-E", "-c", commands)
	if len(dir) > 0 {
		cmd.Dir = dir[0]
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("smbclient %s: %w\n%s", commands, err, out)
	}
	// smbclient exits 0 after some failed commands; these say so.
	for _, bad := range []string{"NT_STATUS_", "Error opening local file"} {
		if strings.Contains(string(out), bad) {
			return string(out), fmt.Errorf("smbclient %s:\n%s", commands, out)
		}
	}
	return string(out), nil
}

// Eventually retries fn until it succeeds; a generous deadline only bounds
// how long a broken server takes to fail the test (a race-built daemon on
// a busy machine took over 2 minutes to upload 1 GiB to MinIO).
func Eventually(t testing.TB, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SmbclientOps puts, lists, renames, gets, makes directories and deletes
// with smbclient, checking each step.
func SmbclientOps(t testing.TB, addr, share, user, password string) {
	t.Helper()
	local := t.TempDir()
	data := testrand.Bytes(11, 5<<20+3)
	if err := os.WriteFile(filepath.Join(local, "up.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(cmds string) string {
		t.Helper()
		out, err := SmbclientOutput(addr, share, user, password, cmds, local)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run("mkdir sub; put up.bin sub\\up.bin; put up.bin top.bin")
	if out := run("ls sub\\*"); !strings.Contains(out, "up.bin") || !strings.Contains(out, strconv.Itoa(len(data))) {
		t.Fatalf("ls after put:\n%s", out)
	}
	run("rename top.bin renamed.bin; get renamed.bin back.bin")
	if got, _ := os.ReadFile(filepath.Join(local, "back.bin")); !bytes.Equal(got, data) {
		t.Fatalf("get after put and rename: %d bytes differ from the %d put", len(got), len(data))
	}
	if out := run("ls"); strings.Contains(out, "top.bin") || !strings.Contains(out, "renamed.bin") {
		t.Fatalf("ls after rename:\n%s", out)
	}
	run("del renamed.bin; del sub\\up.bin; rmdir sub")
	if out := run("ls"); strings.Contains(out, "renamed.bin") || strings.Contains(out, " sub ") {
		t.Fatalf("ls after delete:\n%s", out)
	}
	if err := Smbclient(addr, share, user, password, "get renamed.bin gone.bin", local); err == nil {
		t.Fatal("get of a deleted file succeeded")
	}
}

// Dial logs in to addr and mounts share with go-smb2 (NTLM); a user
// DOMAIN\name logs in to that domain.
func Dial(addr, share, user, password string) (*smb2.Share, func(), error) {
	ntlm := &smb2.NTLMInitiator{User: user, Password: password}
	if dom, name, ok := strings.Cut(user, `\`); ok {
		ntlm.Domain, ntlm.User = dom, name
	}
	// The gateway requires signing.
	d := &smb2.Dialer{Negotiator: smb2.Negotiator{RequireMessageSigning: true}, Initiator: ntlm}
	s, err := d.Dial(context.Background(), addr)
	if err != nil {
		return nil, nil, err
	}
	fs, err := s.Mount(share)
	if err != nil {
		s.Logoff()
		return nil, nil, err
	}
	return fs, func() { fs.Umount(); s.Logoff() }, nil
}

// MustDial is Dial failing t.
func MustDial(t testing.TB, addr, share, user, password string) (*smb2.Share, func()) {
	t.Helper()
	fs, done, err := Dial(addr, share, user, password)
	if err != nil {
		t.Fatalf("go-smb2 to %s/%s: %v", addr, share, err)
	}
	return fs, done
}

// GoClientOps drives a share through go-smb2: create, write, read,
// overwrite, rename, delete, directory listing, a file of bigSize bytes by
// checksum, and four clients writing and reading at once. It leaves
// big.bin in the share root.
func GoClientOps(t testing.TB, addr, share, user, password string, bigSize int) {
	t.Helper()
	fs, done := MustDial(t, addr, share, user, password)
	defer done()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := fs.Create("hello.txt")
	must(err)
	_, err = f.Write([]byte("hello, gatewayd\n"))
	must(err)
	must(f.Sync())
	must(f.Close())
	got, err := fs.ReadFile("hello.txt")
	must(err)
	if string(got) != "hello, gatewayd\n" {
		t.Fatalf("read back %q", got)
	}
	// Overwrite in place, then replace whole.
	f, err = fs.OpenFile("hello.txt", os.O_RDWR, 0)
	must(err)
	_, err = f.WriteAt([]byte("HELLO"), 0)
	must(err)
	must(f.Close())
	if got, _ := fs.ReadFile("hello.txt"); string(got) != "HELLO, gatewayd\n" {
		t.Fatalf("after overwrite: %q", got)
	}
	must(fs.WriteFile("hello.txt", []byte("short"), 0o644))
	if got, _ := fs.ReadFile("hello.txt"); string(got) != "short" {
		t.Fatalf("after rewrite: %q", got)
	}
	st, err := fs.Stat("hello.txt")
	must(err)
	if st.Size() != 5 || st.IsDir() {
		t.Fatalf("stat: size %d dir %v", st.Size(), st.IsDir())
	}
	must(fs.Mkdir("dir", 0o755))
	must(fs.Rename("hello.txt", `dir\moved.txt`))
	if _, err := fs.Stat("hello.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of the old name after rename: %v", err)
	}
	for i := range 5 {
		must(fs.WriteFile(fmt.Sprintf(`dir\f%d`, i), []byte(strconv.Itoa(i)), 0o644))
	}
	ents, err := fs.ReadDir("dir")
	must(err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "f0,f1,f2,f3,f4,moved.txt" {
		t.Fatalf("listing %v", names)
	}
	if err := fs.Remove("dir"); err == nil {
		t.Fatal("removed a directory that is not empty")
	}
	must(fs.RemoveAll("dir"))
	if _, err := fs.Stat("dir"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat after RemoveAll: %v", err)
	}

	// A big file by checksum, written in 1 MiB pieces as a client would.
	h := sha256.New()
	f, err = fs.Create("big.bin")
	must(err)
	const piece = 1 << 20
	for off := 0; off < bigSize; off += piece {
		b := testrand.Bytes(uint64(off/piece), min(piece, bigSize-off))
		h.Write(b)
		_, err := f.Write(b)
		must(err)
	}
	must(f.Close())
	want := h.Sum(nil)
	f, err = fs.Open("big.bin")
	must(err)
	h = sha256.New()
	n, err := io.Copy(h, f)
	must(err)
	f.Close()
	if n != int64(bigSize) || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("big file read back: %d bytes, checksum equal %v", n, bytes.Equal(h.Sum(nil), want))
	}

	// Concurrent clients, each on its own connection.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				cfs, cdone, err := Dial(addr, share, user, password)
				if err != nil {
					return err
				}
				defer cdone()
				for i := range 10 {
					name := fmt.Sprintf("c%d-%d.bin", c, i)
					data := testrand.Bytes(uint64(100*c+i), 64<<10+i)
					if err := cfs.WriteFile(name, data, 0o644); err != nil {
						return err
					}
					got, err := cfs.ReadFile(name)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, data) {
						return fmt.Errorf("client %d: %s read back differs", c, name)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(err)
	}
	// Each client's files, seen by another.
	for c := range 4 {
		for i := range 10 {
			name := fmt.Sprintf("c%d-%d.bin", c, i)
			got, err := fs.ReadFile(name)
			must(err)
			if !bytes.Equal(got, testrand.Bytes(uint64(100*c+i), 64<<10+i)) {
				t.Fatalf("%s differs when read by another client", name)
			}
			must(fs.Remove(name))
		}
	}
}

// PlainConf is smb.conf for a plain smbd exporting dir as share: Samba's
// defaults for everything but where it listens and keeps its state, and
// the global options given ("vfs objects = ..."), the reference the
// gateway's shares are compared with.
func PlainConf(state, addr, share, dir string, global ...string) string {
	host, port, _ := net.SplitHostPort(addr)
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\n\tsmb ports = %s\n\tinterfaces = %s\n\tbind interfaces only = yes\n\tdisable netbios = yes\n", port, host)
	b.WriteString("\tserver signing = mandatory\n\tload printers = no\n\tprintcap name = /dev/null\n\tdisable spoolss = yes\n")
	fmt.Fprintf(&b, "\tpassdb backend = tdbsam:%s\n", filepath.Join(state, "private", "passdb.tdb"))
	for _, d := range [][2]string{{"private dir", "private"}, {"lock directory", "lock"}, {"state directory", "state"},
		{"cache directory", "cache"}, {"pid directory", "run"}, {"ncalrpc dir", "ncalrpc"}, {"binddns dir", "bind-dns"}} {
		fmt.Fprintf(&b, "\t%s = %s\n", d[0], filepath.Join(state, d[1]))
	}
	fmt.Fprintf(&b, "\tlog file = %s\n", filepath.Join(state, "smbd.log"))
	for _, g := range global {
		fmt.Fprintf(&b, "\t%s\n", g)
	}
	fmt.Fprintf(&b, "\n[%s]\n\tpath = %s\n\tread only = no\n", share, dir)
	return b.String()
}

// StartPlain runs a plain smbd (PlainConf, with the global options
// given) on a new directory for t, with user root and password, and
// returns its address and the directory.
func StartPlain(t testing.TB, share, password string, global ...string) (addr, dir string) {
	t.Helper()
	return StartPlainUsers(t, share, password, []string{"root"}, global...)
}

// StartPlainUsers is StartPlain with SMB users for the Unix accounts
// users, each with password.
func StartPlainUsers(t testing.TB, share, password string, users []string, global ...string) (addr, dir string) {
	t.Helper()
	Require(t)
	state, dir := t.TempDir(), t.TempDir()
	addr = freeport.Addr(t)
	for _, d := range []string{"private", "lock", "state", "cache", "run", "ncalrpc", "bind-dns"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(state, "smb.conf")
	if err := os.WriteFile(conf, []byte(PlainConf(state, addr, share, dir, global...)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		pw := exec.Command(samba("smbpasswd"), "-c", conf, "-s", "-a", u)
		pw.Stdin = strings.NewReader(password + "\n" + password + "\n")
		if out, err := pw.CombinedOutput(); err != nil {
			t.Fatalf("smbpasswd %s: %v\n%s", u, err, out)
		}
	}
	cmd := exec.Command(samba("smbd"), "--foreground", "--no-process-group", "--debug-stdout", "-s", conf)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	// Its own process group, killed at cleanup; smbd also dies with the
	// test binary (a test timeout runs no cleanups).
	exited, err := childproc.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			// The peer's side of a failure: smbd logs why it refused a
			// session or a tree connect.
			lines := strings.Split(strings.TrimRight(log.String(), "\n"), "\n")
			t.Logf("plain smbd on %s, its last lines:\n%s", addr, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	Eventually(t, "plain smbd accepting connections", func() error {
		select {
		case <-exited:
			t.Fatalf("plain smbd exited:\n%s", log.String())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr, dir
}

func samba(tool string) string {
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	return filepath.Join("/usr/sbin", tool)
}

// Torture runs one smbtorture suite against //addr/share and returns each
// test's result by full name ("smb2.read.eof": "success", "failure",
// "error" or "skip"), and smbtorture's lines for each test, from its
// "test:" line to its result and reason. opts are smbtorture's own
// (--option=torture:...). It may run on any goroutine.
func Torture(addr, share, user, password, suite string, opts ...string) (results, lines map[string]string, err error) {
	r, err := TortureTests(addr, share, user, password, suite, []string{suite}, opts...)
	return r.Results, r.Lines, err
}

// TortureRun is what one smbtorture run gave: Torture's results and
// lines, how smbtorture exited (nil for status 0) and its last lines.
type TortureRun struct {
	Results, Lines map[string]string
	Exit           error
	Tail           string
}

// TortureTests is Torture for tests, full names of suite's tests (or
// suite itself), in one smbtorture run; the results are named as
// Torture names them.
func TortureTests(addr, share, user, password, suite string, tests []string, opts ...string) (TortureRun, error) {
	bin, err := exec.LookPath("smbtorture")
	if err != nil {
		return TortureRun{}, fmt.Errorf("smbtorture not found: install it with `%s`", InstallCommand)
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	args := append([]string{"//" + host + "/" + share, "-p", port, "-U", user + "%" + password}, opts...)
	out, exit := exec.CommandContext(ctx, bin, append(args, tests...)...).CombinedOutput()
	r := TortureRun{Exit: exit, Tail: tail(string(out), 20)}
	r.Results, r.Lines = ParseTorture(suite, string(out))
	if len(r.Results) == 0 {
		return r, fmt.Errorf("smbtorture %s on //%s/%s ran no test (%v):\n%s", strings.Join(tests, " "), addr, share, exit, out)
	}
	return r, nil
}

// TortureList returns the tests smbtorture has in suite, named as Torture
// names their results. smbtorture lists a test as SUITE.CASE.TEST, and a
// suite that is one test as SUITE.TEST; a case of one test of its name
// (nearly all) is reported as SUITE.CASE. Tests of other cases are left
// out.
func TortureList(suite string) ([]string, error) {
	bin, err := exec.LookPath("smbtorture")
	if err != nil {
		return nil, fmt.Errorf("smbtorture not found: install it with `%s`", InstallCommand)
	}
	out, err := exec.Command(bin, "--list", suite).Output()
	if err != nil {
		return nil, fmt.Errorf("smbtorture --list %s: %w", suite, err)
	}
	var tests []string
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), suite+".")
		if !ok {
			continue
		}
		if c, test, ok := strings.Cut(rest, "."); !ok {
			tests = append(tests, suite+"."+rest)
		} else if c == test {
			tests = append(tests, suite+"."+c)
		}
	}
	return tests, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ParseTorture reads smbtorture's output for tests of suite: each test's
// result and its lines by full name, as Torture gives them.
func ParseTorture(suite, out string) (results, lines map[string]string) {
	results, lines = map[string]string{}, map[string]string{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(line, "test: "); ok {
			cur = suite + "." + strings.TrimSpace(name)
		}
		if cur != "" {
			lines[cur] += line + "\n"
		}
		for _, kind := range []string{"success", "failure", "error", "skip", "xfail"} {
			if name, ok := strings.CutPrefix(line, kind+": "); ok {
				name = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(name), "["))
				results[suite+"."+name] = kind
			}
		}
	}
	return results, lines
}
