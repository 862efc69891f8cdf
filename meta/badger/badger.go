// Package badger is the metadata store on badger v4: durable (every commit
// is synced before Update returns, the commits of concurrent Updates
// sharing one sync: group commit), small in memory, its own logs routed to
// slog at warning and above, and value-log garbage collection in the
// background.
//
// Group commit: badger runs with SyncWrites off, so a commit lands in its
// write-ahead files (memory-mapped: a killed process loses nothing) without
// a sync, and Update then waits for a sync that began after its commit.
// One sync at a time runs; the Updates that commit meanwhile wait for the
// next, which covers all of them. A sync is badger's own (the write-ahead
// log of the memtable being written and the value-log file being written)
// plus an fsync of each write-ahead or value-log file badger has stopped
// writing to since the last sync (badger does not sync those itself when
// SyncWrites is off), and of the directory when its files changed.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
)

// gcInterval is how often the value log is garbage collected.
const gcInterval = 10 * time.Minute

// gcDiscardRatio: a value-log file is rewritten when at least this share of
// it is stale. Values under 1 MiB live in the LSM tree, so the value log is
// mostly the write-ahead log and GC rarely has work.
const gcDiscardRatio = 0.5

// Store is a meta.Store on badger.
type Store struct {
	db     *bdg.DB
	dir    string
	logger *slog.Logger

	gate meta.Gate // Close waits for running View and Update calls

	// Group commit (the package comment).
	syncMu   sync.Mutex
	syncing  bool
	waiters  []chan error    // wait for the next sync
	synced   map[string]bool // files badger stopped writing, synced since; the newest of each kind is not in it
	dirFiles []string        // the directory's write-ahead and value-log files at the last sync
	syncs    atomic.Uint64   // syncs done
	commits  atomic.Uint64   // commits synced
	oldFiles atomic.Uint64   // files fsynced after badger stopped writing them
	syncHook func()          // tests: runs as each sync begins

	stopGC    chan struct{}
	gcDone    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ meta.Store = (*Store)(nil)

// options are the settings Open uses: durable commits, and caches sized for
// a metadata store rather than badger's defaults (two 16 MiB memtables
// instead of five 64 MiB ones, a 16 MiB block cache instead of 256 MiB, and
// an 8 MiB index cache instead of every table index held in memory).
func options(dir string, logger *slog.Logger) bdg.Options {
	return bdg.DefaultOptions(dir).
		WithSyncWrites(false). // Update syncs, one sync for concurrent commits (group commit)
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumCompactors(2).
		// Last: WithLoggingLevel would replace the logger with badger's
		// own stderr logger, so the level filter lives in the adapter.
		WithLogger(slogAdapter{logger.With("component", "badger")})
}

// Open opens (creating if needed) the badger database in dir. It fails with
// a clear, permanent error when another process has it open. A nil logger
// discards logs.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := bdg.Open(options(dir, logger))
	if err != nil {
		// badger flattens the flock error to text, so match its message.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("metadata directory %s is in use by another gatewayd", dir))
		}
		return nil, fmt.Errorf("open metadata directory %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, logger: logger, stopGC: make(chan struct{}), gcDone: make(chan struct{}), synced: map[string]bool{}}
	go s.gcLoop()
	return s, nil
}

func (s *Store) gcLoop() {
	defer close(s.gcDone)
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			s.collectValueLog()
		}
	}
}

// collectValueLog rewrites value-log files until one is not worth it.
func (s *Store) collectValueLog() {
	rewritten := 0
	for {
		select {
		case <-s.stopGC:
			return
		default:
		}
		err := s.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			rewritten++
			continue
		case errors.Is(err, bdg.ErrNoRewrite), errors.Is(err, bdg.ErrRejected):
		default:
			s.logger.Warn("metadata value log gc failed", "dir", s.dir, "err", err)
		}
		if rewritten > 0 {
			s.logger.Info("metadata value log gc", "dir", s.dir, "files_rewritten", rewritten)
		}
		return
	}
}

// Close waits for running transactions, stops the GC loop and closes the
// database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.gate.Close()
		close(s.stopGC)
		<-s.gcDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close metadata directory %s: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// View implements meta.Store.
