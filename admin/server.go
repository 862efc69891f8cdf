// Package admin is gatewayd's administration API: HTTP on a unix socket
// (mode 0600) in the data directory, which every CLI subcommand talks to, and
// optionally on TCP where every request must carry the bearer token.
//
// It serves /healthz (the health registry), /metrics (Prometheus) and
// /v1/status; subsystems add their own /v1/... handlers with Handle. The
// TCP listener also serves the web console (admin/console) and its
// logins (console.go); of the API it answers only /healthz without the
// token, and only to clients on a loopback address. The package also
// holds the Client the CLI uses.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/health"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the gateway summary served at /v1/status.
type Status struct {
	Version   string         `json:"version"`
	GatewayID string         `json:"gateway_id"`
	DataDir   string         `json:"data_dir"`
	Store     string         `json:"store"`
	StartedAt time.Time      `json:"started_at"`
	Overall   health.Level   `json:"overall"`
	Health    []health.State `json:"health"`
	Frontends []Frontend     `json:"frontends"`
}

// Frontend is one protocol endpoint and whether it serves.
type Frontend struct {
	Name   string `json:"name"`
	Listen string `json:"listen,omitempty"`
	State  string `json:"state"` // "serving", "off", or why not
}

// Options configure a Server.
type Options struct {
	SocketPath string // required
	TCPListen  string // optional
	Token      string // required when TCPListen is set
	Health     *health.Registry
	Metrics    *prometheus.Registry
	// Status fills the parts of /v1/status the server cannot know; health is
	// filled in by the server.
	Status func() Status
	Logger *slog.Logger
	// Console is who the web console on the TCP listener serves:
	// ConsoleLoopback (the default when empty), ConsoleAny or ConsoleOff.
	Console string
	Clock   clock.Clock // sessions expire on it; clock.Real{} if nil
}

// Server is the admin API server.
type Server struct {
	opts Options
	mux  *http.ServeMux
	unix net.Listener
	tcp  net.Listener

	sessions *sessions

	// life ends when Serve's context does (see Detach).
	life    context.Context
	endLife context.CancelFunc
}

// Listen opens the unix socket (and the TCP listener when configured). It
// fails if another gateway is already serving on the socket.
func Listen(opts Options) (*Server, error) {
	if opts.TCPListen != "" && len(opts.Token) < 16 {
		return nil, errors.New("admin: a TCP listener needs a token of at least 16 characters")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	switch opts.Console {
	case "":
		opts.Console = ConsoleLoopback
	case ConsoleLoopback, ConsoleAny, ConsoleOff:
	default:
		return nil, fmt.Errorf("admin: console %q: want loopback, any or off", opts.Console)
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), sessions: &sessions{m: map[string]Session{}, now: opts.Clock.Now}}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /v1/status", s.status)
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics, promhttp.HandlerOpts{}))
	}

	ln, err := listenUnix(opts.SocketPath)
	if err != nil {
		return nil, err
	}
	s.unix = ln
	if opts.TCPListen != "" {
		tl, err := net.Listen("tcp", opts.TCPListen)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin: listen on %s: %w", opts.TCPListen, err)
		}
		s.tcp = tl
	}
	return s, nil
}

// TCPAddr is the bound TCP address, or "" without a TCP listener.
func (s *Server) TCPAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

// Handle adds a handler; patterns follow net/http.ServeMux ("POST /v1/volumes").
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Serve answers requests until ctx ends, then shuts down, letting requests in
// flight finish for a few seconds.
func (s *Server) Serve(ctx context.Context) error {
	// Detached work ends when ctx does, and also when Serve returns for
	// any other reason (a listener's error): the server is gone either way.
	stopLife := context.AfterFunc(ctx, s.endLife)
	defer func() { stopLife(); s.endLife() }()
	// The unix socket (owner only) also serves Go's profiler, for
	// diagnosing a slow gateway in place: curl --unix-socket ... /debug/pprof/.
	local := http.NewServeMux()
	local.Handle("/", s.mux)
	local.HandleFunc("/debug/pprof/", pprof.Index)
	local.HandleFunc("/debug/pprof/profile", pprof.Profile)
	local.HandleFunc("/debug/pprof/trace", pprof.Trace)
	local.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	local.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	servers := []*http.Server{{Handler: local, ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{s.unix}
	if s.tcp != nil {
		servers = append(servers, &http.Server{Handler: s.tcpHandler(), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, s.tcp)
	}
	errc := make(chan error, len(servers))
	for i := range servers {
		go func(hs *http.Server, ln net.Listener) {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}(servers[i], listeners[i])
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, hs := range servers {
		_ = hs.Shutdown(shutdownCtx)
	}
	_ = os.Remove(s.opts.SocketPath)
	return serveErr
}

// Detach returns a context for work a request starts that must go on when
// its client goes away (a snapshot the user pressed Ctrl-C on): it keeps
// r's values, is not cancelled with r, and ends when the server stops
// serving. Call cancel when the work is done.
func (s *Server) Detach(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(s.life, cancel)
	return ctx, func() { stop(); cancel() }
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	states, worst := s.health()
	code := http.StatusOK
	if worst == health.Error {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"overall": worst, "subsystems": states})
}

// loopbackHealthz answers /healthz on the TCP listener without the token
// to clients on a loopback address (a local load balancer's or
// supervisor's probe); other clients go through authorized.
func (s *Server) loopbackHealthz(authorized http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fromLoopback(r) && r.Header.Get("Authorization") == "" {
			s.healthz(w, r)
			return
		}
		authorized.ServeHTTP(w, r)
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	var st Status
	if s.opts.Status != nil {
		st = s.opts.Status()
	}
	st.Health, st.Overall = s.health()
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) health() ([]health.State, health.Level) {
	if s.opts.Health == nil {
		return nil, health.OK
	}
	return s.opts.Health.Snapshot()
}

// listenUnix binds path with mode 0600, replacing a stale socket left by a
// crashed gateway but never one a live gateway is serving on.
func listenUnix(path string) (net.Listener, error) {
	if len(path) > 100 {
		return nil, fmt.Errorf("admin: socket path %s is too long for a unix socket (%d bytes, limit about 100): use a shorter data directory or admin.socket", path, len(path))
	}
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("admin: another gatewayd is already serving on %s", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) && !strings.Contains(err.Error(), "not a socket") {
			return nil, fmt.Errorf("admin: %s exists and cannot be checked: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin: remove stale socket: %w", err)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: chmod socket: %w", err)
	}
	return ln, nil
}

// apiError is the JSON body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// WriteJSON and WriteError are for subsystems' handlers, so every endpoint
// answers in the same shape.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

// WriteError answers with {"error": err} and code.
func WriteError(w http.ResponseWriter, code int, err error) { writeError(w, code, err) }
