// Package bucketevents receives the bucket's event notifications (S3 event
// records, as MinIO's and most S3-compatible servers' webhook targets send
// them) and applies each object change to the file share it falls under,
// so that objects written into the bucket by other applications are seen
// at once, not after the attribute TTL.
//
// The receiver listens on an address of its own and takes only requests
// carrying its token (Authorization: Bearer TOKEN). Changes wait in a
// bounded queue that keeps one change per key (the last); when it
// overflows the queued changes are dropped and every share forgets its
// cached attributes and listings instead (what the TTL would do), so a
// storm of events costs bounded memory.
package bucketevents

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
)

// DefaultQueueSize is how many distinct keys may wait to be applied.
const DefaultQueueSize = 4096

// maxBody bounds one request's body.
const maxBody = 8 << 20

// Applier applies object changes: fileshare.Manager.
type Applier interface {
	ApplyObjectChange(fileshare.ObjectChange) fileshare.ChangeOutcome
	RefreshAll()
}

// Options configure a Receiver.
type Options struct {
	Listen string // host:port
	Token  string // required
	// Bucket and Prefix are the gateway's store: events of other buckets,
	// or of keys outside Prefix, are ignored.
	Bucket, Prefix string
	QueueSize      int // default DefaultQueueSize
	Log            *slog.Logger
}

// Stats are the receiver's figures.
type Stats struct {
	Received     uint64            // object change records accepted
	Unauthorized uint64            // requests refused for their token
	Ignored      uint64            // records of other buckets, prefixes or event kinds
	Coalesced    uint64            // changes replaced by a later one of the same key while queued
	Overflows    uint64            // times the queue overflowed (every share refreshed)
	Outcomes     map[string]uint64 // applied changes by outcome
	Queued       int               // changes waiting now
}

// Receiver is the webhook endpoint and its queue.
type Receiver struct {
	opts  Options
	apply Applier
	log   *slog.Logger

	mu       sync.Mutex
	queue    []string // keys in arrival order
	pending  map[string]fileshare.ObjectChange
	overflow bool
	wake     chan struct{}

	received, unauthorized, ignored, coalesced, overflows atomic.Uint64
	outcomes                                              [fileshare.ChangeBadKey + 1]atomic.Uint64

	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

// New makes a receiver applying changes with apply; Start serves it.
func New(opts Options, apply Applier) (*Receiver, error) {
	if opts.Token == "" {
		return nil, errors.New("bucket events: a token is required")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	opts.Prefix = strings.Trim(opts.Prefix, "/")
	return &Receiver{opts: opts, apply: apply, log: opts.Log, pending: map[string]fileshare.ObjectChange{}, wake: make(chan struct{}, 1)}, nil
}

// Start listens on opts.Listen and applies changes until ctx ends or Close.
func (r *Receiver) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", r.opts.Listen)
	if err != nil {
		return fmt.Errorf("bucket events: %w", err)
	}
	r.ln = ln
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: time.Minute}
	ctx, cancel := context.WithCancel(ctx)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer cancel()
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("bucket events: serve", "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		r.run(ctx)
	}()
	r.log.Info("bucket events: receiving", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the receiver listens on.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Close stops the listener and the queue's worker.
func (r *Receiver) Close() error {
	if r.srv == nil {
		return nil
	}
	err := r.srv.Close()
	r.wg.Wait()
	return err
}

// event is the part of an S3 event notification the receiver reads.
type event struct {
	Records []struct {
		EventName string `json:"eventName"`
		S3        struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key  string `json:"key"`
				ETag string `json:"eTag"`
			} `json:"object"`
		} `json:"s3"`
	} `json:"Records"`
}

