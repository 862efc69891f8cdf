package iscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// Auth is a target's access control.
type Auth struct {
	// CHAPUser and CHAPSecret, when set, make the initiator authenticate
	// with CHAP; a login without it is refused.
	CHAPUser, CHAPSecret string
	// MutualUser and MutualSecret, when set, are what the target answers
	// an initiator that asks it to authenticate (mutual CHAP).
	MutualUser, MutualSecret string
	// Initiators, when not empty, are the only initiator names allowed.
	Initiators []string
}

// Target is one iSCSI target: a name and its logical units.
type Target struct {
	Name  string // iSCSI qualified name
	Alias string
	LUNs  map[uint64]*scsi.LU
	Auth  Auth
	// ReuseDataOut says the LUs keep no reference to a command's
	// data-out buffer (scsi.Command.DataOut) once Execute has returned
	// (a disk whose backend copies what it writes, as io.WriterAt
	// requires): the target then reuses the buffer for a later command
	// instead of allocating one for each.
	ReuseDataOut bool
}

func (t *Target) allows(initiator string) bool {
	if len(t.Auth.Initiators) == 0 {
		return true
	}
	for _, i := range t.Auth.Initiators {
		if strings.EqualFold(i, initiator) {
			return true
		}
	}
	return false
}

// Config configures a Server.
type Config struct {
	Logger *slog.Logger
	// NOPInterval is how long a connection may stay silent before the
	// target pings it with a NOP-In; NOPTimeout how long the ping may go
	// unanswered before the connection is dropped. Zero: 5 s and 30 s.
	NOPInterval, NOPTimeout time.Duration
	// QueueDepth is the command window per session (MaxCmdSN-ExpCmdSN+1).
	QueueDepth int
	// Latency, if set, is told how long each SCSI command took from its
	// arrival to its status going out, by class (see OpClass).
	Latency func(op string, d time.Duration)
}

// Server is an iSCSI target portal: it accepts connections, runs logins
// and sessions, and routes commands to targets' logical units.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	targets   map[string]*Target
	sessions  map[*session]struct{}
	listeners map[net.Listener]struct{}
	nextTSIH  uint16
	closed    bool
	wg        sync.WaitGroup
}

// NewServer returns a server with no targets.
func NewServer(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NOPInterval <= 0 {
		cfg.NOPInterval = 5 * time.Second
	}
	if cfg.NOPTimeout <= 0 {
		cfg.NOPTimeout = 30 * time.Second
	}
	if cfg.QueueDepth <= 0 {
		cfg.QueueDepth = 128
	}
	return &Server{cfg: cfg, log: cfg.Logger, targets: map[string]*Target{},
		sessions: map[*session]struct{}{}, listeners: map[net.Listener]struct{}{}}
}

// ValidName checks an iSCSI name (RFC 3720 section 3.2.6): iqn., eui. or
// naa. form, at most 223 bytes, lower case, no spaces.
func ValidName(name string) error {
	if len(name) == 0 || len(name) > 223 {
		return fmt.Errorf("iscsi: name %q must be 1-223 bytes", name)
	}
	if !strings.HasPrefix(name, "iqn.") && !strings.HasPrefix(name, "eui.") && !strings.HasPrefix(name, "naa.") {
		return fmt.Errorf("iscsi: name %q must start with iqn., eui. or naa.", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == ':'
		if !ok {
			return fmt.Errorf("iscsi: name %q may hold only a-z, 0-9, '.', '-' and ':'", name)
		}
	}
	return nil
}

// SetTarget adds t or replaces the target of the same name. Sessions of a
// replaced target are closed when its LUNs or access control changed.
func (s *Server) SetTarget(t *Target) error {
	if err := ValidName(t.Name); err != nil {
		return err
	}
	s.mu.Lock()
	old := s.targets[t.Name]
	s.targets[t.Name] = t
	s.mu.Unlock()
	if old != nil {
		s.closeSessions(func(ss *session) bool { return ss.target == old })
	}
	return nil
}

// RemoveTarget removes a target and ends its sessions.
func (s *Server) RemoveTarget(name string) {
	s.mu.Lock()
	t := s.targets[name]
	delete(s.targets, name)
	s.mu.Unlock()
	if t != nil {
		s.closeSessions(func(ss *session) bool { return ss.target == t })
	}
}

// Targets lists target names, sorted.
func (s *Server) Targets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.targets))
	for n := range s.targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *Server) target(name string) *Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targets[name]
}

// SessionInfo describes a logged-in session for status reports.
type SessionInfo struct {
	Initiator string `json:"initiator"`
	Target    string `json:"target,omitempty"`
	Remote    string `json:"remote"`
	Discovery bool   `json:"discovery,omitempty"`
}

// Sessions lists the current sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SessionInfo
	for ss := range s.sessions {
		info := SessionInfo{Initiator: ss.initiator, Remote: ss.remote, Discovery: ss.discovery}
		if ss.target != nil {
			info.Target = ss.target.Name
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Initiator+out[i].Remote < out[j].Initiator+out[j].Remote })
	return out
}

func (s *Server) closeSessions(match func(*session) bool) {
	s.mu.Lock()
	var victims []*session
	for ss := range s.sessions {
		if match(ss) {
			victims = append(victims, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range victims {
		ss.close()
	}
}

// Serve accepts connections on ln until Close or a listener error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("iscsi: server closed")
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("iscsi: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(nc)
		}()
	}
}

// Close stops listening, ends every session and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.closeSessions(func(*session) bool { return true })
	s.wg.Wait()
	return nil
}

func (s *Server) handle(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	log := s.log.With("remote", nc.RemoteAddr().String())
	ss, err := s.login(nc, log)
	if err != nil {
		log.Info("iscsi: login failed", "err", err)
		nc.Close()
		return
	}
	if ss == nil { // login refused with a status; the initiator was told
		nc.Close()
		return
	}
	ss.run(context.Background())
}

// register adds a logged-in session, reinstating (closing) an older
// session of the same initiator port and target (RFC 7143 section 6.3.5).
func (s *Server) register(ss *session) {
	s.mu.Lock()
	var old []*session
	for o := range s.sessions {
		if o.initiator == ss.initiator && o.isid == ss.isid && o.target == ss.target && o.discovery == ss.discovery {
			old = append(old, o)
		}
	}
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	for _, o := range old {
		o.close()
		o.waitDone()
	}
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}
