package main

// Guard rails of the CLI, against the real daemon: names that later
// commands could not address are refused at create, mistyped subcommands
// fail with a suggestion, `volume access` changes nothing without flags,
// Ctrl-C on `snapshot create` leaves the snapshot to the gateway, sizes
// read as people write them, text output in human units, status exit
// codes, /healthz without the token on loopback, and `version`.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/names"
)

// refusedNames are names every create must refuse, and why.
var refusedNames = map[string]string{
	".":                      "reserved",
	"..":                     "reserved",
	"a/b":                    "slash",
	"a\x01b":                 "control character",
	strings.Repeat("x", 256): "256 bytes",
}

func TestCLIGuardRails(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	setConfig(t, dir, map[string]map[string]any{"vtl": {"slots": 8, "drives": 1}})
	adminAddr := freeport.Addr(t)
	serve(t, dir, "--admin-listen", adminAddr)
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "c1", "--size", "16M", "--chunk-size", "64K")

	t.Run("names", func(t *testing.T) {
		for name, why := range refusedNames {
			for what, args := range map[string][]string{
				"volume name":          {"volume", "create", "--data-dir", dir, "--name", name, "--size", "16M"},
				"share name":           {"share", "create", "--data-dir", dir, "--name", name},
				"barcode prefix":       {"tape", "create", "--data-dir", dir, "--barcode-prefix", name, "--size", "2G"},
				"snapshot description": {"snapshot", "create", "--data-dir", dir, "c1", "--description", name},
			} {
				r := run(t, nil, args...)
				mustFailClearly(t, r, what)
				if !strings.Contains(r.stderr, why) || !strings.Contains(r.stderr, names.Rule) {
					t.Errorf("%s %q: %q lacks %q and the rule", what, name, r.stderr, why)
				}
			}
		}
		// Nothing was made.
		var vols []volumeapi.VolumeStatus
		if err := json.Unmarshal([]byte(mustRun(t, "volume", "list", "--data-dir", dir, "-o", "json")), &vols); err != nil || len(vols) != 1 {
			t.Fatalf("volumes after refusals: %v %+v", err, vols)
		}
		if out := mustRun(t, "share", "list", "--data-dir", dir, "-o", "json"); strings.TrimSpace(out) != "[]" {
			t.Fatalf("shares after refusals: %s", out)
		}
		if n := len(snapshotList(t, dir)); n != 0 {
			t.Fatalf("%d snapshots after refusals", n)
		}
		// A description may have spaces.
		mustRun(t, "snapshot", "create", "--data-dir", dir, "c1", "--description", "before the upgrade")
	})

	t.Run("did you mean", func(t *testing.T) {
		mustFailClearly(t, run(t, nil, "snapshot", "creat", "--data-dir", dir, "c1"), `did you mean "gatewayd snapshot create"`)
		mustFailClearly(t, run(t, nil, "volume", "snapshot", "--data-dir", dir, "c1"), `did you mean "gatewayd snapshot"`)
		mustFailClearly(t, run(t, nil, "statu", "--data-dir", dir), `did you mean "gatewayd status"`)
		mustFailClearly(t, run(t, nil, "volume", "lst", "--data-dir", dir), `did you mean "gatewayd volume list"`)
		mustFailClearly(t, run(t, nil, "completion", "bsh"), `"gatewayd completion bash"`)
		// A group without a word shows its help.
		if r := run(t, nil, "volume"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
			t.Fatalf("volume alone: %+v", r)
		}
	})

	t.Run("access needs --clear", func(t *testing.T) {
		mustRun(t, "volume", "access", "--data-dir", dir, "c1", "--chap-user", "alice", "--chap-secret", "a-long-secret",
			"--initiator", "iqn.1993-08.org.debian:01:host1")
		mustFailClearly(t, run(t, nil, "volume", "access", "--data-dir", dir, "c1"), "--clear")
		mustFailClearly(t, run(t, nil, "volume", "access", "--data-dir", dir, "c1", "--clear", "--chap-user", "bob"), "--clear")
		var ai volumeapi.AttachInfo
		if err := json.Unmarshal([]byte(mustRun(t, "volume", "attach-info", "--data-dir", dir, "c1", "-o", "json")), &ai); err != nil {
			t.Fatal(err)
		}
		if ai.CHAPUser != "alice" || len(ai.Initiators) != 1 {
			t.Fatalf("access without flags changed the settings: %+v", ai)
		}
		if out := mustRun(t, "volume", "access", "--data-dir", dir, "c1", "--clear"); !strings.Contains(out, "chap     none") {
			t.Fatalf("access --clear:\n%s", out)
		}
	})

	t.Run("sizes", func(t *testing.T) {
		mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "neg", "--size", "-5G"), `invalid size "-5G"`)
		mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "frac", "--size", "1.5G"), `invalid size "1.5G"`)
		mustFailClearly(t, run(t, nil, "volume", "grow", "--data-dir", dir, "c1", "--size", "lots"), `invalid size "lots"`)
		for in, want := range map[string]int64{"5g": 5 << 30, "5GiB": 5 << 30, "5GB": 5000003584, "512M": 512 << 20} {
			name := "size-" + strings.ToLower(in)
			r := run(t, nil, "volume", "create", "--data-dir", dir, "--name", name, "--size", in)
			if r.code != 0 {
				t.Fatalf("--size %s: %+v", in, r)
			}
			if want%(1<<20) != 0 && !strings.Contains(r.stderr, "rounded up to 5000003584 bytes") {
				t.Errorf("--size %s: the rounding is not said: %q", in, r.stderr)
			}
			var v volumeapi.VolumeStatus
			if err := json.Unmarshal([]byte(mustRun(t, "volume", "info", "--data-dir", dir, name, "-o", "json")), &v); err != nil || v.Size != want {
				t.Errorf("--size %s: %v size %d, want %d", in, err, v.Size, want)
			}
			mustRun(t, "volume", "delete", "--data-dir", dir, name)
		}
	})

	t.Run("messages and units", func(t *testing.T) {
		r := run(t, nil, "volume", "info", "--data-dir", dir, "nope")
		mustFailClearly(t, r, "nope")
		if strings.Contains(r.stderr, "gatewayd: gatewayd:") {
			t.Fatalf("prefix repeated: %q", r.stderr)
		}
		attach(t, context.Background(), dir, "c1").write(0, testrand.Bytes(21, 100_000))
		human := regexp.MustCompile(`^\d+(\.\d+)?(B|KiB|MiB|GiB|TiB)$`)
		out := mustRun(t, "status", "--data-dir", dir)
		amounts := map[string][]int{"cache": {1, 3, 6}, "buffers": {2, 4, 8, 10}, "moved": {1, 3}}
		seen := 0
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || amounts[f[0]] == nil || strings.HasPrefix(line, " ") {
				continue
			}
			seen++
			for _, i := range amounts[f[0]] {
				if i >= len(f) || !human.MatchString(strings.TrimSuffix(f[i], ",")) {
					t.Errorf("status %q: field %d is not an amount in human units", line, i)
				}
			}
		}
		if seen != len(amounts) {
			t.Errorf("status lacks the cache, buffers or moved line:\n%s", out)
		}
		info := mustRun(t, "volume", "info", "--data-dir", dir, "c1")
		if !regexp.MustCompile(`(?m)^upload buffer \d+(\.\d+)?(B|KiB|MiB|GiB) used`).MatchString(info) ||
			!regexp.MustCompile(`(?m)^not uploaded  \d+(\.\d+)?(B|KiB|MiB|GiB) in`).MatchString(info) {
			t.Errorf("volume info not in human units:\n%s", info)
		}
		// JSON keeps exact bytes.
		var v volumeapi.VolumeStatus
		if err := json.Unmarshal([]byte(mustRun(t, "volume", "info", "--data-dir", dir, "c1", "-o", "json")), &v); err != nil || v.Size != 16<<20 {
			t.Fatalf("json size: %v %d", err, v.Size)
		}
	})

	t.Run("healthz without token on loopback", func(t *testing.T) {
		get := func(path string) int {
			t.Helper()
			resp, err := http.Get("http://" + adminAddr + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if path == "/healthz" {
				var h map[string]any
				if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h["overall"] == nil {
					t.Fatalf("/healthz body: %v %v", err, h)
				}
			}
			return resp.StatusCode
		}
		if code := get("/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz without token on loopback: %d", code)
		}
		for _, p := range []string{"/v1/status", "/v1/volumes", "/metrics"} {
			if code := get(p); code != http.StatusUnauthorized {
				t.Errorf("%s without token: %d, want 401", p, code)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		out := mustRun(t, "version")
		if !regexp.MustCompile(`^gatewayd \S+\ncommit   ([0-9a-f]{40}(\+dirty)?|unknown)\ngo       go1\.\d+`).MatchString(out) {
			t.Fatalf("version:\n%s", out)
		}
		var v map[string]string
		if err := json.Unmarshal([]byte(mustRun(t, "version", "-o", "json")), &v); err != nil || v["version"] == "" || v["commit"] == "" || !strings.HasPrefix(v["go"], "go1.") {
			t.Fatalf("version -o json: %v %v", err, v)
		}
	})
}

// syncBuffer is a buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// until turns a condition into what smbtest.Eventually polls.
func until(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	}
}

