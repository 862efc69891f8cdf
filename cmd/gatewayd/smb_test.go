package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

const smbPassword = "gatewayd-smb-pw"

// smbFrontend returns the smb line of status.
func smbFrontend(t *testing.T, dataDir string) admin.Frontend {
	t.Helper()
	st := statusJSON(t, dataDir)
	for _, f := range st.Frontends {
		if f.Name == "smb" {
			return f
		}
	}
	t.Fatalf("no smb frontend in status: %+v", st.Frontends)
	return admin.Frontend{}
}

var smbdPid = regexp.MustCompile(`smbd pid (\d+)`)

// mountsUnder lists the mount points below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestSMBEndToEnd drives the real daemon on MinIO over SMB with smbclient
// and go-smb2: the CLI, files crossing SMB, NFS and S3 both ways, smbd
// killed and restarted, gatewayd killed and its stale mount cleaned.
func TestSMBEndToEnd(t *testing.T) {
	t.Parallel() // beside TestSMBTorture: one waits on the client, the other on the server
	smbtest.Require(t)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "smb")
	s3args := minioFlags(srv)
	dir := t.TempDir()
	// After the daemon is killed at the end, before dir is removed.
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://smb/gw"}, s3args...)...)
	addr := freeport.Addr(t)
	d := serve(t, dir, "--smb-listen", addr)
	if f := smbFrontend(t, dir); f.Listen != addr || !strings.Contains(f.State, "no share") {
		t.Fatalf("smb before any SMB share: %+v", f)
	}

	// Users and shares through the CLI.
	r := run(t, []string{}, "smb", "user", "add", "--data-dir", dir, "no-such-account-x", "--password", "x")
	mustFailClearly(t, r, "no Unix account")
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	if out := mustRun(t, "smb", "user", "list", "--data-dir", dir); strings.TrimSpace(out) != "root" {
		t.Fatalf("smb user list: %q", out)
	}
	mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "x", "--protocols", "nfs,ftp"), `protocol "ftp"`)
	mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "x", "--smb-encrypt"), "need smb among")
	mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "Global", "--protocols", "smb"), "Samba reserves")
	out := mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--protocols", "nfs,smb")
	if !strings.Contains(out, `\\127.0.0.1\docs`) {
		t.Fatalf("share create says nothing of SMB:\n%s", out)
	}
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "sealed", "--protocols", "smb", "--smb-encrypt")
	if info := shareInfo(t, dir, "sealed"); info.SMB == nil || info.Mount != nil {
		t.Fatalf("an SMB-only share: %+v", info)
	}
	if f := smbFrontend(t, dir); !strings.Contains(f.State, "serving 2 shares") {
		t.Fatalf("smb after two SMB shares: %+v", f)
	}

	smbtest.SmbclientOps(t, addr, "docs", "root", smbPassword)
	big := 1 << 30
	if testing.Short() {
		big = 32 << 20
	}
	// go-smb2 on the encrypted share (see frontends/smb's TestGoSMB2).
	smbtest.GoClientOps(t, addr, "sealed", "root", smbPassword, big)
	// Read back by checksum over SMB above; in S3, whole once uploaded.
	waitObjectSize(t, srv, "smb", "gw/sealed/big.bin", int64(big))

	// SMB -> NFS and S3.
	local := t.TempDir()
	fromSMB := testrand.Bytes(21, 300<<10)
	if err := os.WriteFile(filepath.Join(local, "from-smb.bin"), fromSMB, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := smbtest.Smbclient(addr, "docs", "root", smbPassword, "put from-smb.bin", local); err != nil {
		t.Fatal(err)
	}
	v, nfsDone := nfsMount(t, nfsAddr(t, dir), "docs")
	if got := readNFS(t, v, "from-smb.bin"); !bytes.Equal(got, fromSMB) {
		t.Fatalf("NFS read of a file put over SMB: %d bytes, want %d", len(got), len(fromSMB))
	}
	waitObject(t, srv, "smb", "gw/docs/from-smb.bin", fromSMB)

	// NFS -> SMB.
	fromNFS := testrand.Bytes(22, 200<<10)
	w, err := v.OpenFile("from-nfs.bin", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(fromNFS); err != nil {
		t.Fatal(err)
	}
	w.Close()
	nfsDone()
	fs, smbDone := smbtest.MustDial(t, addr, "docs", "root", smbPassword)
	smbtest.Eventually(t, "file written over NFS read over SMB", func() error {
		return sameFile(fs.ReadFile, "from-nfs.bin", fromNFS)
	})
	smbDone()

	// S3 -> SMB, after a refresh.
	fromS3 := []byte("put directly in S3\n")
	putAndRefresh(t, srv, dir, "smb", "gw/docs/s3dir/from-s3.txt", fromS3)
	smbtest.Eventually(t, "object put in S3 read over SMB", func() error {
		return smbtest.Smbclient(addr, "docs", "root", smbPassword, `get s3dir\from-s3.txt from-s3.txt`, local)
	})
	if got, _ := os.ReadFile(filepath.Join(local, "from-s3.txt")); !bytes.Equal(got, fromS3) {
		t.Fatalf("object put in S3, over SMB: %q", got)
	}

	// smbd killed: gatewayd starts another; clients reconnect.
	m := smbdPid.FindStringSubmatch(smbFrontend(t, dir).State)
	if m == nil {
		t.Fatalf("status names no smbd pid: %+v", smbFrontend(t, dir))
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	smbtest.Eventually(t, "smbd restarted by gatewayd", func() error {
		st := smbFrontend(t, dir).State
		if m := smbdPid.FindStringSubmatch(st); m == nil || m[1] == strconv.Itoa(pid) {
			return fmt.Errorf("state %q", st)
		}
		return nil
	})
	smbtest.Eventually(t, "go-smb2 reconnects after the restart", func() error {
		fs, done, err := smbtest.Dial(addr, "docs", "root", smbPassword)
		if err != nil {
			return err
		}
		defer done()
		return sameFile(fs.ReadFile, "from-smb.bin", fromSMB)
	})

	// gatewayd killed: the dead FUSE mounts stay until the next start
	// cleans them; writes acknowledged over SMB survive.
	acked := testrand.Bytes(23, 1<<20)
	fs, smbDone = smbtest.MustDial(t, addr, "sealed", "root", smbPassword)
	af, err := fs.Create("acked.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := af.Write(acked); err != nil {
		t.Fatal(err)
	}
	if err := af.Close(); err != nil {
		t.Fatal(err)
	}
	smbDone()
	mnt := viewsRoot(t, dir)
	conf := filepath.Join(dir, "smb", "smb.conf")
	// A client connected at the kill keeps its smbd process alive.
	_, lingerDone := smbtest.MustDial(t, addr, "docs", "root", smbPassword)
	defer lingerDone()
	before := smb.Processes(conf)
	d.kill(t)
	if left := mountsUnder(t, mnt); len(left) != 2 {
		t.Fatalf("mounts after kill -9: %v, want the two dead views", left)
	}
	d = serve(t, dir, "--smb-listen", addr)
	smbtest.Eventually(t, "SMB served after kill -9 and restart", func() error {
		fs, done, err := smbtest.Dial(addr, "sealed", "root", smbPassword)
		if err != nil {
			return err
		}
		defer done()
		return sameFile(fs.ReadFile, "acked.bin", acked)
	})
	if left := mountsUnder(t, mnt); len(left) != 2 {
		t.Fatalf("mounts after the restart: %v, want one live view per share", left)
	}
	for _, pid := range before {
		if syscall.Kill(pid, 0) == nil && slices.Contains(smb.Processes(conf), pid) {
			t.Fatalf("smbd process %d of the killed gatewayd still runs", pid)
		}
	}
	waitObject(t, srv, "smb", "gw/sealed/acked.bin", acked)

	// Delete a share: smbd stops serving it and its view goes.
	mustRun(t, "share", "delete", "--data-dir", dir, "sealed")
	if left := mountsUnder(t, mnt); len(left) != 1 {
		t.Fatalf("mounts after deleting a share: %v", left)
	}
	smbtest.Eventually(t, "deleted share refused over SMB", func() error {
		if smbtest.Smbclient(addr, "sealed", "root", smbPassword, "ls") == nil {
			return errors.New("still served")
		}
		return nil
	})
	d.stop(t)
	if left := mountsUnder(t, mnt); len(left) != 0 {
		t.Fatalf("mounts after a clean stop: %v", left)
	}
}

// cleanSMB removes what a daemon killed at the end of a test leaves: smbd
// processes serving clients, dead FUSE mounts.
func cleanSMB(dataDir string) {
	smb.KillStale(filepath.Join(dataDir, "smb", "smb.conf"))
	_, _ = smb.CleanStale(dataDir)
	if root, err := smb.MountRoot(filepath.Join(dataDir, "smb", "mnt")); err == nil {
		_ = smb.CleanMountRoot(root)
	}
}

// viewsRoot is the directory a gateway on dataDir mounts its shares'
// views in (smb.MountRoot: out of a private data directory).
func viewsRoot(t *testing.T, dataDir string) string {
	t.Helper()
	root, err := smb.MountRoot(filepath.Join(dataDir, "smb", "mnt"))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// waitObjectSize waits until the bucket holds an object of size bytes at
// key (the upload follows the settle time).
func waitObjectSize(t *testing.T, srv *miniotest.Server, bucket, key string, size int64) {
	t.Helper()
	smbtest.Eventually(t, "object "+key+" uploaded", func() error {
		out, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return err
		}
		if aws.ToInt64(out.ContentLength) != size {
			return fmt.Errorf("%d bytes, want %d", aws.ToInt64(out.ContentLength), size)
		}
		return nil
	})
}

func sameFile(read func(string) ([]byte, error), name string, want []byte) error {
	got, err := read(name)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: %d bytes, want the %d written", name, len(got), len(want))
	}
	return nil
}

// TestSMBWithoutSamba: with no smbd the gateway serves the rest, and
// status says SMB is off and how to install Samba.
func TestSMBWithoutSamba(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	path := filepath.Join(dir, "gatewayd.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`smbd: ""`), []byte("smbd: /nonexistent/smbd"), 1)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	serve(t, dir, "--smb-listen", "127.0.0.1:4450")
	f := smbFrontend(t, dir)
	if !strings.Contains(f.State, "not installed") || !strings.Contains(f.State, "apt-get install samba") {
		t.Fatalf("status of SMB without Samba: %+v", f)
	}
	out := mustRun(t, "status", "--data-dir", dir)
	if !strings.Contains(out, "apt-get install samba") {
		t.Fatalf("status text does not say how to install Samba:\n%s", out)
	}
	mustFailClearly(t, run(t, nil, "smb", "user", "list", "--data-dir", dir), "not installed")
	// NFS shares still work.
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "n")
}

// tortureSuites are the smbtorture suites the gateway is compared on.
var tortureSuites = []string{"smb2.connect", "smb2.read", "smb2.rw", "smb2.dir", "smb2.create", "smb2.rename", "smb2.getinfo", "smb2.setinfo"}

// tortureDifferences are the smbtorture tests that pass on plain smbd and
// fail on a gateway share, each with why (docs/smb.md explains them). The
// list is exact: full test names, compared whole. It is empty since the
// view keeps extended attributes (DOS attributes, EAs).
var tortureDifferences = map[string]string{}

// tortureMinPassed is how many tests of tortureSuites the gateway passes
// at least: 39 of 53, plain smbd's 36 and three that plain smbd with
// Samba's defaults (no vfs module) fails: smb2.create.aclfile, acldir and
// smb2.getinfo.normalized.
const tortureMinPassed = 39

// checkTorture compares smbtorture's results on plain smbd and on the
// gateway, test by test, with the list of differences: a test that passes
// on plain smbd and not on the gateway must be listed, a listed test must
// still be such a test, and the gateway must pass at least minPassed.
func checkTorture(plain, gw map[string]string, differences map[string]string, minPassed int) (total, passedPlain, passedGW int, problems []string) {
	for name, res := range plain {
		total++
		if res == "success" {
			passedPlain++
		}
		if gw[name] == "success" {
			passedGW++
		}
		why, listed := differences[name]
		switch {
		case res == "success" && gw[name] != "success" && !listed:
			problems = append(problems, fmt.Sprintf("%s: passes on plain smbd, %s on the gateway, and is not listed", name, gw[name]))
		case listed && gw[name] == "success":
			problems = append(problems, fmt.Sprintf("%s: listed (%s) but passes on the gateway now: take it off the list", name, why))
		case listed && res != "success":
			problems = append(problems, fmt.Sprintf("%s: listed (%s) but plain smbd does not pass it (%s): no longer a difference", name, why, res))
		}
	}
	for name := range differences {
		if _, ran := plain[name]; !ran {
			problems = append(problems, name+": listed but did not run")
		}
	}
	if passedGW < minPassed {
		problems = append(problems, fmt.Sprintf("the gateway passed %d tests, fewer than the %d it passes", passedGW, minPassed))
	}
	slices.Sort(problems)
	return total, passedPlain, passedGW, problems
}

// TestSMBTorture runs smbtorture's suites against a gateway share and
// against plain smbd on a local directory in the same run, and holds the
// results to tortureDifferences and tortureMinPassed.
func TestSMBTorture(t *testing.T) {
	t.Parallel()
	d, gwT, plainT := tortureServers(t)
	r := runTorture(t, gwT, plainT, "root", tortureSuites, nil)
	plain, gw := r.plain, r.gw
	total, passedPlain, passedGW, problems := checkTorture(plain, gw, tortureDifferences, tortureMinPassed)
	t.Logf("smbtorture %s: %d tests; plain smbd passes %d, the gateway %d (%d listed differences)",
		strings.Join(tortureSuites, " "), total, passedPlain, passedGW, len(tortureDifferences))
	var better []string
	for name, res := range gw {
		if res == "success" && plain[name] != "success" {
			better = append(better, name)
		}
	}
	if len(better) > 0 {
		slices.Sort(better)
		t.Logf("passing on the gateway only: %v", better)
	}
	if len(problems) > 0 {
		// smbtorture's own lines for each new failure say which check failed.
		why := r.lines(func(name string, gateway bool) bool {
			_, listed := tortureDifferences[name]
			return gateway && plain[name] == "success" && !listed
		})
		t.Fatalf("smbtorture against tortureDifferences:\n  %s\n%s%s", strings.Join(problems, "\n  "), why, warnings(d.stderr.String()))
	}
}

// warnings picks the gateway's warnings and errors out of its log, for the
// report of a failed run: what the gateway saw go wrong beside what
// smbtorture saw.
func warnings(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return "the gateway logged no warning\n"
	}
	return "the gateway's warnings:\n" + strings.Join(out, "\n") + "\n"
}

