package snapshots

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
)

// Locked snapshots (docs/format.md, "Object Lock"). On a bucket with
// Object Lock, a snapshot taken with a lock period is kept from deletion
// by the object store itself: its manifest is put retained, and every map
// page and chunk it names, including those it shares with older
// snapshots, is retained (objstore.Retainer.Retain) at least until the
// snapshot's lock ends. Nobody holding the gateway's keys can then remove
// any of it before that date: in governance mode not without the bypass
// permission gatewayd never uses, in compliance mode not at all.
//
// A chunk shared by many snapshots would need its retention extended by
// each of them. Two things keep that cheap. A lock ends at a whole
// granule (LockEnd: a tenth of the period, at most a day), so that the
// snapshots taken within one granule ask for the same date and all but
// the first find their shared objects retained long enough already. And a
// RetentionRecord remembers, in the gateway's metadata, until when each
// object is retained, so that finding that out costs no request.

// LockGranule is the span a lock of period ends on a multiple of: a tenth
// of the period in whole seconds, from a second to a day.
func LockGranule(period time.Duration) time.Duration {
	return min(max((period/10).Truncate(time.Second), time.Second), 24*time.Hour)
}

// LockEnd is when a lock of period taken at created ends: created+period
// rounded up to a whole LockGranule.
func LockEnd(created time.Time, period time.Duration) time.Time {
	g := LockGranule(period)
	end := created.Add(period)
	r := end.Truncate(g)
	if r.Before(end) {
		r = r.Add(g)
	}
	return r.UTC()
}

// MaxLockPeriod is the longest lock a snapshot may have (S3 allows 100
// years of retention).
const MaxLockPeriod = 100 * 365 * 24 * time.Hour

// CheckLockPeriod checks a lock period a user asked for.
func CheckLockPeriod(period time.Duration) error {
	if period < 0 || period > MaxLockPeriod {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("lock period %s: from 1s to 100 years", period))
	}
	if period > 0 && period < time.Second {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("lock period %s: at least 1s", period))
	}
	return nil
}

// ErrSnapshotLocked is wrapped by the error of deleting a snapshot whose
// lock has not ended.
var ErrSnapshotLocked = errors.New("snapshot is locked")

// LockedError is the refusal to delete snapshot id, retained as ret.
func LockedError(id string, ret objstore.Retention) error {
	return errkind.Mark(errkind.Permanent, fmt.Errorf("snapshot %s: %w until %s (%s mode): it cannot be deleted before then",
		id, ErrSnapshotLocked, ret.Until.UTC().Format(time.RFC3339), lowerMode(ret.Mode)))
}

func lowerMode(m objstore.RetentionMode) string {
	if m == objstore.Compliance {
		return "compliance"
	}
	return "governance"
}

// RetentionRecord remembers, per object key, the retention gatewayd gave
// the object (meta keys "retained/<object key>": the end in Unix seconds,
// then 'G' or 'C'). It only ever saves requests: an object it does not
// know, or knows retained too briefly, is retained again, which the store
// answers as it should whatever the object had. A record outliving its
// object (deleted by a lifecycle rule, say) is harmless for the same
// reason: a missing object fails the snapshot that needs it anyway.
type RetentionRecord struct {
	md meta.Store
}

// NewRetentionRecord returns the record kept in md.
func NewRetentionRecord(md meta.Store) *RetentionRecord { return &RetentionRecord{md: md} }

func recordKey(key string) []byte { return []byte("retained/" + key) }

func encodeRetention(r objstore.Retention) []byte {
	b := make([]byte, 9)
	binary.BigEndian.PutUint64(b, uint64(r.Until.Unix()))
	b[8] = 'G'
	if r.Mode == objstore.Compliance {
		b[8] = 'C'
	}
	return b
}

func decodeRetention(b []byte) (objstore.Retention, bool) {
	if len(b) != 9 {
		return objstore.Retention{}, false
	}
	r := objstore.Retention{Mode: objstore.Governance, Until: time.Unix(int64(binary.BigEndian.Uint64(b)), 0).UTC()}
	if b[8] == 'C' {
		r.Mode = objstore.Compliance
	}
	return r, true
}

