package notifytest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/notify"
)

// Receiver is a webhook for tests: an HTTP server that takes events
// (while up) and records every post and its headers.
type Receiver struct {
	URL string
	t   testing.TB

	mu      sync.Mutex
	token   string
	down    bool
	refused int
	posts   []notify.Event
	headers []http.Header
}

// NewReceiver starts a webhook, closed when the test ends. With a token
// it takes only posts with Authorization: Bearer TOKEN (others are test
// errors).
func NewReceiver(t testing.TB, token string) *Receiver {
	r := &Receiver{t: t, token: token}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.token != "" && req.Header.Get("Authorization") != "Bearer "+r.token {
		r.t.Errorf("event posted with Authorization %q", req.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		r.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var e notify.Event
	if err := json.Unmarshal(b, &e); err != nil {
		r.t.Errorf("event %s: %v", b, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.posts = append(r.posts, e)
	r.headers = append(r.headers, req.Header.Clone())
}

// SetDown makes the webhook answer 503 (down) or take events again.
func (r *Receiver) SetDown(v bool) {
	r.mu.Lock()
	r.down = v
	r.mu.Unlock()
}

// Posts returns every event taken, in arrival order (repeats too).
func (r *Receiver) Posts() []notify.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Event(nil), r.posts...)
}

// Headers returns the headers of every post taken.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// Refused is how many posts were answered 503 while down.
func (r *Receiver) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// Wait waits until cond holds of the posts taken and returns them. The
// deadline is minutes: a test machine may be busy.
func (r *Receiver) Wait(what string, cond func([]notify.Event) bool) []notify.Event {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		posts := r.Posts()
		if cond(posts) {
			return posts
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("waiting for %s: %d posts taken: %+v", what, len(posts), posts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Distinct returns the first post of each event id, in arrival order.
func Distinct(posts []notify.Event) []notify.Event {
	seen := map[string]bool{}
	var out []notify.Event
	for _, e := range posts {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}
