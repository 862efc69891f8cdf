package tapes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// segBuf is a segment being filled or waiting for upload: sealed blocks
// back to back.
type segBuf struct {
	id   uint64
	data []byte
	// unlogged counts the buffered writes in the segment that are neither
	// in the log nor in a stored index: the buffer is kept until none is.
	unlogged int
}

// pendingOp is a buffered write applied to the tape but not logged: a
// stored index that holds it makes it durable, or a sync point logs it
// (logUnlogged) from the sealed block in its segment.
type pendingOp struct {
	o      logOp // without its payload
	seg    *segBuf
	off    uint32
	stored uint32
}

// sealMark is the tape's state when a segment filled with buffered writes
// not logged: once the segments up to it are in the store, an index of
// that state makes those writes durable (upload), without the log.
type sealMark struct {
	seq, eod, nextSeg uint64
	used              int64
	runs              []segRun
}

type page struct {
	info    pageInfo
	loaded  bool
	entries []entry
}

type opRef struct {
	seq uint64
	lsn uploadbuffer.LSN
}

type cachedRange struct {
	seg   uint64
	start int64
	data  []byte
}

// tape is the state of one tape while the library holds it: its index
// (pages loaded on demand), the open segment and the segments waiting for
// upload. Every Tape handle of one barcode shares it.
type tape struct {
	lib     *Library
	barcode string
	id      uint64 // incarnation (root.id)

	wmu  sync.Mutex // writers, in log order
	upMu sync.Mutex // one upload at a time

	mu       sync.Mutex
	capacity int64
	readOnly bool
	worm     bool // a WORM tape (rootWORM): wormCheck guards its writes
	// retain: a WORM tape of a locked pool on a bucket with Object Lock
	// puts every object retained in retain.Mode for retainFor from its
	// write (tape.put).
	retain    objstore.Retention
	retainFor time.Duration
	gone      error // set once the tape left the library: handles fail with it
	users     int

	seq, gen  uint64
	eod       uint64
	used      int64
	pages     []*page
	runs      []segRun
	dirty     bool
	dirtyFrom uint64
	open      *segBuf
	sealed    []*segBuf
	// uploading: a goroutine uploads the sealed segments (uploadSealed);
	// uploaded is closed (and replaced) whenever segments leave sealed.
	uploading bool
	uploaded  chan struct{}

	garbageSegs  []uint64
	garbagePages []string
	unreferenced []string // keys no stored root names, deleted by the next full upload
	ops          []opRef  // log operations not yet in the stored index, in order
	// unlogged are the buffered operations applied but neither logged nor
	// in a stored index, in order (unloggedBytes their payloads); mark is
	// the state an index can be written of once the sealed segments are
	// up; storedSeq is the sequence number of the last stored root.
	unlogged      []pendingOp
	unloggedBytes int64
	mark          *sealMark
	storedSeq     uint64
	// stored is the newest root in the store (upMu). Open looks for
	// unindexed segments only at its nextSeg, so none above it is
	// uploaded before that one (nextUp) or a root naming it as next.
	stored   *root
	nextUp   bool
	rcache   []cachedRange
	metaEOD  uint64 // EOD and used as last written to meta
	metaUsed int64
}

func newTape(lib *Library, barcode string, r *root, readOnly bool) *tape {
	t := &tape{lib: lib, barcode: barcode, id: r.id, capacity: r.capacity, readOnly: readOnly, worm: r.flags&rootWORM != 0,
		seq: r.seq, gen: r.gen, eod: r.eod, used: r.used, runs: append([]segRun(nil), r.runs...),
		open: &segBuf{id: r.nextSeg}, dirtyFrom: math.MaxUint64, metaEOD: r.eod, metaUsed: r.used, storedSeq: r.seq,
		stored: r, uploaded: make(chan struct{})}
	for _, pi := range r.pages {
		t.pages = append(t.pages, &page{info: pi})
	}
	return t
}

