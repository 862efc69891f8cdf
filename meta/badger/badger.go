// Package badger is the metadata store on badger v4: durable (every commit
// is fsynced before Update returns), small in memory, its own logs routed to
// slog, and value-log garbage collection in the background.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/gatewayd/gatewayd/meta"
)

// gcInterval is how often the value log is garbage collected.
const gcInterval = 10 * time.Minute

// Store is a meta.Store on badger.
type Store struct {
	db     *bdg.DB
	dir    string
	stop   chan struct{}
	done   chan struct{}
	closer sync.Once
	err    error
}

var _ meta.Store = (*Store)(nil)

// Open opens (creating if needed) the badger database in dir. It fails with
// a clear error when another process has it open.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := bdg.DefaultOptions(dir).
		WithSyncWrites(true). // an acknowledged commit survives power loss
		WithLogger(slogAdapter{logger}).
		WithLoggingLevel(bdg.WARNING).
		WithMemTableSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumMemtables(2).
		WithNumCompactors(2)
	db, err := bdg.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") || strings.Contains(err.Error(), "resource temporarily unavailable") {
			return nil, fmt.Errorf("metadata directory %s is in use by another gatewayd", dir)
		}
		return nil, fmt.Errorf("open metadata directory %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	go s.gcLoop(logger)
	return s, nil
}

func (s *Store) gcLoop(logger *slog.Logger) {
	defer close(s.done)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// Rewrite value-log files until one is not worth it.
			for s.db.RunValueLogGC(0.5) == nil {
			}
			logger.Debug("value log gc done")
		}
	}
}

// Close stops the GC loop and closes the database.
func (s *Store) Close() error {
	s.closer.Do(func() {
		close(s.stop)
		<-s.done
		s.err = s.db.Close()
	})
	return s.err
}

// View implements meta.Store.
func (s *Store) View(ctx context.Context, fn func(meta.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.db.IsClosed() {
		return meta.ErrClosed
	}
	return s.db.View(func(txn *bdg.Txn) error { return fn(&tx{txn: txn, readOnly: true}) })
}

// Update implements meta.Store.
func (s *Store) Update(ctx context.Context, fn func(meta.Txn) error) error {
	for attempt := 0; attempt < meta.MaxConflictRetries; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.db.IsClosed() {
			return meta.ErrClosed
		}
		txn := s.db.NewTransaction(true)
		err := fn(&tx{txn: txn})
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		switch {
		case errors.Is(err, bdg.ErrConflict):
			// Let the winner finish; spread retries of many losers apart.
			time.Sleep(time.Duration(rand.IntN(100*(attempt+1))) * time.Microsecond)
			continue
		case errors.Is(err, bdg.ErrTxnTooBig):
			return fmt.Errorf("%w (%v)", meta.ErrTooBig, err)
		}
		return err
	}
	return meta.ErrConflict
}

type tx struct {
	txn      *bdg.Txn
	readOnly bool
}

func (t *tx) Get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(key)
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return nil, fmt.Errorf("%q: %w", key, meta.ErrNotFound)
	}
	if errors.Is(err, bdg.ErrEmptyKey) {
		return nil, meta.ErrEmptyKey
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (t *tx) Set(key, value []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if len(key) == 0 {
		return meta.ErrEmptyKey
	}
	// badger keeps the slices until commit: give it copies the caller cannot change.
	return t.wrap(t.txn.Set(clone(key), clone(value)))
}

func (t *tx) Delete(key []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if len(key) == 0 {
		return meta.ErrEmptyKey
	}
	return t.wrap(t.txn.Delete(clone(key)))
}

func (t *tx) wrap(err error) error {
	if errors.Is(err, bdg.ErrTxnTooBig) {
		return fmt.Errorf("%w (%v)", meta.ErrTooBig, err)
	}
	return err
}

func (t *tx) Iterate(prefix []byte, fn func(key, value []byte) error) error {
	opts := bdg.DefaultIteratorOptions
	opts.Prefix = prefix
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := fn(item.KeyCopy(nil), v); err != nil {
			return err
		}
	}
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// slogAdapter routes badger's printf-style logs to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Errorf(f string, args ...any) {
	a.l.Error(strings.TrimSpace(fmt.Sprintf(f, args...)), "component", "badger")
}
func (a slogAdapter) Warningf(f string, args ...any) {
	a.l.Warn(strings.TrimSpace(fmt.Sprintf(f, args...)), "component", "badger")
}
func (a slogAdapter) Infof(f string, args ...any) {
	a.l.Info(strings.TrimSpace(fmt.Sprintf(f, args...)), "component", "badger")
}
func (a slogAdapter) Debugf(f string, args ...any) {
	a.l.Debug(strings.TrimSpace(fmt.Sprintf(f, args...)), "component", "badger")
}
