package fileshare

import (
	"context"
	"errors"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// The share keeps working from its local state while the object store is
// away: once a store call fails (after the store's own retries), cached
// attributes and listings are used whatever their age, without asking the
// store again, for AttrTTL; then the next call that needs the store tries
// it again. Any call that succeeds ends this at once.

// storeFailed says whether err is the store being away (a transient
// error that outlasted the store's retries, rather than an answer such as
// "not found" or "access denied", or the caller giving up), and if so
// notes it.
func (m *Manager) storeFailed(ctx context.Context, err error) bool {
	if err == nil || !errkind.IsRetryable(err) || objstore.IsNotFound(err) || ctx.Err() != nil ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	m.awayUntil.Store(m.opts.Clock.Now().Add(m.opts.AttrTTL).UnixNano())
	return true
}

// storeAway says whether a store call failed within the last AttrTTL
// with no success since.
func (m *Manager) storeAway() bool {
	until := m.awayUntil.Load()
	return until != 0 && m.opts.Clock.Now().UnixNano() < until
}

// storeBack notes a store call that succeeded.
func (m *Manager) storeBack() {
	if m.awayUntil.Load() != 0 {
		m.awayUntil.Store(0)
	}
}