// loadPage returns page p, reading it from the store if needed. t.mu held.
func (t *tape) loadPage(ctx context.Context, p uint64) (*page, error) {
	pg := t.pages[p]
	if pg.loaded {
		return pg, nil
	}
	key := pageKey(t.barcode, uint32(p), pg.info.gen)
	blob, err := objstore.GetAll(ctx, t.lib.opts.Store, key)
	if err != nil {
		return nil, fmt.Errorf("tape %s: read index page %d: %w", t.barcode, p, err)
	}
	plain, _, err := t.lib.seal.open(kindPage, pageBinding(t.barcode, uint32(p), pg.info.gen), blob)
	if err == nil {
		pg.entries, err = decodePage(plain, int(pg.info.count))
	}
	if err != nil {
		return nil, fmt.Errorf("tape %s: index page %d (%s): %w", t.barcode, p, key, err)
	}
	var fm uint32
	var used int64
	for _, e := range pg.entries {
		if e.filemark() {
			fm++
		}
		used += int64(e.stored)
	}
	if fm != pg.info.filemarks || used != pg.info.used {
		return nil, fmt.Errorf("tape %s: index page %d: %w", t.barcode, p, corruptf("counts differ from the index root"))
	}
	pg.loaded = true
	return pg, nil
}

// entry returns object i (i < eod). t.mu held.
func (t *tape) entry(ctx context.Context, i uint64) (entry, error) {
	pg, err := t.loadPage(ctx, i/PageObjects)
	if err != nil {
		return entry{}, err
	}
	return pg.entries[i%PageObjects], nil
}

// usedBefore is the stored bytes of objects before at. t.mu held; the page
// of at is loaded (prepare).
func (t *tape) usedBefore(at uint64) int64 {
	if at == t.eod {
		return t.used
	}
	p := at / PageObjects
	var u int64
	for _, pg := range t.pages[:p] {
		u += pg.info.used
	}
	for _, e := range t.pages[p].entries[:at%PageObjects] {
		u += int64(e.stored)
	}
	return u
}

