package s3

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// faultServer answers as an S3 server that fails in the way the key names.
func faultServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bucket" || r.URL.Path == "/bucket/" {
			w.WriteHeader(http.StatusOK) // HeadBucket
			return
		}
		io.Copy(io.Discard, r.Body)
		apiError := func(status int, code string) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, code)
		}
		switch strings.TrimPrefix(r.URL.Path, "/bucket/gw/") {
		case "slowdown":
			apiError(http.StatusServiceUnavailable, "SlowDown")
		case "internal":
			apiError(http.StatusInternalServerError, "InternalError")
		case "request-timeout":
			apiError(http.StatusBadRequest, "RequestTimeout")
		case "throttled":
			apiError(http.StatusTooManyRequests, "TooManyRequests")
		case "denied":
			apiError(http.StatusForbidden, "AccessDenied")
		case "bad-request":
			apiError(http.StatusBadRequest, "InvalidArgument")
		case "no-such-key":
			apiError(http.StatusNotFound, "NoSuchKey")
		case "no-such-bucket":
			apiError(http.StatusNotFound, "NoSuchBucket")
		case "truncated":
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.Write(bytes.Repeat([]byte("x"), 400))
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case "dropped":
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestErrorClassification(t *testing.T) {
	srv := faultServer(t)
	s, err := Open(t.Context(), Config{Bucket: "bucket", Prefix: "gw", Endpoint: srv.URL, PathStyle: true, AccessKeyID: "k", SecretAccessKey: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, tc := range []struct {
		key  string
		want errkind.Kind
	}{
		{"slowdown", errkind.Retryable},
		{"internal", errkind.Retryable},
		{"request-timeout", errkind.Retryable},
		{"throttled", errkind.Retryable},
		{"dropped", errkind.Retryable},
		{"denied", errkind.Permanent},
		{"bad-request", errkind.Permanent},
		{"no-such-key", errkind.NotFound},
		{"no-such-bucket", errkind.Permanent},
	} {
		_, err := s.Get(ctx, tc.key, 0, -1)
		if got := errkind.Of(err); got != tc.want {
			t.Errorf("get %s: %v is %v, want %v", tc.key, err, got, tc.want)
		}
		_, err = s.Stat(ctx, tc.key)
		// HEAD answers carry no body, hence no error code: a 400 is
		// permanent even where a GET's body says RequestTimeout, and a
		// 404 reads as a missing key even where the bucket is missing.
		want := tc.want
		switch tc.key {
		case "request-timeout":
			want = errkind.Permanent
		case "no-such-bucket":
			want = errkind.NotFound
		}
		if got := errkind.Of(err); got != want {
			t.Errorf("stat %s: %v is %v, want %v", tc.key, err, got, want)
		}
		if tc.key == "no-such-key" {
			if !objstore.IsNotFound(err) {
				t.Errorf("stat no-such-key: %v is not objstore.IsNotFound", err)
			}
			continue
		}
		err = objstore.PutBytes(ctx, s, tc.key, []byte("data"))
		if got := errkind.Of(err); got != tc.want {
			t.Errorf("put %s: %v is %v, want %v", tc.key, err, got, tc.want)
		}
	}

	rc, err := s.Get(ctx, "truncated", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if !errkind.IsRetryable(err) {
		t.Fatalf("reading a truncated body: %d bytes, error %v (%v), want retryable", len(b), err, errkind.Of(err))
	}
}
