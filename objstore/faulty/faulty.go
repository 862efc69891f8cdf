// Package faulty injects failures into an objstore.Store, for tests of the
// code that must survive them (retries, the uploader, restore). Failures
// come at a seeded random rate per operation or from a hook that decides
// per call; injected errors are marked errkind.Retryable or
// errkind.Permanent as configured. Get bodies can be made to break halfway.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// Op names an operation that can fail.
type Op string

const (
	OpPut             Op = "put"
	OpGet             Op = "get"
	OpStat            Op = "stat"
	OpList            Op = "list"       // checked once per List, with the prefix as key
	OpListEntry       Op = "list-entry" // checked before each object List delivers
	OpDelete          Op = "delete"
	OpCopy            Op = "copy"
	OpSetStorageClass Op = "set-storage-class"
	OpCompose         Op = "compose"
	OpRetain          Op = "retain" // Retainer.Retain (PutObjectRetention); PutRetained is OpPut, Purge OpDelete
	// OpTruncate is checked for each Get that succeeds; a fault breaks its
	// body (see Options.TruncateAfter).
	OpTruncate Op = "truncate"
)

// ErrInjected is wrapped by every injected error.
var ErrInjected = errors.New("injected fault")

// Options configures the faults.
type Options struct {
	// Seed makes the random faults reproducible.
	Seed uint64
	// Rates is the probability (0..1) that a call of each Op fails.
	Rates map[Op]float64
	// Kind marks injected errors: errkind.Retryable (the default, for
	// Unknown) or errkind.Permanent.
	Kind errkind.Kind
	// Hook, when set, is asked first about every call. A non-nil error is
	// injected (marked with Kind unless already classified); nil falls
	// through to Rates.
	Hook func(op Op, key string) error
	// AfterCall makes faults of Put, Delete, Copy, SetStorageClass and
	// Compose happen after the inner store did the work, like a response
	// lost on the way back. By default they happen before, and a failing
	// Put (Compose) first reads part of its reader (of each data part's),
	// so a retry must rewind it.
	AfterCall bool
	// TruncateAfter is how many bytes a broken Get body delivers before its
	// error (default 100); it breaks at its end if that comes first, and
	// never reports a clean EOF.
	TruncateAfter int64
}

// Injector wraps a store and injects faults into it. Its methods are safe
// for concurrent use.
type Injector struct {
	inner objstore.Store
	opts  Options

	mu       sync.Mutex
	rng      *rand.Rand
	rates    map[Op]float64
	hook     func(Op, string) error
	calls    map[Op]int
	injected map[Op]int
}

// New returns an Injector around inner.
func New(inner objstore.Store, opts Options) *Injector {
	if opts.Kind == errkind.Unknown {
		opts.Kind = errkind.Retryable
	}
	if opts.TruncateAfter <= 0 {
		opts.TruncateAfter = 100
	}
	rates := make(map[Op]float64, len(opts.Rates))
	for op, r := range opts.Rates {
		rates[op] = r
	}
	return &Injector{
		inner:    inner,
		opts:     opts,
		rng:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5851f42d4c957f2d)),
		rates:    rates,
		hook:     opts.Hook,
		calls:    map[Op]int{},
		injected: map[Op]int{},
	}
}

// Store returns the faulty store. It implements the optional interfaces
// (Copier, StorageClasser) exactly when the inner store does.
func (f *Injector) Store() objstore.Store { return objstore.LimitCapabilities(&store{f}, f.inner) }

// SetRate changes the failure rate of op.
func (f *Injector) SetRate(op Op, rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rates[op] = rate
}

