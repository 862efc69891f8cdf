package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/admin/console"
)

// The web console is served on the TCP listener, next to the API it is a
// client of. Its pages need no login; the API does: a browser logs in once
// with the admin token (POST /console/login) and gets a session cookie
// (HttpOnly, SameSite=Strict) that stands for the token. A request the
// session makes that changes something must also carry the session's CSRF
// token in the X-Gatewayd-CSRF header, which a page of another site can
// neither read nor send, and its Origin, when the browser gives one, must be
// the console's own. By default the console and its sessions answer only
// clients on a loopback address (ConsoleLoopback); bearer-token requests
// are not affected.

// Console modes (Options.Console).
const (
	ConsoleLoopback = "loopback" // only to clients on a loopback address (the default)
	ConsoleAny      = "any"      // to every client that reaches the TCP listener
	ConsoleOff      = "off"      // no console, no sessions
)

const (
	sessionCookie = "gatewayd_session"
	csrfHeader    = "X-Gatewayd-CSRF"
	sessionTTL    = 12 * time.Hour
)

// LoginRequest is the body of POST /console/login.
type LoginRequest struct {
	Token string `json:"token"`
}

// Session is what the console learns about its login: the CSRF token it
// sends with every change, and when the session ends.
type Session struct {
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// sessions are the console's logins, in memory: a restart logs everyone out.
type sessions struct {
	mu  sync.Mutex
	m   map[string]Session // by cookie value
	now func() time.Time
}

func (ss *sessions) create() (string, Session) {
	id, s := randomToken(), Session{CSRF: randomToken(), Expires: ss.now().Add(sessionTTL)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for k, old := range ss.m { // forget expired ones
		if now.After(old.Expires) {
			delete(ss.m, k)
		}
	}
	ss.m[id] = s
	return id, s
}

func (ss *sessions) lookup(id string) (Session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if ok && ss.now().After(s.Expires) {
		delete(ss.m, id)
		return Session{}, false
	}
	return s, ok
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// tcpHandler is what the TCP listener serves: the console (when on) and
// the API, which needs the bearer token or a console session.
func (s *Server) tcpHandler() http.Handler {
	mux := http.NewServeMux()
	if s.opts.Console != ConsoleOff {
		assets := http.StripPrefix("/console", console.Handler())
		mux.Handle("GET /console/", s.consoleClient(assets))
		mux.Handle("GET /{$}", s.consoleClient(http.RedirectHandler("/console/", http.StatusFound)))
		mux.Handle("POST /console/login", s.consoleClient(http.HandlerFunc(s.login)))
		mux.Handle("POST /console/logout", s.consoleClient(http.HandlerFunc(s.logout)))
		mux.Handle("GET /console/session", s.consoleClient(http.HandlerFunc(s.session)))
	}
	mux.Handle("GET /healthz", s.loopbackHealthz(s.authorize(s.mux)))
	mux.Handle("/", s.authorize(s.mux))
	return mux
}

// consoleClient refuses console requests from clients the console does
// not serve: with ConsoleLoopback, those not on a loopback address.
func (s *Server) consoleClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Console == ConsoleLoopback && !fromLoopback(r) {
			writeError(w, http.StatusForbidden, errors.New("the web console answers only on loopback (admin.console: any serves every client)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameOrigin says whether a browser request comes from the console's own
// pages: an Origin header, when present, must name the host the request
// was sent to. Browsers send Origin with every cross-site request that can
// change something.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		return site != "cross-site" && site != "same-site"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host && (u.Scheme == "http" || u.Scheme == "https")
}

// authorize lets a request through with the bearer token, or with a
// console session (and, for a change, the session's CSRF token).
func (s *Server) authorize(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth := r.Header.Get("Authorization"); auth != "" {
			if subtle.ConstantTimeCompare([]byte(auth), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gatewayd"`)
				writeError(w, http.StatusUnauthorized, errors.New("missing or wrong admin token"))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if _, err := r.Cookie(sessionCookie); err != nil || s.opts.Console == ConsoleOff {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatewayd"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong admin token"))
			return
		}
		if s.opts.Console == ConsoleLoopback && !fromLoopback(r) {
			writeError(w, http.StatusForbidden, errors.New("console sessions are served only on loopback"))
			return
		}
		sess, ok := s.requestSession(w, r)
		if !ok {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !fromConsolePage(r, sess) {
			writeError(w, http.StatusForbidden, errors.New("refused: not sent by the console's own page (missing or wrong "+csrfHeader+" header, or another origin)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	// A JSON body cannot be sent cross-site without the browser asking
	// first (CORS preflight), which this server never grants.
	if r.Header.Get("Content-Type") != "application/json" || !sameOrigin(r) {
		writeError(w, http.StatusForbidden, errors.New("login refused: send JSON from the console's own page"))
		return
	}
	var req LoginRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(req.Token), []byte(s.opts.Token)) != 1 {
		s.opts.Logger.Warn("console login with a wrong token", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, errors.New("wrong admin token"))
		return
	}
	id, sess := s.sessions.create()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: sess.Expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	s.opts.Logger.Info("console login", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, sess)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		sess, ok := s.sessions.lookup(c.Value)
		if ok && !fromConsolePage(r, sess) {
			writeError(w, http.StatusForbidden, errors.New("logout refused: not sent by the console's own page"))
			return
		}
		s.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

// session tells a reloaded console page its CSRF token. Another site's
// page can send this request but cannot read the answer.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	if sess, ok := s.requestSession(w, r); ok {
		writeJSON(w, http.StatusOK, sess)
	}
}

// requestSession is the session of the request's cookie; without one it
// answers 401 and returns false.
func (s *Server) requestSession(w http.ResponseWriter, r *http.Request) (Session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		writeError(w, http.StatusUnauthorized, errors.New("not logged in"))
		return Session{}, false
	}
	sess, ok := s.sessions.lookup(c.Value)
	if !ok {
		writeError(w, http.StatusUnauthorized, errors.New("console session expired: log in again"))
	}
	return sess, ok
}

// fromConsolePage says whether a request of the session comes from the
// console's page: from its origin, with the session's CSRF token.
func fromConsolePage(r *http.Request, sess Session) bool {
	return sameOrigin(r) && subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(sess.CSRF)) == 1
}
