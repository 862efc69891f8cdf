package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
)

// consoleServer is a Server whose TCP handler is driven directly, so a
// test can say which address a request comes from.
func consoleServer(t *testing.T, mode string, clk clock.Clock) (*Server, http.Handler) {
	t.Helper()
	s, err := Listen(Options{SocketPath: t.TempDir() + "/a.sock", Token: "0123456789abcdef0123", Console: mode, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.unix.Close() })
	s.Handle("GET /v1/thing", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, "thing") }))
	s.Handle("POST /v1/thing", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusCreated, "made") }))
	return s, s.tcpHandler()
}

func send(h http.Handler, method, path, from string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:8440"+path, strings.NewReader(body))
	r.RemoteAddr = from
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func login(t *testing.T, h http.Handler, from string) (cookie, csrf string, code int) {
	t.Helper()
	w := send(h, "POST", "/console/login", from, map[string]string{"Content-Type": "application/json"}, `{"token":"0123456789abcdef0123"}`)
	if w.Code != http.StatusOK {
		return "", "", w.Code
	}
	var sess Session
	if err := json.Unmarshal(w.Body.Bytes(), &sess); err != nil {
		t.Fatal(err)
	}
	return strings.SplitN(w.Header().Get("Set-Cookie"), ";", 2)[0], sess.CSRF, w.Code
}

func TestConsoleLoopbackOnlyByDefault(t *testing.T) {
	_, h := consoleServer(t, "", nil)
	const remote, local = "192.0.2.7:40000", "127.0.0.1:40000"
	if w := send(h, "GET", "/console/", remote, nil, ""); w.Code != http.StatusForbidden {
		t.Fatalf("console page to a remote client: %d", w.Code)
	}
	if _, _, code := login(t, h, remote); code != http.StatusForbidden {
		t.Fatalf("login from a remote client: %d", code)
	}
	if w := send(h, "GET", "/console/", "[::1]:40000", nil, ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "console.js") {
		t.Fatalf("console page on ::1: %d", w.Code)
	}
	cookie, csrf, code := login(t, h, local)
	if code != http.StatusOK {
		t.Fatalf("login on loopback: %d", code)
	}
	// The session works on loopback only, and changes need the CSRF token.
	if w := send(h, "GET", "/v1/thing", local, map[string]string{"Cookie": cookie}, ""); w.Code != http.StatusOK {
		t.Fatalf("session read: %d", w.Code)
	}
	if w := send(h, "GET", "/v1/thing", remote, map[string]string{"Cookie": cookie}, ""); w.Code != http.StatusForbidden {
		t.Fatalf("session used from a remote address: %d", w.Code)
	}
	if w := send(h, "POST", "/v1/thing", local, map[string]string{"Cookie": cookie}, ""); w.Code != http.StatusForbidden {
		t.Fatalf("change without CSRF token: %d", w.Code)
	}
	if w := send(h, "POST", "/v1/thing", local, map[string]string{"Cookie": cookie, csrfHeader: csrf}, ""); w.Code != http.StatusCreated {
		t.Fatalf("change with CSRF token: %d", w.Code)
	}
	// The bearer token is not limited to loopback.
	if w := send(h, "POST", "/v1/thing", remote, map[string]string{"Authorization": "Bearer 0123456789abcdef0123"}, ""); w.Code != http.StatusCreated {
		t.Fatalf("bearer token from a remote client: %d", w.Code)
	}
	if w := send(h, "GET", "/v1/thing", remote, map[string]string{"Authorization": "Bearer 0123456789abcdef0124"}, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong bearer token: %d", w.Code)
	}
}

func TestConsoleAnyAndOff(t *testing.T) {
	_, h := consoleServer(t, ConsoleAny, nil)
	if _, _, code := login(t, h, "192.0.2.7:40000"); code != http.StatusOK {
		t.Fatalf("console any: remote login %d", code)
	}
	_, h = consoleServer(t, ConsoleOff, nil)
	if w := send(h, "GET", "/console/", "127.0.0.1:1", nil, ""); w.Code == http.StatusOK {
		t.Fatalf("console off serves its page: %d", w.Code)
	}
	if _, _, code := login(t, h, "127.0.0.1:1"); code == http.StatusOK {
		t.Fatal("console off: login accepted")
	}
	if _, err := Listen(Options{SocketPath: t.TempDir() + "/b.sock", Console: "sometimes"}); err == nil {
		t.Fatal("unknown console mode accepted")
	}
}

func TestConsoleSessionExpires(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	_, h := consoleServer(t, "", clk)
	cookie, _, _ := login(t, h, "127.0.0.1:1")
	if w := send(h, "GET", "/console/session", "127.0.0.1:1", map[string]string{"Cookie": cookie}, ""); w.Code != http.StatusOK {
		t.Fatalf("session: %d", w.Code)
	}
	clk.Advance(sessionTTL + time.Second)
	if w := send(h, "GET", "/v1/thing", "127.0.0.1:1", map[string]string{"Cookie": cookie}, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", w.Code)
	}
}
