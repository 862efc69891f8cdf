//go:build smbnotify

// Built only with the smbnotify tag, run by hand (docs/smb.md): plain
// smbd, the peer every torture list is held against, fails some of
// smb2.notify's tests when the machine is busy, for its own sake, not the
// gateway's (basedir's race, below, is caught; dir's buffered notify of
// ten creates once held nine on plain smbd in a CI run):
//
//	go test -tags smbnotify -timeout 60m -run 'TestSMBTortureNotify$' ./cmd/gatewayd/

package main

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/childproc"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// notifyPatience bounds one smbtorture run of one smb2.notify test: a
// test's hang, not a speed check. The whole suite took at most 635 s for
// both servers at once at load 60-80 (docs/smb.md); smbtorture waits for a
// change notify without a time limit of its own, so a notify that never
// comes would hold the test until go test's timeout.
const notifyPatience = 20 * time.Minute

// basedirPatience is how long smb2.notify.basedir runs before the test
// looks at whether it waits for a change it missed (basedirProbe). The
// test takes seconds even at load 60; a probe sent too early costs one
// more run of it, never a result.
const basedirPatience = 5 * time.Minute

// basedirRuns is how many runs of smb2.notify.basedir a server gets when
// each misses its change (basedirProbe).
const basedirRuns = 3

// basedirProbe is the change that tells a lost race from a notify that
// never comes, in smbtorture 4.17's smb2.notify.basedir. The test sends a
// change notify (attributes, recursive) on test_notify_BAS over its first
// connection and at once, without waiting for the server's interim
// response, sets an attribute of test_notify_BAS\tname1 over its second
// one, then waits for the notify without a time limit. smbd serves each
// connection in a process of its own and registers the notify with
// notifyd by a message, as notifyd learns of the change: when the change's
// message reaches notifyd first (the first connection's smbd not yet
// scheduled, on a busy machine), nothing is there to notify, and
// smbtorture waits for ever. Plain smbd, the peer, did so in a CI run for
// 20 minutes, and in 5 of 450 runs of basedir alone at load 30-48. In
// smbd's log of two of those (debug level 10) the notify's smbd reads the
// notify only after the other connection's smbd has set the attribute,
// and notifyd gets the change ("Got trigger_msg ...
// test_notify_BAS/tname1", no instances found) before the registration
// ("notifyd_rec_change" from the notify's smbd); delaying the first
// connection's messages (strace --inject=sendmsg:delay_enter) makes it
// happen every time, on plain smbd and on the gateway alike. No other
// test of the suite races so: in smbd's log of a whole run (debug level
// 10), basedir's is the only one of 415 first notifies on a handle after
// which the client sent a request on another connection before smbd
// answered the notify (its interim response, or a cancel's), and smbd
// sends notifyd the registration before it answers.
//
// A basedir run still going after basedirPatience gets this change, made
// over a connection of its own: if the pending notify answers it and the
// test then passes, the notify was registered and had only missed the
// test's change, and the run counts for nothing; the test runs again. If
// the notify answers nothing within basedirPatience more, the run is a
// timeout, and any other outcome after the probe is the run's result.
const basedirProbe = `setmode test_notify_BAS\tname1 +r`

// TestSMBTortureNotify is TestSMBTortureLocking for smb2.notify, change
// notification, held to testdata/smbtorture-notify.txt. Each test of the
// suite is a smbtorture run of its own, with a deadline (notifyPatience),
// on both servers at once, each server's tests one after the other; a
// smb2.notify.basedir that missed its change because of the race
// basedirProbe describes runs again.
func TestSMBTortureNotify(t *testing.T) {
	t.Parallel()
	d, gw, plain := tortureServers(t, plainLikeGateway...)
	tests := notifyTests(t)
	r := runNotifyTorture(t, gw, plain, tests)
	t.Logf("smbtorture, per suite:\n%s", suiteTable([]string{"smb2.notify"}, r))
	checkTortureList(t, "testdata/smbtorture-notify.txt", r, d.stderr.String())
}

// notifyTests are the tests of smbtorture's smb2.notify, by full name
// (smb2.notify.basedir), in smbtorture's order.
func notifyTests(t *testing.T) []string {
	t.Helper()
	tests, err := smbtest.TortureList("smb2.notify")
	if err != nil {
		t.Fatal(err)
	}
	if len(tests) == 0 {
		t.Fatal("smbtorture --list smb2.notify listed no test")
	}
	return tests
}

