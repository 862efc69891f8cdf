package tapes

import (
	"time"

	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gatewayd/gatewayd/objstore"
)

type pageWrite struct {
	p    uint32
	pg   *page
	data []byte
}

// flush uploads the segments waiting for upload. With full set it first
// closes the open segment and then writes the index (changed pages, then
// the root), releases the log records it covers and deletes what the new
// index no longer references. Without full, when a segment filled with
// buffered writes not logged (t.mark), it writes the index of the tape as
// it was then, which makes those writes durable. The deletes come after
// the next upload may start: no upload writes a key the garbage names
// again (segment ids and page generations are not reused), and deleting
// the segments of a rewritten tape takes long.
func (t *tape) flush(ctx context.Context, full bool) error {
	garbage, err := t.upload(ctx, full)
	for _, k := range garbage {
		if err := t.lib.opts.Store.Delete(ctx, k); err != nil {
			t.lib.log.Warn("delete unreferenced tape object", "key", k, "err", err)
			t.lib.noteLeftover(t.barcode)
		}
	}
	return err
}

// upload is flush but for the deletes: it returns what to delete.
func (t *tape) upload(ctx context.Context, full bool) ([]string, error) {
	t.upMu.Lock()
	defer t.upMu.Unlock()
	if !t.readOnly {
		// A deleted tape uploads nothing (below).
		if err := t.lib.markSweep(ctx, t.barcode); err != nil && !errors.Is(err, ErrNoTape) {
			return nil, fmt.Errorf("tape %s: %w", t.barcode, err)
		}
	}
	t.mu.Lock()
	if errors.Is(t.gone, ErrNoTape) {
		t.mu.Unlock()
		return nil, nil // deleted: nothing of it goes to the store again
	}
	if full {
		t.sealOpen()
	}
	segs := append([]*segBuf(nil), t.sealed...)
	// The state the index is written of: the tape's now (full), or as it
	// was when the last of the segments filled (mark).
	var v *sealMark
	switch {
	case full && (t.dirty || len(t.garbageSegs) > 0 || len(t.garbagePages) > 0):
		v = &sealMark{seq: t.seq, eod: t.eod, used: t.used, nextSeg: t.open.id, runs: t.runs}
	case !full && t.mark != nil:
		v = t.mark
	}
	if full || v != nil {
		t.mark = nil
	}
	var taken []string
	if full {
		// What indexes written of a mark left unreferenced goes now.
		taken, t.unreferenced = t.unreferenced, nil
	}
	var (
		r          *root
		writes     []pageWrite
		garbage    []string
		oldPages   []string
		savedFrom  uint64
		savedSegs  []uint64
		savedPages []string
	)
	if v != nil {
		// Generations are never reused, not even after a failed upload,
		// so the garbage of one attempt never names a live page.
		gen := t.gen + 1
		t.gen = gen
		r = &root{keyID: t.lib.seal.keyID, id: t.id, capacity: t.capacity, seq: v.seq, gen: gen, nextSeg: v.nextSeg,
			eod: v.eod, used: v.used, runs: append([]segRun(nil), v.runs...), flags: t.rootFlags()}
		for i := uint64(0); i*PageObjects < v.eod; i++ {
			pg := t.pages[i]
			info := pg.info
			// Of a page written to since the mark, what it held then
			// (no truncation comes after a mark: only appends).
			k := min(PageObjects, v.eod-i*PageObjects)
			if uint64(info.count) != k {
				info = pageInfo{gen: info.gen}
				for _, e := range pg.entries[:k] {
					info.count++
					info.used += int64(e.stored)
					if e.filemark() {
						info.filemarks++
					}
				}
			}
			if (i+1)*PageObjects > t.dirtyFrom || info.gen == 0 {
				writes = append(writes, pageWrite{p: uint32(i), pg: pg, data: encodePage(pg.entries[:k])})
				if info.gen != 0 {
					oldPages = append(oldPages, pageKey(t.barcode, uint32(i), info.gen))
				}
				info.gen = gen
			}
			r.pages = append(r.pages, info)
		}
		savedFrom, savedSegs, savedPages = t.dirtyFrom, t.garbageSegs, t.garbagePages
		for _, s := range t.garbageSegs {
			garbage = append(garbage, segKey(t.barcode, s))
		}
		garbage = append(append(garbage, t.garbagePages...), oldPages...)
		t.dirty, t.dirtyFrom, t.garbageSegs, t.garbagePages = false, math.MaxUint64, nil, nil
		if t.seq > v.seq {
			// Written to since the mark: from its end on.
			t.dirty, t.dirtyFrom = true, v.eod
		}
	}
	// Segment ids skip where a truncation dropped the open segment: a
	// segment above the stored root's nextSeg must wait until a root
	// names it as next, or a crash would leave it where Open never looks.
	var bump *root
	if len(segs) > 0 && segs[0].id > t.stored.nextSeg && !t.nextUp {
		c := *t.stored
		c.nextSeg = segs[0].id
		bump = &c
	}
	t.mu.Unlock()

	if bump != nil {
		if err := t.writeIndex(ctx, bump, nil); err != nil {
			t.restore(r, writes, savedFrom, savedSegs, savedPages)
			return taken, err
		}
		t.stored, t.nextUp = bump, false
	}
	for _, s := range segs {
		if err := t.put(ctx, segKey(t.barcode, s.id), s.data); err != nil {
			t.restore(r, writes, savedFrom, savedSegs, savedPages)
			return taken, fmt.Errorf("tape %s: upload segment %016x: %w", t.barcode, s.id, err)
		}
		t.nextUp = t.nextUp || s.id == t.stored.nextSeg
		t.lib.stats.segmentsUp.Add(1)
		t.lib.stats.bytesUp.Add(uint64(len(s.data)))
	}
	t.mu.Lock()
	kept := t.sealed[:0]
	for _, s := range t.sealed {
		up := false
		for _, u := range segs {
			up = up || u == s
		}
		if !up {
			kept = append(kept, s)
		}
	}
	t.sealed = kept
	if len(segs) > 0 {
		t.segmentsLeft()
	}
	t.mu.Unlock()
	if r == nil {
		t.recycle(segs)
		return taken, nil
	}
	err := t.writeIndex(ctx, r, writes)
	if err != nil {
		t.restore(r, writes, savedFrom, savedSegs, savedPages)
		t.recycle(segs)
		return taken, err
	}
	t.mu.Lock()
	for _, w := range writes {
		if int(w.p) < len(t.pages) && t.pages[w.p] == w.pg {
			w.pg.info.gen = r.gen
		} else {
			// Dropped since: the root just written names it, the next
			// one will not.
			t.garbagePages = append(t.garbagePages, pageKey(t.barcode, w.p, r.gen))
		}
	}
	n := 0
	for n < len(t.ops) && t.ops[n].seq <= r.seq {
		n++
	}
	t.ops = t.ops[n:]
	t.dropUnlogged(r.seq)
	t.storedSeq = max(t.storedSeq, r.seq)
	t.stored, t.nextUp = r, false
	for _, s := range segs {
		t.nextUp = t.nextUp || s.id == r.nextSeg
	}
	eodChanged := t.metaEOD != r.eod || t.metaUsed != r.used
	wasBlank := t.metaEOD == 0
	t.metaEOD, t.metaUsed = r.eod, r.used
	t.mu.Unlock()
	if eodChanged {
		if err := t.lib.recordUsage(ctx, t.barcode, r.eod, r.used); err != nil {
			t.lib.log.Warn("record tape usage", "tape", t.barcode, "err", err)
		}
		if wasBlank != (r.eod == 0) {
			t.lib.spareCheck()
		}
	}
	t.mu.Lock()
	if !full {
		// An index of a mark is written by the uploads the writes wait
		// for: what it no longer names is deleted by the next full
		// upload (no root names it again).
		t.unreferenced = append(t.unreferenced, garbage...)
		garbage = nil
	}
	t.mu.Unlock()
	garbage = append(garbage, taken...)
	t.recycle(segs)
	t.lib.trim()
	return garbage, nil
}

