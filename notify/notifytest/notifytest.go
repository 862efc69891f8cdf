// Package notifytest is a notify.Sink that records what services publish,
// for their unit tests (the queue itself is notify's, tested there).
package notifytest

import (
	"context"
	"sync"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
)

// Recorder records published events.
type Recorder struct {
	mu     sync.Mutex
	events []notify.Event
	full   bool
}

// Publish records e.
func (r *Recorder) Publish(_ context.Context, e notify.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Update runs fn in md and records es if it committed.
func (r *Recorder) Update(ctx context.Context, md meta.Store, fn func(meta.Txn) error, es ...notify.Event) error {
	if err := md.Update(ctx, fn); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, es...)
	return nil
}

// Full says what SetFull set.
func (r *Recorder) Full() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.full
}

// SetFull makes Full say v.
func (r *Recorder) SetFull(v bool) {
	r.mu.Lock()
	r.full = v
	r.mu.Unlock()
}

// Take returns the events recorded since the last Take.
func (r *Recorder) Take() []notify.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}