// prepare checks that a write at at is possible and loads every page
// applying it will touch, so that apply cannot fail. t.mu held.
func (t *tape) prepare(ctx context.Context, at uint64) error {
	if t.gone != nil {
		return t.gone
	}
	if t.readOnly {
		return fmt.Errorf("tape %s: %w", t.barcode, ErrWriteProtected)
	}
	if at > t.eod {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("tape %s: write at object %d beyond end-of-data %d", t.barcode, at, t.eod))
	}
	var need []uint64
	if t.eod > 0 {
		need = append(need, (t.eod-1)/PageObjects)
	}
	if at < t.eod {
		need = append(need, at/PageObjects)
		if at > 0 {
			need = append(need, (at-1)/PageObjects)
		}
	}
	for _, p := range need {
		if _, err := t.loadPage(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// put stores one object of the tape: retained, for a WORM tape whose
// writes the bucket's Object Lock keeps (retainFor).
func (t *tape) put(ctx context.Context, key string, data []byte) error {
	return t.lib.put(ctx, key, data, t.retain.Mode, t.retainFor)
}

// put stores an object, retained in mode for retainFor from now unless
// retainFor is 0.
func (l *Library) put(ctx context.Context, key string, data []byte, mode objstore.RetentionMode, retainFor time.Duration) error {
	if retainFor == 0 {
		return objstore.PutBytes(ctx, l.opts.Store, key, data)
	}
	ret := objstore.Retention{Mode: mode, Until: l.opts.Clock.Now().Add(retainFor).UTC()}
	return objstore.PutRetained(ctx, l.opts.Store, key, bytes.NewReader(data), int64(len(data)), ret)
}

// rootFlags are the flags of the tape's index root.
func (t *tape) rootFlags() byte {
	if t.worm {
		return rootWORM
	}
	return 0
}

// wormCheck refuses a write at at that would overwrite or erase what a
// WORM tape holds. Only filemarks immediately before end-of-data may be
// written over, and not the first filemark of the tape (SSC's WORM mode
// filemark restriction 02h): a backup application may rewrite its
// closing filemarks to append, never a record. t.mu held, prepare(at)
// done.
func (t *tape) wormCheck(ctx context.Context, at uint64) error {
	if !t.worm || at >= t.eod {
		return nil
	}
	refuse := func(why string) error {
		return fmt.Errorf("tape %s: write at object %d of %d %s: %w", t.barcode, at, t.eod, why, ErrWORMOverwrite)
	}
	for p := at / PageObjects; p*PageObjects < t.eod; p++ {
		pg, err := t.loadPage(ctx, p)
		if err != nil {
			return err
		}
		from := uint64(0)
		if p == at/PageObjects {
			from = at % PageObjects
		}
		for _, e := range pg.entries[from:] {
			if !e.filemark() {
				return refuse("would overwrite a record")
			}
		}
	}
	p := at / PageObjects
	for _, pg := range t.pages[:p] {
		if pg.info.filemarks > 0 {
			return nil
		}
	}
	for _, e := range t.pages[p].entries[:at%PageObjects] {
		if e.filemark() {
			return nil
		}
	}
	return refuse("would overwrite the first filemark")
}

// truncate makes at end-of-data. t.mu held, prepare(at) done.
func (t *tape) truncate(at uint64) {
	if at >= t.eod {
		return
	}
	t.mark = nil // no index of a state before the cut
	used := t.usedBefore(at)
	hasPrev := at > 0
	var keep uint64
	if hasPrev {
		keep = t.pages[(at-1)/PageObjects].entries[(at-1)%PageObjects].seg
	}
	first := t.pages[at/PageObjects].entries[at%PageObjects]
	if hasPrev && keep == t.open.id {
		t.open.data = t.open.data[:first.off]
	} else {
		// Every object of the open segment is dropped: start a new one,
		// so a segment id once garbage is never written again.
		t.open = &segBuf{id: t.open.id + 1}
	}
	kept := t.sealed[:0]
	for _, s := range t.sealed {
		if hasPrev && s.id <= keep {
			kept = append(kept, s)
		}
	}
	t.sealed = kept
	// Live segments are non-decreasing with position: those above the
	// last kept object's segment are garbage once an index says so.
	var runs []segRun
	for _, r := range t.runs {
		if hasPrev && r.first <= keep {
			nr := segRun{r.first, min(r.last, keep)}
			runs = append(runs, nr)
			for s := nr.last + 1; s <= r.last; s++ {
				t.garbageSegs = append(t.garbageSegs, s)
			}
			continue
		}
		for s := r.first; s <= r.last; s++ {
			t.garbageSegs = append(t.garbageSegs, s)
		}
	}
	t.runs = runs
	p := at / PageObjects
	for q := p + 1; q < uint64(len(t.pages)); q++ {
		if g := t.pages[q].info.gen; g != 0 {
			t.garbagePages = append(t.garbagePages, pageKey(t.barcode, uint32(q), g))
		}
	}
	pg := t.pages[p]
	t.pages = t.pages[:p+1]
	k := at % PageObjects
	if k == 0 {
		if pg.info.gen != 0 {
			t.garbagePages = append(t.garbagePages, pageKey(t.barcode, uint32(p), pg.info.gen))
		}
		t.pages = t.pages[:p]
	} else {
		// A fresh page object replaces the old one at the next upload.
		np := &page{loaded: true, entries: append(make([]entry, 0, PageObjects), pg.entries[:k]...), info: pageInfo{gen: pg.info.gen}}
		for _, e := range np.entries {
			np.info.count++
			np.info.used += int64(e.stored)
			if e.filemark() {
				np.info.filemarks++
			}
		}
		t.pages[p] = np
	}
	t.eod, t.used = at, used
	t.markDirty(at)
	t.rcache = nil
}

func (t *tape) markDirty(at uint64) {
	t.dirty = true
	t.dirtyFrom = min(t.dirtyFrom, at)
}

// appendEntry adds e at end-of-data. t.mu held, the last page loaded.
func (t *tape) appendEntry(e entry) {
	if t.eod%PageObjects == 0 {
		t.pages = append(t.pages, &page{loaded: true, entries: make([]entry, 0, 64)})
	}
	pg := t.pages[len(t.pages)-1]
	pg.entries = append(pg.entries, e)
	pg.info.count++
	pg.info.used += int64(e.stored)
	if e.filemark() {
		pg.info.filemarks++
	}
	t.markDirty(t.eod)
	t.eod++
	t.used += int64(e.stored)
	switch n := len(t.runs); {
	case n > 0 && t.runs[n-1].last >= e.seg:
	case n > 0 && t.runs[n-1].last+1 == e.seg:
		t.runs[n-1].last = e.seg
	default:
		t.runs = append(t.runs, segRun{e.seg, e.seg})
	}
}

// apply performs an operation, logged at lsn or (logged false) a
// buffered one kept unlogged. t.mu held, prepare(o.at) done; an unlogged
// operation does not truncate. It reports whether a segment filled up.
func (t *tape) apply(o logOp, lsn uploadbuffer.LSN, logged bool) bool {
	t.truncate(o.at)
	p := pendingOp{o: o}
	switch o.op {
	case opRecord:
		off := uint32(len(t.open.data))
		var sf byte
		if o.flags&entZstd != 0 {
			sf = sealFlagZstd
		}
		n := len(o.payload) + sealOverhead
		if cap(t.open.data) == 0 {
			t.open.data = t.lib.segBufs.get(max(t.lib.opts.SegmentSize, n) + n)
		}
		t.open.data = t.lib.seal.sealTo(t.open.data, kindBlock, sf, blockBinding(t.barcode, t.open.id, off, o.at), o.payload)
		p.seg, p.off, p.stored = t.open, off, uint32(len(o.payload))
		t.appendEntry(entry{flags: o.flags & entZstd, size: o.size, stored: uint32(len(o.payload)), seg: t.open.id, off: off})
	case opFilemarks:
		for range o.size {
			t.appendEntry(entry{flags: entFilemark, seg: t.open.id, off: uint32(len(t.open.data))})
		}
	case opErase:
		t.markDirty(o.at)
	}
	t.seq = o.seq
	if logged {
		t.ops = append(t.ops, opRef{o.seq, lsn})
	} else {
		p.o.payload = nil
		if p.seg != nil {
			p.seg.unlogged++
			t.unloggedBytes += int64(p.stored)
		}
		t.unlogged = append(t.unlogged, p)
	}
	if len(t.open.data) >= t.lib.opts.SegmentSize {
		t.sealOpen()
		if len(t.unlogged) > 0 {
			t.mark = &sealMark{seq: t.seq, eod: t.eod, used: t.used, nextSeg: t.open.id, runs: append([]segRun(nil), t.runs...)}
		}
		return true
	}
	return false
}

// dropUnlogged forgets the unlogged operations up to seq: they are in the
// log or in a stored index now. t.mu held.
func (t *tape) dropUnlogged(seq uint64) {
	n := 0
	for ; n < len(t.unlogged) && t.unlogged[n].o.seq <= seq; n++ {
		if p := t.unlogged[n]; p.seg != nil {
			p.seg.unlogged--
			t.unloggedBytes -= int64(p.stored)
		}
	}
	if n > 0 {
		t.unlogged = append(t.unlogged[:0], t.unlogged[n:]...)
	}
}

// logUnlogged makes the tape's unlogged operations durable in the log:
// each is queued there (AppendBuffered) in order, its payload opened from
// the sealed block in its segment; a later log sync makes them durable.
// t.wmu held.
func (t *tape) logUnlogged(ctx context.Context) error {
	for {
		t.mu.Lock()
		if len(t.unlogged) == 0 || t.gone != nil {
			t.mu.Unlock()
			return nil
		}
		p := t.unlogged[0]
		o := p.o
		if o.op == opRecord {
			blob := p.seg.data[p.off : p.off+p.stored+sealOverhead]
			payload, _, err := t.lib.seal.open(kindBlock, blockBinding(t.barcode, p.seg.id, p.off, o.at), blob)
			if err != nil {
				t.mu.Unlock()
				return fmt.Errorf("tape %s: log buffered record %d: %w", t.barcode, o.at, err)
			}
			o.payload = payload
		}
		t.mu.Unlock()
		rec := appendLogOp(t.lib.logBufs.get(logOpLen(o)), o)
		err := t.lib.logAndApply(ctx, rec, true, func(lsn uploadbuffer.LSN) {
			t.mu.Lock()
			t.dropUnlogged(o.seq)
			if o.seq > t.storedSeq {
				t.ops = append(t.ops, opRef{o.seq, lsn})
			}
			t.mu.Unlock()
			t.lib.logBufs.put(lsn, rec)
		})
		if err != nil {
			return fmt.Errorf("tape %s: %w", t.barcode, err)
		}
	}
}

// sealOpen queues the open segment for upload and opens the next. t.mu held.
func (t *tape) sealOpen() {
	if len(t.open.data) > 0 {
		t.sealed = append(t.sealed, t.open)
	}
	if len(t.open.data) > 0 || t.referencesOpen() {
		t.open = &segBuf{id: t.open.id + 1}
	}
}

// referencesOpen says whether an object (a filemark) names the open segment.
func (t *tape) referencesOpen() bool {
	n := len(t.runs)
	return n > 0 && t.runs[n-1].last == t.open.id
}

// write logs o and applies it: the write is durable in the log when it
// returns, or, buffered, once a stored index holds it or a sync point
// has logged it (Tape.Sync).
func (t *tape) write(ctx context.Context, o logOp, buffered bool) error {
	if err := t.room(ctx); err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	err := t.prepare(ctx, o.at)
	if err == nil {
		err = t.wormCheck(ctx, o.at)
	}
	if err == nil && o.op == opRecord && t.usedBefore(o.at)+int64(len(o.payload)) > t.capacity {
		err = fmt.Errorf("tape %s: %d bytes at object %d: %w", t.barcode, len(o.payload), o.at, ErrEndOfMedium)
	}
	o.seq, o.tapeID = t.seq+1, t.id
	// A buffered write at end-of-data stays out of the log: an index
	// stored before the next sync point makes it durable, or that sync
	// point logs it. A write that truncates, one made without buffering,
	// or one past the bound of what may wait so, is logged, after every
	// unlogged write before it.
	keep := buffered && o.at >= t.eod && t.unloggedBytes <= t.lib.unloggedMax()
	logFirst := !keep && len(t.unlogged) > 0
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if logFirst {
		if err := t.logUnlogged(ctx); err != nil {
			return err
		}
	}
	full := false
	if keep {
		t.mu.Lock()
		full = t.apply(o, 0, false)
		t.mu.Unlock()
	} else {
		rec := appendLogOp(t.lib.logBufs.get(logOpLen(o)), o)
		err = t.lib.logAndApply(ctx, rec, buffered, func(lsn uploadbuffer.LSN) {
			t.mu.Lock()
			full = t.apply(o, lsn, true)
			t.mu.Unlock()
			t.lib.logBufs.put(lsn, rec)
		})
		if err != nil {
			return fmt.Errorf("tape %s: %w", t.barcode, err)
		}
	}
	if full {
		t.uploadSealed()
	}
	return nil
}

// uploadSealed starts uploading the tape's sealed segments in the
// background unless that is under way: the next segment fills while the
// last goes to the store. The goroutine goes on while segments are sealed
// and stops at the first error (the uploader's rounds and room retry).
func (t *tape) uploadSealed() {
	t.mu.Lock()
	if t.uploading || len(t.sealed) == 0 || t.gone != nil {
		t.mu.Unlock()
		return
	}
	t.uploading = true
	t.mu.Unlock()
	started := t.lib.background(func(ctx context.Context) {
		for {
			err := t.flush(ctx, false)
			t.mu.Lock()
			if err != nil || len(t.sealed) == 0 || t.gone != nil {
				t.uploading = false
				t.segmentsLeft()
				t.mu.Unlock()
				if err != nil && ctx.Err() == nil {
					t.lib.log.Warn("tape segment upload", "tape", t.barcode, "err", err)
				}
				return
			}
			t.mu.Unlock()
		}
	})
	if !started { // the library is closing
		t.mu.Lock()
		t.uploading = false
		t.segmentsLeft()
		t.mu.Unlock()
	}
}

// segmentsLeft wakes the writers waiting for room. t.mu held.
func (t *tape) segmentsLeft() {
	close(t.uploaded)
	t.uploaded = make(chan struct{})
}

// room waits while too many segments of the tape wait for upload: for
// the upload under way (uploadSealed) to take them, or, when none is,
// it uploads them itself, and while the store fails it retries every
// second (the write waits; it does not fail while the store is away).
func (t *tape) room(ctx context.Context) error {
	for {
		t.mu.Lock()
		n, gone, up, uploaded := len(t.sealed), t.gone, t.uploading, t.uploaded
		t.mu.Unlock()
		if gone != nil {
			return gone
		}
		if n < t.lib.opts.MaxPendingSegments {
			return nil
		}
		if up {
			select {
			case <-uploaded:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		err := t.flush(ctx, false)
		if err == nil {
			continue
		}
		t.lib.log.Warn("tape write waits for uploads", "tape", t.barcode, "err", err)
		if err := clock.Sleep(ctx, t.lib.opts.Clock, time.Second); err != nil {
			return err
		}
	}
}

// readBlock returns the sealed block of object i and its entry.
func (t *tape) read(ctx context.Context, i uint64) (entry, []byte, error) {
	t.mu.Lock()
	if t.gone != nil {
		t.mu.Unlock()
		return entry{}, nil, t.gone
	}
	if i >= t.eod {
		t.mu.Unlock()
		return entry{}, nil, errkind.Mark(errkind.Permanent, fmt.Errorf("tape %s: object %d at or beyond end-of-data %d", t.barcode, i, t.eod))
	}
	e, err := t.entry(ctx, i)
	if err != nil || e.filemark() {
		t.mu.Unlock()
		return e, nil, err
	}
	n := e.sealedLen()
	find := func(s *segBuf) []byte {
		if s.id == e.seg && int64(e.off)+n <= int64(len(s.data)) {
			return append([]byte(nil), s.data[e.off:int64(e.off)+n]...)
		}
		return nil
	}
	if b := find(t.open); b != nil {
		t.mu.Unlock()
		return e, b, nil
	}
	for _, s := range t.sealed {
		if b := find(s); b != nil {
			t.mu.Unlock()
			return e, b, nil
		}
	}
	for _, c := range t.rcache {
		if c.seg == e.seg && int64(e.off) >= c.start && int64(e.off)+n <= c.start+int64(len(c.data)) {
			b := c.data[int64(e.off)-c.start : int64(e.off)-c.start+n]
			t.mu.Unlock()
			return e, b, nil
		}
	}
	// Read ahead: the blocks after this one in the same segment, up to
	// ReadAhead bytes, as one range read.
	end := int64(e.off) + n
	pg := t.pages[i/PageObjects]
	for j := i%PageObjects + 1; j < uint64(len(pg.entries)); j++ {
		f := pg.entries[j]
		if f.filemark() {
			continue
		}
		if f.seg != e.seg || int64(f.off)+f.sealedLen()-int64(e.off) > int64(t.lib.opts.ReadAhead) {
			break
		}
		end = int64(f.off) + f.sealedLen()
	}
	t.mu.Unlock()

	key := segKey(t.barcode, e.seg)
	rc, err := t.lib.opts.Store.Get(ctx, key, int64(e.off), end-int64(e.off))
	if err != nil {
		if errors.Is(err, objstore.ErrInvalidRange) {
			err = corruptf("segment %s is shorter than its index says: %v", key, err)
		}
		return e, nil, fmt.Errorf("tape %s: object %d: %w", t.barcode, i, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return e, nil, fmt.Errorf("tape %s: object %d: read %s: %w", t.barcode, i, key, err)
	}
	if int64(len(data)) != end-int64(e.off) {
		return e, nil, fmt.Errorf("tape %s: object %d: %w", t.barcode, i, corruptf("short read of %s", key))
	}
	t.mu.Lock()
	t.rcache = append(t.rcache, cachedRange{seg: e.seg, start: int64(e.off), data: data})
	if len(t.rcache) > 4 {
		t.rcache = t.rcache[1:]
	}
	t.mu.Unlock()
	return e, data[:n], nil
}

// record reads object i into p and returns its length.
func (t *tape) record(ctx context.Context, i uint64, p []byte) (int, error) {
	e, blob, err := t.read(ctx, i)
	if err != nil {
		return 0, err
	}
	if e.filemark() {
		return 0, errkind.Mark(errkind.Permanent, fmt.Errorf("tape %s: object %d is a filemark, not a record", t.barcode, i))
	}
	payload, sf, err := t.lib.seal.open(kindBlock, blockBinding(t.barcode, e.seg, e.off, i), blob)
	if err == nil && (sf&sealFlagZstd != 0) != (e.flags&entZstd != 0) {
		err = corruptf("compression flag differs from the index")
	}
	if err == nil && len(payload) != int(e.stored) {
		err = corruptf("block of %d bytes, index says %d", len(payload), e.stored)
	}
	if err == nil && e.flags&entZstd != 0 {
		payload, err = t.lib.dec.DecodeAll(payload, make([]byte, 0, e.size))
		if err != nil {
			err = corruptf("decompress: %v", err)
		}
	}
	if err == nil && len(payload) != int(e.size) {
		err = corruptf("record of %d bytes, index says %d", len(payload), e.size)
	}
	if err != nil {
		return 0, fmt.Errorf("tape %s: object %d (segment %016x offset %d): %w", t.barcode, i, e.seg, e.off, err)
	}
	copy(p, payload)
	return int(e.size), nil
}

// nextFilemark scans forward from from, skipping pages without filemarks.
func (t *tape) nextFilemark(ctx context.Context, from uint64) (uint64, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone != nil {
		return 0, false, t.gone
	}
	for i := from; i < t.eod; {
		p := i / PageObjects
		if t.pages[p].info.filemarks == 0 {
			i = (p + 1) * PageObjects
			continue
		}
		pg, err := t.loadPage(ctx, p)
		if err != nil {
			return 0, false, err
		}
		for ; i < t.eod && i/PageObjects == p; i++ {
			if pg.entries[i%PageObjects].filemark() {
				return i, true, nil
			}
		}
	}
	return 0, false, nil
}

// prevFilemark scans backward from before-1.
func (t *tape) prevFilemark(ctx context.Context, before uint64) (uint64, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone != nil {
		return 0, false, t.gone
	}
	i := min(before, t.eod)
	for i > 0 {
		p := (i - 1) / PageObjects
		if t.pages[p].info.filemarks == 0 {
			i = p * PageObjects
			continue
		}
		pg, err := t.loadPage(ctx, p)
		if err != nil {
			return 0, false, err
		}
		for ; i > 0 && (i-1)/PageObjects == p; i-- {
			if pg.entries[(i-1)%PageObjects].filemark() {
				return i - 1, true, nil
			}
		}
	}
	return 0, false, nil
}