// Known returns the recorded retention of each key (zero when unknown).
func (r *RetentionRecord) Known(ctx context.Context, keys []string) ([]objstore.Retention, error) {
	out := make([]objstore.Retention, len(keys))
	if r == nil {
		return out, nil
	}
	for start := 0; start < len(keys); start += recordBatch {
		end := min(start+recordBatch, len(keys))
		err := r.md.View(ctx, func(tx meta.Txn) error {
			for i := start; i < end; i++ {
				b, err := tx.Get(recordKey(keys[i]))
				if errors.Is(err, meta.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				out[i], _ = decodeRetention(b)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("retention record: %w", err)
		}
	}
	return out, nil
}

// recordBatch bounds one metadata transaction of the record.
const recordBatch = 4096

// Set records that keys are retained as ret.
func (r *RetentionRecord) Set(ctx context.Context, keys []string, ret objstore.Retention) error {
	if r == nil {
		return nil
	}
	val := encodeRetention(ret)
	for start := 0; start < len(keys); start += recordBatch {
		batch := keys[start:min(start+recordBatch, len(keys))]
		err := r.md.Update(ctx, func(tx meta.Txn) error {
			for _, k := range batch {
				if err := tx.Set(recordKey(k), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("retention record: %w", err)
		}
	}
	return nil
}

// Forget drops what the record knows of key (after it was purged).
func (r *RetentionRecord) Forget(ctx context.Context, key string) error {
	if r == nil {
		return nil
	}
	return r.md.Update(ctx, func(tx meta.Txn) error { return tx.Delete(recordKey(key)) })
}

// RetainStats count what retaining a set of objects did.
type RetainStats struct {
	Objects  int `json:"objects"`  // objects that must be retained
	Retained int `json:"retained"` // Retain calls made (S3 PutObjectRetention)
	Skipped  int `json:"skipped"`  // already retained long enough, as the record says
}

// RetainObjects makes sure every key is retained at least as ret says:
// keys the record knows to be retained so are left alone; the others are
// extended, parallel at a time, and then recorded. A key retained longer
// already (by another gateway, or before the record was lost) counts as
// done.
func RetainObjects(ctx context.Context, store objstore.Store, rec *RetentionRecord, keys []string, ret objstore.Retention, parallel int) (RetainStats, error) {
	st := RetainStats{Objects: len(keys)}
	known, err := rec.Known(ctx, keys)
	if err != nil {
		return st, err
	}
	var todo []string
	for i, k := range keys {
		if known[i].Covers(ret) {
			st.Skipped++
			continue
		}
		todo = append(todo, k)
	}
	if len(todo) == 0 {
		return st, nil
	}
	parallel = max(parallel, 1)
	var mu sync.Mutex
	var firstErr error
	var done []string
	longer := map[string][]string{} // retained longer than asked: recorded as found
	found := map[string]objstore.Retention{}
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range min(parallel, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				got, err := objstore.ExtendRetention(ctx, store, k, ret)
				mu.Lock()
				st.Retained++
				switch {
				case err != nil && firstErr == nil:
					firstErr = fmt.Errorf("retain %s: %w", k, err)
				case err == nil && got.Mode == ret.Mode && got.Until.Equal(ret.Until):
					done = append(done, k)
				case err == nil:
					longer[got.String()] = append(longer[got.String()], k)
					found[got.String()] = got
				}
				mu.Unlock()
			}
		}()
	}
	for _, k := range todo {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	// What was retained is recorded even when something else failed: it
	// is retained all the same.
	rerr := rec.Set(ctx, done, ret)
	for r, ks := range longer {
		rerr = errors.Join(rerr, rec.Set(ctx, ks, found[r]))
	}
	if firstErr != nil {
		return st, firstErr
	}
	return st, rerr
}

// SnapshotObjects lists the object keys a snapshot needs besides its
// manifest: its map pages (refs) and their chunks. The chunks of pages in
// refs are ids (the chunk map the pages were written from) plus those of
// the pages in unexpanded (whose chunks ids does not hold: a restored
// volume's base pages), which are read from the store.
func SnapshotObjects(ctx context.Context, store objstore.Store, codec *Codec, refs []PageRef, ids ChunkMap, unexpanded []PageRef) ([]string, error) {
	seen := map[ChunkID]bool{}
	var keys []string
	for _, ref := range refs {
		if !seen[ref.ID] {
			seen[ref.ID] = true
			keys = append(keys, PageKey(ref.ID))
		}
	}
	add := func(id ChunkID) {
		if !seen[id] {
			seen[id] = true
			keys = append(keys, id.ObjectKey())
		}
	}
	for _, id := range ids {
		add(id)
	}
	for _, ref := range unexpanded {
		p, err := ReadPage(ctx, store, codec, ref)
		if err != nil {
			return nil, err
		}
		for _, id := range p.Entries {
			add(id)
		}
	}
	return keys, nil
}
