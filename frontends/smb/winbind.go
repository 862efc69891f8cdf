package smb

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// winbind is winbindd under supervision while the gateway is a domain
// member: smbd asks it to check NTLM logons with the DC and to map domain
// SIDs to Unix ids, and the host's name service switch asks it for domain
// users and groups. It listens where those clients look for it (Samba's
// built-in socket directory), so one joined gateway runs per host.
type winbind struct {
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	pid      int // running winbindd, 0 when none
	state    string
	restarts int
}

// startWinbindd starts winbindd unless it runs.
func (s *Server) startWinbindd() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wb != nil || s.stopping {
		return
	}
	wb := &winbind{stop: make(chan struct{}), done: make(chan struct{}), state: "starting"}
	s.wb = wb
	go func() {
		defer close(wb.done)
		s.keepRunning("winbindd", wb.stop, func() error { return s.runWinbindd(wb) }, func(err error) bool {
			wb.mu.Lock()
			defer wb.mu.Unlock()
			wb.restarts++
			wb.state = fmt.Sprintf("exited (%v); restarting it", err)
			return false
		})
	}()
}

// runWinbindd runs winbindd once, until it exits.
func (s *Server) runWinbindd(wb *winbind) error {
	cmd, out, err := s.daemonCmd(s.winbindd, "0")
	if err != nil {
		return err
	}
	wb.mu.Lock()
	select {
	case <-wb.stop:
		wb.mu.Unlock()
		return errors.New("stopping")
	default:
	}
	if err := cmd.Start(); err != nil {
		wb.mu.Unlock()
		return fmt.Errorf("start %s: %w", s.winbindd, err)
	}
	wb.pid = cmd.Process.Pid
	wb.state = fmt.Sprintf("running (pid %d", wb.pid)
	if wb.restarts > 0 {
		wb.state += fmt.Sprintf(", restarted %d times", wb.restarts)
	}
	wb.state += ")"
	wb.mu.Unlock()
	s.log.Info("smb: winbindd started", "pid", cmd.Process.Pid)
	logLines(out, s.log.With("daemon", "winbindd"))
	err = cmd.Wait()
	wb.mu.Lock()
	wb.pid = 0
	wb.mu.Unlock()
	// Its domain children go with it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err == nil {
		err = errors.New("exit status 0")
	}
	return err
}

// stopWinbindd stops winbindd (SIGTERM, then SIGKILL) and its supervision.
func (s *Server) stopWinbindd() {
	s.mu.Lock()
	wb := s.wb
	s.wb = nil
	s.mu.Unlock()
	if wb == nil {
		return
	}
	wb.mu.Lock()
	close(wb.stop)
	pid := wb.pid
	wb.mu.Unlock()
	if pid != 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	select {
	case <-wb.done:
	case <-time.After(10 * time.Second):
		if pid != 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		<-wb.done
	}
}

// winbinddState says what winbindd is doing, for status.
func (s *Server) winbinddState() string {
	s.mu.Lock()
	wb := s.wb
	s.mu.Unlock()
	if wb == nil {
		return "not running"
	}
	wb.mu.Lock()
	defer wb.mu.Unlock()
	return wb.state
}
