// Package limiter bounds what the gateway asks of its object store: how
// many calls are in flight at once, and how fast bytes go up and down.
// The bandwidth limits apply to the bytes as they flow through Put's reader
// and Get's body, and can be changed while transfers run.
package limiter

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
)

// Options configures a Limiter. Zero means unlimited.
type Options struct {
	// MaxInFlight bounds concurrent calls. A Get holds its slot until its
	// body is closed; a List gives its slot up while fn runs, so fn may
	// call the store.
	MaxInFlight int
	// UploadBytesPerSec and DownloadBytesPerSec are the initial bandwidth
	// limits. Stores that read a Put body twice (S3 over plain http signs
	// the payload first) are charged twice.
	UploadBytesPerSec, DownloadBytesPerSec int64
	// Clock times the bandwidth waits (default the real clock).
	Clock clock.Clock
}

// Limiter holds the limits; Store returns the limited store.
type Limiter struct {
	inner   objstore.Store
	slots   chan struct{} // nil when unlimited
	waiting atomic.Int64
	up      *bandwidth
	down    *bandwidth
}

// New returns a Limiter around inner.
func New(inner objstore.Store, opts Options) *Limiter {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	l := &Limiter{inner: inner, up: newBandwidth(opts.Clock), down: newBandwidth(opts.Clock)}
	if opts.MaxInFlight > 0 {
		l.slots = make(chan struct{}, opts.MaxInFlight)
	}
	l.up.set(opts.UploadBytesPerSec)
	l.down.set(opts.DownloadBytesPerSec)
	return l
}

// Store returns the limited store. It implements the optional interfaces
// (Copier, StorageClasser) exactly when the inner store does.
func (l *Limiter) Store() objstore.Store { return objstore.LimitCapabilities(&store{l}, l.inner) }

// SetUploadLimit sets the upload bandwidth in bytes per second (0 means
// unlimited). Running transfers follow it within a fraction of a second.
func (l *Limiter) SetUploadLimit(bytesPerSec int64) { l.up.set(bytesPerSec) }

// SetDownloadLimit sets the download bandwidth in bytes per second (0
// means unlimited).
func (l *Limiter) SetDownloadLimit(bytesPerSec int64) { l.down.set(bytesPerSec) }

// UploadLimit is the upload limit in force, bytes per second (0: none).
func (l *Limiter) UploadLimit() int64 { return l.up.limit() }

// DownloadLimit is the download limit in force, bytes per second (0: none).
func (l *Limiter) DownloadLimit() int64 { return l.down.limit() }

// InFlight reports how many calls hold a slot.
func (l *Limiter) InFlight() int { return len(l.slots) }

// Waiting reports how many calls wait for a slot.
func (l *Limiter) Waiting() int { return int(l.waiting.Load()) }

func (l *Limiter) acquire(ctx context.Context) error {
	if l.slots == nil {
		return nil
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for a free slot: %w", l.inner, ctx.Err())
	}
}

func (l *Limiter) release() {
	if l.slots != nil {
		<-l.slots
	}
}

// bandwidth is a token bucket of bytes on an injectable clock.
type bandwidth struct {
	mu  sync.Mutex // orders set against itself; rate.Limiter is safe alone
	lim *rate.Limiter
	clk clock.Clock
}

func newBandwidth(clk clock.Clock) *bandwidth {
	return &bandwidth{lim: rate.NewLimiter(rate.Inf, 0), clk: clk}
}

// burstFor is the bucket size: a tenth of a second of transfer, so a
// change of limit takes effect quickly and waits come in small steps.
func burstFor(bytesPerSec int64) int {
	return int(min(max(bytesPerSec/10, 4<<10), 4<<20))
}

func (b *bandwidth) set(bytesPerSec int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clk.Now()
	if bytesPerSec <= 0 {
		b.lim.SetLimitAt(now, rate.Inf)
		return
	}
	b.lim.SetBurstAt(now, burstFor(bytesPerSec))
	b.lim.SetLimitAt(now, rate.Limit(bytesPerSec))
}

