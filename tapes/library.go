package tapes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/keys"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Options wire a Library to the gateway's subsystems.
type Options struct {
	Store objstore.Store // the repository's store (with retry and limiter decorators)
	Meta  meta.Store
	// Log is the library's own upload buffer: every tape write is durable
	// in it before it is acknowledged, until the segment and index holding
	// it are in the store.
	Log *uploadbuffer.Log
	// Key encrypts tapes (a key derived from its encryption key).
	Key    keys.DataKey
	Clock  clock.Clock
	Logger *slog.Logger
	// Health, when set, warns while uploads fail ("tapes").
	Health *health.Reporter

	// Library geometry, recorded in meta when the library is first opened
	// and fixed from then on: storage slots (default 1600) and drives
	// (default 10). There is one import/export element.
	Slots, Drives int

	// EarlyWarning is how many bytes before a tape's capacity writes start
	// reporting early warning (default 64 MiB, at most a quarter of the
	// capacity).
	EarlyWarning int64
	// SegmentSize is the size at which a tape's open segment is closed
	// and uploaded (default 16 MiB).
	SegmentSize int
	// MaxPendingSegments is how many closed segments of one tape may wait
	// for upload before its writes wait for them (default 2).
	MaxPendingSegments int
	// ReadAhead is how many bytes of a segment one read fetches (default 8 MiB).
	ReadAhead int
	// FlushInterval is how often every tape's data and index go to the
	// store (default 5s); the log holds them until then.
	FlushInterval time.Duration
	// ArchiveClass is the storage class archived tapes move to (default
	// GLACIER; a pool names its own); RetrieveClass the one they come
	// back to (default STANDARD).
	ArchiveClass, RetrieveClass string
	// Restorer restores archived objects before a retrieval reads them;
	// nil: the Store's own, if it is an objstore.Restorer.
	Restorer objstore.Restorer
	// MoveTier is the restore tier of an archived tape's move to another
	// archive class (a pool's): S3 copies no archived object that is not
	// restored (default Bulk, the cheapest: nobody waits to read).
	MoveTier string
	// RetrieveTier is the default restore tier (default Standard);
	// RestoreDays how long a restored copy is kept (default 7), enough
	// for the copy back to RetrieveClass; RetrievePoll how often
	// retrieving tapes are looked at (default 1 minute).
	RetrieveTier string
	RestoreDays  int
	RetrievePoll time.Duration
	// Events, when set, gets an event of every tape archived and
	// retrieved (notify.go).
	Events notify.Sink
}

// Geometry is the library's fixed shape.
type Geometry struct {
	Slots, Drives, IE int
}

// Library is the virtual tape library: tapes, their data and their places.
// It implements frontends/vtl's Shelf; Open's handles implement Medium.
type Library struct {
	opts Options
	log  *slog.Logger
	seal *sealer
	enc  *zstd.Encoder
	dec  *zstd.Decoder
	geo  Geometry

	invMu  sync.Mutex // inventory changes, one at a time
	loadMu sync.Mutex // tapes loaded, one at a time

	mu    sync.Mutex
	tapes map[string]*tape
	// fullAt is when each loaded tape's data and index last went to the
	// store whole (or it was loaded): it goes again FlushInterval later.
	fullAt map[string]time.Time

	// sweepMu guards marked, the tapes whose SweepPending this library
	// set (or acted on at load), which a clean Close clears, and
	// leftovers, those with a delete that failed, which keep it.
	sweepMu   sync.Mutex
	marked    map[string]bool
	leftovers map[string]bool

	// j is the write path: the log, replay, trimming and the uploader.
	j *uploadbuffer.Journal
	// During replay: tapes replayed onto, tapes whose writes are skipped.
	replayTouched map[string]*tape
	replaySkip    map[string]bool

	stats struct{ segmentsUp, bytesUp atomic.Uint64 }

	logBufs logBufs // log records' buffers, reused once written
	segBufs segBufs // segments' buffers, reused once uploaded

	// Segment uploads started when a segment fills (tape.uploadSealed):
	// bgCtx ends and bgWG is waited for at Close.
	bgMu     sync.Mutex
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	bgDone   bool

	// retrievePolled is when retrieving tapes were last looked at (by
	// the uploader's rounds only); retrieving is set while a goroutine
	// looks.
	retrievePolled time.Time
	retrieving     atomic.Bool
	// retainedBefore: the lock ends put on the objects of tapes whose
	// move to their archive class failed (finishArchive), by barcode;
	// l.mu.
	retainedBefore map[string]time.Time
	// movePolled: when the class moves waiting for restores were last
	// tried, by barcode; l.mu.
	movePolled map[string]time.Time

	sparesDue atomic.Bool // spare tapes to check after the next round
	closeOnce sync.Once
	closed    atomic.Bool
}

