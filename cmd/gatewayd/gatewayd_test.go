package main

// These tests build the real binary and drive it as a user would: init,
// serve, status, config print, SIGTERM, and the bad inputs that must give one
// clear error line and a non-zero exit.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/bandwidthapi"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
)

// binary is the daemon as the tests run it; raceBinary is it built with
// the race detector, when the test binary is or -race-daemons asks, for
// the tests in raceTests.
var binary, raceBinary string

// raceDaemons builds the race-checked daemons for raceTests in a test
// binary without the race detector: scripts/test.sh runs this package's
// tests so, since their own process only drives clients (go-smb2, NFS,
// iSCSI and tape clients, HTTP), and race-checking those cost about as
// much CPU as all the daemons together (README, Test).
var raceDaemons = flag.Bool("race-daemons", false, "build the daemons of the tests in raceTests with the race detector, as a race-built test binary does")

// raceTests are the end-to-end tests whose daemons are race-checked (when
// this test binary is, or with -race-daemons): together they drive every
// frontend, the uploads, snapshots, restores, the admin API and kill -9
// recovery concurrently.
// The others run the plain build: the race-built daemons were a quarter
// of a CI run's CPU (README, Test), and every package's own tests are
// race-checked in process.
var raceTests = map[string]bool{
	"TestSoak":                 true, // iSCSI, NFSv3, snapshots, restore, gc, kill -9
	"TestSMBTorture":           true, // smbd's load through the file-share view
	"TestTapeLibraryEndToEnd":  true, // changer, drives, tapes, archive
	"TestNFS4ReclaimAfterKill": true, // NFSv4.1 sessions, opens and locks, kill -9
}

// TestRaceTestsExist checks that every name in raceTests is a test of
// this package, so a renamed test does not quietly lose its race-checked
// daemon.
func TestRaceTestsExist(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				tests[fn.Name.Name] = true
			}
		}
	}
	for name := range raceTests {
		if !tests[name] {
			t.Errorf("raceTests names %s, which is no test of this package", name)
		}
	}
}

// binaryFor is the daemon binary a test runs: the race-built one for the
// top-level tests in raceTests.
func binaryFor(t *testing.T) string {
	top, _, _ := strings.Cut(t.Name(), "/")
	if raceBinary != "" && raceTests[top] {
		return raceBinary
	}
	return binary
}

// TestMain builds the daemon once for every test. The end-to-end tests
// that spend their time waiting (on health probes, settle times, upload
// limits, client suites such as iscsi-test-cu and smbtorture) call
// t.Parallel and run side by side (scripts/test.sh runs them with
// -parallel 8): each has its own data directory, daemon, MinIO and ports
// on 127.0.0.1:0, and sets no environment. A loop device (losetup -f
// takes a free one) or a tmpfs mounted in a test's own directory is the
// test's own too. Tests that use state of the whole host (the
// environment, the host's rpcbind, a fixed port) stay sequential; go test
// runs them first, before any parallel test starts, so the rest are
// parallel even when they take seconds: on a busy machine a test that
// starts a daemon and runs a few commands takes minutes.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatewayd-bin")
	if err != nil {
		panic(err)
	}
	flag.Parse()
	binary = filepath.Join(dir, "gatewayd")
	builds := [][]string{{"build", "-o", binary, "."}}
	if raceEnabled || *raceDaemons {
		// The race-checked daemons stop at their first race: raceReport
		// makes that fail the test.
		raceBinary = filepath.Join(dir, "gatewayd-race")
		builds = append(builds, []string{"build", "-race", "-o", raceBinary, "."})
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" halt_on_error=1"))
	}
	for _, build := range builds {
		out, err := exec.Command("go", build...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(build, " "), err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the binary to completion with a generous deadline: a bound for
// a wedged command, not a speed check (the end-to-end tests run side by
// side on what may be a busy 2-core machine).
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runInput(t, env, "", args...)
}

// runInput is run with stdin (a password).
func runInput(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	// 15 minutes: argon2id in a race-checked binary alone takes minutes
	// when the machine is busy.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryFor(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	raceReport(t, strings.Join(args, " "), errb.String())
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// mustFailClearly checks the contract for bad input: non-zero exit, exactly
// one line on stderr that starts with "gatewayd:" and contains want, no panic.
func mustFailClearly(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want failure; stdout=%q stderr=%q", r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "gatewayd: ") {
		t.Fatalf("want one error line, got:\n%s", r.stderr)
	}
	if !strings.Contains(strings.ToLower(lines[0]), strings.ToLower(want)) {
		t.Fatalf("error %q does not say %q", lines[0], want)
	}
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("panicked:\n%s", r.stderr)
	}
}

