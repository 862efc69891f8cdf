package mem

import (
	"context"
	"fmt"
	"io"

	"github.com/gatewayd/gatewayd/objstore"
)

var _ objstore.Retainer = (*Store)(nil)

// ObjectLock implements objstore.Retainer: enabled on a store made by
// NewLocked, with no default retention.
func (s *Store) ObjectLock(ctx context.Context) (objstore.LockConfig, error) {
	if err := ctx.Err(); err != nil {
		return objstore.LockConfig{}, fmt.Errorf("%s: object lock: %w", s, err)
	}
	return objstore.LockConfig{Enabled: s.locked}, nil
}

// PutRetained implements objstore.Retainer.
func (s *Store) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	if !s.locked {
		return objstore.NoObjectLock(s, "put", key)
	}
	if err := objstore.CheckRetention(s, "put", key, ret); err != nil {
		return err
	}
	_, err := s.put(ctx, "put", key, r, size, nil, ret, nil)
	return err
}

// Retain implements objstore.Retainer as S3 does: a retention in force
// can be lengthened, never shortened or moved from compliance to
// governance; one that has ended can be replaced.
func (s *Store) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	if !s.locked {
		return objstore.NoObjectLock(s, "retain", key)
	}
	if err := objstore.CheckRetention(s, "retain", key, ret); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: retain %s: %w", s, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return objstore.NotFound(s, key)
	}
	if cur := o.ret; cur.Holds(s.now()) && (ret.Until.Before(cur.Until) || cur.Mode == objstore.Compliance && ret.Mode != objstore.Compliance) {
		return objstore.ObjectLocked(s, "retain", key, fmt.Sprintf("retained %s, cannot become %s", cur, ret))
	}
	c := *o // readers keep theirs; the version and its ETag stay
	c.ret = ret
	s.objects[key] = &c
	return nil
}

// Retention implements objstore.Retainer.
func (s *Store) Retention(ctx context.Context, key string) (objstore.Retention, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Retention{}, fmt.Errorf("%s: retention of %s: %w", s, key, err)
	}
	o, err := s.lookup(key)
	if err != nil {
		return objstore.Retention{}, err
	}
	return o.ret, nil
}

// Purge implements objstore.Retainer as S3 does: the versions whose
// retention has ended (and those never retained) are removed; the newest
// retained one, if any, is the object's current version afterwards.
func (s *Store) Purge(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: purge %s: %w", s, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	versions := s.kept[key] // oldest first
	if o := s.objects[key]; o != nil {
		versions = append(versions[:len(versions):len(versions)], o)
	}
	var held []*object
	for _, o := range versions {
		if o.ret.Holds(now) {
			held = append(held, o)
		}
	}
	delete(s.kept, key)
	delete(s.objects, key)
	if len(held) == 0 {
		return nil
	}
	s.objects[key] = held[len(held)-1]
	if len(held) > 1 {
		s.kept[key] = held[:len(held)-1]
	}
	return objstore.ObjectLocked(s, "purge", key, fmt.Sprintf("%d versions retained, the newest %s", len(held), held[len(held)-1].ret))
}
