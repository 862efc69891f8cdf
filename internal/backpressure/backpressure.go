// Package backpressure is the one way gatewayd makes writers wait for room
// (in the upload buffer, in the cache): a condition variable that also
// wakes on context cancellation, a count of waits, and a health warning
// while anyone waits.
package backpressure

import (
	"context"
	"sync"

	"github.com/gatewayd/gatewayd/health"
)

// Waiters makes callers wait, under the owner's lock, until there is room.
type Waiters struct {
	mu      sync.Locker
	cond    *sync.Cond
	health  *health.Reporter // may be nil
	warning string
	waiting int
	total   uint64
}

// New returns Waiters guarded by mu (the owner's lock). While anyone waits,
// rep (if not nil) carries warning.
func New(mu sync.Locker, rep *health.Reporter, warning string) *Waiters {
	return &Waiters{mu: mu, cond: sync.NewCond(mu), health: rep, warning: warning}
}

// Wait returns once ready() is true or ctx ends. Call it, and ready runs,
// with the owner's lock held.
func (w *Waiters) Wait(ctx context.Context, ready func() bool) error {
	if ready() {
		return nil
	}
	w.total++
	w.waiting++
	if w.health != nil {
		w.health.Warn(w.warning)
	}
	defer func() {
		w.waiting--
		if w.waiting == 0 && w.health != nil {
			w.health.OK()
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	for !ready() {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.cond.Wait()
	}
	return nil
}

// Broadcast wakes every waiter to check again; call it when room is freed.
func (w *Waiters) Broadcast() { w.cond.Broadcast() }

// Total is how many calls of Wait had to wait. Call with the lock held.
func (w *Waiters) Total() uint64 { return w.total }