// Ctrl-C on `snapshot create` leaves the snapshot running in the gateway,
// says so, and the snapshot is there when its upload ends.
func TestSnapshotCreateInterrupted(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	setConfig(t, dir, map[string]map[string]any{"volumes": {"settle_time": "100ms", "upload_interval": "100ms"}})
	serve(t, dir)
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "c1", "--size", "16M", "--chunk-size", "64K")
	// 2 MiB at 32 KiB/s: the snapshot's upload takes about a minute.
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "32K")
	attach(t, context.Background(), dir, "c1").write(0, testrand.Bytes(22, 2<<20))

	cmd := exec.Command(binaryFor(t), "snapshot", "create", "--data-dir", dir, "c1", "--progress")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	smbtest.Eventually(t, "the CLI to say the snapshot started", until(func() bool { return strings.Contains(stderr.String(), "Ctrl-C leaves it running") }))
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("snapshot create did not end on SIGINT\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(stderr.String(), "goes on in the gateway") || stdout.String() != "" {
		t.Fatalf("after SIGINT: exit %d\nstdout %q\nstderr %q", code, stdout.String(), stderr.String())
	}
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "0")
	smbtest.Eventually(t, "the interrupted snapshot to be recorded", until(func() bool { return len(snapshotList(t, dir)) == 1 }))
}

