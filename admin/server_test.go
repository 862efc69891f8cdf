package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/health"
	"github.com/prometheus/client_golang/prometheus"
)

func startServer(t *testing.T, opts Options) (*Server, context.CancelFunc) {
	t.Helper()
	s, err := Listen(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, cancel
}

func TestUnixSocketStatusHealthMetrics(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	reg := health.New(nil)
	store := reg.Register("objstore")
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "gatewayd_test_total", Help: "test"}))
	startServer(t, Options{
		SocketPath: sock, Health: reg, Metrics: metrics,
		Status: func() Status { return Status{GatewayID: "gw-1", Store: "file:///x"} },
	})

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}

	c := NewUnixClient(sock)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.GatewayID != "gw-1" || st.Overall != health.OK || len(st.Health) != 1 {
		t.Fatalf("status = %+v", st)
	}

	store.Fail("cannot reach endpoint")
	var hz map[string]any
	err = c.Do(ctx, http.MethodGet, "/healthz", nil, &hz)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("healthz with a failed subsystem: err=%v body=%v", err, hz)
	}

	resp, err := (&http.Client{Transport: c.hc.Transport}).Get("http://gatewayd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(buf), "gatewayd_test_total 0") {
		t.Fatalf("metrics missing counter:\n%s", buf)
	}
}

func TestTCPNeedsToken(t *testing.T) {
	dir := t.TempDir()
	token := "0123456789abcdef0123"
	s, _ := startServer(t, Options{SocketPath: filepath.Join(dir, "a.sock"), TCPListen: "127.0.0.1:0", Token: token})
	ctx := context.Background()

	if _, err := NewTCPClient(s.TCPAddr(), "").Status(ctx); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("no token: %v", err)
	}
	if _, err := NewTCPClient(s.TCPAddr(), token+"x").Status(ctx); err == nil {
		t.Fatal("wrong token accepted")
	}
	if _, err := NewTCPClient(s.TCPAddr(), token).Status(ctx); err != nil {
		t.Fatalf("right token: %v", err)
	}
	if _, err := Listen(Options{SocketPath: filepath.Join(dir, "b.sock"), TCPListen: "127.0.0.1:0", Token: "short"}); err == nil {
		t.Fatal("TCP with a short token accepted")
	}
}

func TestSocketOwnership(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")

	// A stale socket from a crashed gateway is replaced.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	startServer(t, Options{SocketPath: sock})

	// A live one is not.
	if _, err := Listen(Options{SocketPath: sock}); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("second gateway on a live socket: %v", err)
	}

	// No gateway: the client says so and how to start one.
	_, err = NewUnixClient(filepath.Join(dir, "none.sock")).Status(context.Background())
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "gatewayd serve") {
		t.Fatalf("client of a missing gateway: %v", err)
	}
}

// /healthz on the TCP listener answers a loopback client without the
// token (a local probe), and nothing else does.
func TestTCPHealthzWithoutTokenOnLoopback(t *testing.T) {
	for _, mode := range []string{ConsoleLoopback, ConsoleOff} {
		_, h := consoleServer(t, mode, nil)
		const remote, local, local6 = "192.0.2.7:40000", "127.0.0.1:40000", "[::1]:40000"
		for _, c := range []struct {
			method, path, from string
			hdr                map[string]string
			want               int
		}{
			{"GET", "/healthz", local, nil, http.StatusOK},
			{"GET", "/healthz", local6, nil, http.StatusOK},
			{"GET", "/healthz", remote, nil, http.StatusUnauthorized},
			{"GET", "/healthz", remote, map[string]string{"Authorization": "Bearer 0123456789abcdef0123"}, http.StatusOK},
			{"GET", "/healthz", local, map[string]string{"Authorization": "Bearer wrong"}, http.StatusUnauthorized},
			{"GET", "/v1/status", local, nil, http.StatusUnauthorized},
			{"GET", "/v1/thing", local, nil, http.StatusUnauthorized},
			{"POST", "/healthz", local, nil, http.StatusUnauthorized},
		} {
			if w := send(h, c.method, c.path, c.from, c.hdr, ""); w.Code != c.want {
				t.Errorf("console %s: %s %s from %s: %d, want %d (%s)", mode, c.method, c.path, c.from, w.Code, c.want, w.Body)
			}
		}
	}
}

// Error answers carry the service's message alone: the CLI adds the one
// "gatewayd:" prefix.
func TestClientErrorHasNoPrefix(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	startServer(t, Options{SocketPath: sock})
	err := NewUnixClient(sock).Do(context.Background(), http.MethodGet, "/v1/nothing-here", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != http.StatusNotFound || strings.HasPrefix(err.Error(), "gatewayd") {
		t.Fatalf("error answer: %#v", err)
	}
}

// Detach outlives its request and ends with the server.
func TestDetach(t *testing.T) {
	s, cancelServe := startServer(t, Options{SocketPath: filepath.Join(t.TempDir(), "a.sock")})
	reqCtx, endRequest := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(reqCtx, http.MethodGet, "/", nil)
	ctx, cancel := s.Detach(r)
	endRequest()
	if ctx.Err() != nil {
		t.Fatal("detached context ended with its request")
	}
	cancel()
	if ctx.Err() == nil {
		t.Fatal("cancel did not end it")
	}
	ctx, cancel = s.Detach(r)
	defer cancel()
	cancelServe()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Minute):
		t.Fatal("detached context still running 5 minutes after the server stopped")
	}
}
