// Package retry is the one retry policy for object store calls: a Store
// decorator that retries errors marked errkind.Retryable, with exponential
// backoff and full jitter, and nothing else. Stores below it make a single
// attempt per call (objstore/s3 turns the SDK's retries off).
//
// Put rewinds its reader before each new attempt. List and ListDir resume
// after the last entry they delivered (objstore.WithListStart), so fn
// never sees an entry twice, a retry does not read the listing again from
// its start, and a listing that keeps making progress keeps its attempts.
// A Get is retried until it returns a reader; errors while reading the
// body (marked Retryable by the stores) are the caller's to retry, since
// the object may have changed in between.
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

// listing is one retried listing: it remembers the last key fn received,
// so that a retry resumes after it.
type listing struct {
	last, lastBefore string
	delivered        bool
	fnErr            *callbackError
}

// resumeListing makes attempts at list until it completes; each attempt
// after the first gets a context asking the store to start after the last
// key fn received (objstore.WithListStart). An attempt that delivered new
// entries renews the attempt budget.
func (s *store) resumeListing(ctx context.Context, prefix string, l *listing, list func(ctx context.Context) error) error {
	progressed := func() bool {
		p := l.last != l.lastBefore
		l.lastBefore = l.last
		return p
	}
	err := s.doProgress(ctx, "list", prefix, nil, func() error {
		if l.delivered {
			return list(objstore.WithListStart(ctx, l.last))
		}
		return list(ctx)
	}, progressed)
	if l.fnErr != nil {
		return l.fnErr.err
	}
	return err
}

// deliver calls fn for key unless fn has seen it before a retry (a store
// may ignore the start hint and list from the beginning).
func (l *listing) deliver(key string, fn func() error) error {
	if l.delivered && key <= l.last {
		return nil
	}
	if err := fn(); err != nil {
		l.fnErr = &callbackError{err}
		return l.fnErr
	}
	l.last, l.delivered = key, true
	return nil
}

// List resumes a listing that failed partway after the last object fn
// received (S3's StartAfter), so a retry reads only what is left and a
// long listing over a flaky link finishes.
func (s *store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	var l listing
	return s.resumeListing(ctx, prefix, &l, func(ctx context.Context) error {
		return s.inner.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
			return l.deliver(oi.Key, func() error { return fn(oi) })
		})
	})
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

// ListDir lists one level and, like List, resumes a failed listing after
// the last entry fn received.
func (s *store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	var l listing
	return s.resumeListing(ctx, prefix, &l, func(ctx context.Context) error {
		return objstore.ListDir(ctx, s.inner, prefix, func(oi objstore.ObjectInfo, isPrefix bool) error {
			return l.deliver(oi.Key, func() error { return fn(oi, isPrefix) })
		})
	})
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

// Compose implements objstore.Composer: a failed attempt is retried whole
// (the store left nothing of it behind), with every data reader rewound.
func (s *store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	starts, err := objstore.DataStarts(s, key, parts)
	if err != nil {
		return err
	}
	return s.do(ctx, "compose", key, func() error { return objstore.RewindParts(s, key, parts, starts) },
		func() error { return objstore.Compose(ctx, s.inner, key, parts, meta) })
}

// ObjectLock implements objstore.Retainer, retried as a read.
func (s *store) ObjectLock(ctx context.Context) (lc objstore.LockConfig, err error) {
	err = s.do(ctx, "object lock", "", nil, func() (err error) {
		lc, err = objstore.ObjectLock(ctx, s.inner)
		return err
	})
	return lc, err
}

// PutRetained implements objstore.Retainer, retried as Put is.
func (s *store) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	return s.putRewinding(ctx, "put", key, r, func() error { return objstore.PutRetained(ctx, s.inner, key, r, size, ret) })
}

// Retain implements objstore.Retainer. Setting a retention is idempotent;
// a refusal (ErrObjectLocked) is permanent and comes back at once.
func (s *store) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	return s.do(ctx, "retain", key, nil, func() error { return objstore.Retain(ctx, s.inner, key, ret) })
}

// Retention implements objstore.Retainer.
func (s *store) Retention(ctx context.Context, key string) (ret objstore.Retention, err error) {
	err = s.do(ctx, "retention of", key, nil, func() (err error) {
		ret, err = objstore.GetRetention(ctx, s.inner, key)
		return err
	})
	return ret, err
}

// Purge implements objstore.Retainer; a retry deletes what is left.
func (s *store) Purge(ctx context.Context, key string) error {
	return s.do(ctx, "purge", key, nil, func() error { return objstore.Purge(ctx, s.inner, key) })
}
