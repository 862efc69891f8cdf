// Package meta is gatewayd's local metadata store: volumes, chunk maps,
// cache index, upload state, tapes, shares, NFS handles. One small
// transactional key-value interface, implemented on badger v4 (meta/badger)
// for the daemon and in memory (meta/mem) for tests of the layers above;
// both pass the suite in meta/metatest.
//
// Transactions have snapshot isolation: a transaction sees the store as it
// was when it began, plus its own writes, and commits all of its writes or
// none. Update retries its function when a concurrent transaction wrote a key
// it read, so that function must be idempotent: it may run more than once,
// and only its last run's writes are kept.
package meta

import (
	"context"
	"errors"

	"github.com/gatewayd/gatewayd/errkind"
)

// Store is a transactional key-value store.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Txn) error) error
	// Update runs fn in a read-write transaction and commits its writes
	// if fn returns nil. On a write conflict it runs fn again, a bounded
	// number of times, then returns an error wrapping ErrConflict.
	Update(ctx context.Context, fn func(Txn) error) error
	// Close releases the store. It is safe to call more than once.
	Close() error
}

// Txn is one transaction. It is not safe for concurrent use, and must not
// be used after the function it was passed to returns.
type Txn interface {
	// Get returns the value of key, or an error wrapping ErrNotFound. The
	// returned slice belongs to the caller.
	Get(key []byte) ([]byte, error)
	// Set stores value under key. key must not be empty.
	Set(key, value []byte) error
	// Delete removes key; removing a missing key is not an error.
	Delete(key []byte) error
	// Iterate calls fn for each key with prefix, in lexical order, with
	// slices that belong to the caller. If fn returns an error, Iterate
	// stops and returns it.
	Iterate(prefix []byte, fn func(key, value []byte) error) error
}

var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errkind.Mark(errkind.NotFound, errors.New("meta: key not found"))
	// ErrConflict means Update gave up after repeated write conflicts.
	ErrConflict = errkind.Mark(errkind.Retryable, errors.New("meta: transaction conflicted with concurrent writers too often"))
	// ErrReadOnly means a write was attempted in a View transaction.
	ErrReadOnly = errkind.Mark(errkind.Permanent, errors.New("meta: write in a read-only transaction"))
	// ErrTooBig means a transaction holds more writes than the store takes
	// at once; split the work into several transactions.
	ErrTooBig = errkind.Mark(errkind.Permanent, errors.New("meta: transaction too big; split it"))
	// ErrEmptyKey means a key of length zero was given.
	ErrEmptyKey = errkind.Mark(errkind.Permanent, errors.New("meta: empty key"))
	// ErrClosed means the store was closed.
	ErrClosed = errkind.Mark(errkind.Permanent, errors.New("meta: store is closed"))
)

// MaxConflictRetries is how many times Update runs fn before giving up.
const MaxConflictRetries = 64