// recycle keeps the buffers of uploaded segments for reuse, but for those
// holding buffered writes neither logged nor in a stored index: a sync
// point logs those from there.
func (t *tape) recycle(segs []*segBuf) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range segs {
		if s.unlogged == 0 && s.data != nil {
			t.lib.segBufs.put(s.data)
			s.data = nil
		}
	}
}

// writeIndex writes the changed pages, then the root that names them.
func (t *tape) writeIndex(ctx context.Context, r *root, writes []pageWrite) error {
	for _, w := range writes {
		blob := t.lib.seal.seal(kindPage, 0, pageBinding(t.barcode, w.p, r.gen), w.data)
		if err := t.put(ctx, pageKey(t.barcode, w.p, r.gen), blob); err != nil {
			return fmt.Errorf("tape %s: write index page %d: %w", t.barcode, w.p, err)
		}
	}
	blob := t.lib.seal.seal(kindRoot, 0, rootBinding(t.barcode), encodeRoot(r))
	if err := t.put(ctx, rootKey(t.barcode), blob); err != nil {
		return fmt.Errorf("tape %s: write index root: %w", t.barcode, err)
	}
	return nil
}

// restore puts back what a failed flush took out of the tape's state.
func (t *tape) restore(r *root, writes []pageWrite, from uint64, segs []uint64, pages []string) {
	if r == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dirty = true
	t.dirtyFrom = min(t.dirtyFrom, from)
	t.garbageSegs = append(segs, t.garbageSegs...)
	t.garbagePages = append(pages, t.garbagePages...)
	for _, w := range writes { // some may have been written
		t.garbagePages = append(t.garbagePages, pageKey(t.barcode, w.p, r.gen))
	}
}