// New opens the library: reads (or records) its geometry, replays the
// upload buffer onto the tapes it names, uploads what it replayed, and
// starts the uploader.
func New(ctx context.Context, opts Options) (*Library, error) {
	if opts.Store == nil || opts.Meta == nil || opts.Log == nil {
		return nil, errors.New("tapes: Store, Meta and Log are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Slots <= 0 {
		opts.Slots = 1600
	}
	if opts.Drives <= 0 {
		opts.Drives = 10
	}
	if opts.EarlyWarning <= 0 {
		opts.EarlyWarning = 64 << 20
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 16 << 20
	}
	if opts.MaxPendingSegments <= 0 {
		opts.MaxPendingSegments = 2
	}
	if opts.ReadAhead <= 0 {
		opts.ReadAhead = 8 << 20
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 5 * time.Second
	}
	if opts.ArchiveClass == "" {
		opts.ArchiveClass = "GLACIER"
	}
	if opts.RetrieveClass == "" {
		opts.RetrieveClass = "STANDARD"
	}
	if opts.RetrieveTier == "" {
		opts.RetrieveTier = objstore.TierStandard
	}
	if opts.MoveTier == "" {
		opts.MoveTier = objstore.TierBulk
	}
	if err := objstore.ValidTier(opts.RetrieveTier); err != nil {
		return nil, fmt.Errorf("tapes: %w", err)
	}
	if err := objstore.ValidTier(opts.MoveTier); err != nil {
		return nil, fmt.Errorf("tapes: %w", err)
	}
	if opts.RestoreDays <= 0 {
		opts.RestoreDays = 7
	}
	if opts.RetrievePoll <= 0 {
		opts.RetrievePoll = time.Minute
	}
	if opts.Log.Capacity()/4 < MaxRecord+64<<10 {
		return nil, fmt.Errorf("tapes: the upload buffer of %d bytes cannot hold the largest record (it needs 4 × %d)", opts.Log.Capacity(), MaxRecord+64<<10)
	}
	if opts.SegmentSize > 1<<30 {
		return nil, fmt.Errorf("tapes: segment size %d exceeds 1 GiB", opts.SegmentSize)
	}
	if opts.Slots > 10000 || opts.Drives > 256 {
		return nil, fmt.Errorf("tapes: at most 10000 slots and 256 drives (asked %d and %d)", opts.Slots, opts.Drives)
	}
	s, err := newSealer(opts.Key)
	if err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxRecord+1), zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, err
	}
	l := &Library{opts: opts, log: opts.Logger, seal: s, enc: enc, dec: dec, tapes: map[string]*tape{}, fullAt: map[string]time.Time{},
		marked: map[string]bool{}, leftovers: map[string]bool{}}
	l.logBufs.log = opts.Log
	l.bgCtx, l.bgCancel = context.WithCancel(context.Background())
	l.j = uploadbuffer.NewJournal(opts.Log, journalClient{l}, uploadbuffer.JournalOptions{
		Name: "tapes", Interval: opts.FlushInterval, SettleTime: opts.FlushInterval,
		AfterRound: l.afterRound, Clock: opts.Clock, Logger: opts.Logger,
	})
	geo, fresh, err := l.loadGeometry(ctx)
	if err != nil {
		return nil, err
	}
	l.geo = geo
	if fresh {
		// New metadata: the tapes already in the store are the
		// library's. The geometry is recorded once they are.
		if _, err := l.adopt(ctx); err != nil {
			return nil, err
		}
		if err := l.saveGeometry(ctx); err != nil {
			return nil, fmt.Errorf("tapes: library geometry: %w", err)
		}
	}
	if err := l.replay(ctx); err != nil {
		l.j.Close()
		return nil, err
	}
	l.j.Start()
	return l, nil
}

// Geometry returns the library's shape.
func (l *Library) Geometry() Geometry { return l.geo }

// replay applies the log records not yet in a tape's stored index, then
// uploads every tape it touched.
func (l *Library) replay(ctx context.Context) error {
	l.replayTouched, l.replaySkip = map[string]*tape{}, map[string]bool{}
	if err := l.j.Replay(ctx); err != nil {
		return fmt.Errorf("tapes: %w", err)
	}
	touched := l.replayTouched
	l.replayTouched, l.replaySkip = nil, nil
	for _, t := range touched {
		if err := t.flush(ctx, true); err != nil {
			return fmt.Errorf("tapes: after replay: %w", err)
		}
		if err := t.sweep(ctx, true); err != nil {
			return err
		}
		l.release(t)
	}
	l.trim()
	return nil
}

