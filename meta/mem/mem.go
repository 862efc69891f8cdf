// Package mem is the in-memory twin of the badger metadata store, for tests
// of the layers above meta. It has the same semantics: snapshot isolation,
// atomic commits, the same size limits, and the same optimistic conflict
// detection (an Update whose transaction read a key another transaction
// committed since it began is run again), so code that is correct on it is
// correct on badger.
package mem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/meta"
)

// version is one committed state of a key.
type version struct {
	at    uint64 // the commit that wrote it
	value []byte // nil: deleted
}

// Store is an in-memory meta.Store. Each key keeps the versions that open
// transactions may still read (multi-version concurrency control), so a
// commit costs O(its writes × log keys), not O(store).
type Store struct {
	mu       sync.Mutex
	keys     []string             // sorted; every key with a version
	versions map[string][]version // per key, oldest first
	now      uint64               // the latest commit
	open     map[uint64]int       // snapshot → transactions reading it
	gate     meta.Gate            // Close waits for running View and Update calls
}

var _ meta.Store = (*Store)(nil)

// errConflict makes Update run fn again.
var errConflict = errors.New("mem: write conflict")

// New returns an empty store.
func New() *Store {
	return &Store{versions: map[string][]version{}, open: map[uint64]int{}}
}

// Close waits for running transactions and closes the store.
func (s *Store) Close() error {
	s.gate.Close()
	return nil
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
	t := s.begin(true)
	defer s.end(t)
	return fn(t)
}

// UpdateUnsynced implements meta.Unsynced: Update (nothing to sync).
func (s *Store) UpdateUnsynced(ctx context.Context, fn func(meta.Txn) error) error {
	return s.Update(ctx, fn)
}

// Sync implements meta.Unsynced.
func (s *Store) Sync(ctx context.Context) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	return nil
}

// Update implements meta.Store.
func (s *Store) Update(ctx context.Context, fn func(meta.Txn) error) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	for attempt := 0; attempt < meta.MaxConflictRetries; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(rand.IntN(100*attempt)) * time.Microsecond)
		}
		err := s.attempt(ctx, fn)
		if !errors.Is(err, errConflict) {
			return err
		}
	}
	return fmt.Errorf("%w (%d attempts)", meta.ErrConflict, meta.MaxConflictRetries)
}

func (s *Store) attempt(ctx context.Context, fn func(meta.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := s.begin(false)
	defer s.end(t)
	if err := fn(t); err != nil {
		return err
	}
	if err := t.size.Err(); err != nil {
		return err // fn ignored a refused write: committing the rest would not be atomic
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.commit(t)
}

func (s *Store) begin(readOnly bool) *tx {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open[s.now]++
	return &tx{s: s, start: s.now, readOnly: readOnly, writes: map[string][]byte{}, reads: map[string]bool{}}
}

func (s *Store) end(t *tx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release(t)
}

// release forgets t's snapshot; s.mu must be held.
func (s *Store) release(t *tx) {
	if t.ended {
		return
	}
	t.ended = true
	if s.open[t.start]--; s.open[t.start] == 0 {
		delete(s.open, t.start)
	}
}

// commit applies t's writes unless a key t read was written after t began.
func (s *Store) commit(t *tx) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(t.writes) == 0 {
		return nil // as badger: nothing to write, nothing to check
	}
	for k := range t.reads {
		if vs := s.versions[k]; len(vs) > 0 && vs[len(vs)-1].at > t.start {
			return errConflict
		}
	}
	s.now++
	s.release(t) // its snapshot is not read again
	oldest := s.oldestOpen()
	for k, v := range t.writes {
		vs, ok := s.versions[k]
		if !ok {
			i, _ := slices.BinarySearch(s.keys, k)
			s.keys = slices.Insert(s.keys, i, k)
		}
		s.versions[k] = append(vs, version{at: s.now, value: v})
		s.prune(k, oldest)
	}
	return nil
}

// oldestOpen is the oldest snapshot an open transaction reads.
func (s *Store) oldestOpen() uint64 {
	oldest := s.now
	for at := range s.open {
		oldest = min(oldest, at)
	}
	return oldest
}

// prune drops k's versions that no snapshot from oldest on can read, and k
// itself once it is deleted for all of them. A key written while a long
// transaction is open keeps its versions until it is next written.
func (s *Store) prune(k string, oldest uint64) {
	vs := s.versions[k]
	keep := 0 // the newest version visible at oldest
	for i, v := range vs {
		if v.at <= oldest {
			keep = i
		}
	}
	vs = vs[keep:]
	if len(vs) == 1 && vs[0].value == nil && vs[0].at <= oldest {
		delete(s.versions, k)
		i, _ := slices.BinarySearch(s.keys, k)
		s.keys = slices.Delete(s.keys, i, i+1)
		return
	}
	s.versions[k] = slices.Clip(vs)
}

// valueAt returns k's value in snapshot at; s.mu must be held.
func (s *Store) valueAt(k string, at uint64) ([]byte, bool) {
	vs := s.versions[k]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].at <= at {
			return vs[i].value, vs[i].value != nil
		}
	}
	return nil, false
}

type tx struct {
	s        *Store
	start    uint64
	readOnly bool
	writes   map[string][]byte // nil value: deleted
	reads    map[string]bool
	size     meta.TxnSize
	ended    bool // its snapshot is released
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, meta.ErrEmptyKey
	}
	k := string(key)
	t.reads[k] = true
	v, ok := t.writes[k]
	if !ok {
		t.s.mu.Lock()
		v, _ = t.s.valueAt(k, t.start)
		t.s.mu.Unlock()
	}
	if v == nil {
		return nil, fmt.Errorf("%q: %w", key, meta.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (t *tx) Set(key, value []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if err := t.size.Add(key, value); err != nil {
		return err
	}
	t.writes[string(key)] = append([]byte{}, value...) // never nil, even for an empty value
	return nil
}

func (t *tx) Delete(key []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if err := t.size.Add(key, nil); err != nil {
		return err
	}
	t.writes[string(key)] = nil
	return nil
}

type entry struct {
	key   string
	value []byte
}

func (t *tx) Iterate(prefix []byte, fn func(key, value []byte) error) error {
	p := string(prefix)
	var committed []entry
	t.s.mu.Lock()
	for i := sort.SearchStrings(t.s.keys, p); i < len(t.s.keys) && strings.HasPrefix(t.s.keys[i], p); i++ {
		k := t.s.keys[i]
		if v, ok := t.s.valueAt(k, t.start); ok {
			committed = append(committed, entry{k, v})
		}
	}
	t.s.mu.Unlock()

	var own []entry // this transaction's writes under prefix, deletes included
	for k, v := range t.writes {
		if strings.HasPrefix(k, p) {
			own = append(own, entry{k, v})
		}
	}
	slices.SortFunc(own, func(a, b entry) int { return strings.Compare(a.key, b.key) })

	emit := func(e entry) error {
		if e.value == nil {
			return nil
		}
		t.reads[e.key] = true
		return fn([]byte(e.key), bytes.Clone(e.value))
	}
	i, j := 0, 0
	for i < len(committed) || j < len(own) {
		var e entry
		switch {
		case j == len(own) || i < len(committed) && committed[i].key < own[j].key:
			e, i = committed[i], i+1
		case i == len(committed) || own[j].key < committed[i].key:
			e, j = own[j], j+1
		default: // same key: the transaction's own write wins
			e, i, j = own[j], i+1, j+1
		}
		if err := emit(e); err != nil {
			return err
		}
	}
	return nil
}
