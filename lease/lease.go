// Package lease makes one gateway at a time the writer of a bucket prefix.
// The lease is one small JSON object, Key, under the prefix: it names its
// holder (a random id kept in the holder's data directory, the host, the
// data directory, the process) and when it expires. It is created with a
// conditional put (If-None-Match: *) and renewed or taken over with
// another (If-Match: the ETag last seen), so of two gateways racing for it
// exactly one wins (objstore.ConditionalPutter).
//
// A gateway takes the lease before it writes anything, renews it every
// TTL/3 and, when it loses it, stops writing at once (OnLost, which raises
// the objstore/fenced decorator's fence): when another gateway took it
// (a renewal finds another ETag: lost for good), or when it could not be
// renewed in time (the store was unreachable: lost until a renewal gets
// through, which proves nobody took it in between). A gateway that finds
// the lease held by another refuses to start; with TakeOver it takes a
// lease whose holder stopped renewing it, once it expired. Expiry compares
// the holder's clock (expires) with the taker's, so the hosts' clocks must
// agree to well within the TTL; the holder stops writing TTL/6 before its
// lease expires to leave room for that.
package lease

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/fsutil"
	"github.com/gatewayd/gatewayd/objstore"
)

// Key is the lease object's key, relative to the gateway's prefix.
const Key = "gateway.lease"

// Format is the version of the lease object's JSON.
const Format = 1

// Bounds of the TTL.
const (
	MinTTL     = time.Second
	MaxTTL     = time.Hour
	DefaultTTL = time.Minute
)

// Holder names a gateway.
type Holder struct {
	// ID is random, kept in the data directory (LoadID): a restarted
	// gateway recognises its own lease.
	ID      string
	Host    string
	DataDir string
	PID     int
}

func (h Holder) String() string {
	return fmt.Sprintf("the gateway on host %s (data dir %s, pid %d)", h.Host, h.DataDir, h.PID)
}

// Record is the lease object. Its JSON (docs/format.md) has the fields in
// this order, times in RFC 3339 UTC.
type Record struct {
	Format   int       `json:"format"`
	HolderID string    `json:"holder_id"`
	Host     string    `json:"host"`
	DataDir  string    `json:"data_dir"`
	PID      int       `json:"pid"`
	Taken    time.Time `json:"taken"`
	Renewed  time.Time `json:"renewed"`
	TTLMS    int64     `json:"ttl_ms"`
	Expires  time.Time `json:"expires"`
	// Released is set when the holder stopped cleanly: anyone may take
	// the lease without waiting for it to expire.
	Released *time.Time `json:"released,omitempty"`
}

// Holder returns who the record names.
func (r *Record) Holder() Holder {
	return Holder{ID: r.HolderID, Host: r.Host, DataDir: r.DataDir, PID: r.PID}
}

// Marshal renders the record as stored: compact JSON and a newline.
func (r *Record) Marshal() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // only times out of JSON's range fail, and clocks give none
	}
	return append(b, '\n')
}

// Parse reads a lease object.
func Parse(b []byte) (*Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("lease object: %w", err))
	}
	if r.Format != Format {
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("lease object: format %d, this gatewayd reads %d", r.Format, Format))
	}
	if r.HolderID == "" || r.Expires.IsZero() {
		return nil, errkind.Mark(errkind.Corrupt, errors.New("lease object: no holder_id or expires"))
	}
	return &r, nil
}

// ErrHeld is wrapped by Acquire's error when another gateway holds the lease.
var ErrHeld = errors.New("the bucket prefix is in use by another gateway")

// HeldError says who holds the lease.
type HeldError struct {
	Store     string
	Record    *Record
	Now       time.Time
	TakeOver  bool // the caller asked to take over
	Joining   bool // the caller is a gateway being initialised on the prefix
	Remaining time.Duration
}

func (e *HeldError) Error() string {
	r := e.Record
	var b strings.Builder
	fmt.Fprintf(&b, "%s is in use by %s; its lease was last renewed %s (%s ago)",
		e.Store, r.Holder(), r.Renewed.UTC().Format(time.RFC3339), e.Now.Sub(r.Renewed).Round(time.Second))
	switch {
	case e.Joining:
		fmt.Fprintf(&b, ": a second gateway on one prefix would take over its volumes, shares and tapes; give this one another prefix, or stop that gateway first")
	case e.Remaining > 0 && e.TakeOver:
		fmt.Fprintf(&b, " and expires in %s: --take-over takes only an expired lease; stop that gateway first", roundUp(e.Remaining))
	case e.Remaining > 0:
		fmt.Fprintf(&b, " and expires in %s: stop that gateway, or, if it is gone, wait for the lease to expire and start with --take-over", roundUp(e.Remaining))
	default:
		fmt.Fprintf(&b, " and expired %s ago: if that gateway is gone for good, start this one with --take-over", e.Now.Sub(r.Expires).Round(time.Second))
	}
	return b.String()
}