// journalClient is the library's side of the journal: how a logged tape
// operation is applied, which tapes have data to upload and how.
type journalClient struct{ l *Library }

// Apply applies a replayed operation to its tape.
func (c journalClient) Apply(ctx context.Context, lsn uploadbuffer.LSN, rec []byte) error {
	l := c.l
	o, err := decodeLogOp(rec)
	if err != nil {
		return err
	}
	if l.replaySkip[o.barcode] {
		return nil
	}
	t, err := l.load(ctx, o.barcode)
	if errors.Is(err, ErrNoTape) || errors.Is(err, errArchived) {
		l.replaySkip[o.barcode] = true // deleted or archived since: its writes went with it
		return nil
	}
	if err != nil {
		return err
	}
	t.mu.Lock()
	full, err := l.replayOne(ctx, t, o, lsn)
	pending := len(t.sealed)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	l.replayTouched[o.barcode] = t
	if full && pending >= l.opts.MaxPendingSegments {
		// Bounded memory: upload the closed segments now.
		return t.flush(ctx, false)
	}
	return nil
}

// Needs is the oldest logged operation not yet in a tape's stored index.
func (c journalClient) Needs() (uploadbuffer.LSN, bool) {
	var lsn uploadbuffer.LSN
	ok := false
	for _, t := range c.l.loaded() {
		t.mu.Lock()
		if len(t.ops) > 0 && (!ok || t.ops[0].lsn < lsn) {
			lsn, ok = t.ops[0].lsn, true
		}
		t.mu.Unlock()
	}
	return lsn, ok
}

// Pending lists the loaded tapes: those with closed segments are ready
// for a partial upload; each goes up whole (data and index) once
// FlushInterval has passed since it last did.
func (c journalClient) Pending(context.Context) ([]uploadbuffer.Unit, error) {
	l := c.l
	var units []uploadbuffer.Unit
	for _, t := range l.loaded() {
		t.mu.Lock()
		ready := len(t.sealed) > 0
		t.mu.Unlock()
		l.mu.Lock()
		at := l.fullAt[t.barcode]
		l.mu.Unlock()
		units = append(units, uploadbuffer.Unit{Key: t.barcode, Changed: at, Ready: ready, Value: t})
	}
	return units, nil
}

// Upload uploads a tape's closed segments, or all of it (its open segment
// and index too) when the unit is settled.
func (c journalClient) Upload(ctx context.Context, u uploadbuffer.Unit) (int64, error) {
	l, t := c.l, u.Value.(*tape)
	before := l.stats.bytesUp.Load()
	err := t.flush(ctx, u.Settled)
	if err == nil && u.Settled {
		l.mu.Lock()
		if l.tapes[t.barcode] == t {
			l.fullAt[t.barcode] = l.opts.Clock.Now()
		}
		l.mu.Unlock()
		l.release(t)
	}
	return int64(l.stats.bytesUp.Load() - before), err
}

// replayOne applies one logged operation unless the tape's stored index
// holds it already. t.mu held.
func (l *Library) replayOne(ctx context.Context, t *tape, o logOp, lsn uploadbuffer.LSN) (bool, error) {
	if o.tapeID != t.id || o.seq <= t.seq {
		return false, nil // an earlier tape of that barcode, or already stored
	}
	if o.seq != t.seq+1 {
		l.log.Warn("tape log records missing", "tape", o.barcode, "after", t.seq, "next", o.seq)
	}
	if o.at > t.eod {
		l.log.Warn("tape log record beyond end-of-data, skipped", "tape", o.barcode, "at", o.at, "eod", t.eod)
		return false, nil
	}
	if err := t.prepare(ctx, o.at); err != nil {
		if errors.Is(err, ErrWriteProtected) {
			return false, nil
		}
		return false, fmt.Errorf("tapes: replay: %w", err)
	}
	return t.apply(o, lsn, true), nil
}

