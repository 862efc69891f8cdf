// Package childproc starts child processes that must not outlive the
// process that started them: test servers (MinIO, smbd, a domain
// controller) that a test binary killed by its timeout, or a crash, would
// otherwise leave behind.
//
// Linux sends the parent-death signal when the thread that forked the
// child ends, not the process, and the Go runtime ends threads: one whose
// goroutine exits while locked to it. A child started from an arbitrary
// thread can thus be killed at random, well before its parent exits (a
// domain controller died this way in the middle of a CI run). Start forks
// from a thread locked for as long as the child runs.
package childproc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd in a process group of its own, with SIGKILL as its
// parent-death signal, and waits for it in the background: the returned
// channel is closed once cmd has exited and cmd.Wait has returned. The
// caller must not call cmd.Wait itself. Other SysProcAttr fields cmd
// already has are kept.
func Start(cmd *exec.Cmd) (<-chan struct{}, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	exited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the
		// child has exited.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}