func TestCheckTorture(t *testing.T) {
	plain := map[string]string{"s.a": "success", "s.b": "success", "s.c": "failure", "s.d": "success"}
	gw := map[string]string{"s.a": "success", "s.b": "failure", "s.c": "failure", "s.d": "success"}
	if _, _, n, p := checkTorture(plain, gw, map[string]string{"s.b": "why"}, 2); len(p) != 0 || n != 2 {
		t.Fatalf("exact list: passed %d, problems %q", n, p)
	}
	for _, c := range []struct {
		what  string
		list  map[string]string
		min   int
		wants string
	}{
		{"a new failure", map[string]string{}, 2, "s.b: passes on plain smbd, failure on the gateway, and is not listed"},
		{"a listed test that passes", map[string]string{"s.b": "why", "s.a": "why"}, 2, "s.a: listed"},
		{"a listed test plain smbd fails", map[string]string{"s.b": "why", "s.c": "why"}, 2, "s.c: listed (why) but plain smbd"},
		{"a listed test that did not run", map[string]string{"s.b": "why", "s.x": "why"}, 2, "s.x: listed but did not run"},
		{"a prefix of a listed name", map[string]string{"s.b.": "why", "s": "why"}, 2, "s.b: passes on plain smbd"},
		{"fewer passes", map[string]string{"s.b": "why"}, 3, "fewer than the 3"},
	} {
		_, _, _, p := checkTorture(plain, gw, c.list, c.min)
		if !strings.Contains(strings.Join(p, "\n"), c.wants) {
			t.Errorf("%s: problems %q, want one with %q", c.what, p, c.wants)
		}
	}
}

