// Package crashpoint runs part of a test in a child process of the test
// binary that dies by SIGKILL at a named point of the code under test, as
// a kill -9 of the daemon would there, so that the test can reopen the
// state the child left on disk and check what survived.
//
// The test calls Run; the child, the same test run again in a new
// process, finds itself with Child, sets the package's crash hook to call
// Kill at the point, and does the work.
package crashpoint

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
)

const (
	envTest  = "GATEWAYD_CRASHPOINT_TEST"
	envPoint = "GATEWAYD_CRASHPOINT"
	envDir   = "GATEWAYD_CRASHPOINT_DIR"
)

// Child says whether this process is a child Run started for test t, and
// if so at which point it is to die and in which directory its state is.
func Child(t testing.TB) (point, dir string, ok bool) {
	if os.Getenv(envTest) != t.Name() {
		return "", "", false
	}
	return os.Getenv(envPoint), os.Getenv(envDir), true
}

// Kill ends the process at once, as kill -9 does: nothing after it runs,
// no deferred call, no buffered write.
func Kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

// Run runs test t again in a child process, which is to die by SIGKILL at
// point with its state in dir, and waits for it. It fails t if the child
// ended any other way (it finished, or failed), with the child's output.
func Run(t testing.TB, point, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envTest+"="+t.Name(), envPoint+"="+point, envDir+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	ee, isExit := err.(*exec.ExitError)
	if !isExit {
		t.Fatalf("child at %s: %v\n%s", point, err, out.Bytes())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child at %s ended without being killed there: %v\n%s", point, err, out.Bytes())
	}
}