func (b *bandwidth) limit() int64 {
	if l := b.lim.Limit(); l != rate.Inf {
		return int64(l)
	}
	return 0
}

// chunk is the most a single read may move before it is charged.
func (b *bandwidth) chunk() int {
	if b.lim.Limit() == rate.Inf {
		return math.MaxInt
	}
	return max(b.lim.Burst(), 1)
}

// wait charges n bytes, sleeping until the bucket allows them.
func (b *bandwidth) wait(ctx context.Context, n int) error {
	for n > 0 {
		if b.lim.Limit() == rate.Inf {
			return nil
		}
		now := b.clk.Now()
		step := min(n, max(b.lim.Burst(), 1))
		r := b.lim.ReserveN(now, step)
		if !r.OK() {
			continue // the burst shrank under us; take the new size
		}
		if err := clock.Sleep(ctx, b.clk, r.DelayFrom(now)); err != nil {
			r.CancelAt(b.clk.Now())
			return err
		}
		n -= step
	}
	return nil
}

// store is the limited objstore.Store.
type store struct{ l *Limiter }

func (s *store) String() string { return s.l.inner.String() }

func (s *store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.PutMeta(ctx, key, r, size, nil)
}

func (s *store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return objstore.PutWith(ctx, s.l.inner, key, limitedUpload(ctx, r, s.l.up), size, meta)
}

// PutIfAbsent implements objstore.ConditionalPutter, limited as Put is.
func (s *store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (string, error) {
	if err := s.l.acquire(ctx); err != nil {
		return "", err
	}
	defer s.l.release()
	return objstore.InnerConditionalPutter(s.l.inner).PutIfAbsent(ctx, key, limitedUpload(ctx, r, s.l.up), size)
}

// PutIfMatch implements objstore.ConditionalPutter, limited as Put is.
func (s *store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (string, error) {
	if err := s.l.acquire(ctx); err != nil {
		return "", err
	}
	defer s.l.release()
	return objstore.InnerConditionalPutter(s.l.inner).PutIfMatch(ctx, key, limitedUpload(ctx, r, s.l.up), size, etag)
}

func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := s.l.acquire(ctx); err != nil {
		return nil, err
	}
	rc, err := s.l.inner.Get(ctx, key, offset, length)
	if err != nil {
		s.l.release()
		return nil, err
	}
	return &download{ctx: ctx, rc: rc, bw: s.l.down, release: s.l.release}, nil
}

func (s *store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := s.l.acquire(ctx); err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer s.l.release()
	return s.l.inner.Stat(ctx, key)
}

func (s *store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	held := true
	defer func() {
		if held {
			s.l.release()
		}
	}()
	return s.l.inner.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
		s.l.release()
		held = false
		ferr := fn(oi)
		if err := s.l.acquire(ctx); err != nil {
			return err
		}
		held = true
		return ferr
	})
}

func (s *store) Delete(ctx context.Context, key string) error {
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return s.l.inner.Delete(ctx, key)
}

func (s *store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	mp, ok := s.l.inner.(objstore.MetadataPutter)
	if !ok {
		return fmt.Errorf("%s: set metadata of %s: the store keeps no object metadata", s, key)
	}
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return mp.SetMeta(ctx, key, meta)
}

func (s *store) ListDir(ctx context.Context, prefix string, fn func(objstore.ObjectInfo, bool) error) error {
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return objstore.ListDir(ctx, s.l.inner, prefix, fn)
}

func (s *store) Copy(ctx context.Context, srcKey, dstKey string) error {
	c, ok := s.l.inner.(objstore.Copier)
	if !ok {
		return fmt.Errorf("%s: copy: store cannot copy", s)
	}
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return c.Copy(ctx, srcKey, dstKey)
}

func (s *store) SetStorageClass(ctx context.Context, key, class string) error {
	c, ok := s.l.inner.(objstore.StorageClasser)
	if !ok {
		return fmt.Errorf("%s: set storage class: store has no storage classes", s)
	}
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return c.SetStorageClass(ctx, key, class)
}

// upload is a Put reader charged against the upload bandwidth.
type upload struct {
	ctx context.Context
	r   io.ReadSeeker
	bw  *bandwidth
}

