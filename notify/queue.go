package notify

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/meta"
)

// The queue in the metadata store:
//
//	notify/e/<seq, 8 bytes big-endian>  the event's JSON, as posted
//	notify/i/<id>                       seq of the event with that id (dedupe)
//	notify/c/<url>                      seq of the last event the webhook took
//	notify/n                            next seq (at least)
//
// An event stays after every webhook took it, as long as KeepDelivered
// allows, so that publishing it again (a crash before its service recorded
// that it had published it) is recognised by its id and not queued twice.
var (
	entryPrefix = []byte("notify/e/")
	idPrefix    = []byte("notify/i/")
	cursorPfx   = []byte("notify/c/")
	nextKey     = []byte("notify/n")
)

func entryKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, entryPrefix...), seq)
}
func idKey(id string) []byte      { return append(append([]byte{}, idPrefix...), id...) }
func cursorKey(url string) []byte { return append(append([]byte{}, cursorPfx...), url...) }
func be64(n uint64) []byte        { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(tx meta.Txn, key []byte) (uint64, bool, error) {
	v, err := tx.Get(key)
	if errors.Is(err, meta.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("notify: %q holds %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// Webhook is one receiver of events.
type Webhook struct {
	URL string
	// Token, when set, is sent as Authorization: Bearer TOKEN; Headers
	// are set on every request as well.
	Token   string
	Headers map[string]string
	// Kinds are the kinds the webhook gets ("file.uploaded", or "file.*"
	// for every kind of a family); empty: all.
	Kinds []string
}

// wants says whether the webhook gets events of kind k.
func (w Webhook) wants(k Kind) bool {
	if len(w.Kinds) == 0 {
		return true
	}
	for _, p := range w.Kinds {
		if p == string(k) || (strings.HasSuffix(p, ".*") && strings.HasPrefix(string(k), strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

// ValidKinds checks a webhook's kinds: each names a kind or a family.
func ValidKinds(kinds []string) error {
	for _, p := range kinds {
		ok := false
		for _, k := range Kinds {
			if p == string(k) || (strings.HasSuffix(p, ".*") && strings.HasPrefix(string(k), strings.TrimSuffix(p, "*"))) {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("unknown event kind %q (one of %v, or file.*, volume.*, tape.*)", p, Kinds)
		}
	}
	return nil
}

// Options configure a Queue.
type Options struct {
	Webhooks []Webhook
	// Gateway is the gateway's id; Bucket and Prefix its store's bucket
	// and key prefix, which keys of shares' objects are under.
	Gateway, Bucket, Prefix string
	// MaxQueued is how many events may wait for a webhook (default
	// 100,000); then Full says so and uploads wait, and failed uploads'
	// events are dropped.
	MaxQueued int
	// KeepDelivered is how many events, counted back from the oldest a
	// webhook has yet to take, are kept to recognise a repeat (default
	// 100,000).
	KeepDelivered int
	// BaseDelay and MaxDelay bound the backoff between attempts (default
	// 1s and 5m); MaxAttempts gives up on an event after that many failed
	// posts to a webhook (0: never).
	BaseDelay, MaxDelay time.Duration
	MaxAttempts         int
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	Client  *http.Client // default: a client of its own
	Logger  *slog.Logger
}

// Queue is the durable event queue and its senders, one per webhook.
type Queue struct {
	md   meta.Store
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	next     uint64              // next seq to give
	inflight map[uint64]struct{} // seqs given whose transaction has not ended
	closed   bool

	workers []*worker
	pruneMu sync.Mutex
	pruned  uint64 // events at or below this seq are pruned

	cancel context.CancelFunc
	wg     sync.WaitGroup

	queued                  sync.Map // Kind -> *atomic.Uint64
	sent, failures, dropped atomic.Uint64
	duplicates              atomic.Uint64
}

// worker sends the queue to one webhook.
type worker struct {
	q      *Queue
	hook   Webhook
	cursor atomic.Uint64 // last seq taken (or skipped: not wanted, given up)
	behind atomic.Int64  // events queued after cursor
	wake   chan struct{}
}

// Open opens the queue in md. Senders start with Start.
func Open(ctx context.Context, md meta.Store, o Options) (*Queue, error) {
	if o.MaxQueued <= 0 {
		o.MaxQueued = 100_000
	}
	if o.KeepDelivered <= 0 {
		o.KeepDelivered = 100_000
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = time.Second
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 5 * time.Minute
	}
	if o.MaxDelay < o.BaseDelay {
		o.MaxDelay = o.BaseDelay
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Prefix = strings.Trim(o.Prefix, "/")
	q := &Queue{md: md, opts: o, log: o.Logger, inflight: map[uint64]struct{}{}}
	seen := map[string]bool{}
	for _, h := range o.Webhooks {
		if seen[h.URL] {
			return nil, fmt.Errorf("notifications: webhook %s configured twice", h.URL)
		}
		seen[h.URL] = true
		q.workers = append(q.workers, &worker{q: q, hook: h, wake: make(chan struct{}, 1)})
	}
	var seqs []uint64
	err := md.View(ctx, func(tx meta.Txn) error {
		seqs = seqs[:0]
		n, _, err := getU64(tx, nextKey)
		if err != nil {
			return err
		}
		q.next = max(n, 1) // seq 0 is "none taken"
		return tx.Iterate(entryPrefix, func(k, _ []byte) error {
			seqs = append(seqs, binary.BigEndian.Uint64(k[len(entryPrefix):]))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("notifications: open queue: %w", err)
	}
	if len(seqs) > 0 {
		q.next = max(q.next, seqs[len(seqs)-1]+1)
		q.pruned = seqs[0] - 1
	}
	// Cursors: a webhook seen before resumes where it was; a new one
	// starts at the oldest cursor kept (or the queue's start); cursors
	// of webhooks no longer configured go, so the queue can be pruned.
	err = md.Update(ctx, func(tx meta.Txn) error {
		stored := map[string]uint64{}
		var stale [][]byte
		oldest, any := uint64(0), false
		err := tx.Iterate(cursorPfx, func(k, v []byte) error {
			url := string(k[len(cursorPfx):])
			if len(v) != 8 {
				return fmt.Errorf("notify: cursor of %s holds %d bytes", url, len(v))
			}
			c := binary.BigEndian.Uint64(v)
			stored[url] = c
			if !seen[url] {
				stale = append(stale, k)
			}
			if !any || c < oldest {
				oldest, any = c, true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		for _, w := range q.workers {
			c, ok := stored[w.hook.URL]
			if !ok {
				c = oldest
				if !any && len(seqs) > 0 {
					c = seqs[0] - 1
				}
				if err := tx.Set(cursorKey(w.hook.URL), be64(c)); err != nil {
					return err
				}
			}
			w.cursor.Store(c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("notifications: open queue: %w", err)
	}
	for _, w := range q.workers {
		n := 0
		for _, s := range seqs {
			if s > w.cursor.Load() {
				n++
			}
		}
		w.behind.Store(int64(n))
	}
	return q, nil
}

// Start starts the senders; Close stops them.
func (q *Queue) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	for _, w := range q.workers {
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			w.run(ctx)
		}()
	}
}

// Close stops the senders (a request under way is abandoned: the event
// is posted again at the next start) and refuses later Publish calls.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	if q.cancel != nil {
		q.cancel()
	}
	q.wg.Wait()
}

// Full says some webhook has MaxQueued events or more to take.
func (q *Queue) Full() bool { return q.depth() >= int64(q.opts.MaxQueued) }

// depth is the most events any webhook has yet to take.
func (q *Queue) depth() int64 {
	var d int64
	for _, w := range q.workers {
		d = max(d, w.behind.Load())
	}
	return d
}

// Publish queues e durably (see Sink).
func (q *Queue) Publish(ctx context.Context, e Event) error {
	if e.Kind == FileUploadFailed && q.Full() {
		// The upload is retried and its success reported; what failed
		// meanwhile is not worth growing a full queue for.
		q.dropped.Add(1)
		return nil
	}
	return q.Update(ctx, q.md, nil, e)
}

// Update runs fn in a transaction of md and queues es in the same one
// (see Sink). md must be the store the queue is in.
func (q *Queue) Update(ctx context.Context, md meta.Store, fn func(meta.Txn) error, es ...Event) error {
	if md != q.md {
		return errors.New("notifications: events joined to a transaction of a store the queue is not in")
	}
	type staged struct {
		e   Event
		b   []byte
		dup bool
	}
	st := make([]staged, len(es))
	for i, e := range es {
		st[i].e = q.fill(e)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return fmt.Errorf("notifications: %w", meta.ErrClosed)
	}
	for i := range st {
		st[i].e.Seq = q.next
		q.inflight[q.next] = struct{}{}
		q.next++
	}
	q.mu.Unlock()
	var err error
	for i := range st {
		if st[i].b, err = json.Marshal(st[i].e); err != nil {
			break
		}
	}
	var fnErr error
	if err == nil {
		err = md.Update(ctx, func(tx meta.Txn) error {
			if fn != nil {
				if fnErr = fn(tx); fnErr != nil {
					return fnErr
				}
			}
			for i := range st {
				var err error
				if st[i].dup, err = put(tx, st[i].e, st[i].b); err != nil {
					return err
				}
			}
			return nil
		})
	}
	q.mu.Lock()
	for _, s := range st {
		delete(q.inflight, s.e.Seq)
	}
	q.mu.Unlock()
	defer q.wakeAll() // on an error the seqs are gaps now: senders may pass them
	if fnErr != nil && errors.Is(err, fnErr) {
		return err // the caller's: nothing was written
	}
	if err != nil {
		kinds := make([]Kind, len(st))
		for i, s := range st {
			kinds[i] = s.e.Kind
		}
		return fmt.Errorf("notifications: queue %v event: %w", kinds, err)
	}
	for _, s := range st {
		if s.dup {
			q.duplicates.Add(1)
			continue
		}
		for _, w := range q.workers {
			w.behind.Add(1)
		}
		q.counter(s.e.Kind).Add(1)
	}
	return nil
}

// fill gives e what Publish adds: an id and a time if it has none, the
// gateway's id, the bucket and the store's prefix of its keys.
func (q *Queue) fill(e Event) Event {
	if e.ID == "" {
		e.ID = randomID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	e.Gateway = q.opts.Gateway
	if e.Key != "" {
		e.Bucket = q.opts.Bucket
		if q.opts.Prefix != "" {
			e.Key = q.opts.Prefix + "/" + e.Key
			if e.OldKey != "" {
				e.OldKey = q.opts.Prefix + "/" + e.OldKey
			}
		}
	}
	return e
}

// put writes event e (its JSON b) in tx, unless an event with its id is
// queued already (dup).
func put(tx meta.Txn, e Event, b []byte) (dup bool, err error) {
	if _, err := tx.Get(idKey(e.ID)); err == nil {
		return true, nil
	} else if !errors.Is(err, meta.ErrNotFound) {
		return false, err
	}
	if err := tx.Set(entryKey(e.Seq), b); err != nil {
		return false, err
	}
	if err := tx.Set(idKey(e.ID), be64(e.Seq)); err != nil {
		return false, err
	}
	// Concurrent publishers may leave a lower next here; Open takes the
	// highest entry's too.
	return false, tx.Set(nextKey, be64(e.Seq+1))
}

func (q *Queue) counter(k Kind) *atomic.Uint64 {
	c, _ := q.queued.LoadOrStore(k, new(atomic.Uint64))
	return c.(*atomic.Uint64)
}

func (q *Queue) wakeAll() {
	for _, w := range q.workers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// limit is the first seq senders may not read yet: below it every
// Publish has ended, so none commits below it later and order holds.
func (q *Queue) limit() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.next
	for s := range q.inflight {
		l = min(l, s)
	}
	return l
}

// Stats are the queue's figures.
type Stats struct {
	Queued     map[Kind]uint64 // events queued since start, by kind
	Sent       uint64          // events a webhook took (2xx)
	Failures   uint64          // posts that failed (retried)
	Dropped    uint64          // events given up (MaxAttempts) or not queued (a failed upload's, queue full)
	Duplicates uint64          // events published again, recognised by their id and not queued
	Depth      int64           // events the slowest webhook has yet to take
}

// Stats returns the current figures.
func (q *Queue) Stats() Stats {
	st := Stats{Queued: map[Kind]uint64{}, Sent: q.sent.Load(), Failures: q.failures.Load(),
		Dropped: q.dropped.Load(), Duplicates: q.duplicates.Load(), Depth: max(q.depth(), 0)}
	for _, k := range Kinds {
		st.Queued[k] = q.counter(k).Load()
	}
	return st
}

// prune deletes the events every webhook took that are more than
// KeepDelivered behind the oldest one still to take, with their ids.
func (q *Queue) prune(ctx context.Context) error {
	low := ^uint64(0)
	for _, w := range q.workers {
		low = min(low, w.cursor.Load())
	}
	if low <= uint64(q.opts.KeepDelivered) {
		return nil
	}
	bound := low - uint64(q.opts.KeepDelivered)
	q.pruneMu.Lock()
	defer q.pruneMu.Unlock()
	for q.pruned < bound {
		type ent struct {
			key []byte
			id  string
		}
		var batch []ent
		last := uint64(0)
		stop := errors.New("batch full")
		err := q.md.View(ctx, func(tx meta.Txn) error {
			batch = batch[:0]
			err := tx.Iterate(entryPrefix, func(k, v []byte) error {
				seq := binary.BigEndian.Uint64(k[len(entryPrefix):])
				if seq > bound || len(batch) == 1024 {
					return stop
				}
				var e struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(v, &e)
				batch = append(batch, ent{k, e.ID})
				last = seq
				return nil
			})
			if errors.Is(err, stop) {
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			q.pruned = bound
			return nil
		}
		err = q.md.Update(ctx, func(tx meta.Txn) error {
			for _, e := range batch {
				if err := tx.Delete(e.key); err != nil {
					return err
				}
				if e.id != "" {
					if err := tx.Delete(idKey(e.id)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		q.pruned = last
	}
	return nil
}

// Events returns the events the queue keeps (those still to deliver and
// the delivered ones remembered), in seq order.
func (q *Queue) Events(ctx context.Context) ([]Event, error) {
	var out []Event
	err := q.md.View(ctx, func(tx meta.Txn) error {
		out = out[:0]
		return tx.Iterate(entryPrefix, func(_, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("notify: a queued event: %w", err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}
