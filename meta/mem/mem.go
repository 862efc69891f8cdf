// Package mem is the in-memory twin of the badger metadata store, for tests
// of the layers above meta. It has the same semantics: snapshot isolation,
// atomic commits, and optimistic conflict detection (a transaction that read
// a key another transaction committed since it began is retried), so code
// that is correct on it is correct on badger.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/gatewayd/gatewayd/meta"
)

// Store is an in-memory meta.Store. Each commit replaces the map, so a
// transaction's snapshot is simply the map it started with. Commits cost
// O(size of the store): fine for tests, not for production.
type Store struct {
	mu        sync.Mutex
	data      map[string][]byte
	version   uint64
	lastWrite map[string]uint64 // commit version that last wrote each key
	closed    bool
}

var _ meta.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{data: map[string][]byte{}, lastWrite: map[string]uint64{}}
}

// Close implements meta.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *Store) begin(readOnly bool) (*tx, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, meta.ErrClosed
	}
	return &tx{snap: s.data, start: s.version, readOnly: readOnly, writes: map[string]*[]byte{}, reads: map[string]bool{}}, nil
}

// View implements meta.Store.
func (s *Store) View(ctx context.Context, fn func(meta.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := s.begin(true)
	if err != nil {
		return err
	}
	return fn(t)
}

// Update implements meta.Store.
func (s *Store) Update(ctx context.Context, fn func(meta.Txn) error) error {
	for attempt := 0; attempt < meta.MaxConflictRetries; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := s.begin(false)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		ok, err := s.commit(t)
		if err != nil || ok {
			return err
		}
	}
	return meta.ErrConflict
}

// commit applies t's writes unless a key t read was written after t began.
func (s *Store) commit(t *tx) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, meta.ErrClosed
	}
	if len(t.writes) == 0 {
		return true, nil
	}
	for k := range t.reads {
		if s.lastWrite[k] > t.start {
			return false, nil
		}
	}
	next := make(map[string][]byte, len(s.data)+len(t.writes))
	for k, v := range s.data {
		next[k] = v
	}
	s.version++
	for k, v := range t.writes {
		if v == nil {
			delete(next, k)
		} else {
			next[k] = *v
		}
		s.lastWrite[k] = s.version
	}
	s.data = next
	return true, nil
}

type tx struct {
	snap     map[string][]byte
	start    uint64
	readOnly bool
	writes   map[string]*[]byte // nil value: deleted
	reads    map[string]bool
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, meta.ErrEmptyKey
	}
	k := string(key)
	t.reads[k] = true
	if w, ok := t.writes[k]; ok {
		if w == nil {
			return nil, fmt.Errorf("%q: %w", key, meta.ErrNotFound)
		}
		return bytes.Clone(*w), nil
	}
	v, ok := t.snap[k]
	if !ok {
		return nil, fmt.Errorf("%q: %w", key, meta.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (t *tx) Set(key, value []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if len(key) == 0 {
		return meta.ErrEmptyKey
	}
	v := append([]byte{}, value...)
	t.writes[string(key)] = &v
	return nil
}

func (t *tx) Delete(key []byte) error {
	if t.readOnly {
		return meta.ErrReadOnly
	}
	if len(key) == 0 {
		return meta.ErrEmptyKey
	}
	t.writes[string(key)] = nil
	return nil
}

func (t *tx) Iterate(prefix []byte, fn func(key, value []byte) error) error {
	p := string(prefix)
	merged := map[string][]byte{}
	for k, v := range t.snap {
		if len(k) >= len(p) && k[:len(p)] == p {
			merged[k] = v
		}
	}
	for k, w := range t.writes {
		if len(k) >= len(p) && k[:len(p)] == p {
			if w == nil {
				delete(merged, k)
			} else {
				merged[k] = *w
			}
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.reads[k] = true
		if err := fn([]byte(k), bytes.Clone(merged[k])); err != nil {
			return err
		}
	}
	return nil
}