func (u *upload) Read(p []byte) (int, error) {
	if c := u.bw.chunk(); len(p) > c {
		p = p[:c]
	}
	n, err := u.r.Read(p)
	if werr := u.bw.wait(u.ctx, n); werr != nil {
		return n, werr
	}
	return n, err
}

func (u *upload) Seek(offset int64, whence int) (int64, error) { return u.r.Seek(offset, whence) }

// uploadAt keeps a reader's ReadAt, which stores use to send parts in
// parallel.
type uploadAt struct {
	upload
	ra io.ReaderAt
}

// ReadAt fills p chunk by chunk, as io.ReaderAt requires, paying for each.
func (u *uploadAt) ReadAt(p []byte, off int64) (int, error) {
	total := 0
	for total < len(p) {
		step := p[total:]
		if c := u.bw.chunk(); len(step) > c {
			step = step[:c]
		}
		n, err := u.ra.ReadAt(step, off+int64(total))
		total += n
		if werr := u.bw.wait(u.ctx, n); werr != nil {
			return total, werr
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func limitedUpload(ctx context.Context, r io.ReadSeeker, bw *bandwidth) io.ReadSeeker {
	u := upload{ctx: ctx, r: r, bw: bw}
	if ra, ok := r.(io.ReaderAt); ok {
		return &uploadAt{upload: u, ra: ra}
	}
	return &u
}

// download is a Get body charged against the download bandwidth; closing
// it frees the call's slot.
type download struct {
	ctx     context.Context
	rc      io.ReadCloser
	bw      *bandwidth
	release func()
	once    sync.Once
}

func (d *download) Read(p []byte) (int, error) {
	if c := d.bw.chunk(); len(p) > c {
		p = p[:c]
	}
	n, err := d.rc.Read(p)
	if werr := d.bw.wait(d.ctx, n); werr != nil {
		return n, werr
	}
	return n, err
}

func (d *download) Close() error {
	err := d.rc.Close()
	d.once.Do(d.release)
	return err
}

// Compose implements objstore.Composer in one slot; the data parts are
// charged against the upload bandwidth. Copied ranges do not cross the
// link; bytes a store reads back to fill out parts (objstore/s3 does for
// small changes) are not charged.
func (s *store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	limited := make([]objstore.Part, len(parts))
	for i, p := range parts {
		if p.Data != nil {
			p.Data = limitedUpload(ctx, p.Data, s.l.up)
		}
		limited[i] = p
	}
	return objstore.Compose(ctx, s.l.inner, key, limited, meta)
}

// slot runs call in one slot.
func (s *store) slot(ctx context.Context, call func() error) error {
	if err := s.l.acquire(ctx); err != nil {
		return err
	}
	defer s.l.release()
	return call()
}

// ObjectLock implements objstore.Retainer in one slot.
func (s *store) ObjectLock(ctx context.Context) (lc objstore.LockConfig, err error) {
	err = s.slot(ctx, func() (err error) {
		lc, err = objstore.ObjectLock(ctx, s.l.inner)
		return err
	})
	return lc, err
}

// PutRetained implements objstore.Retainer, limited as Put is.
func (s *store) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	return s.slot(ctx, func() error {
		return objstore.PutRetained(ctx, s.l.inner, key, limitedUpload(ctx, r, s.l.up), size, ret)
	})
}

// Retain implements objstore.Retainer in one slot.
func (s *store) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	return s.slot(ctx, func() error { return objstore.Retain(ctx, s.l.inner, key, ret) })
}

// Retention implements objstore.Retainer in one slot.
func (s *store) Retention(ctx context.Context, key string) (ret objstore.Retention, err error) {
	err = s.slot(ctx, func() (err error) {
		ret, err = objstore.GetRetention(ctx, s.l.inner, key)
		return err
	})
	return ret, err
}

// Purge implements objstore.Retainer in one slot.
func (s *store) Purge(ctx context.Context, key string) error {
	return s.slot(ctx, func() error { return objstore.Purge(ctx, s.l.inner, key) })
}
