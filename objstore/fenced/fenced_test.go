package fenced

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
	"github.com/gatewayd/gatewayd/objstore/retry"
)

// A lowered fence is invisible.
func TestConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store { return New(mem.New("")).Store() })
}

func mustFenced(t *testing.T, what string, err error) {
	t.Helper()
	if !IsFenced(err) || !errkind.IsPermanent(err) {
		t.Fatalf("%s behind a raised fence: got %v, want a permanent fenced error", what, err)
	}
}

func TestRaisedFenceRefusesWritesOnly(t *testing.T) {
	ctx := t.Context()
	inner := mem.New("")
	f := New(inner)
	// Behind the retry policy as in the gateway: a refusal is not retried.
	s := retry.New(f.Store(), retry.Options{MaxAttempts: 1000, BaseDelay: time.Hour, MaxDelay: time.Hour})
	if err := objstore.PutBytes(ctx, s, "a", []byte("before")); err != nil {
		t.Fatal(err)
	}
	etag, err := objstore.PutIfAbsent(ctx, s, "lease", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}

	f.Raise(errors.New("lease lost to host2"))
	if err := f.Err(); err == nil || err.Error() != "lease lost to host2" {
		t.Fatalf("Err() = %v", err)
	}
	err = objstore.PutBytes(ctx, s, "b", []byte("after"))
	mustFenced(t, "put", err)
	if !bytes.Contains([]byte(err.Error()), []byte("lease lost to host2")) {
		t.Fatalf("the refusal does not say why: %v", err)
	}
	mustFenced(t, "delete", s.Delete(ctx, "a"))
	mustFenced(t, "copy", s.(objstore.Copier).Copy(ctx, "a", "c"))
	mustFenced(t, "set storage class", s.(objstore.StorageClasser).SetStorageClass(ctx, "a", "GLACIER"))
	mustFenced(t, "set metadata", s.(objstore.MetadataPutter).SetMeta(ctx, "a", map[string]string{"k": "v"}))
	mustFenced(t, "compose", objstore.Compose(ctx, s, "c", []objstore.Part{objstore.CopyPart("a", 0, 1, "")}, nil))
	_, err = objstore.PutIfAbsent(ctx, s, "other", []byte("x"))
	mustFenced(t, "put if absent", err)
	_, err = objstore.PutIfMatch(ctx, s, "lease", []byte("2"), etag)
	mustFenced(t, "put if match", err)

	// Nothing reached the store underneath.
	var keys []string
	if err := inner.List(ctx, "", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != "a" || keys[1] != "lease" {
		t.Fatalf("store holds %v, want [a lease]", keys)
	}
	// Reads go on.
	if b, err := objstore.GetAll(ctx, s, "a"); err != nil || string(b) != "before" {
		t.Fatalf("read behind the fence: %q, %v", b, err)
	}
	if _, err := s.Stat(ctx, "lease"); err != nil {
		t.Fatal(err)
	}

	f.Lower()
	if err := objstore.PutBytes(ctx, s, "b", []byte("after")); err != nil {
		t.Fatalf("put after the fence came down: %v", err)
	}
}

// blockingStore holds every Put until its context ends.
type blockingStore struct {
	*mem.Store
	started chan struct{}
}

func (b *blockingStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	close(b.started)
	<-ctx.Done()
	return ctx.Err()
}

func TestRaiseCancelsWritesInFlight(t *testing.T) {
	inner := &blockingStore{Store: mem.New(""), started: make(chan struct{})}
	f := New(inner)
	done := make(chan error, 1)
	go func() { done <- objstore.PutBytes(t.Context(), f.Store(), "k", []byte("v")) }()
	<-inner.started
	f.Raise(errors.New("lease expired"))
	select {
	case err := <-done:
		mustFenced(t, "a put in flight", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("the put in flight did not end when the fence was raised")
	}
}
