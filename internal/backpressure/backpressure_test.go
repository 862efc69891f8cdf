package backpressure

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/health"
)

func TestWaitUntilReadyOrCancelled(t *testing.T) {
	var mu sync.Mutex
	reg := health.New(nil)
	w := New(&mu, reg.Register("buf"), "full")
	room := false

	mu.Lock()
	if err := w.Wait(context.Background(), func() bool { return true }); err != nil || w.Total() != 0 {
		t.Fatalf("ready at once: %v, total %d", err, w.Total())
	}
	mu.Unlock()

	done := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		done <- w.Wait(context.Background(), func() bool { return room })
	}()
	for {
		mu.Lock()
		n := w.Total()
		mu.Unlock()
		if n == 1 {
			break
		}
	}
	if _, lvl := reg.Snapshot(); lvl != health.Warning {
		t.Fatalf("health while waiting: %v", lvl)
	}
	mu.Lock()
	room = true
	w.Broadcast()
	mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, lvl := reg.Snapshot(); lvl != health.OK {
		t.Fatalf("health after: %v", lvl)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		mu.Lock()
		defer mu.Unlock()
		done <- w.Wait(ctx, func() bool { return false })
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}
