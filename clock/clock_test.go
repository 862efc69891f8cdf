package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeFiresOnlyWhenDue(t *testing.T) {
	start := time.Unix(100, 0)
	f := NewFake(start)
	early, late := f.After(time.Second), f.After(time.Minute)
	if f.Waiters() != 2 {
		t.Fatalf("waiters = %d", f.Waiters())
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-early:
		t.Fatal("fired before due")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-early; !got.Equal(start.Add(time.Second)) {
		t.Fatalf("fired with %v", got)
	}
	select {
	case <-late:
		t.Fatal("late waiter fired early")
	default:
	}
	if f.Waiters() != 1 || !f.Now().Equal(start.Add(time.Second)) {
		t.Fatalf("waiters=%d now=%v", f.Waiters(), f.Now())
	}
	select {
	case <-f.After(0):
	default:
		t.Fatal("After(0) must fire at once")
	}
}

func TestSleepHonoursContext(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, f, time.Hour) }()
	for f.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Sleep after cancel = %v", err)
	}
	go func() { done <- Sleep(context.Background(), f, time.Hour) }()
	for f.Waiters() < 2 { // the cancelled sleep's waiter is still registered
		time.Sleep(time.Millisecond)
	}
	f.Advance(time.Hour)
	if err := <-done; err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}