// status exits 0 when healthy, 2 when a subsystem fails (the store it
// points at is gone), 3 when no gateway answers.
func TestStatusExitCodes(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	d := serve(t, dir)
	if r := run(t, nil, "status", "--data-dir", dir); r.code != 0 || r.stderr != "" {
		t.Fatalf("healthy status: %+v", r)
	}
	objects := filepath.Join(dir, "objects")
	if err := os.Rename(objects, objects+".away"); err != nil {
		t.Fatal(err)
	}
	// The lease's renewal may warn first (degraded); the store's probe
	// then fails it.
	var r result
	smbtest.Eventually(t, "status to report the store gone", until(func() bool {
		r = run(t, nil, "status", "--data-dir", dir)
		if r.code != 0 && r.code != statusDegraded && r.code != statusFailed {
			t.Fatalf("status with the store going: %+v", r)
		}
		return r.code == statusFailed
	}))
	if !strings.Contains(r.stdout, "UNREACHABLE") {
		t.Fatalf("status with the store gone: %+v", r)
	}
	mustFailClearly(t, r, "health FAILED: ")
	if !strings.Contains(r.stderr, "objstore error: object store unreachable") {
		t.Fatalf("status does not name the failed subsystem: %q", r.stderr)
	}
	if j := run(t, nil, "status", "--data-dir", dir, "-o", "json"); j.code != statusFailed || !json.Valid([]byte(j.stdout)) {
		t.Fatalf("status -o json with the store gone: %+v", j)
	}
	if err := os.Rename(objects+".away", objects); err != nil {
		t.Fatal(err)
	}
	smbtest.Eventually(t, "status healthy again", until(func() bool { return run(t, nil, "status", "--data-dir", dir).code == 0 }))
	d.stop(t)
	r = run(t, nil, "status", "--data-dir", dir)
	if r.code != statusUnknown {
		t.Fatalf("status of a stopped gateway: %+v", r)
	}
	mustFailClearly(t, r, "not running")
	if help := mustRun(t, "status", "--help"); !strings.Contains(help, fmt.Sprintf("%d  failed", statusFailed)) {
		t.Fatalf("status --help does not list the exit codes:\n%s", help)
	}
}

// SMB user names follow the same rule.
func TestSMBUserNameRule(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	smbtest.Require(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	serve(t, dir, "--smb-listen", freeport.Addr(t))
	for name, why := range refusedNames {
		r := run(t, nil, "smb", "user", "add", "--data-dir", dir, name, "--password", "a-password")
		mustFailClearly(t, r, "SMB user name")
		if !strings.Contains(r.stderr, why) || !strings.Contains(r.stderr, names.Rule) {
			t.Errorf("smb user add %q: %q lacks %q and the rule", name, r.stderr, why)
		}
	}
}

// status exits 1 while the gateway is degraded: writes wait for room in a
// cache full of data the upload limit holds back; 0 once they go on.
func TestStatusExitCodeDegraded(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	setConfig(t, dir, map[string]map[string]any{
		"cache":   {"size": "64MiB"},
		"volumes": {"settle_time": "100ms", "upload_interval": "100ms"},
	})
	serve(t, dir)
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "c1", "--size", "256M", "--chunk-size", "1M")
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "1K")
	l := attach(t, context.Background(), dir, "c1")
	data := testrand.Bytes(23, 1<<20)
	written := make(chan error, 1)
	go func() { // 96 MiB into a 64 MiB cache: the writes wait
		for off := int64(0); off < 96<<20; off += 1 << 20 {
			if _, err := scsiRW(l.ctx, l.c, true, off, data, 0); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	var r result
	smbtest.Eventually(t, "status to report writes waiting", until(func() bool { r = run(t, nil, "status", "--data-dir", dir); return r.code != 0 }))
	if r.code != statusDegraded || !strings.Contains(r.stdout, "health WARNING") {
		t.Fatalf("status while writes wait: %+v", r)
	}
	mustFailClearly(t, r, "health DEGRADED: cache warning")
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "0")
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the writes did not go on after the upload limit was lifted")
	}
	smbtest.Eventually(t, "status healthy again", until(func() bool { return run(t, nil, "status", "--data-dir", dir).code == 0 }))
}

// statusJSON is `status -o json` of a gateway in any health: its exit code
// tells the health (0 to 2), anything else is a failure.
func statusJSON(t *testing.T, dataDir string) admin.Status {
	t.Helper()
	r := run(t, nil, "status", "--data-dir", dataDir, "-o", "json")
	var st admin.Status
	if r.code > statusFailed {
		t.Fatalf("status -o json: %+v", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%+v", err, r)
	}
	return st
}