func (e *HeldError) Unwrap() error { return ErrHeld }

func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// Options configure a lease.
type Options struct {
	// Store holds the lease. It must not be fenced by the lease itself.
	Store  objstore.Store
	Holder Holder
	TTL    time.Duration // DefaultTTL if zero
	// TakeOver takes a lease another holder let expire.
	TakeOver bool
	Clock    clock.Clock  // clock.Real{} if nil
	Logger   *slog.Logger // discarded if nil
	// OnLost is called when the gateway must stop writing: err says why.
	// OnRegained is called when a renewal got through after OnLost for an
	// expiry (never after a takeover by another gateway).
	OnLost     func(err error)
	OnRegained func()
	// OnState is told the lease's state as it changes, for health
	// reporting: level 0 held, 1 renewal failing, 2 lost.
	OnState func(level int, msg string)
}

// Lease is a held lease.
type Lease struct {
	opts Options

	mu       sync.Mutex
	rec      Record
	etag     string
	deadline time.Time // stop writing at this time unless renewed
	lost     error     // set while fenced
	gone     bool      // taken by another: lost for good
}

// Acquire takes the lease or says who holds it (an error wrapping ErrHeld,
// a *HeldError). A lease this holder (same ID) left behind is taken at
// once: the gateway restarted.
func Acquire(ctx context.Context, opts Options) (*Lease, error) {
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < MinTTL || opts.TTL > MaxTTL {
		return nil, fmt.Errorf("lease TTL %v: must be between %v and %v", opts.TTL, MinTTL, MaxTTL)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnRegained == nil {
		opts.OnRegained = func() {}
	}
	if opts.OnLost == nil {
		opts.OnLost = func(error) {}
	}
	if opts.OnState == nil {
		opts.OnState = func(int, string) {}
	}
	l := &Lease{opts: opts}
	// A lost race (the object changed between reading and writing it)
	// is decided again on the new state.
	for attempt := 0; ; attempt++ {
		err := l.acquire(ctx)
		switch {
		case err == nil:
			opts.OnState(0, "")
			return l, nil
		case !objstore.IsPreconditionFailed(err) || attempt >= 5:
			return nil, err
		}
	}
}

func (l *Lease) acquire(ctx context.Context) error {
	s := l.opts.Store
	now := l.opts.Clock.Now()
	rec := Record{
		Format: Format, HolderID: l.opts.Holder.ID, Host: l.opts.Holder.Host, DataDir: l.opts.Holder.DataDir, PID: l.opts.Holder.PID,
		Taken: now.UTC(), Renewed: now.UTC(), TTLMS: l.opts.TTL.Milliseconds(), Expires: now.Add(l.opts.TTL).UTC(),
	}
	oi, err := s.Stat(ctx, Key)
	if objstore.IsNotFound(err) {
		etag, err := objstore.PutIfAbsent(ctx, s, Key, rec.Marshal())
		if err != nil {
			return l.ownWriteOrErr(ctx, &rec, err)
		}
		l.held(rec, etag, now)
		l.opts.Logger.Info("took the lease on the bucket prefix", "store", s.String(), "ttl", l.opts.TTL)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the lease %s: %w", Key, err)
	}
	b, err := objstore.GetAll(ctx, s, Key)
	if err != nil {
		if objstore.IsNotFound(err) {
			return objstore.PreconditionFailed(s, "read", Key, "deleted while read")
		}
		return fmt.Errorf("read the lease %s: %w", Key, err)
	}
	cur, perr := Parse(b)
	switch {
	case perr != nil:
		// Unreadable: no holder to respect, but say so and let the
		// operator decide.
		if !l.opts.TakeOver {
			return fmt.Errorf("%s: %w: start with --take-over to replace it", s, perr)
		}
		l.opts.Logger.Warn("replacing an unreadable lease", "store", s.String(), "err", perr)
	case cur.HolderID == l.opts.Holder.ID:
		rec.Taken = cur.Taken
		l.opts.Logger.Info("taking back this gateway's own lease", "store", s.String(), "last_renewed", cur.Renewed)
	case cur.Released != nil:
		l.opts.Logger.Info("taking the lease released by another gateway", "store", s.String(), "holder", cur.Holder().String(), "released", *cur.Released)
	default:
		remaining := cur.Expires.Sub(now)
		if remaining > 0 || !l.opts.TakeOver {
			return &HeldError{Store: s.String(), Record: cur, Now: now, TakeOver: l.opts.TakeOver, Remaining: remaining}
		}
		l.opts.Logger.Warn("taking over an expired lease", "store", s.String(), "holder", cur.Holder().String(),
			"last_renewed", cur.Renewed, "expired", cur.Expires)
	}
	etag, err := objstore.PutIfMatch(ctx, s, Key, rec.Marshal(), oi.ETag)
	if err != nil {
		return l.ownWriteOrErr(ctx, &rec, err)
	}
	l.held(rec, etag, now)
	return nil
}

// Check returns a *HeldError when a gateway holds a live lease on s: one
// neither released nor expired at now. An unreadable lease is left for
// Acquire to report.
func Check(ctx context.Context, s objstore.Store, now time.Time) error {
	b, err := objstore.GetAll(ctx, s, Key)
	if objstore.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the lease %s: %w", Key, err)
	}
	r, err := Parse(b)
	if err != nil || r.Released != nil || !now.Before(r.Expires) {
		return nil
	}
	return &HeldError{Store: s.String(), Record: r, Now: now, Joining: true, Remaining: r.Expires.Sub(now)}
}