func (s *Store) View(ctx context.Context, fn func(meta.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return fn(&tx{txn: txn, readOnly: true})
}

// Update implements meta.Store.
func (s *Store) Update(ctx context.Context, fn func(meta.Txn) error) error {
	return s.update(ctx, fn, true)
}

// UpdateUnsynced implements meta.Unsynced: Update without the wait for
// a sync (the commit is in badger's memory-mapped write-ahead file).
func (s *Store) UpdateUnsynced(ctx context.Context, fn func(meta.Txn) error) error {
	return s.update(ctx, fn, false)
}

// update runs fn in a transaction until it commits without a conflict,
// then waits for a sync when synced.
func (s *Store) update(ctx context.Context, fn func(meta.Txn) error, synced bool) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	for attempt := 0; attempt < meta.MaxConflictRetries; attempt++ {
		if attempt > 0 {
			// Let the winner finish; spread the retries of many losers apart.
			time.Sleep(time.Duration(rand.IntN(100*attempt)) * time.Microsecond)
		}
		err := s.attempt(ctx, fn)
		if err == nil && synced {
			return s.sync()
		}
		if !errors.Is(err, bdg.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("%w (%d attempts)", meta.ErrConflict, meta.MaxConflictRetries)
}

// Sync implements meta.Unsynced.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	return s.sync()
}

// sync returns once a sync that began after it was called has ended: the
// commits made before it are durable.
func (s *Store) sync() error {
	done := make(chan error, 1)
	s.syncMu.Lock()
	s.waiters = append(s.waiters, done)
	if !s.syncing {
		s.syncing = true
		go s.syncer()
	}
	s.syncMu.Unlock()
	return <-done
}

// syncer runs syncs while Updates wait for one, each for the Updates
// waiting when it begins.
func (s *Store) syncer() {
	for {
		s.syncMu.Lock()
		batch := s.waiters
		s.waiters = nil
		if len(batch) == 0 {
			s.syncing = false
			s.syncMu.Unlock()
			return
		}
		s.syncMu.Unlock()
		err := s.syncFiles()
		if err != nil {
			err = fmt.Errorf("sync metadata directory %s: %w", s.dir, err)
		} else {
			s.syncs.Add(1)
			s.commits.Add(uint64(len(batch)))
		}
		for _, w := range batch {
			w <- err
		}
	}
}

// syncFiles makes every commit made before it durable: badger's own sync,
// then the files badger stopped writing since the last sync, and the
// directory if its files changed.
func (s *Store) syncFiles() error {
	if s.syncHook != nil {
		s.syncHook()
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var files []string
	newest := map[string]int64{} // extension -> number of the newest file (the one being written)
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		n, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ext), 10, 64)
		if ext != ".mem" && ext != ".vlog" || err != nil {
			continue
		}
		files = append(files, e.Name())
		newest[ext] = max(newest[ext], n)
	}
	for _, name := range files {
		ext := filepath.Ext(name)
		if n, _ := strconv.ParseInt(strings.TrimSuffix(name, ext), 10, 64); n == newest[ext] || s.synced[name] {
			continue // the newest is synced by badger above
		}
		if err := fsyncPath(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		s.synced[name] = true
		s.oldFiles.Add(1)
	}
	for name := range s.synced {
		if !slices.Contains(files, name) {
			delete(s.synced, name) // removed by badger
		}
	}
	if !slices.Equal(files, s.dirFiles) {
		if err := fsyncPath(s.dir); err != nil {
			return err
		}
		s.dirFiles = files
	}
	return nil
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// attempt runs fn once in a fresh transaction and commits it.
func (s *Store) attempt(ctx context.Context, fn func(meta.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	t := &tx{txn: txn}
	if err := fn(t); err != nil {
		return err
	}
	// fn may have ignored a refused write: committing the rest would not be atomic.
	if err := t.size.Err(); err != nil {
		return err
	}
	if t.refused != nil {
		return t.refused
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := txn.Commit()
	if errors.Is(err, bdg.ErrTxnTooBig) {
		return fmt.Errorf("%w (%v)", meta.ErrTooBig, err)
	}
	return err
}

type tx struct {
	txn      *bdg.Txn
	readOnly bool
	size     meta.TxnSize
	refused  error // badger refused a write for size
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, meta.ErrEmptyKey
	}
	item, err := t.txn.Get(key)
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return nil, fmt.Errorf("%q: %w", key, meta.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return item.ValueCopy(nil)
}

func (t *tx) Set(key, value []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if err := t.size.Add(key, value); err != nil {
		return err
	}
	// badger keeps the slices until commit: give it copies the caller cannot change.
	return t.refuse(t.txn.Set(clone(key), clone(value)))
}

func (t *tx) Delete(key []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if err := t.size.Add(key, nil); err != nil {
		return err
	}
	return t.refuse(t.txn.Delete(clone(key)))
}

// refuse maps badger's own size limit to meta.ErrTooBig and remembers it.
// The limits in meta are below badger's with the options above, so this is
// a backstop.
func (t *tx) refuse(err error) error {
	if errors.Is(err, bdg.ErrTxnTooBig) {
		t.refused = fmt.Errorf("%w (%v)", meta.ErrTooBig, err)
		return t.refused
	}
	return err
}

func (t *tx) Iterate(prefix []byte, fn func(key, value []byte) error) error {
	opts := bdg.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false // values are copied one by one below
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read %q: %w", item.Key(), err)
		}
		if err := fn(item.KeyCopy(nil), v); err != nil {
			return err
		}
	}
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// slogAdapter routes badger's printf-style logs to slog, dropping its
// chatty info and debug lines.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Errorf(f string, args ...any) {
	a.l.Error(strings.TrimSpace(fmt.Sprintf(f, args...)))
}
func (a slogAdapter) Warningf(f string, args ...any) {
	a.l.Warn(strings.TrimSpace(fmt.Sprintf(f, args...)))
}
func (a slogAdapter) Infof(string, ...any)  {}
func (a slogAdapter) Debugf(string, ...any) {}
