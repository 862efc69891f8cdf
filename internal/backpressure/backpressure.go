// Package backpressure is the one way gatewayd makes writers wait for room
// (in the upload buffer, in the cache): a condition variable that also
// wakes on context cancellation, a count of waits, and the owner's health:
// a warning while anyone waits or while the owner is blocked for a reason
// of its own (a full filesystem), an error once it has failed for good.
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
	blocked string // why the owner has no room whatever its accounting says
	failed  string
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
	w.report()
	defer func() {
		w.waiting--
		w.report()
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

// Block records that the owner has no room for a reason outside its own
// accounting (its filesystem is full): health carries reason, whether or
// not anyone waits, until Unblock. The owner's ready func consults
// Blocked. Call with the lock held.
func (w *Waiters) Block(reason string) {
	w.blocked = reason
	w.report()
}

// Unblock ends Block and wakes the waiters. Call with the lock held.
func (w *Waiters) Unblock() {
	w.blocked = ""
	w.report()
	w.cond.Broadcast()
}

// Blocked reports whether Block is in force. Call with the lock held.
func (w *Waiters) Blocked() bool { return w.blocked != "" }

// Fail records that the owner cannot work any more: health carries msg as
// an error from now on, whatever waiters come and go. Call with the lock
// held.
func (w *Waiters) Fail(msg string) {
	w.failed = msg
	w.report()
	w.cond.Broadcast()
}

// report sets health from the state: failed, blocked, waited on, or fine.
func (w *Waiters) report() {
	if w.health == nil {
		return
	}
	switch {
	case w.failed != "":
		w.health.Fail(w.failed)
	case w.blocked != "":
		w.health.Warn(w.blocked)
	case w.waiting > 0:
		w.health.Warn(w.warning)
	default:
		w.health.OK()
	}
}