// SetHook replaces the hook (nil removes it).
func (f *Injector) SetHook(hook func(op Op, key string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// Calls reports how many times op was attempted.
func (f *Injector) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Injected reports how many faults were injected into op.
func (f *Injector) Injected(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected[op]
}

// fault decides whether this call of op fails, and with what error.
func (f *Injector) fault(op Op, key string) error {
	f.mu.Lock()
	f.calls[op]++
	hook := f.hook
	f.mu.Unlock()

	var err error
	if hook != nil {
		if err = hook(op, key); err != nil && errkind.Of(err) == errkind.Unknown {
			err = errkind.Mark(f.opts.Kind, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.rates[op] > 0 && f.rng.Float64() < f.rates[op] {
		err = errkind.Mark(f.opts.Kind, fmt.Errorf("faulty: %s %s: %w", op, key, ErrInjected))
	}
	if err != nil {
		f.injected[op]++
	}
	return err
}

// store is the faulty objstore.Store.
type store struct{ f *Injector }

func (s *store) String() string { return "faulty(" + s.f.inner.String() + ")" }

func (s *store) mutate(op Op, key string, call func() error) error {
	if !s.f.opts.AfterCall {
		if err := s.f.fault(op, key); err != nil {
			return err
		}
		return call()
	}
	if err := call(); err != nil {
		return err
	}
	return s.f.fault(op, key)
}

func (s *store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.PutMeta(ctx, key, r, size, nil)
}

func (s *store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if !s.f.opts.AfterCall {
		if err := s.f.fault(OpPut, key); err != nil {
			// Like a connection dropped mid-upload: part of the body is gone.
			io.CopyN(io.Discard, r, size/2+1)
			return err
		}
		return objstore.PutWith(ctx, s.f.inner, key, r, size, meta)
	}
	return s.mutate(OpPut, key, func() error { return objstore.PutWith(ctx, s.f.inner, key, r, size, meta) })
}

// PutIfAbsent implements objstore.ConditionalPutter; its faults are OpPut's.
func (s *store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (etag string, err error) {
	cp := objstore.InnerConditionalPutter(s.f.inner)
	err = s.mutate(OpPut, key, func() (err error) {
		etag, err = cp.PutIfAbsent(ctx, key, r, size)
		return err
	})
	return etag, err
}

// PutIfMatch implements objstore.ConditionalPutter; its faults are OpPut's.
func (s *store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (newETag string, err error) {
	cp := objstore.InnerConditionalPutter(s.f.inner)
	err = s.mutate(OpPut, key, func() (err error) {
		newETag, err = cp.PutIfMatch(ctx, key, r, size, etag)
		return err
	})
	return newETag, err
}

func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := s.f.fault(OpGet, key); err != nil {
		return nil, err
	}
	rc, err := s.f.inner.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	if err := s.f.fault(OpTruncate, key); err != nil {
		return &brokenBody{rc: rc, left: s.f.opts.TruncateAfter, err: err}, nil
	}
	return rc, nil
}

// brokenBody delivers some bytes, then fails.
type brokenBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err != nil {
		return n, b.err
	}
	return n, nil
}

func (b *brokenBody) Close() error { return b.rc.Close() }

func (s *store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := s.f.fault(OpStat, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return s.f.inner.Stat(ctx, key)
}

func (s *store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	if err := s.f.fault(OpList, prefix); err != nil {
		return err
	}
	var injected error
	err := s.f.inner.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
		if err := s.f.fault(OpListEntry, oi.Key); err != nil {
			injected = err
			return err
		}
		return fn(oi)
	})
	if injected != nil && errors.Is(err, injected) {
		return injected
	}
	return err
}

func (s *store) Delete(ctx context.Context, key string) error {
	return s.mutate(OpDelete, key, func() error { return s.f.inner.Delete(ctx, key) })
}

func (s *store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	mp, ok := s.f.inner.(objstore.MetadataPutter)
	if !ok {
		return fmt.Errorf("%s: set metadata: inner store keeps no metadata", s)
	}
	return s.mutate(OpPut, key, func() error { return mp.SetMeta(ctx, key, meta) })
}

func (s *store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	if err := s.f.fault(OpList, prefix); err != nil {
		return err
	}
	return objstore.ListDir(ctx, s.f.inner, prefix, fn)
}

func (s *store) Copy(ctx context.Context, srcKey, dstKey string) error {
	c, ok := s.f.inner.(objstore.Copier)
	if !ok {
		return fmt.Errorf("%s: copy: inner store cannot copy", s)
	}
	return s.mutate(OpCopy, dstKey, func() error { return c.Copy(ctx, srcKey, dstKey) })
}

func (s *store) SetStorageClass(ctx context.Context, key, class string) error {
	c, ok := s.f.inner.(objstore.StorageClasser)
	if !ok {
		return fmt.Errorf("%s: set storage class: inner store has no storage classes", s)
	}
	return s.mutate(OpSetStorageClass, key, func() error { return c.SetStorageClass(ctx, key, class) })
}

func (s *store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	if !s.f.opts.AfterCall {
		if err := s.f.fault(OpCompose, key); err != nil {
			for _, p := range parts {
				if p.Data != nil {
					io.CopyN(io.Discard, p.Data, p.Size/2+1)
				}
			}
			return err
		}
		return objstore.Compose(ctx, s.f.inner, key, parts, meta)
	}
	return s.mutate(OpCompose, key, func() error { return objstore.Compose(ctx, s.f.inner, key, parts, meta) })
}

// ObjectLock implements objstore.Retainer; its faults are OpStat's.
func (s *store) ObjectLock(ctx context.Context) (objstore.LockConfig, error) {
	if err := s.f.fault(OpStat, ""); err != nil {
		return objstore.LockConfig{}, err
	}
	return objstore.ObjectLock(ctx, s.f.inner)
}

// Retention implements objstore.Retainer; its faults are OpStat's.
func (s *store) Retention(ctx context.Context, key string) (objstore.Retention, error) {
	if err := s.f.fault(OpStat, key); err != nil {
		return objstore.Retention{}, err
	}
	return objstore.GetRetention(ctx, s.f.inner, key)
}

// PutRetained implements objstore.Retainer; its faults are OpPut's.
func (s *store) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	if !s.f.opts.AfterCall {
		if err := s.f.fault(OpPut, key); err != nil {
			io.CopyN(io.Discard, r, size/2+1)
			return err
		}
		return objstore.PutRetained(ctx, s.f.inner, key, r, size, ret)
	}
	return s.mutate(OpPut, key, func() error { return objstore.PutRetained(ctx, s.f.inner, key, r, size, ret) })
}

// Retain implements objstore.Retainer; its faults are OpRetain's.
func (s *store) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	return s.mutate(OpRetain, key, func() error { return objstore.Retain(ctx, s.f.inner, key, ret) })
}

// Purge implements objstore.Retainer; its faults are OpDelete's.
func (s *store) Purge(ctx context.Context, key string) error {
	return s.mutate(OpDelete, key, func() error { return objstore.Purge(ctx, s.f.inner, key) })
}