// raceReport fails the test if a process of the race-enabled binary
// reported a data race on its stderr.
func raceReport(t *testing.T, what, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("gatewayd %s: data race:\n%s", what, stderr)
	}
}

// daemonReport is what a failed test shows of a daemon's log: its
// warnings and errors, then a panic or fatal error with its stacks (the
// daemon died under the test) or else its last lines.
func daemonReport(log string) string {
	out := warnings(log)
	for _, mark := range []string{"\npanic: ", "\nfatal error: "} {
		if i := strings.Index(log, mark); i >= 0 {
			tail := log[i+1:]
			if len(tail) > 64<<10 {
				tail = tail[:64<<10] + "\n[cut]"
			}
			return out + "and it crashed:\n" + tail
		}
	}
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	return out + "its last lines:\n" + strings.Join(lines[max(0, len(lines)-20):], "\n") + "\n"
}

type daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error    // Wait's error, for the one who waits
	exited chan struct{} // closed once the process has been waited for
}

// serve starts `gatewayd serve` and waits until its admin API answers.
func serve(t *testing.T, dataDir string, args ...string) *daemon {
	t.Helper()
	return serveWithin(t, 5*time.Minute, dataDir, args...)
}

// serveWithin is serve waiting up to wait for the admin API: longer for a
// start that replays much (a restart after kill -9 with thousands of
// files not uploaded yet).
func serveWithin(t *testing.T, wait time.Duration, dataDir string, args ...string) *daemon {
	t.Helper()
	return serveWrapped(t, wait, nil, dataDir, args...)
}

// serveWrapped is serveWithin with the daemon started through wrap, a
// command that execs its arguments (adtest.MemberWrap): the process and
// its pid are the daemon's.
func serveWrapped(t *testing.T, wait time.Duration, wrap []string, dataDir string, args ...string) *daemon {
	t.Helper()
	// Tests run side by side: the iSCSI portal takes a free port unless
	// the test chooses one.
	if !strings.Contains(strings.Join(args, " "), "--iscsi-listen") {
		args = append(args, "--iscsi-listen", "127.0.0.1:0")
	}
	if !strings.Contains(strings.Join(args, " "), "--nfs-listen") {
		args = append(args, "--nfs-listen", "127.0.0.1:0")
	}
	// Ephemeral test ports stay out of the host's rpcbind unless a test
	// asks for it.
	if !strings.Contains(strings.Join(args, " "), "--nfs-rpcbind") {
		args = append(args, "--nfs-rpcbind=false")
	}
	argv := append(append(append([]string(nil), wrap...), binaryFor(t), "serve", "--data-dir", dataDir), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	d := &daemon{cmd: cmd, stderr: new(syncBuffer), done: make(chan error, 1), exited: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		close(d.exited)
		d.done <- err
	}()
	t.Cleanup(func() {
		how := "had exited"
		select {
		case <-d.exited:
		default:
			_ = cmd.Process.Kill()
			<-d.exited
			how = "killed at cleanup"
		}
		raceReport(t, "serve", d.stderr.String())
		if t.Failed() {
			t.Logf("gatewayd serve (pid %d, %s, %v): %s", cmd.Process.Pid, how, cmd.ProcessState, daemonReport(d.stderr.String()))
		}
	})
	c := admin.NewUnixClient(filepath.Join(dataDir, "admin.sock"))
	deadline := time.Now().Add(wait)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return d
		}
		select {
		case err := <-d.done:
			t.Fatalf("serve exited early: %v\n%s", err, d.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never answered on its admin socket\n%s", d.stderr)
		}
	}
}

// stop sends SIGTERM and requires a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, d.stderr)
		}
	case <-time.After(5 * time.Minute):
		// SIGQUIT: the Go runtime prints every goroutine, which says
		// what the stop waits for.
		_ = d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.done:
		case <-time.After(time.Minute):
		}
		t.Fatalf("serve did not stop on SIGTERM; its goroutines after SIGQUIT:\n%s", d.stderr)
	}
}

// kill sends SIGKILL (kill -9) and waits for the process to end.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("serve did not end on SIGKILL")
	}
}