// sweep deletes the tape's objects that its index does not name: leftovers
// of uploads a crash interrupted. keepOpen keeps the open segment's id
// (the replay may have written it).
func (t *tape) sweep(ctx context.Context, keepOpen bool) error {
	t.upMu.Lock()
	defer t.upMu.Unlock()
	t.mu.Lock()
	runs := append([]segRun(nil), t.runs...)
	open := t.open.id
	live := map[string]bool{rootKey(t.barcode): true}
	for i, pg := range t.pages {
		if pg.info.gen != 0 {
			live[pageKey(t.barcode, uint32(i), pg.info.gen)] = true
		}
	}
	t.mu.Unlock()
	prefix := tapePrefix(t.barcode)
	var dead []string
	err := t.lib.opts.Store.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
		rest := oi.Key[len(prefix):]
		if s, ok := strings.CutPrefix(rest, "seg/"); ok {
			id, err := strconv.ParseUint(s, 16, 64)
			if err != nil || len(s) != 16 {
				return nil // not ours: leave it
			}
			for _, r := range runs {
				if id >= r.first && id <= r.last {
					return nil
				}
			}
			if id != open || !keepOpen {
				dead = append(dead, oi.Key)
			}
			return nil
		}
		if strings.HasPrefix(rest, "idx/") && !live[oi.Key] {
			dead = append(dead, oi.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tape %s: sweep: %w", t.barcode, err)
	}
	for _, k := range dead {
		if err := t.lib.opts.Store.Delete(ctx, k); err != nil {
			return fmt.Errorf("tape %s: sweep: %w", t.barcode, err)
		}
	}
	return nil
}

// readRoot reads and authenticates a tape's index root.
func (l *Library) readRoot(ctx context.Context, barcode string) (*root, error) {
	blob, err := objstore.GetAll(ctx, l.opts.Store, rootKey(barcode))
	if err != nil {
		return nil, fmt.Errorf("tape %s: read index: %w", barcode, err)
	}
	plain, _, err := l.seal.open(kindRoot, rootBinding(barcode), blob)
	if err != nil {
		return nil, fmt.Errorf("tape %s: index root: %w", barcode, err)
	}
	r, err := decodeRoot(plain)
	if err != nil {
		return nil, fmt.Errorf("tape %s: %w", barcode, err)
	}
	if r.keyID != l.seal.keyID {
		return nil, fmt.Errorf("tape %s: written with data key %q, the library has %q", barcode, r.keyID, l.seal.keyID)
	}
	return r, nil
}

// writeEmptyRoot writes the index of a blank tape (WORM when worm),
// retained as the tape's writes are (wormRetention).
func (l *Library) writeEmptyRoot(ctx context.Context, barcode string, capacity int64, worm bool, mode objstore.RetentionMode, retainFor time.Duration) error {
	var id [8]byte
	for binary.BigEndian.Uint64(id[:]) == 0 {
		if _, err := rand.Read(id[:]); err != nil {
			return err
		}
	}
	r := &root{keyID: l.seal.keyID, id: binary.BigEndian.Uint64(id[:]), capacity: capacity, gen: 1, nextSeg: 1}
	if worm {
		r.flags = rootWORM
	}
	blob := l.seal.seal(kindRoot, 0, rootBinding(barcode), encodeRoot(r))
	return l.put(ctx, rootKey(barcode), blob, mode, retainFor)
}
