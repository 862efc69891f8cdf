// Package retry is the one retry policy for object store calls: a Store
// decorator that retries errors marked errkind.Retryable, with exponential
// backoff and full jitter, and nothing else. Stores below it make a single
// attempt per call (objstore/s3 turns the SDK's retries off).
//
// Put rewinds its reader before each new attempt. List resumes after the
// last object it delivered, so fn never sees an object twice, and a listing
// that keeps making progress keeps its attempts. A Get is
// retried until it returns a reader; errors while reading the body (marked
// Retryable by the stores) are the caller's to retry, since the object may
// have changed in between.
package retry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// Options configures the policy. Zero values take the defaults.
type Options struct {
	// MaxAttempts is the number of attempts including the first (default 5).
	MaxAttempts int
	// BaseDelay is the backoff ceiling of the first retry (default 200ms);
	// it doubles with each retry up to MaxDelay (default 15s). The actual
	// wait is drawn uniformly from [0, ceiling) (full jitter).
	BaseDelay, MaxDelay time.Duration
	Clock               clock.Clock
	Logger              *slog.Logger
}

// Defaults.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 200 * time.Millisecond
	DefaultMaxDelay    = 15 * time.Second
)

// New returns inner with retries. The result implements the optional
// interfaces (Copier, StorageClasser) exactly when inner does.
func New(inner objstore.Store, opts Options) objstore.Store {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = DefaultBaseDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return objstore.LimitCapabilities(&store{inner: inner, opts: opts}, inner)
}

type store struct {
	inner objstore.Store
	opts  Options
}

func (s *store) String() string { return s.inner.String() }

// backoff returns the wait before retry number n (1 for the first retry).
func (s *store) backoff(n int) time.Duration {
	ceiling := s.opts.MaxDelay
	if shift := n - 1; shift < 32 {
		if d := s.opts.BaseDelay << shift; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling)))
}

// do runs attempt until it succeeds, fails for good, or runs out of
// attempts. before runs ahead of every attempt after the first.
func (s *store) do(ctx context.Context, op, key string, before func() error, attempt func() error) error {
	return s.doProgress(ctx, op, key, before, attempt, nil)
}

// doProgress is do for calls that can fail after partial progress: when
// progressed reports that a failed attempt got further than any before,
// the attempts and the backoff start over.
func (s *store) doProgress(ctx context.Context, op, key string, before func() error, attempt func() error, progressed func() bool) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !errkind.IsRetryable(err) {
			return err
		}
		if progressed != nil && progressed() {
			n = 1
		}
		if n >= s.opts.MaxAttempts {
			s.opts.Logger.Warn("object store call failed, giving up", "op", op, "key", key, "attempts", n, "err", err)
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", op, key, n, err)
		}
		if ctx.Err() != nil {
			return err
		}
		wait := s.backoff(n)
		s.opts.Logger.Debug("object store call failed, retrying", "op", op, "key", key, "attempt", n, "wait", wait, "err", err)
		if serr := clock.Sleep(ctx, s.opts.Clock, wait); serr != nil {
			return fmt.Errorf("%s %s: %w while waiting to retry after: %v", op, key, serr, err)
		}
		if before != nil {
			if berr := before(); berr != nil {
				return berr
			}
		}
	}
}

func (s *store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.PutMeta(ctx, key, r, size, nil)
}

func (s *store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: reader cannot seek: %w", s, key, err))
	}
	rewind := func() error {
		if _, err := r.Seek(start, io.SeekStart); err != nil {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: rewind reader: %w", s, key, err))
		}
		return nil
	}
	return s.do(ctx, "put", key, rewind, func() error { return objstore.PutWith(ctx, s.inner, key, r, size, meta) })
}

