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

// TestBlockAndFailOutliveWaiters: a block (a full filesystem) shows in
// health with its reason while no one waits and after the last waiter
// leaves, and a failure is never cleared by waiters coming and going.
func TestBlockAndFailOutliveWaiters(t *testing.T) {
	var mu sync.Mutex
	reg := health.New(nil)
	w := New(&mu, reg.Register("buf"), "full")
	state := func() health.State {
		states, _ := reg.Snapshot()
		return states[0]
	}
	mu.Lock()
	w.Block("filesystem full")
	mu.Unlock()
	if s := state(); s.Level != health.Warning || s.Message != "filesystem full" {
		t.Fatalf("health while blocked: %+v", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		done <- w.Wait(ctx, func() bool { return !w.Blocked() })
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if s := state(); s.Level != health.Warning || s.Message != "filesystem full" {
		t.Fatalf("health after the last waiter left, still blocked: %+v", s)
	}
	go func() {
		mu.Lock()
		defer mu.Unlock()
		done <- w.Wait(context.Background(), func() bool { return !w.Blocked() })
	}()
	mu.Lock()
	w.Unblock()
	mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := state(); s.Level != health.OK {
		t.Fatalf("health after unblock: %+v", s)
	}
	mu.Lock()
	w.Fail("broken")
	mu.Unlock()
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		mu.Lock()
		defer mu.Unlock()
		done <- w.Wait(ctx, func() bool { return false })
	}()
	cancel()
	<-done
	if s := state(); s.Level != health.Error || s.Message != "broken" {
		t.Fatalf("health after a failure and a waiter: %+v", s)
	}
}