// runNotifyTorture runs each test against the gateway and plain smbd, the
// two servers at once, each its tests one after the other, and gives the
// results as runTorture does, with the suite's time for both.
func runNotifyTorture(t *testing.T, gw, plain tortureTarget, tests []string) tortureRun {
	t.Helper()
	// What is left of go test's -timeout, less time to report: no run
	// starts or lasts past it.
	stop := time.Now().Add(24 * time.Hour)
	if dl, ok := t.Deadline(); ok {
		stop = dl.Add(-2 * time.Minute)
	}
	type serverRun struct {
		results, lines map[string]string
		took           map[string]time.Duration
	}
	runAll := func(target tortureTarget, server string) serverRun {
		s := serverRun{map[string]string{}, map[string]string{}, map[string]time.Duration{}}
		for _, name := range tests {
			start := time.Now()
			res, lines := runNotifyTest(t, target, server, name, stop)
			s.took[name] = time.Since(start)
			maps.Copy(s.results, res)
			maps.Copy(s.lines, lines)
		}
		return s
	}
	start := time.Now()
	var pl serverRun
	plainDone := make(chan struct{})
	go func() {
		defer close(plainDone)
		pl = runAll(plain, "plain smbd")
	}()
	g := runAll(gw, "the gateway")
	<-plainDone
	var b strings.Builder
	for _, name := range tests {
		fmt.Fprintf(&b, "%-40s %5.0f %5.0f\n", name, g.took[name].Seconds(), pl.took[name].Seconds())
	}
	t.Logf("seconds per test on the gateway and on plain smbd, the two at once:\n%s", b.String())
	return tortureRun{gw: g.results, plain: pl.results, gwLines: g.lines, plainLines: pl.lines,
		took: map[string]time.Duration{"smb2.notify": time.Since(start)}}
}

// runNotifyTest runs one test of smb2.notify against target (server, for
// the log), with its deadline, and smb2.notify.basedir again while a run
// of it shows that it missed its change (basedirProbe), up to basedirRuns
// runs. It gives the test's result and smbtorture's lines by full name;
// the result of a run killed at its deadline is "timeout", and
// "missed-change" when every basedir run missed its change.
func runNotifyTest(t *testing.T, target tortureTarget, server, name string, stop time.Time) (results, lines map[string]string) {
	patience := notifyPatience
	var probe func() error
	if name == "smb2.notify.basedir" {
		patience = basedirPatience
		probe = func() error {
			return smbtest.Smbclient(target.addr, target.share, "root", smbPassword, basedirProbe)
		}
	}
	var missed string
	for run := 1; ; run++ {
		a := tortureAttempt(target, name, patience, stop, probe)
		results, lines = smbtest.ParseTorture("smb2.notify", a.out)
		if a.notStarted {
			if missed != "" {
				results[name], lines[name] = "missed-change", missed
			}
			// Else no result: checkExpectedTorture says it did not run.
			return results, lines
		}
		why := ""
		switch {
		case a.killed && a.probed:
			why = fmt.Sprintf("killed: no result %v after it started, nor %v after a later change (%s: %v)", patience, patience, basedirProbe, orOK(a.probeErr))
		case a.killed:
			why = fmt.Sprintf("killed: no result %v after it started", patience)
		case a.probed:
			why = fmt.Sprintf("no result %v after it started, then a later change (%s: %v)", patience, basedirProbe, orOK(a.probeErr))
		}
		if a.killed {
			results[name] = "timeout"
		} else if _, ok := results[name]; !ok {
			results[name] = "no-result"
		}
		if why != "" || results[name] == "no-result" {
			lines[name] = fmt.Sprintf("run %d: %s\n%s", run, why, a.out)
		}
		lines[name] = missed + lines[name]
		if !a.probed || a.killed || a.probeErr != nil || results[name] != "success" {
			if a.probed {
				t.Logf("%s on %s, run %d: %s; result %s", name, server, run, why, results[name])
			}
			return results, lines
		}
		// The pending notify answered the probe's change, and the test
		// passed: the notify had missed the test's own change, the race
		// basedirProbe describes. This run counts for nothing.
		again := "; running it again"
		if run == basedirRuns {
			again = ""
		}
		t.Logf("%s on %s, run %d: %s; the notify answered that, so it had missed the test's own change (basedirProbe)%s", name, server, run, why, again)
		missed += fmt.Sprintf("run %d missed its change: %s\n%s", run, why, a.out)
		if run == basedirRuns {
			results[name] = "missed-change"
			lines[name] = missed
			return results, lines
		}
	}
}

func orOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// attempt is one smbtorture run: what it printed, whether it was killed
// at its deadline, probed (and how that went), or not started at all.
type attempt struct {
	out                        string
	killed, probed, notStarted bool
	probeErr                   error
}

// tortureAttempt runs smbtorture's test name against target for at most
// patience, and never past stop. With probe, a run still going after
// patience gets probe called, and patience more.
func tortureAttempt(target tortureTarget, name string, patience time.Duration, stop time.Time, probe func() error) attempt {
	var a attempt
	left := func() time.Duration { return min(patience, time.Until(stop)) }
	if left() <= 0 {
		a.notStarted = true
		return a
	}
	bin, err := exec.LookPath("smbtorture")
	if err != nil {
		a.out = fmt.Sprintf("smbtorture not found: install it with `%s`", smbtest.InstallCommand)
		return a
	}
	host, port, _ := net.SplitHostPort(target.addr)
	var out bytes.Buffer
	cmd := exec.Command(bin, "//"+host+"/"+target.share, "-p", port, "-U", "root%"+smbPassword, name)
	cmd.Stdout, cmd.Stderr = &out, &out
	exited, err := childproc.Start(cmd)
	if err != nil {
		a.out = err.Error()
		return a
	}
	timer := time.NewTimer(left())
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		if probe != nil && left() > 0 {
			a.probed = true
			a.probeErr = probe()
			timer.Reset(left())
			select {
			case <-exited:
			case <-timer.C:
			}
		}
	}
	select {
	case <-exited:
	default:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		a.killed = true
	}
	// cmd.Wait has copied all of the output once exited is closed.
	a.out = out.String()
	return a
}