// ownWriteOrErr handles a precondition failure of writing rec. When the
// lease object names this holder with rec's taken time, the write that
// changed it was this gateway's own, whose answer was lost (a retried
// attempt, or an earlier renewal that timed out but landed): the object's
// ETag is adopted, and rec written once more unless it is there already.
// Otherwise err stands: someone else wrote the lease.
func (l *Lease) ownWriteOrErr(ctx context.Context, rec *Record, err error) error {
	if !objstore.IsPreconditionFailed(err) {
		return fmt.Errorf("write the lease %s: %w", Key, err)
	}
	// Stat before reading: if the object changes in between, the write
	// below, conditional on the older ETag, fails.
	oi, serr := l.opts.Store.Stat(ctx, Key)
	if serr != nil {
		return err
	}
	b, gerr := objstore.GetAll(ctx, l.opts.Store, Key)
	if gerr != nil {
		return err
	}
	cur, perr := Parse(b)
	if perr != nil || cur.HolderID != rec.HolderID || !cur.Taken.Equal(rec.Taken) {
		return err
	}
	etag := oi.ETag
	if want := rec.Marshal(); !bytes.Equal(b, want) {
		if etag, err = objstore.PutIfMatch(ctx, l.opts.Store, Key, want, oi.ETag); err != nil {
			return fmt.Errorf("write the lease %s: %w", Key, err)
		}
	}
	l.held(*rec, etag, rec.Renewed)
	return nil
}

// held records a successful write of rec, sent at sent.
func (l *Lease) held(rec Record, etag string, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec, l.etag = rec, etag
	// Time runs from when the write was sent: the record's expiry is
	// counted from there too.
	l.deadline = sent.Add(l.opts.TTL - l.opts.TTL/6)
}

// Record returns the lease as last written.
func (l *Lease) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// Lost returns why the gateway may not write now, or nil.
func (l *Lease) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Run renews the lease every TTL/3 until ctx ends or another gateway takes
// it (then it returns the reason). A renewal that fails for another reason
// is tried again every TTL/12; past the deadline the gateway stops writing
// (OnLost) until one gets through (OnRegained).
func (l *Lease) Run(ctx context.Context) error {
	every := l.opts.TTL / 3
	wait := every
	for {
		if clock.Sleep(ctx, l.opts.Clock, wait) != nil {
			return nil
		}
		err := l.renew(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			wait = every
			continue
		}
		l.mu.Lock()
		gone := l.gone
		l.mu.Unlock()
		if gone {
			return err
		}
		wait = max(l.opts.TTL/12, 10*time.Millisecond)
	}
}

