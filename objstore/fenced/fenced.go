// Package fenced stops a store's writes the moment the gateway loses the
// right to write to it: a Store decorator that, once its Fence is raised,
// refuses every Put, Delete, Copy, metadata or storage class change and
// conditional put with an error wrapping ErrFenced (marked
// errkind.Permanent, so the retry policy gives up at once), and cancels
// the writes in flight. Reads go through unchanged.
//
// The gateway raises the fence when it loses its lease on the bucket
// prefix (another gateway took it, or it could not be renewed in time).
// Callers keep what they could not write (the upload buffers keep every
// acknowledged write) and try again later; the fence comes down only when
// the lease is held again.
package fenced

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// ErrFenced is wrapped by every write refused behind a raised fence.
var ErrFenced = errors.New("writes to the object store are fenced")

// Fence holds the state; Store returns the fenced store. Its methods are
// safe for concurrent use.
type Fence struct {
	inner objstore.Store

	mu     sync.Mutex
	reason error // nil while writes are allowed
	// down ends when the fence is raised: writes in flight run under it.
	down   context.Context
	cancel context.CancelCauseFunc
}

// New returns a lowered Fence around inner.
func New(inner objstore.Store) *Fence {
	f := &Fence{inner: inner}
	f.down, f.cancel = context.WithCancelCause(context.Background())
	return f
}

// Store returns the fenced store. It implements the optional interfaces
// exactly when inner does.
func (f *Fence) Store() objstore.Store { return objstore.LimitCapabilities(&store{f}, f.inner) }

// Raise refuses writes from now on, for reason (said in every refusal),
// and cancels the writes in flight. Raising a raised fence keeps the
// first reason.
func (f *Fence) Raise(reason error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reason != nil {
		return
	}
	f.reason = reason
	f.cancel(fmt.Errorf("%w: %v", ErrFenced, reason))
}

// Lower allows writes again.
func (f *Fence) Lower() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reason == nil {
		return
	}
	f.reason = nil
	f.down, f.cancel = context.WithCancelCause(context.Background())
}

// Err returns why writes are refused, or nil when they are allowed.
func (f *Fence) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reason
}

// write runs call with a context that ends when the fence is raised, or
// refuses it at once if it is.
func (f *Fence) write(ctx context.Context, op, key string, call func(ctx context.Context) error) error {
	f.mu.Lock()
	reason, down := f.reason, f.down
	f.mu.Unlock()
	if reason != nil {
		return f.refusal(op, key, reason)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(down, func() { cancel(context.Cause(down)) })
	defer stop()
	err := call(wctx)
	if err != nil && ctx.Err() == nil && down.Err() != nil {
		// Cut short by the fence: say so, not "context canceled".
		return f.refusal(op, key, f.Err())
	}
	return err
}

func (f *Fence) refusal(op, key string, reason error) error {
	if reason == nil {
		reason = errors.New("lowered while the write ran")
	}
	return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: %w: %v", f.inner, op, key, ErrFenced, reason))
}

// IsFenced reports whether err is a write refused behind a fence.
func IsFenced(err error) bool { return errors.Is(err, ErrFenced) }

type store struct{ f *Fence }

func (s *store) String() string { return s.f.inner.String() }

func (s *store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.f.write(ctx, "put", key, func(ctx context.Context) error { return s.f.inner.Put(ctx, key, r, size) })
}

func (s *store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	return s.f.write(ctx, "put", key, func(ctx context.Context) error {
		return objstore.PutWith(ctx, s.f.inner, key, r, size, meta)
	})
}

func (s *store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (etag string, err error) {
	err = s.f.write(ctx, "put if absent", key, func(ctx context.Context) (err error) {
		etag, err = objstore.InnerConditionalPutter(s.f.inner).PutIfAbsent(ctx, key, r, size)
		return err
	})
	return etag, err
}

func (s *store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (newETag string, err error) {
	err = s.f.write(ctx, "put if match", key, func(ctx context.Context) (err error) {
		newETag, err = objstore.InnerConditionalPutter(s.f.inner).PutIfMatch(ctx, key, r, size, etag)
		return err
	})
	return newETag, err
}

func (s *store) Delete(ctx context.Context, key string) error {
	return s.f.write(ctx, "delete", key, func(ctx context.Context) error { return s.f.inner.Delete(ctx, key) })
}

func (s *store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	mp, ok := s.f.inner.(objstore.MetadataPutter)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: set metadata: the store keeps no metadata", s))
	}
	return s.f.write(ctx, "set metadata of", key, func(ctx context.Context) error { return mp.SetMeta(ctx, key, meta) })
}

func (s *store) Copy(ctx context.Context, srcKey, dstKey string) error {
	c, ok := s.f.inner.(objstore.Copier)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: copy: the store cannot copy", s))
	}
	return s.f.write(ctx, "copy to", dstKey, func(ctx context.Context) error { return c.Copy(ctx, srcKey, dstKey) })
}

func (s *store) SetStorageClass(ctx context.Context, key, class string) error {
	c, ok := s.f.inner.(objstore.StorageClasser)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: set storage class: the store has no storage classes", s))
	}
	return s.f.write(ctx, "set storage class of", key, func(ctx context.Context) error { return c.SetStorageClass(ctx, key, class) })
}

// Reads pass through.

func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return s.f.inner.Get(ctx, key, offset, length)
}

func (s *store) ReadRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	return objstore.ReadRange(ctx, s.f.inner, key, offset, length)
}

func (s *store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	return s.f.inner.Stat(ctx, key)
}

func (s *store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	return s.f.inner.List(ctx, prefix, fn)
}

func (s *store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	return objstore.ListDir(ctx, s.f.inner, prefix, fn)
}

func (s *store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	return s.f.write(ctx, "compose", key, func(ctx context.Context) error {
		return objstore.Compose(ctx, s.f.inner, key, parts, meta)
	})
}

// ObjectLock implements objstore.Retainer: a read, never fenced.
func (s *store) ObjectLock(ctx context.Context) (objstore.LockConfig, error) {
	return objstore.ObjectLock(ctx, s.f.inner)
}

// Retention implements objstore.Retainer: a read, never fenced.
func (s *store) Retention(ctx context.Context, key string) (objstore.Retention, error) {
	return objstore.GetRetention(ctx, s.f.inner, key)
}

func (s *store) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	return s.f.write(ctx, "put", key, func(ctx context.Context) error {
		return objstore.PutRetained(ctx, s.f.inner, key, r, size, ret)
	})
}

func (s *store) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	return s.f.write(ctx, "retain", key, func(ctx context.Context) error { return objstore.Retain(ctx, s.f.inner, key, ret) })
}

func (s *store) Purge(ctx context.Context, key string) error {
	return s.f.write(ctx, "purge", key, func(ctx context.Context) error { return objstore.Purge(ctx, s.f.inner, key) })
}