func TestInitServeStatusStop(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	r := run(t, nil, "init", "--data-dir", dir)
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if fi, err := os.Stat(filepath.Join(dir, "master.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key: %v %v", fi, err)
	}

	d := serve(t, dir)

	// The env variable finds the same gateway as the flag.
	r = run(t, []string{"GATEWAYD_DATA_DIR=" + dir}, "status", "--output", "json")
	if r.code != 0 {
		t.Fatalf("status: %+v", r)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, r.stdout)
	}
	if st.GatewayID == "" || !strings.HasPrefix(st.Store, "file://") || st.Overall.String() != "ok" {
		t.Fatalf("status = %+v", st)
	}
	if !strings.Contains(r.stdout, st.GatewayID) {
		t.Fatal("gateway id missing")
	}
	r = run(t, nil, "status", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, st.GatewayID) || !strings.Contains(r.stdout, "health") {
		t.Fatalf("text status: %+v", r)
	}

	r = run(t, nil, "config", "print", "--data-dir", dir, "--iscsi-listen", "127.0.0.1:3999")
	if r.code != 0 || !strings.Contains(r.stdout, "url: file://objects") || !strings.Contains(r.stdout, "127.0.0.1:3999") {
		t.Fatalf("config print: %+v", r)
	}

	// A second daemon on the same data directory is refused.
	r = run(t, nil, "serve", "--data-dir", dir)
	mustFailClearly(t, r, "in use")

	d.stop(t)
	if _, err := os.Stat(filepath.Join(dir, "admin.sock")); !os.IsNotExist(err) {
		t.Fatalf("admin socket left behind: %v", err)
	}
	r = run(t, nil, "status", "--data-dir", dir)
	mustFailClearly(t, r, "not running")

	// Restart on the same data directory: same gateway.
	d = serve(t, dir)
	r = run(t, nil, "status", "--data-dir", dir, "-o", "json")
	if !strings.Contains(r.stdout, st.GatewayID) {
		t.Fatalf("restart changed the gateway: %s", r.stdout)
	}
	d.stop(t)
}

func TestBadInputFailsClearly(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	t.Run("serve before init", func(t *testing.T) {
		mustFailClearly(t, run(t, nil, "serve", "--data-dir", t.TempDir()), "gatewayd init")
	})
	t.Run("unreadable config", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "gatewayd.yaml"), []byte("store: [unclosed\n\x00"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustFailClearly(t, run(t, nil, "serve", "--data-dir", dir), "gatewayd.yaml")
		mustFailClearly(t, run(t, nil, "config", "print", "--data-dir", dir), "gatewayd.yaml")
	})
	t.Run("unknown option", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "gatewayd.yaml"), []byte("stroe:\n  url: file://x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustFailClearly(t, run(t, nil, "serve", "--data-dir", dir), "stroe")
	})
	t.Run("init twice", func(t *testing.T) {
		dir := t.TempDir()
		if r := run(t, nil, "init", "--data-dir", dir); r.code != 0 {
			t.Fatalf("init: %+v", r)
		}
		mustFailClearly(t, run(t, nil, "init", "--data-dir", dir), "already initialised")
	})
	t.Run("wrong key", func(t *testing.T) {
		dir := t.TempDir()
		if r := run(t, nil, "init", "--data-dir", dir); r.code != 0 {
			t.Fatalf("init: %+v", r)
		}
		other := make([]byte, 32)
		_, _ = rand.Read(other)
		if err := os.WriteFile(filepath.Join(dir, "master.key"), other, 0o600); err != nil {
			t.Fatal(err)
		}
		mustFailClearly(t, run(t, nil, "serve", "--data-dir", dir), "wrong master key")
	})
	t.Run("key readable by others", func(t *testing.T) {
		dir := t.TempDir()
		if r := run(t, nil, "init", "--data-dir", dir); r.code != 0 {
			t.Fatalf("init: %+v", r)
		}
		if err := os.Chmod(filepath.Join(dir, "master.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustFailClearly(t, run(t, nil, "serve", "--data-dir", dir), "master.key")
	})
	t.Run("unreachable endpoint", func(t *testing.T) {
		addr := freeport.Addr(t) // nothing listens there
		r := run(t, nil, "init", "--data-dir", t.TempDir(), "--store", "s3://bucket", "--s3-endpoint", "http://"+addr,
			"--s3-path-style", "--s3-access-key", "k", "--s3-secret-key", "secretsecret")
		mustFailClearly(t, r, "cannot reach")
	})
	t.Run("no credentials", func(t *testing.T) {
		env := []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true",
			"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CONTAINER_CREDENTIALS_FULL_URI=", "AWS_WEB_IDENTITY_TOKEN_FILE="}
		r := run(t, env, "init", "--data-dir", t.TempDir(), "--store", "s3://bucket", "--s3-endpoint", "http://127.0.0.1:1")
		mustFailClearly(t, r, "no credentials")
	})
	t.Run("bad flag value", func(t *testing.T) {
		mustFailClearly(t, run(t, nil, "init", "--data-dir", t.TempDir(), "--store", "ftp://x"), "store.url")
	})
}

