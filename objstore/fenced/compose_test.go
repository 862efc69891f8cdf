package fenced

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// blockingComposer holds every Compose until its context ends.
type blockingComposer struct {
	*mem.Store
	started chan struct{}
}

func (b *blockingComposer) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	close(b.started)
	<-ctx.Done()
	return ctx.Err()
}

func TestRaiseCancelsComposeInFlight(t *testing.T) {
	inner := &blockingComposer{Store: mem.New(""), started: make(chan struct{})}
	f := New(inner)
	s := f.Store()
	if _, ok := s.(objstore.Composer); !ok {
		t.Fatal("the fenced store hides the Composer of the store underneath")
	}
	done := make(chan error, 1)
	go func() { done <- objstore.Compose(t.Context(), s, "k", nil, nil) }()
	<-inner.started
	f.Raise(errors.New("lease expired"))
	select {
	case err := <-done:
		mustFenced(t, "a compose in flight", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("the compose in flight did not end when the fence was raised")
	}
}
