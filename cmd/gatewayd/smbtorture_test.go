package main

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// tortureTarget is one server smbtorture runs against: //addr/share.
type tortureTarget struct{ addr, share string }

// tortureRun is what smbtorture gave on a gateway share and on plain smbd:
// each test's result and smbtorture's lines for it, by full test name, and
// how long each suite took on both servers at once.
type tortureRun struct {
	gw, plain           map[string]string
	gwLines, plainLines map[string]string
	took                map[string]time.Duration
}

// tortureServers starts a gateway with share "torture" and a plain smbd
// (StartPlain, with the global options given) with share "plain", both
// with user root, for t.
func tortureServers(t *testing.T, plainGlobal ...string) (d *daemon, gw, plain tortureTarget) {
	t.Helper()
	smbtest.Require(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	addr := freeport.Addr(t)
	d = serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "torture", "--protocols", "smb")
	plainAddr, _ := smbtest.StartPlain(t, "plain", smbPassword, plainGlobal...)
	return d, tortureTarget{addr, "torture"}, tortureTarget{plainAddr, "plain"}
}

// runTorture runs each suite against the gateway and plain smbd, both at
// once (the comparison is of results, not speed), as user, with the
// smbtorture options opts gives a suite. A run that ends before it has
// run every test of its suite (smbtorture stopped once on plain smbd,
// after 40 of smb2.oplock's 42, in a CI run) is logged with its last
// lines, and the tests it did not run are run again, once, in a run of
// their own: each test result comes from a run of that test.
func runTorture(t *testing.T, gw, plain tortureTarget, user string, suites []string, opts map[string][]string) tortureRun {
	t.Helper()
	r := tortureRun{gw: map[string]string{}, plain: map[string]string{}, gwLines: map[string]string{}, plainLines: map[string]string{}, took: map[string]time.Duration{}}
	for _, suite := range suites {
		all, err := smbtest.TortureList(suite)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var p smbtest.TortureRun
		var plainErr error
		plainDone := make(chan struct{})
		go func() {
			defer close(plainDone)
			p, plainErr = tortureAll(t, plain, user, suite, all, opts[suite])
		}()
		g, err := tortureAll(t, gw, user, suite, all, opts[suite])
		<-plainDone
		if err != nil {
			t.Fatal(err)
		}
		if plainErr != nil {
			t.Fatal(plainErr)
		}
		r.took[suite] = time.Since(start)
		maps.Copy(r.plain, p.Results)
		maps.Copy(r.gw, g.Results)
		maps.Copy(r.gwLines, g.Lines)
		maps.Copy(r.plainLines, p.Lines)
	}
	return r
}

// tortureAll runs suite against target, and runs again the tests of all,
// the suite's, that the run ended without (see runTorture).
func tortureAll(t *testing.T, target tortureTarget, user, suite string, all, opts []string) (smbtest.TortureRun, error) {
	r, err := smbtest.TortureTests(target.addr, target.share, user, smbPassword, suite, []string{suite}, opts...)
	if err != nil {
		return r, err
	}
	var missing []string
	for _, name := range all {
		if _, ran := r.Results[name]; !ran {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return r, nil
	}
	t.Logf("smbtorture %s on //%s/%s ended after %d of its %d tests (exit: %v); its last lines:\n%s\nrunning %s again",
		suite, target.addr, target.share, len(all)-len(missing), len(all), r.Exit, r.Tail, strings.Join(missing, " "))
	again, err := smbtest.TortureTests(target.addr, target.share, user, smbPassword, suite, missing, opts...)
	if err != nil {
		t.Logf("smbtorture %s on //%s/%s again: %v", suite, target.addr, target.share, err)
		return r, nil // the tests it did not run are reported so
	}
	for _, name := range missing {
		if res, ran := again.Results[name]; ran {
			r.Results[name], r.Lines[name] = res, again.Lines[name]
		}
	}
	return r, nil
}

// lines gives smbtorture's lines, on each server, for the tests whose
// result there is not success and for which unexpected says so: what
// smbtorture saw fail, for the report of a failed run.
func (r tortureRun) lines(unexpected func(name string, gateway bool) bool) string {
	var why []string
	for _, name := range slices.Sorted(maps.Keys(r.gw)) {
		if r.gw[name] != "success" && unexpected(name, true) {
			why = append(why, fmt.Sprintf("smbtorture on the gateway, %s:\n%s", name, r.gwLines[name]))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.plain)) {
		if r.plain[name] != "success" && unexpected(name, false) {
			why = append(why, fmt.Sprintf("smbtorture on plain smbd, %s:\n%s", name, r.plainLines[name]))
		}
	}
	return strings.Join(why, "")
}

// expectedTorture is one test's expected results.
type expectedTorture struct{ gateway, plain, why string }

// readExpectedTorture reads the expected results: per line a full test
// name (which may hold spaces), its result on the gateway, its result on plain smbd, and, when
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
		if len(fields) < 3 {
			return nil, fmt.Errorf("%s:%d: want a test, its result on the gateway and on plain smbd", path, n)
		}
		// Some names have spaces ("CREATE_IF Existing"): the two results
		// are the last fields.
		name := strings.Join(fields[:len(fields)-2], " ")
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s:%d: %s twice", path, n, name)
		}
		e := expectedTorture{gateway: fields[len(fields)-2], plain: fields[len(fields)-1], why: strings.TrimSpace(why)}
		if e.gateway != e.plain && e.why == "" {
			return nil, fmt.Errorf("%s:%d: %s differs between the servers without a reason", path, n, name)
		}
		out[name] = e
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