func TestS3StoreWithMinIO(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "gw-bucket")
	s3args := minioFlags(srv)

	t.Run("missing bucket", func(t *testing.T) {
		r := run(t, nil, append([]string{"init", "--data-dir", t.TempDir(), "--store", "s3://no-such-bucket/gw"}, s3args...)...)
		mustFailClearly(t, r, "does not exist")
	})

	dir := t.TempDir()
	r := run(t, nil, append([]string{"init", "--data-dir", dir, "--store", "s3://gw-bucket/gw1"}, s3args...)...)
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r = run(t, nil, "config", "print", "--data-dir", dir)
	if strings.Contains(r.stdout, srv.SecretKey) || !strings.Contains(r.stdout, "REDACTED") {
		t.Fatalf("config print shows the secret:\n%s", r.stdout)
	}
	d := serve(t, dir)
	r = run(t, nil, "status", "--data-dir", dir, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, "s3://gw-bucket/gw1") {
		t.Fatalf("status: %+v", r)
	}
	d.stop(t)

	// Disaster recovery: a second gateway with the same key joins the bucket
	// and is the same repository; without the key it is refused.
	dr := t.TempDir()
	r = run(t, nil, append([]string{"init", "--data-dir", dr, "--store", "s3://gw-bucket/gw1", "--master-key-file", filepath.Join(dir, "master.key")}, s3args...)...)
	if r.code != 0 {
		t.Fatalf("init with existing key: %+v", r)
	}
	r = run(t, nil, append([]string{"init", "--data-dir", t.TempDir(), "--store", "s3://gw-bucket/gw1"}, s3args...)...)
	mustFailClearly(t, r, "already initialised")
}

func TestPassphraseMasterKey(t *testing.T) {
	// Beside the others: argon2id in the race-checked binary takes minutes
	// on a busy machine, and the passphrase goes to each process on its
	// own command line's environment, not the test's.
	t.Parallel()
	dir := t.TempDir()
	env := []string{"GW_TEST_PASSPHRASE=correct horse battery staple"}
	r := run(t, env, "init", "--data-dir", dir, "--passphrase-env", "GW_TEST_PASSPHRASE")
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key")); !os.IsNotExist(err) {
		t.Fatalf("a passphrase gateway wrote a key file: %v", err)
	}
	mustFailClearly(t, run(t, []string{"GW_TEST_PASSPHRASE="}, "serve", "--data-dir", dir), "GW_TEST_PASSPHRASE")
	mustFailClearly(t, run(t, []string{"GW_TEST_PASSPHRASE=wrong"}, "serve", "--data-dir", dir), "wrong master key")

	d := serveWrapped(t, 15*time.Minute, []string{"env", "GW_TEST_PASSPHRASE=correct horse battery staple"}, dir)
	d.stop(t)
}

