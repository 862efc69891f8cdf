// Package meta is gatewayd's local metadata store: volumes, chunk maps,
// cache index, upload state, tapes, shares, NFS handles. One small
// transactional key-value interface, implemented on badger v4 (meta/badger)
// for the daemon and in memory (meta/mem) for tests of the layers above;
// both pass the suite in meta/metatest.
//
// Transactions have snapshot isolation: a transaction sees the store as it
// was when it began, plus its own writes, and commits all of its writes or
// none. Keys are ordered bytewise.
//
// Update retries its function when a concurrent transaction committed a
// write to a key it read (Get, or a key Iterate handed it), so that function
// must be idempotent: it may run more than once, only its last run's writes
// are kept, and it must not have effects outside the transaction (or must
// tolerate repeating them). Writes to keys a transaction did not read never
// conflict, and Iterate does not guard against keys inserted under its
// prefix by others (no phantom protection): both as in badger.
//
// A transaction is bounded (MaxTxnWrites, MaxTxnBytes, MaxKeyLen); every
// implementation enforces the same limits, so work that fits in a test on
// the in-memory store fits on disk. A transaction that hit a limit cannot
// commit, even if its function ignored the error.
package meta

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatewayd/gatewayd/errkind"
)

// Store is a transactional key-value store.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Txn) error) error
	// Update runs fn in a read-write transaction and commits its writes
	// if fn returns nil and ctx is still live. On a write conflict it runs
	// fn again, up to MaxConflictRetries times in all, then returns an
	// error wrapping ErrConflict. fn must be idempotent (see the package
	// comment). An error from fn is returned as is, and nothing is written.
	Update(ctx context.Context, fn func(Txn) error) error
	// Close waits for running transactions to finish and releases the
	// store; later View and Update calls fail with ErrClosed. It is safe
	// to call more than once.
	Close() error
}

// Unsynced is a Store whose commits can also be answered before they are
// synced: a caller that may lose a change at a power loss but not at a
// kill of the process (the SMB view's changes) commits with
// UpdateUnsynced and makes them durable with Sync when asked.
type Unsynced interface {
	// UpdateUnsynced is Update returning once the commit is in the
	// store's files, without waiting for a sync: it survives a kill of
	// the process, and a power loss once a later Sync or Update returned.
	UpdateUnsynced(ctx context.Context, fn func(Txn) error) error
	// Sync returns once every commit made before it is durable.
	Sync(ctx context.Context) error
}

// Txn is one transaction. It is not safe for concurrent use, and must not
// be used after the function it was passed to returns.
type Txn interface {
	// Get returns the value of key, or an error wrapping ErrNotFound. The
	// returned slice belongs to the caller.
	Get(key []byte) ([]byte, error)
	// Set stores value under key. key must not be empty. The store keeps
	// its own copies: the caller may reuse both slices at once.
	Set(key, value []byte) error
	// Delete removes key; removing a missing key is not an error.
	Delete(key []byte) error
	// Iterate calls fn for each key with prefix, in bytewise order, with
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
	// ErrTooBig means a transaction exceeded MaxTxnWrites or MaxTxnBytes,
	// or a key exceeded MaxKeyLen; split the work into several transactions.
	ErrTooBig = errkind.Mark(errkind.Permanent, errors.New("meta: transaction too big; split it"))
	// ErrEmptyKey means a key of length zero was given.
	ErrEmptyKey = errkind.Mark(errkind.Permanent, errors.New("meta: empty key"))
	// ErrClosed means the store was closed.
	ErrClosed = errkind.Mark(errkind.Permanent, errors.New("meta: store is closed"))
)

const (
	// MaxConflictRetries is how many times Update runs fn before giving up.
	MaxConflictRetries = 64

	// MaxTxnWrites is how many Set and Delete calls one transaction may
	// make (each call counts, also when it repeats a key).
	MaxTxnWrites = 16384
	// MaxTxnBytes bounds the sum of len(key)+len(value) over a
	// transaction's Set and Delete calls (a Delete counts its key).
	MaxTxnBytes = 2 << 20
	// MaxKeyLen is the longest key accepted.
	MaxKeyLen = 32 << 10
)

// TxnSize accounts a transaction's writes against the limits. It is for
// Store implementations, so that all of them refuse the same transactions.
// The zero value is an empty transaction.
type TxnSize struct {
	writes, bytes int
	err           error // sticky: set once a limit was hit
}

// Add accounts one write (value is nil for a Delete). It returns an error
// wrapping ErrEmptyKey or ErrTooBig if the write must be refused; a
// transaction that got ErrTooBig must not commit (see Err).
func (s *TxnSize) Add(key, value []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > MaxKeyLen:
		s.err = fmt.Errorf("%w: key of %d bytes exceeds %d", ErrTooBig, len(key), MaxKeyLen)
	case s.writes+1 > MaxTxnWrites:
		s.err = fmt.Errorf("%w: more than %d writes", ErrTooBig, MaxTxnWrites)
	case s.bytes+len(key)+len(value) > MaxTxnBytes:
		s.err = fmt.Errorf("%w: writes exceed %d bytes", ErrTooBig, MaxTxnBytes)
	default:
		s.writes++
		s.bytes += len(key) + len(value)
		return nil
	}
	return s.err
}

// Err returns the ErrTooBig error of the first write refused for size, or
// nil if none was.
func (s *TxnSize) Err() error { return s.err }

// DeletePrefix deletes every key under prefix, in transactions small
// enough to commit.
func DeletePrefix(ctx context.Context, md Store, prefix []byte) error {
	for {
		var keys [][]byte
		err := md.View(ctx, func(tx Txn) error {
			stop := errors.New("batch full")
			err := tx.Iterate(prefix, func(k, _ []byte) error {
				keys = append(keys, k)
				if len(keys) == MaxTxnWrites {
					return stop
				}
				return nil
			})
			if errors.Is(err, stop) {
				return nil
			}
			return err
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = md.Update(ctx, func(tx Txn) error {
			for _, k := range keys {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}
