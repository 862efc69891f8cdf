package main

// The operator's CLI: the one-screen status, shell completion with the
// names a running gateway knows, progress bars on long operations, and
// --output json on every listing.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatewayd/gatewayd/internal/testrand"
)

func TestStatusCompletionProgress(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	setConfig(t, dir, map[string]map[string]any{
		"volumes": {"settle_time": "100ms", "upload_interval": "100ms", "hydrate_rate": "512KiB"},
	})
	serve(t, dir)
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "c1", "--size", "16M", "--chunk-size", "64K")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")

	out := mustRun(t, "status", "--data-dir", dir)
	for _, want := range []string{"health OK", "reachable", "cache ", "buffers    volumes", "bandwidth  upload unlimited, download unlimited",
		"volumes    1,", "  c1 ", "shares     1 (docs), 0 files", "snapshots  none", "frontends", "uploadbuffer"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 30 {
		t.Errorf("status is %d lines, more than a screen:\n%s", n, out)
	}
	var s summary
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--data-dir", dir, "-o", "json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.GatewayID == "" || s.Stats == nil || s.Stats.Cache.Capacity == 0 || len(s.Volumes) != 1 || len(s.Shares) != 1 || s.Bandwidth == nil {
		t.Fatalf("status -o json: %+v", s)
	}

	// A snapshot while 1 MiB goes up at 128 KiB/s: its progress on stderr.
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "128K")
	l := attach(t, context.Background(), dir, "c1")
	data := testrand.Bytes(11, 1<<20)
	l.write(0, data)
	r := run(t, nil, "snapshot", "create", "--data-dir", dir, "c1", "--progress")
	if r.code != 0 || !strings.Contains(r.stdout, "snapshot snap-") || !strings.Contains(r.stderr, "ETA") || !strings.Contains(r.stderr, "/s") {
		t.Fatalf("snapshot create --progress: %+v", r)
	}
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "0")
	snaps := snapshotList(t, dir)

	// A stored volume restored from it: --wait draws the hydration.
	r = run(t, nil, "volume", "create", "--data-dir", dir, "--name", "s1", "--kind", "stored", "--from-snapshot", snaps[0].ID, "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "volume s1 hydrated: 16 chunks (1MiB)") || !strings.Contains(r.stderr, "100.0%") || !strings.Contains(r.stderr, "ETA 0s") {
		t.Fatalf("volume create --wait: %+v", r)
	}
	if got := attach(t, context.Background(), dir, "s1").read(0, 1<<20); string(got) != string(data) {
		t.Fatal("the hydrated volume reads different data")
	}
	if out := mustRun(t, "volume", "wait", "--data-dir", dir, "s1"); !strings.Contains(out, "hydrated") {
		t.Fatalf("volume wait on a hydrated volume: %s", out)
	}
	if out := mustRun(t, "volume", "wait", "--data-dir", dir, "c1"); !strings.Contains(out, "nothing to hydrate") {
		t.Fatalf("volume wait on a cached volume: %s", out)
	}
	mustFailClearly(t, run(t, nil, "volume", "wait", "--data-dir", dir, "nope"), "no such volume")

	// Completion: cobra's scripts, and the names only the gateway knows.
	if out := mustRun(t, "completion", "bash"); !strings.Contains(out, "__start_gatewayd") {
		t.Fatalf("completion bash:\n%.300s", out)
	}
	complete := func(args ...string) []string {
		t.Helper()
		out := mustRun(t, append([]string{"__complete", "--data-dir", dir}, args...)...)
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, ":") { // the last line is the directive
				got = append(got, strings.SplitN(line, "\t", 2)[0])
			}
		}
		return got
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"volume", "info", ""}, "c1 s1"},
		{[]string{"volume", "info", "s"}, "s1"},
		{[]string{"snapshot", "create", ""}, "c1 s1"},
		{[]string{"share", "refresh", "d"}, "docs"},
		{[]string{"snapshot", "info", ""}, snaps[0].ID},
		{[]string{"snapshot", "list", "--volume", "c"}, "c1"},
		{[]string{"volume", "list", "--output", ""}, "text json"},
	} {
		if got := strings.Join(complete(c.args...), " "); got != c.want {
			t.Errorf("complete %q: %q, want %q", c.args, got, c.want)
		}
	}
}

// Every command that lists or shows something takes --output json.
func TestEveryListingHasJSONOutput(t *testing.T) {
	shows := map[string]bool{"list": true, "show": true, "info": true, "schedules": true, "status": true, "attach-info": true}
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		if shows[c.Name()] {
			seen++
			f := c.Flags().Lookup("output")
			if f == nil || f.Shorthand != "o" || !strings.Contains(f.Usage, "json") {
				t.Errorf("%s has no -o/--output json", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	if seen < 9 {
		t.Fatalf("only %d listing commands found", seen)
	}
}

func TestProgressLine(t *testing.T) {
	for _, c := range []struct {
		done, total, base int64
		elapsed           time.Duration
		want              string
	}{
		{0, 4 << 20, 0, 0, "[..............................]   0.0% 0B / 4MiB  0B/s  ETA --"},
		{1 << 20, 4 << 20, 0, 3 * time.Second, "[#######.......................]  25.0% 1MiB / 4MiB  341KiB/s  ETA 9s"},
		{1 << 20, 4 << 20, 0, time.Second, "[#######.......................]  25.0% 1MiB / 4MiB  1MiB/s  ETA 3s"},
		{3 << 20, 4 << 20, 2 << 20, time.Second, "[######################........]  75.0% 3MiB / 4MiB  1MiB/s  ETA 1s"},
		{4 << 20, 4 << 20, 0, 2 * time.Second, "[##############################] 100.0% 4MiB / 4MiB  2MiB/s  ETA 0s"},
	} {
		if got := progressLine(c.done, c.total, c.base, c.elapsed, bytesUnit); got != c.want {
			t.Errorf("progressLine(%d, %d, %d, %v) =\n%q, want\n%q", c.done, c.total, c.base, c.elapsed, got, c.want)
		}
	}
}
