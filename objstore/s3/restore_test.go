package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// TestRestoreEncoding: against a server that answers as AWS documents it
// (RestoreObject: 202 for a new request, 409 RestoreAlreadyInProgress
// while one runs; HeadObject: x-amz-storage-class and x-amz-restore),
// Restore sends the days and tier in a RestoreRequest and takes both
// answers; RestoreStatus reads an archived object not restored, one being
// restored, one restored with its expiry, and a STANDARD one.
func TestRestoreEncoding(t *testing.T) {
	expiry := time.Date(2031, 12, 21, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var bodies []string
	restoreHeader := `ongoing-request="true"`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		path := r.URL.Path
		switch {
		case r.Method == http.MethodHead && path == "/cold":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodPost && strings.HasSuffix(path, "/tapes/a") && r.URL.Query().Has("restore"):
			b, _ := io.ReadAll(r.Body)
			bodies = append(bodies, string(b))
			if len(bodies) == 1 {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RestoreAlreadyInProgress</Code><Message>Object restore is already in progress</Message></Error>`)
		case r.Method == http.MethodPost && strings.HasSuffix(path, "/tapes/c") && r.URL.Query().Has("restore"):
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidObjectState</Code><Message>Restore is not allowed for the object's current storage class</Message></Error>`)
		case r.Method == http.MethodHead && strings.HasSuffix(path, "/tapes/none"):
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodHead && strings.Contains(path, "/tapes/"):
			w.Header().Set("Content-Length", "5")
			w.Header().Set("ETag", `"abc"`)
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			switch {
			case strings.HasSuffix(path, "/a"):
				w.Header().Set("x-amz-storage-class", "GLACIER")
				w.Header().Set("x-amz-restore", restoreHeader)
			case strings.HasSuffix(path, "/b"):
				w.Header().Set("x-amz-storage-class", "DEEP_ARCHIVE")
			}
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{Bucket: "cold", Prefix: "gw/", Endpoint: srv.URL, Region: "us-east-1", PathStyle: true,
		AccessKeyID: "key", SecretAccessKey: "secret"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(ctx, "tapes/a", 2, "Slow"); err == nil {
		t.Fatal("restore at tier Slow succeeded")
	}
	for range 2 {
		if err := s.Restore(ctx, "tapes/a", 2, objstore.TierBulk); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if len(bodies) != 2 || !strings.Contains(bodies[0], "<Days>2</Days>") || !strings.Contains(bodies[0], "<Tier>Bulk</Tier>") ||
		!strings.Contains(bodies[0], "<RestoreRequest") {
		t.Fatalf("restore requests: %q", bodies)
	}
	mu.Unlock()
	err = s.Restore(ctx, "tapes/c", 2, objstore.TierStandard)
	if !errors.Is(err, objstore.ErrNotArchived) || errkind.Of(err) != errkind.Permanent || !strings.Contains(err.Error(), "InvalidObjectState") {
		t.Fatalf("restore of a STANDARD object: %v", err)
	}

	status := func(key string) objstore.RestoreStatus {
		t.Helper()
		st, err := s.RestoreStatus(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status("tapes/a"); !st.Archived || !st.Ongoing || st.Readable() || st.StorageClass != "GLACIER" {
		t.Fatalf("being restored: %+v", st)
	}
	mu.Lock()
	restoreHeader = objstore.FormatRestoreHeader(false, expiry)
	mu.Unlock()
	if st := status("tapes/a"); !st.Archived || st.Ongoing || !st.Readable() || !st.Expiry.Equal(expiry) {
		t.Fatalf("restored: %+v", st)
	}
	if st := status("tapes/b"); !st.Archived || st.Ongoing || st.Readable() || st.StorageClass != "DEEP_ARCHIVE" {
		t.Fatalf("archived: %+v", st)
	}
	if st := status("tapes/c"); st.Archived || !st.Readable() {
		t.Fatalf("standard: %+v", st)
	}
	mu.Lock()
	restoreHeader = `ongoing-request=maybe`
	mu.Unlock()
	if _, err := s.RestoreStatus(ctx, "tapes/a"); err == nil {
		t.Fatal("a garbled x-amz-restore was taken")
	}
	if _, err := s.RestoreStatus(ctx, "tapes/none"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("status of a missing object: %v", err)
	}
}

// TestRestoreMinIO: MinIO keeps no archive class of its own: an object
// reads as not archived and readable, and a restore of it is refused as
// S3 refuses one of an object not archived (403 InvalidObjectState), so
// the request reached it whole.
func TestRestoreMinIO(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "tapes/x", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	st, err := s.RestoreStatus(ctx, "tapes/x")
	if err != nil || st.Archived || st.Ongoing || !st.Readable() {
		t.Fatalf("status: %+v %v", st, err)
	}
	if err := s.Restore(ctx, "tapes/x", 1, objstore.TierBulk); !errors.Is(err, objstore.ErrNotArchived) {
		t.Fatalf("restore of a STANDARD object: %v", err)
	}
	if _, err := s.RestoreStatus(ctx, "tapes/none"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("status of a missing object: %v", err)
	}
}