// load returns the tape's state, reading its index root if the library
// does not hold it yet.
func (l *Library) load(ctx context.Context, barcode string) (*tape, error) {
	l.mu.Lock()
	t := l.tapes[barcode]
	l.mu.Unlock()
	if t != nil {
		return t, nil
	}
	// One load at a time: the sweep below runs before anyone writes to
	// the tape.
	l.loadMu.Lock()
	defer l.loadMu.Unlock()
	l.mu.Lock()
	t = l.tapes[barcode]
	l.mu.Unlock()
	if t != nil {
		return t, nil
	}
	info, err := l.Info(ctx, barcode)
	if err != nil {
		return nil, err
	}
	if info.State == StateArchived || info.State == StateRetrieving {
		return nil, fmt.Errorf("tape %s: %w", barcode, errArchived)
	}
	if info.State == StateDeleting {
		return nil, fmt.Errorf("tape %s: %w (being deleted)", barcode, ErrNoTape)
	}
	r, err := l.readRoot(ctx, barcode)
	if err != nil {
		return nil, err
	}
	if r.capacity != info.Capacity {
		return nil, corruptf("tape %s: index says capacity %d, the library %d", barcode, r.capacity, info.Capacity)
	}
	t = newTape(l, barcode, r, info.ReadOnly)
	if t.retain.Mode, t.retainFor, err = l.wormRetention(ctx, info); err != nil {
		return nil, fmt.Errorf("tape %s: %w", barcode, err)
	}
	// Objects no root names: those of an upload or of deletes a gateway
	// did not finish before it died (SweepPending), and segments a
	// writer uploaded after its last stored index (buffered writes no
	// index or log record held), when the segment the index says comes
	// next is there.
	if !info.ReadOnly {
		// Not a tape this library marked and left nothing behind on:
		// then it was released with every delete done.
		l.sweepMu.Lock()
		ours := l.marked[barcode] && !l.leftovers[barcode]
		l.sweepMu.Unlock()
		sweep := info.SweepPending && !ours
		if !sweep {
			_, err := l.opts.Store.Stat(ctx, segKey(barcode, r.nextSeg))
			if err != nil && !errors.Is(err, objstore.ErrNotFound) {
				return nil, fmt.Errorf("tape %s: %w", barcode, err)
			}
			sweep = err == nil
		}
		if sweep {
			if err := t.sweep(ctx, false); err != nil {
				return nil, err
			}
			if info.SweepPending {
				// Cleared by a clean Close, unless this library leaves
				// leftovers of its own.
				l.sweepMu.Lock()
				l.marked[barcode] = true
				delete(l.leftovers, barcode)
				l.sweepMu.Unlock()
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tapes[barcode] = t
	l.fullAt[barcode] = l.opts.Clock.Now()
	return t, nil
}

// release drops a tape's state once no handle has it open and everything
// it holds is in the store.
func (l *Library) release(t *tape) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.users == 0 && len(t.ops) == 0 && len(t.unlogged) == 0 && len(t.unreferenced) == 0 && len(t.sealed) == 0 && len(t.open.data) == 0 && !t.dirty && l.tapes[t.barcode] == t {
		delete(l.tapes, t.barcode)
		delete(l.fullAt, t.barcode)
	}
}

func (l *Library) loaded() []*tape {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := make([]*tape, 0, len(l.tapes))
	for _, t := range l.tapes {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].barcode < ts[j].barcode })
	return ts
}

// logAndApply makes rec durable in the journal (buffered: queues it
// there), then runs apply with its LSN; the journal keeps the log from
// being trimmed past the record until apply has recorded the write.
func (l *Library) logAndApply(ctx context.Context, rec []byte, buffered bool, apply func(uploadbuffer.LSN)) error {
	add := l.j.Append
	if buffered {
		add = l.j.AppendBuffered
	}
	_, err := add(ctx, rec, func(lsn uploadbuffer.LSN) error {
		apply(lsn)
		return nil
	})
	return err
}

// unloggedMax bounds the payload bytes of a tape's buffered writes that
// wait out of the log for an index: the segments in memory and one being
// indexed. Past it (the store fails, say) writes go to the log again.
func (l *Library) unloggedMax() int64 {
	return int64(l.opts.MaxPendingSegments+3) * int64(l.opts.SegmentSize)
}