func TestVolumeCommands(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	if r := run(t, nil, "init", "--data-dir", dir); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	d := serve(t, dir)
	for _, args := range [][]string{
		{"volume", "create", "--name", "c1", "--size", "64M"},
		{"volume", "create", "--name", "s1", "--size", "32M", "--kind", "stored", "--chunk-size", "256K"},
	} {
		if r := run(t, nil, append(args, "--data-dir", dir)...); r.code != 0 || !strings.Contains(r.stdout, "created") {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "c1", "--size", "1G"), "exists")
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "x", "--size", "1G", "--kind", "tape"), "kind")
	mustFailClearly(t, run(t, nil, "volume", "info", "--data-dir", dir, "nope"), "no such volume")

	r := run(t, nil, "volume", "list", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "c1") || !strings.Contains(r.stdout, "stored") || !strings.Contains(r.stdout, "256KiB") {
		t.Fatalf("list: %+v", r)
	}
	r = run(t, nil, "volume", "grow", "--data-dir", dir, "s1", "--size", "64M")
	if r.code != 0 || !strings.Contains(r.stdout, "64MiB") {
		t.Fatalf("grow: %+v", r)
	}
	r = run(t, nil, "volume", "info", "--data-dir", dir, "s1", "-o", "json")
	var v struct {
		Name, Kind, Disk string
		Size             int64
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Size != 64<<20 || v.Kind != "stored" || v.Disk == "" {
		t.Fatalf("info: %v %+v", err, r)
	}
	if _, err := os.Stat(v.Disk); err != nil {
		t.Fatalf("stored volume disk file: %v", err)
	}

	// Volumes survive a restart.
	d.stop(t)
	d = serve(t, dir)
	if r := run(t, nil, "volume", "delete", "--data-dir", dir, "s1"); r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if _, err := os.Stat(v.Disk); !os.IsNotExist(err) {
		t.Fatalf("disk file after delete: %v", err)
	}
	r = run(t, nil, "volume", "list", "--data-dir", dir, "-o", "json")
	if strings.Contains(r.stdout, "s1") || !strings.Contains(r.stdout, "c1") {
		t.Fatalf("list after delete: %+v", r)
	}
	// Bandwidth limits change at runtime.
	r = run(t, nil, "bandwidth", "set", "--data-dir", dir, "--upload", "10M")
	if r.code != 0 || !strings.Contains(r.stdout, "upload    10MiB/s") || !strings.Contains(r.stdout, "download  unlimited") {
		t.Fatalf("bandwidth set: %+v", r)
	}
	r = run(t, nil, "bandwidth", "show", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "10MiB/s") {
		t.Fatalf("bandwidth show: %+v", r)
	}
	mustFailClearly(t, run(t, nil, "bandwidth", "set", "--data-dir", dir, "--download", "fast"), "--download")
	// A schedule whose window covers every moment applies at once.
	out := mustRun(t, "bandwidth", "schedule", "--data-dir", dir, "--window", "mon-sun 00:00-24:00 up=3M down=4M", "--window", "sat,sun 10:00-12:00 up=1M")
	if !strings.Contains(out, "1  mon,tue,wed,thu,fri,sat,sun 00:00-24:00") || !strings.Contains(out, "2  sat,sun 10:00-12:00") {
		t.Fatalf("bandwidth schedule:\n%s", out)
	}
	if out := mustRun(t, "bandwidth", "show", "--data-dir", dir); !strings.Contains(out, "now, by schedule window 1") || !strings.Contains(out, "3MiB/s") {
		t.Fatalf("bandwidth show with a schedule:\n%s", out)
	}
	mustFailClearly(t, run(t, nil, "bandwidth", "schedule", "--data-dir", dir, "--window", "someday 10:00-12:00"), "days are")
	mustFailClearly(t, run(t, nil, "volume", "list", "--data-dir", dir, "-o", "yaml"), "want text or json")
	var bw bandwidthapi.BandwidthStatus
	if err := json.Unmarshal([]byte(mustRun(t, "bandwidth", "show", "--data-dir", dir, "-o", "json")), &bw); err != nil || bw.Window != 1 || bw.Effective.UploadBytesPerSec != 3<<20 {
		t.Fatalf("bandwidth show -o json: %+v %v", bw, err)
	}
	mustRun(t, "bandwidth", "schedule", "--data-dir", dir, "--clear")
	if out := mustRun(t, "bandwidth", "show", "--data-dir", dir); strings.Contains(out, "schedule window") {
		t.Fatalf("bandwidth show after clearing the schedule:\n%s", out)
	}

	// The metrics carry the AWS Storage Gateway names' counterparts.
	resp, err := (&http.Client{Transport: unixTransport(filepath.Join(dir, "admin.sock"))}).Get("http://gatewayd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"gatewayd_cache_percent_used", "gatewayd_cache_percent_dirty", "gatewayd_cache_hit_percent",
		"gatewayd_upload_buffer_percent_used", "gatewayd_cloud_bytes_uploaded_total", "gatewayd_cloud_bytes_downloaded_total",
		`gatewayd_volume_queued_write_bytes{volume="c1"}`, `gatewayd_health_level{subsystem="uploadbuffer"}`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	d.stop(t)
}

func unixTransport(sock string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
}

// metric reads one sample from the daemon's /metrics: the value of the
// line that starts with name (labels included, as printed).
func metric(t *testing.T, dataDir, name string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, dataDir), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}