// checkTortureList holds a run to the expected results in the file
// expected, and fails t with every difference, all results and
// smbtorture's lines for the unexpected ones, and the gateway's warnings
// from its log.
func checkTortureList(t *testing.T, expected string, r tortureRun, gatewayLog string) {
	t.Helper()
	want, err := readExpectedTorture(expected)
	if err != nil {
		t.Fatal(err)
	}
	problems := checkExpectedTorture(want, r.gw, r.plain)
	if len(problems) == 0 {
		return
	}
	var all []string
	for _, name := range slices.Sorted(maps.Keys(r.plain)) {
		all = append(all, fmt.Sprintf("%-60s %-8s %s", name, orNone(r.gw[name]), r.plain[name]))
	}
	why := r.lines(func(name string, gateway bool) bool {
		w, ok := want[name]
		if gateway {
			return !ok || r.gw[name] != w.gateway
		}
		return !ok || r.plain[name] != w.plain
	})
	t.Fatalf("smbtorture against %s:\n  %s\nall results (test, gateway, plain smbd):\n%s\n%s%s", expected,
		strings.Join(problems, "\n  "), strings.Join(all, "\n"), why, warnings(gatewayLog))
}

func orNone(res string) string {
	if res == "" {
		return "did not run"
	}
	return res
}

// suiteTable is the per-suite count of tests and passes, and the time
// each suite took on both servers at once, as docs/smb.md shows it.
func suiteTable(suites []string, r tortureRun) string {
	var b strings.Builder
	b.WriteString("| suite | tests | passed on gatewayd | passed on plain smbd | seconds |\n|---|---|---|---|---|\n")
	for _, s := range suites {
		var n, g, p int
		for name := range maps.Keys(r.plain) {
			if strings.HasPrefix(name, s+".") {
				n++
				if r.plain[name] == "success" {
					p++
				}
				if r.gw[name] == "success" {
					g++
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.0f |\n", s, n, g, p, r.took[s].Seconds())
	}
	return b.String()
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
	f := dir + "/x"
	if err := os.WriteFile(f, []byte("# comment\n\ns.a b  success failure # why\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readExpectedTorture(f); err != nil || len(got) != 1 || got["s.a b"] != (expectedTorture{"success", "failure", "why"}) {
		t.Fatalf("a name with a space: %v, %v", got, err)
	}
	for _, c := range []struct{ text, wants string }{
		{"s.a success\n", "want a test"},
		{"s.a b success success\ns.a b failure failure\n", "s.a b twice"},
		{"s.a success failure\n", "without a reason"},
		{"s.a success success\ns.a success success\n", "twice"},
	} {
		if err := os.WriteFile(f, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readExpectedTorture(f); err == nil || !strings.Contains(err.Error(), c.wants) {
			t.Errorf("%q: %v, want %q", c.text, err, c.wants)
		}
	}
}

// lockingSuites are the smbtorture suites of what smbd keeps for open
// files, quick ones: byte-range locks, durable handles, share modes,
// delete on close and compound requests.
var lockingSuites = []string{"smb2.lock", "smb2.durable-open", "smb2.sharemode", "smb2.delete-on-close-perms", "smb2.compound"}

// breakSuites are the slow ones, run in a test of their own beside the
// others: oplock and lease breaks, whose tests wait out break timeouts
// (about 6 minutes for both on a busy machine; docs/smb.md).
var breakSuites = []string{"smb2.oplock", "smb2.lease"}

// plainLikeGateway are the global options that make plain smbd keep files
// as the gateway's smbd does: the same vfs modules, DOS attributes and EAs
// stored, locks, share modes and oplocks kept inside smbd, and change
// notification from smbd alone.
var plainLikeGateway = []string{"vfs objects = " + smb.WindowsVFS, "store dos attributes = yes", "ea support = yes",
	"kernel oplocks = no", "kernel share modes = no", "posix locking = no", "kernel change notify = no"}

// TestSMBTortureLocking runs lockingSuites against a gateway share and
// against plain smbd set up as the gateway's smbd on a local directory, in
// the same run, and holds every test's result on both to
// testdata/smbtorture-locking.txt.
func TestSMBTortureLocking(t *testing.T) {
	t.Parallel()
	tortureAgainstList(t, lockingSuites, "testdata/smbtorture-locking.txt")
}

// TestSMBTortureBreaks is TestSMBTortureLocking for breakSuites, held to
// testdata/smbtorture-breaks.txt.
func TestSMBTortureBreaks(t *testing.T) {
	t.Parallel()
	tortureAgainstList(t, breakSuites, "testdata/smbtorture-breaks.txt")
}

func tortureAgainstList(t *testing.T, suites []string, expected string) {
	d, gw, plain := tortureServers(t, plainLikeGateway...)
	r := runTorture(t, gw, plain, "root", suites, nil)
	t.Logf("smbtorture, per suite:\n%s", suiteTable(suites, r))
	checkTortureList(t, expected, r, d.stderr.String())
}