// PutIfAbsent implements objstore.ConditionalPutter. A precondition
// failure is not retryable, so it comes back at once.
func (s *store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (etag string, err error) {
	cp := objstore.InnerConditionalPutter(s.inner)
	err = s.putRewinding(ctx, "put if absent", key, r, func() (err error) {
		etag, err = cp.PutIfAbsent(ctx, key, r, size)
		return err
	})
	return etag, err
}

// PutIfMatch implements objstore.ConditionalPutter.
func (s *store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (newETag string, err error) {
	cp := objstore.InnerConditionalPutter(s.inner)
	err = s.putRewinding(ctx, "put if match", key, r, func() (err error) {
		newETag, err = cp.PutIfMatch(ctx, key, r, size, etag)
		return err
	})
	return newETag, err
}

// putRewinding retries attempt, rewinding r before each new one.
func (s *store) putRewinding(ctx context.Context, op, key string, r io.ReadSeeker, attempt func() error) error {
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: reader cannot seek: %w", s, op, key, err))
	}
	return s.do(ctx, op, key, func() error {
		if _, err := r.Seek(start, io.SeekStart); err != nil {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: rewind reader: %w", s, op, key, err))
		}
		return nil
	}, attempt)
}

func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, "get", key, nil, func() error {
		var err error
		rc, err = s.inner.Get(ctx, key, offset, length)
		return err
	})
	return rc, err
}

// ReadRange reads a range into memory; a body that breaks with a
// retryable error (a connection reset or cut short mid-transfer) is read
// again from the range's start, so the bytes returned always come from one
// read of the object.
func (s *store) ReadRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	var b []byte
	err := s.do(ctx, "get", key, nil, func() error {
		rc, err := s.inner.Get(ctx, key, offset, length)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = io.ReadAll(rc)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", s.inner, key, err)
		}
		return nil
	})
	return b, err
}

func (s *store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	var oi objstore.ObjectInfo
	err := s.do(ctx, "stat", key, nil, func() error {
		var err error
		oi, err = s.inner.Stat(ctx, key)
		return err
	})
	return oi, err
}

// callbackError carries fn's own error through the inner List, so that it
// is returned as is and never retried, whatever its class.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// List retries a listing that failed partway from the start, skipping what
// fn has seen; an attempt that delivered new objects renews the attempt
// budget, so a long listing over a flaky link finishes.
func (s *store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	var last string
	delivered := false
	var fnErr *callbackError
	lastBefore := ""
	progressed := func() bool {
		p := last != lastBefore
		lastBefore = last
		return p
	}
	err := s.doProgress(ctx, "list", prefix, nil, func() error {
		return s.inner.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
			// After a retry the listing starts over; skip what fn has seen.
			if delivered && oi.Key <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				fnErr = &callbackError{err}
				return fnErr
			}
			last, delivered = oi.Key, true
			return nil
		})
	}, progressed)
	if fnErr != nil {
		return fnErr.err
	}
	return err
}

func (s *store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, "delete", key, nil, func() error { return s.inner.Delete(ctx, key) })
}

func (s *store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	mp, ok := s.inner.(objstore.MetadataPutter)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: set metadata of %s: the store keeps no object metadata", s, key))
	}
	return s.do(ctx, "set metadata", key, nil, func() error { return mp.SetMeta(ctx, key, meta) })
}

// ListDir lists one level; a failed page restarts the listing, so fn may
// see entries again after a retry, as with List.
func (s *store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	return s.do(ctx, "list", prefix, nil, func() error { return objstore.ListDir(ctx, s.inner, prefix, fn) })
}

func (s *store) Copy(ctx context.Context, srcKey, dstKey string) error {
	c, ok := s.inner.(objstore.Copier)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: copy: store cannot copy", s))
	}
	return s.do(ctx, "copy", srcKey, nil, func() error { return c.Copy(ctx, srcKey, dstKey) })
}

func (s *store) SetStorageClass(ctx context.Context, key, class string) error {
	c, ok := s.inner.(objstore.StorageClasser)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: set storage class: store has no storage classes", s))
	}
	return s.do(ctx, "set storage class", key, nil, func() error { return c.SetStorageClass(ctx, key, class) })
}
