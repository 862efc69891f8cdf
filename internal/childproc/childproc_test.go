package childproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// churnThreads makes the runtime end n OS threads: each goroutine exits
// while locked to its thread.
func churnThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
		}()
	}
	wg.Wait()
}

// TestChildOutlivesThreads starts cat, ends many threads of this process
// (among them, were it not locked, likely the one that forked cat), and
// checks cat still echoes a line.
func TestChildOutlivesThreads(t *testing.T) {
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	exited, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	churnThreads(200)
	r := bufio.NewReader(out)
	for i := range 3 {
		churnThreads(50)
		line := fmt.Sprintf("still here %d\n", i)
		if _, err := io.WriteString(in, line); err != nil {
			t.Fatalf("write to cat: %v", err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("cat answered %q, %v: killed with a thread of ours?", got, err)
		}
	}
	in.Close()
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatal("cat did not exit after its input closed")
	}
	if cmd.ProcessState == nil || !cmd.ProcessState.Success() {
		t.Fatalf("cat: %v", cmd.ProcessState)
	}
}

// TestChildDiesWithParent runs this test binary as a parent that starts
// sleep with Start and then blocks; it kills that parent and checks sleep
// is killed too.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("CHILDPROC_PARENT") == "1" {
		cmd := exec.Command("sleep", "600")
		if _, err := Start(cmd); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		churnThreads(50)
		fmt.Println(cmd.Process.Pid)
		select {}
	}
	parent := exec.Command(os.Args[0], "-test.run", "^TestChildDiesWithParent$")
	parent.Env = append(os.Environ(), "CHILDPROC_PARENT=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("the parent printed %q: %v", line, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("the parent printed %q", line)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("pidfd_open(sleep %d): %v", pid, err)
	}
	defer unix.Close(pidfd)
	// Alive while its parent is.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 0); err != nil || n != 0 {
		parent.Process.Kill()
		t.Fatalf("sleep gone while its parent runs: %d, %v", n, err)
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	// The deadline only bounds a broken kernel or Start; the kill is
	// immediate.
	for {
		n, err := unix.Poll(fds, int((2 * time.Minute).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			unix.Kill(pid, unix.SIGKILL)
			t.Fatal("sleep outlived its parent")
		}
		return
	}
}
