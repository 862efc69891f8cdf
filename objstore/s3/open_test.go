package s3

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/objstore"
)

// headServer answers HeadBucket with fail for the first n requests (all
// of them when n < 0), then with 200.
func headServer(t *testing.T, n int64, fail func(http.ResponseWriter)) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := calls.Add(1); n < 0 || c <= n {
			fail(w)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func slowDown(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusServiceUnavailable)
}

func resetConn(w http.ResponseWriter) {
	conn, _, _ := w.(http.Hijacker).Hijack()
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

func openAt(ctx context.Context, url string) error {
	_, err := Open(ctx, Config{Bucket: "bucket", Endpoint: url, PathStyle: true, AccessKeyID: "k", SecretAccessKey: "s"}, nil)
	return err
}

// TestOpenAsksAnUnwellServerAgain: a 503 or a reset connection when the
// bucket is checked does not fail Open (a gateway restarting after a crash
// met this behind a flaky S3); a server that keeps failing still does.
func TestOpenAsksAnUnwellServerAgain(t *testing.T) {
	for name, fail := range map[string]func(http.ResponseWriter){"503": slowDown, "reset": resetConn} {
		t.Run(name, func(t *testing.T) {
			srv, calls := headServer(t, 2, fail)
			if err := openAt(t.Context(), srv.URL); err != nil {
				t.Fatalf("Open after two failed checks: %v", err)
			}
			if calls.Load() < 3 {
				t.Fatalf("%d checks, want at least 3", calls.Load())
			}
		})
	}
	t.Run("always 503", func(t *testing.T) {
		srv, calls := headServer(t, -1, slowDown)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		err := openAt(ctx, srv.URL)
		if err == nil || !errkind.IsRetryable(err) {
			t.Fatalf("Open of a bucket that always answers 503: %v", err)
		}
		if calls.Load() < 2 {
			t.Fatalf("%d checks, want more than one", calls.Load())
		}
	})
	t.Run("refused fails at once", func(t *testing.T) {
		addr := freeport.Addr(t)
		err := openAt(t.Context(), "http://"+addr)
		if err == nil || !strings.Contains(err.Error(), "cannot reach") {
			t.Fatalf("Open of a closed port: %v", err)
		}
	})
}

// TestCutListingIsRetryable: a listing whose body is cut short after its
// 200 fails to decode; that is a broken transfer, worth another try (it
// stopped garbage collection behind a flaky network).
func TestCutListingIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("Content-Length", "2000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name><Contents><Key>gw/a</Key>`))
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer srv.Close()
	s, err := Open(t.Context(), Config{Bucket: "bucket", Prefix: "gw", Endpoint: srv.URL, PathStyle: true, AccessKeyID: "k", SecretAccessKey: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.List(t.Context(), "", func(objstore.ObjectInfo) error { return nil })
	if err == nil || !errkind.IsRetryable(err) {
		t.Fatalf("list cut short: %v (kind %v), want a retryable error", err, errkind.Of(err))
	}
}