// renew writes the next record. It returns nil when the lease is held.
func (l *Lease) renew(ctx context.Context) error {
	now := l.opts.Clock.Now()
	l.mu.Lock()
	rec, etag, deadline := l.rec, l.etag, l.deadline
	l.mu.Unlock()
	last := rec.Renewed
	rec.Renewed = now.UTC()
	rec.Expires = now.Add(l.opts.TTL).UTC()
	// Give up on this attempt in time to stop writing at the deadline.
	rctx, cancel := context.WithTimeout(ctx, max(deadline.Sub(now), l.opts.TTL/12))
	newETag, err := objstore.PutIfMatch(rctx, l.opts.Store, Key, rec.Marshal(), etag)
	cancel()
	switch {
	case err == nil:
		l.held(rec, newETag, now)
	case objstore.IsPreconditionFailed(err):
		err = l.ownWriteOrErr(ctx, &rec, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case err == nil:
		l.regained()
		return nil
	case objstore.IsPreconditionFailed(err):
		l.takenAway(ctx, err)
		return err
	}
	l.opts.Logger.Warn("lease renewal failed", "err", err, "stop_writing_at", deadline)
	if !l.opts.Clock.Now().Before(deadline) {
		l.fence(fmt.Errorf("lease on %s not renewed since %s (%v): another gateway may take it over; writes to the store stopped until a renewal gets through",
			l.opts.Store, last.UTC().Format(time.RFC3339), err), false)
	} else if l.Lost() == nil {
		l.opts.OnState(1, fmt.Sprintf("lease renewal failing (%v); writes to the store stop at %s unless it gets through",
			err, deadline.UTC().Format(time.RFC3339)))
	}
	return err
}

// takenAway handles a renewal that found another ETag: someone else wrote
// the lease. Lost for good.
func (l *Lease) takenAway(ctx context.Context, err error) {
	why := "another gateway wrote the lease object"
	if b, gerr := objstore.GetAll(ctx, l.opts.Store, Key); gerr == nil {
		if cur, perr := Parse(b); perr == nil {
			why = fmt.Sprintf("%s took it over at %s", cur.Holder(), cur.Taken.UTC().Format(time.RFC3339))
		}
	} else if objstore.IsNotFound(gerr) {
		why = "the lease object was deleted"
	}
	l.fence(fmt.Errorf("lease on %s lost: %s; writes to the store stopped (acknowledged data stays in the local buffers)", l.opts.Store, why), true)
}

// fence stops writes, for good when gone.
func (l *Lease) fence(reason error, gone bool) {
	l.mu.Lock()
	first := l.lost == nil
	if first || gone {
		l.lost = reason
	}
	l.gone = l.gone || gone
	l.mu.Unlock()
	if first {
		l.opts.Logger.Error("stopped writing to the object store", "reason", reason)
		l.opts.OnLost(reason)
	}
	l.opts.OnState(2, reason.Error())
}

// regained lifts a fence raised for an expiry: the renewal that got
// through matched the ETag this gateway wrote, so nobody wrote in between.
func (l *Lease) regained() {
	l.mu.Lock()
	was := l.lost
	l.lost = nil
	l.mu.Unlock()
	if was != nil {
		l.opts.Logger.Info("lease renewed again; writing to the object store again")
		l.opts.OnRegained()
	}
	l.opts.OnState(0, "")
}

// Release marks the lease released, if still held, so that another
// gateway may take it at once. The caller has stopped writing.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	rec, etag, gone := l.rec, l.etag, l.gone
	l.mu.Unlock()
	if gone {
		return nil
	}
	now := l.opts.Clock.Now().UTC()
	rec.Released = &now
	rec.Expires = now
	_, err := objstore.PutIfMatch(ctx, l.opts.Store, Key, rec.Marshal(), etag)
	if err != nil {
		// The last renewal may have landed without its answer (the stop
		// cut it short): if the object still names this gateway, the
		// release is written over it.
		err = l.ownWriteOrErr(ctx, &rec, err)
	}
	if err != nil {
		return fmt.Errorf("release the lease %s: %w", Key, err)
	}
	return nil
}

// IDFile is the file in the data directory that keeps the holder id.
const IDFile = "lease.id"

// LoadID returns the holder id kept in dir, creating it on first use.
func LoadID(dir string) (string, error) {
	path := filepath.Join(dir, IDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("%s is empty: remove it to get a new id", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	if err := fsutil.WriteFileAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("lease id: %w", err)
	}
	return id, nil
}
