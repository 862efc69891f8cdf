package smb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
)

// TestRetryDropped: a domain operation whose DC dropped the connection is
// tried again, up to joinAttempts times; one refused for another reason is
// not. (TestSMBActiveDirectory joins a real DC.)
func TestRetryDropped(t *testing.T) {
	defer func(w time.Duration) { joinRetryWait = w }(joinRetryWait)
	joinRetryWait = time.Millisecond
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{Clock: clock.Real{}}}
	dropped := errors.New("/usr/bin/net --no-dns-updates: exit status 255: Error connecting to SAM pipe. Error was NT_STATUS_CONNECTION_DISCONNECTED")
	refused := errors.New("/usr/bin/net --no-dns-updates: exit status 255: Failed to join domain: NT_STATUS_LOGON_FAILURE")
	for _, c := range []struct {
		name  string
		fails []error // what each call returns; nil after the list
		calls int
		ok    bool
	}{
		{"dropped once", []error{dropped}, 2, true},
		{"dropped every time", []error{dropped, dropped, dropped, dropped}, joinAttempts, false},
		{"refused", []error{refused, nil}, 1, false},
		{"no failure", nil, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := s.retryDropped(context.Background(), "join", func() error {
				calls++
				if calls <= len(c.fails) {
					return c.fails[calls-1]
				}
				return nil
			})
			if calls != c.calls || (err == nil) != c.ok {
				t.Fatalf("%d calls, error %v; want %d calls, success %v", calls, err, c.calls, c.ok)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	joinRetryWait = time.Hour
	calls := 0
	if err := s.retryDropped(ctx, "join", func() error { calls++; return dropped }); err == nil || calls != 1 {
		t.Fatalf("cancelled: %d calls, error %v; want 1 call and the error", calls, err)
	}
}