// ServeHTTP takes one POST of S3 event records.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.authorized(req) {
		r.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if req.Method != http.MethodPost {
		// A server probing whether its target is up.
		w.WriteHeader(http.StatusOK)
		return
	}
	var ev event
	if err := json.NewDecoder(io.LimitReader(req.Body, maxBody)).Decode(&ev); err != nil {
		http.Error(w, "bad event: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, rec := range ev.Records {
		ch, ok := r.change(rec.EventName, rec.S3.Bucket.Name, rec.S3.Object.Key, rec.S3.Object.ETag)
		if !ok {
			r.ignored.Add(1)
			continue
		}
		r.received.Add(1)
		r.enqueue(ch)
	}
	w.WriteHeader(http.StatusOK)
}

func (r *Receiver) authorized(req *http.Request) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(r.opts.Token)) == 1
}

// change reads one record: a key of the gateway's store created or removed.
func (r *Receiver) change(name, bucket, rawKey, etag string) (fileshare.ObjectChange, bool) {
	var removed bool
	switch {
	case strings.HasPrefix(name, "s3:ObjectCreated:"):
	case strings.HasPrefix(name, "s3:ObjectRemoved:"):
		removed = true
	default:
		return fileshare.ObjectChange{}, false
	}
	if bucket != r.opts.Bucket {
		return fileshare.ObjectChange{}, false
	}
	key, err := url.QueryUnescape(rawKey) // keys come URL-encoded
	if err != nil {
		return fileshare.ObjectChange{}, false
	}
	if r.opts.Prefix != "" {
		var ok bool
		if key, ok = strings.CutPrefix(key, r.opts.Prefix+"/"); !ok {
			return fileshare.ObjectChange{}, false
		}
	}
	return fileshare.ObjectChange{Key: key, Removed: removed, ETag: etag}, true
}

// enqueue queues ch, replacing a queued change of the same key; past the
// queue's size every queued change is dropped for a refresh of everything.
func (r *Receiver) enqueue(ch fileshare.ObjectChange) {
	r.mu.Lock()
	switch _, queued := r.pending[ch.Key]; {
	case r.overflow:
		// A refresh of everything is due: it covers this change too.
	case queued:
		r.pending[ch.Key] = ch
		r.coalesced.Add(1)
	case len(r.queue) >= r.opts.QueueSize:
		r.overflow = true
		r.overflows.Add(1)
		r.queue, r.pending = nil, map[string]fileshare.ObjectChange{}
	default:
		r.queue = append(r.queue, ch.Key)
		r.pending[ch.Key] = ch
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run applies queued changes until ctx ends.
func (r *Receiver) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for r.step() {
		}
	}
}

// step applies one queued change, or refreshes everything after an
// overflow; it says whether there was anything to do.
func (r *Receiver) step() bool {
	r.mu.Lock()
	if r.overflow {
		r.overflow = false
		r.mu.Unlock()
		r.log.Warn("bucket events: queue overflowed; every share reads the store again")
		r.apply.RefreshAll()
		return true
	}
	if len(r.queue) == 0 {
		r.queue = nil // let a storm's backing array go
		r.mu.Unlock()
		return false
	}
	key := r.queue[0]
	r.queue = r.queue[1:]
	ch := r.pending[key]
	delete(r.pending, key)
	r.mu.Unlock()
	out := r.apply.ApplyObjectChange(ch)
	r.outcomes[out].Add(1)
	r.log.Debug("bucket events: change", "key", ch.Key, "removed", ch.Removed, "outcome", out.String())
	return true
}

// Stats returns the current figures.
func (r *Receiver) Stats() Stats {
	st := Stats{Received: r.received.Load(), Unauthorized: r.unauthorized.Load(), Ignored: r.ignored.Load(),
		Coalesced: r.coalesced.Load(), Overflows: r.overflows.Load(), Outcomes: map[string]uint64{}}
	for o := range r.outcomes {
		st.Outcomes[fileshare.ChangeOutcome(o).String()] = r.outcomes[o].Load()
	}
	r.mu.Lock()
	st.Queued = len(r.queue)
	r.mu.Unlock()
	return st
}