func TestWarnings(t *testing.T) {
	log := "time=1 level=INFO msg=a\ntime=2 level=WARN msg=\"view: a directory read failed\"\ntime=3 level=DEBUG msg=b\ntime=4 level=ERROR msg=c\n"
	if got, want := warnings(log), "the gateway's warnings:\ntime=2 level=WARN msg=\"view: a directory read failed\"\ntime=4 level=ERROR msg=c\n"; got != want {
		t.Fatalf("warnings: %q, want %q", got, want)
	}
	if got := warnings("time=1 level=INFO msg=a\n"); got != "the gateway logged no warning\n" {
		t.Fatalf("warnings of a log without any: %q", got)
	}
}

func TestDaemonReport(t *testing.T) {
	crashed := "time=1 level=INFO msg=a\ntime=2 level=WARN msg=w\npanic: runtime error: index out of range\n\ngoroutine 7 [running]:\nmain.f()\n"
	if got, want := daemonReport(crashed), "the gateway's warnings:\ntime=2 level=WARN msg=w\nand it crashed:\npanic: runtime error: index out of range\n\ngoroutine 7 [running]:\nmain.f()\n"; got != want {
		t.Fatalf("daemonReport of a crash: %q, want %q", got, want)
	}
	var log strings.Builder
	for i := range 30 {
		fmt.Fprintf(&log, "time=%d level=INFO msg=m%d\n", i, i)
	}
	got := daemonReport(log.String())
	if !strings.HasPrefix(got, "the gateway logged no warning\nits last lines:\ntime=10 level=INFO msg=m10\n") || !strings.HasSuffix(got, "msg=m29\n") || strings.Contains(got, "msg=m9\n") {
		t.Fatalf("daemonReport without a crash: %q", got)
	}
}