// logBuffered logs the buffered writes of every tape that no stored index
// holds yet, then syncs the log: every write made before it is durable
// when it returns.
func (l *Library) logBuffered(ctx context.Context) error {
	for _, t := range l.loaded() {
		t.wmu.Lock()
		err := t.logUnlogged(ctx)
		t.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	return l.j.Sync(ctx)
}

// background runs fn in a goroutine that Close ends (through ctx) and
// waits for; after Close it does not run fn.
func (l *Library) background(fn func(ctx context.Context)) bool {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.bgDone {
		return false
	}
	l.bgWG.Add(1)
	go func() {
		defer l.bgWG.Done()
		fn(l.bgCtx)
	}()
	return true
}

// stopBackground ends the goroutines background started and waits for
// them.
func (l *Library) stopBackground() {
	l.bgMu.Lock()
	l.bgDone = true
	l.bgMu.Unlock()
	l.bgCancel()
	l.bgWG.Wait()
}

// trim releases the log records no tape needs any more.
func (l *Library) trim() { l.j.Trim() }

// spareCheck has the spare tapes checked after the next round.
func (l *Library) spareCheck() {
	l.sparesDue.Store(true)
	l.j.Kick()
}

// afterRound runs after each background round: health, and on the
// interval the release of idle tapes, unfinished archive moves and the
// spare tapes (those also when asked for).
func (l *Library) afterRound(ctx context.Context, r uploadbuffer.RoundResult) {
	if h := l.opts.Health; h != nil {
		if r.Err != nil {
			h.Warn("tape uploads failing, data waits in the upload buffer: " + r.Err.Error())
		} else if r.Tick {
			h.OK()
		}
	}
	if r.Tick {
		for _, t := range l.loaded() {
			l.release(t)
		}
		l.logBufs.release()
		l.segBufs.release()
		l.finishArchives(ctx)
		l.advanceRetrievals()
	}
	if l.sparesDue.Swap(false) || r.Tick {
		if err := l.ensureSpares(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("spare tapes", "err", err)
		}
	}
}

// Flush uploads every tape's data and index now and trims the log.
func (l *Library) Flush(ctx context.Context) error {
	return l.j.Flush(ctx, nil)
}

// UploadStats are the uploader's counters.
type UploadStats struct{ Segments, Bytes uint64 }

// UploadStats returns how many segments and bytes went to the store.
func (l *Library) UploadStats() UploadStats {
	return UploadStats{l.stats.segmentsUp.Load(), l.stats.bytesUp.Load()}
}

// Close stops the uploader and uploads everything still held. The log is
// the caller's to close, after Close.
func (l *Library) Close(ctx context.Context) error {
	var err error
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.stopBackground()
		l.j.Stop()
		// The zstd coder runs no goroutines for EncodeAll and DecodeAll
		// and is left to the collector, so a straggling handle cannot
		// use a closed one.
		err = l.Flush(ctx)
		if err != nil {
			// What did not go up stays durable in the log.
			if lerr := l.logBuffered(ctx); lerr != nil {
				err = fmt.Errorf("%w (and the upload buffer: %v)", err, lerr)
			}
		} else {
			err = l.clearSweeps(ctx)
		}
		l.j.Close()
	})
	return err
}

var errArchived = errkind.Mark(errkind.Permanent, errors.New("tape is archived"))

// markSweep records, before a tape's first upload by this library, that
// from now on a crash may leave objects of the tape that no index names
// (the sweep at its next load deletes them).
func (l *Library) markSweep(ctx context.Context, barcode string) error {
	l.sweepMu.Lock()
	done := l.marked[barcode]
	l.sweepMu.Unlock()
	if done {
		return nil
	}
	err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		in, err := getInfo(tx, barcode)
		if err != nil || in.SweepPending {
			return err
		}
		in.SweepPending = true
		return putInfo(tx, in)
	})
	if err != nil {
		return err
	}
	l.sweepMu.Lock()
	l.marked[barcode] = true
	l.sweepMu.Unlock()
	return nil
}

// noteLeftover records that an object of the tape no index names may be
// left in the store: its SweepPending stays set.
func (l *Library) noteLeftover(barcode string) {
	l.sweepMu.Lock()
	l.leftovers[barcode] = true
	l.sweepMu.Unlock()
}

// clearSweeps clears SweepPending, once everything is uploaded at Close,
// of the tapes this library set it on and left nothing behind on.
func (l *Library) clearSweeps(ctx context.Context) error {
	l.sweepMu.Lock()
	var clean []string
	for bc := range l.marked {
		if !l.leftovers[bc] {
			clean = append(clean, bc)
		}
	}
	l.sweepMu.Unlock()
	l.mu.Lock()
	kept := clean[:0]
	for _, bc := range clean {
		if t := l.tapes[bc]; t != nil {
			t.mu.Lock()
			left := len(t.unreferenced) > 0
			t.mu.Unlock()
			if left {
				continue
			}
		}
		kept = append(kept, bc)
	}
	l.mu.Unlock()
	if len(kept) == 0 {
		return nil
	}
	err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		for _, bc := range kept {
			in, err := getInfo(tx, bc)
			if errors.Is(err, ErrNoTape) {
				continue
			}
			if err != nil {
				return err
			}
			if in.SweepPending {
				in.SweepPending = false
				if err := putInfo(tx, in); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tapes: %w", err)
	}
	return nil
}
