package notify

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gatewayd/gatewayd/meta"
)

// batchSize is how many events a sender reads from the store at a time.
const batchSize = 256

// saveEvery is how often a sender records its cursor while it posts a
// batch: a crash repeats at most the events posted since (at least once).
const saveEvery = time.Second

type queued struct {
	seq  uint64
	kind Kind
	body []byte
}

// run posts the queue to the worker's webhook, in seq order, until ctx
// ends.
func (w *worker) run(ctx context.Context) {
	q := w.q
	for ctx.Err() == nil {
		batch, err := w.read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				q.log.Error("notifications: read queue", "err", err)
				sleep(ctx, q.opts.BaseDelay)
			}
			continue
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
			case <-w.wake:
			}
			continue
		}
		saved := time.Now()
		for _, e := range batch {
			if w.hook.wants(e.kind) {
				if err := w.deliver(ctx, e); err != nil {
					break // closing
				}
			}
			w.cursor.Store(e.seq)
			w.behind.Add(-1)
			if time.Since(saved) >= saveEvery {
				w.save(ctx)
				saved = time.Now()
			}
		}
		w.save(ctx)
		if err := q.prune(ctx); err != nil && ctx.Err() == nil {
			q.log.Warn("notifications: prune delivered events", "err", err)
		}
	}
}

// read returns the next events after the cursor that every publisher is
// done with.
func (w *worker) read(ctx context.Context) ([]queued, error) {
	limit := w.q.limit()
	from := w.cursor.Load()
	var out []queued
	stop := errors.New("batch full")
	if from+1 >= limit {
		return nil, nil
	}
	err := w.q.md.View(ctx, func(tx meta.Txn) error {
		out = out[:0]
		// Keys sort by seq. The store iterates by prefix only: blocks of
		// 256 seqs (all but the last byte) from the cursor's on, so the
		// delivered events kept before it are not read again.
		for blk := (from + 1) >> 8; blk <= (limit-1)>>8 && len(out) < batchSize; blk++ {
			prefix := append(append([]byte{}, entryPrefix...), be64(blk << 8)[:7]...)
			err := tx.Iterate(prefix, func(k, v []byte) error {
				seq := binary.BigEndian.Uint64(k[len(entryPrefix):])
				if seq <= from {
					return nil
				}
				if seq >= limit || len(out) == batchSize {
					return stop
				}
				var e struct {
					Kind Kind `json:"kind"`
				}
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("event %d: %w", seq, err)
				}
				out = append(out, queued{seq, e.Kind, v})
				return nil
			})
			if errors.Is(err, stop) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// save records the cursor.
func (w *worker) save(ctx context.Context) {
	c := w.cursor.Load()
	// Also when closing: what was taken is not posted again at the next start.
	err := w.q.md.Update(context.WithoutCancel(ctx), func(tx meta.Txn) error { return tx.Set(cursorKey(w.hook.URL), be64(c)) })
	if err != nil {
		w.q.log.Warn("notifications: record delivery", "webhook", w.hook.URL, "err", err)
	}
}

// deliver posts e until the webhook takes it, backing off between
// attempts, or gives it up after MaxAttempts. It returns an error only
// when ctx ends.
func (w *worker) deliver(ctx context.Context, e queued) error {
	q := w.q
	delay := q.opts.BaseDelay
	for attempt := 1; ; attempt++ {
		err := w.post(ctx, e.body)
		if err == nil {
			q.sent.Add(1)
			if attempt > 1 {
				q.log.Info("notifications: webhook takes events again", "webhook", w.hook.URL, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		q.failures.Add(1)
		if q.opts.MaxAttempts > 0 && attempt >= q.opts.MaxAttempts {
			q.dropped.Add(1)
			q.log.Error("notifications: event given up", "webhook", w.hook.URL, "seq", e.seq, "kind", e.kind, "attempts", attempt, "err", err)
			return nil
		}
		if attempt&(attempt-1) == 0 { // 1, 2, 4, 8...: a down receiver is not a log flood
			q.log.Warn("notifications: webhook failed, retrying", "webhook", w.hook.URL, "seq", e.seq, "attempt", attempt, "next_in", delay, "err", err)
		}
		if sleep(ctx, delay) != nil {
			return ctx.Err()
		}
		delay = min(2*delay, q.opts.MaxDelay)
	}
}

// post sends one event; a 2xx answer is success.
func (w *worker) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.q.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.hook.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatewayd")
	if w.hook.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.hook.Token)
	}
	for k, v := range w.hook.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.q.opts.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
