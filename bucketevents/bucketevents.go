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
	applying string // the key being applied, out of the queue
	overflow bool
	wake     chan struct{}

	received, unauthorized, ignored, coalesced, overflows atomic.Uint64
	outcomes                                              [fileshare.ChangeBadKey + 1]atomic.Uint64

	srv  *http.Server
	ln   net.Listener
	wg   sync.WaitGroup
	stop context.CancelFunc
	ctx  context.Context // Start's, ended by Close
	// pollers are the SQS queues polled (sqs.go).
	pollers []*sqsPoller

	// stepped is closed and replaced after each change applied (and each
	// refresh of everything): waitApplied's wakeup.
	stepped chan struct{}
}

// New makes a receiver applying changes with apply; Start serves it.
func New(opts Options, apply Applier) (*Receiver, error) {
	if opts.Token == "" && opts.Listen != "" {
		return nil, errors.New("bucket events: a token is required")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	opts.Prefix = strings.Trim(opts.Prefix, "/")
	return &Receiver{opts: opts, apply: apply, log: opts.Log, pending: map[string]fileshare.ObjectChange{}, wake: make(chan struct{}, 1),
		stepped: make(chan struct{})}, nil
}

// Start listens on opts.Listen (when set: without it, changes come from
// PollSQS alone) and applies changes until ctx ends or Close.
func (r *Receiver) Start(ctx context.Context) error {
	ctx, r.stop = context.WithCancel(ctx)
	r.ctx = ctx
	if r.opts.Listen == "" {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.run(ctx)
		}()
		return nil
	}
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

// Addr is the address the receiver listens on ("" without a listener).
func (r *Receiver) Addr() string {
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// Close stops the listener, the queue's worker and the SQS pollers.
func (r *Receiver) Close() error {
	if r.stop == nil {
		return nil
	}
	var err error
	if r.srv != nil {
		err = r.srv.Close()
	}
	r.stop()
	r.wg.Wait()
	return err
}

// event is the part of an S3 event notification the receiver reads (and
// of an EventBridge event, and of an SNS notification around either).
type event struct {
	Type       string `json:"Type"`    // SNS: "Notification"
	Message    string `json:"Message"` // SNS: the notification
	Source     string `json:"source"`  // EventBridge: "aws.s3"
	DetailType string `json:"detail-type"`
	Detail     struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key  string `json:"key"`
			ETag string `json:"etag"`
		} `json:"object"`
	} `json:"detail"`
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
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
	if err == nil {
		_, err = r.take(body)
	}
	if err != nil {
		http.Error(w, "bad event: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// take reads a message of object changes and queues them, returning the
// keys queued: S3 event records ({"Records": [...]}, what MinIO's webhook
// and S3's notifications to SQS and SNS send), an EventBridge event of S3
// ("detail-type": "Object Created" or "Object Deleted", EventBridge to
// SQS), or either inside an SNS notification ({"Type": "Notification",
// "Message": "..."}, SNS to SQS).
func (r *Receiver) take(body []byte) ([]string, error) {
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	if ev.Type == "Notification" && ev.Message != "" && len(ev.Records) == 0 {
		return r.take([]byte(ev.Message))
	}
	var keys []string
	queue := func(name, bucket, key, etag string) {
		ch, ok := r.change(name, bucket, key, etag)
		if !ok {
			r.ignored.Add(1)
			return
		}
		r.received.Add(1)
		r.enqueue(ch)
		keys = append(keys, ch.Key)
	}
	for _, rec := range ev.Records {
		queue(rec.EventName, rec.S3.Bucket.Name, rec.S3.Object.Key, rec.S3.Object.ETag)
	}
	if ev.Source == "aws.s3" {
		name := map[string]string{"Object Created": "s3:ObjectCreated:", "Object Deleted": "s3:ObjectRemoved:"}[ev.DetailType]
		queue(name, ev.Detail.Bucket.Name, ev.Detail.Object.Key, ev.Detail.Object.ETag)
	}
	return keys, nil
}

func (r *Receiver) authorized(req *http.Request) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(r.opts.Token)) == 1
}

// change reads one record: a key of the gateway's store created or removed.
// MinIO names the event s3:ObjectCreated:Put, AWS's S3 ObjectCreated:Put.
func (r *Receiver) change(name, bucket, rawKey, etag string) (fileshare.ObjectChange, bool) {
	var removed bool
	if !strings.HasPrefix(name, "s3:") {
		name = "s3:" + name
	}
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
		r.signalStep()
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
	r.applying = key
	r.mu.Unlock()
	out := r.apply.ApplyObjectChange(ch)
	r.outcomes[out].Add(1)
	r.mu.Lock()
	r.applying = ""
	r.mu.Unlock()
	r.signalStep()
	r.log.Debug("bucket events: change", "key", ch.Key, "removed", ch.Removed, "outcome", out.String())
	return true
}

// signalStep wakes waitApplied's callers.
func (r *Receiver) signalStep() {
	r.mu.Lock()
	close(r.stepped)
	r.stepped = make(chan struct{})
	r.mu.Unlock()
}

// waitApplied returns once none of keys waits in the queue (each applied,
// or replaced by a later change of its key that was applied) and no
// refresh of everything is due, or when ctx ends.
func (r *Receiver) waitApplied(ctx context.Context, keys []string) error {
	for {
		r.mu.Lock()
		waiting := r.overflow
		for _, k := range keys {
			if _, queued := r.pending[k]; queued || k == r.applying {
				waiting = true
				break
			}
		}
		stepped := r.stepped
		r.mu.Unlock()
		if !waiting {
			return nil
		}
		select {
		case <-stepped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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
