package uploadbuffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/clock"
)

// Client is a service that writes through a journal (volumes, file shares,
// tapes). It supplies only what is its own: how a record is applied and how
// a unit goes to the object store.
type Client interface {
	// Apply applies a record. Replay calls it for each record the log
	// still holds after a restart, in log order; Append calls it for a new
	// record when no apply function is given. It pins (Journal.Pin) the
	// records its state still needs.
	Apply(ctx context.Context, lsn LSN, rec []byte) error
	// Pending starts every upload round: it does what must come before the
	// round's uploads and lists the units waiting for upload. With an
	// error, the units it returns are uploaded all the same.
	Pending(ctx context.Context) ([]Unit, error)
	// Upload puts one unit in the object store and, once what the unit
	// holds is there, releases its pins. It returns the bytes it sent.
	Upload(ctx context.Context, u Unit) (int64, error)
}

// Needer is a Client that keeps, in its own state, the oldest record each
// of its units still needs (a chunk's, a file's, a tape's first write not
// yet in the store) instead of holding a Pin for it. The trimming rule asks
// it at every trim, after the pins: a change records what it needs before
// its apply returns and the append's pin goes.
type Needer interface {
	// Needs returns the lowest LSN the client still needs; ok is false
	// when it needs none.
	Needs() (lsn LSN, ok bool)
}

// Unit is one thing a service uploads: a chunk, a file, a tape.
type Unit struct {
	// Key names the unit: the scheduler runs one upload of a key at a
	// time, and a unit asked for again while it waits is uploaded once.
	Key string
	// Changed is when the unit last changed. A background round uploads
	// it once it has gone SettleTime without a change (zero: at once).
	Changed time.Time
	// Ready says part of the unit goes up now, settled or not (a tape's
	// closed segments); Upload sees Settled false then.
	Ready bool
	// Settled is set by the journal: the unit is uploaded whole (its
	// settle time passed, or a flush or pressure asked for everything).
	Settled bool
	// Value is the service's own handle on the unit.
	Value any
}

// JournalOptions configure a Journal's upload scheduler.
type JournalOptions struct {
	// Name is the journal's name in logs ("volumes", "shares", "tapes").
	Name string
	// Interval is how often the background loop runs a round (default 1s).
	Interval time.Duration
	// SettleTime is how long a unit must go unchanged before a background
	// round uploads it (0: at once). A flush, or pressure, ignores it.
	SettleTime time.Duration
	// Parallel is how many units upload at once (default 4).
	Parallel int
	// Pressure, when set, reports pressure besides a log over half full
	// (a cache full of dirty data): rounds then ignore the settle time.
	Pressure func() bool
	// Pace, when set, is called after each upload with the bytes it sent,
	// before that worker takes the next unit: a bandwidth limit's hook.
	Pace func(ctx context.Context, n int64) error
	// AfterRound, when set, runs after each background round in the loop
	// (housekeeping, health).
	AfterRound func(ctx context.Context, r RoundResult)
	Clock      clock.Clock
	Logger     *slog.Logger
}

// RoundResult tells AfterRound how a background round went.
type RoundResult struct {
	Err  error // the round's first error
	Tick bool  // the round ran on the interval, not on a kick
}

// Journal is the one write path of every service: a record is made durable
// in the log (group commit), then applied; the records a service still
// needs are pinned by their LSN; the log is trimmed below the lowest pin;
// after a crash Replay drives the service's Apply; and the scheduler
// uploads the services' units (upload.go).
type Journal struct {
	log  *Log
	c    Client
	opts JournalOptions
	lg   *slog.Logger

	pinMu    sync.Mutex
	pins     map[LSN]int // LSN -> how many pins hold it
	trimMu   sync.Mutex  // one trim at a time
	replayed atomic.Bool // Replay has finished
	// replayAt pins the log at the record Replay is applying; before
	// Replay starts it pins LSN 0, so nothing is trimmed.
	replayAt *Pin

	sched scheduler
}

// NewJournal makes the journal of log for client c. Nothing is trimmed
// until Replay has run; uploads run only in rounds (Flush, Round) until
// Start starts the background loop.
func NewJournal(log *Log, c Client, opts JournalOptions) *Journal {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	j := &Journal{log: log, c: c, opts: opts, lg: opts.Logger, pins: map[LSN]int{}}
	j.replayAt = j.Pin(0)
	j.sched.init(j)
	return j
}

// Log returns the journal's log.
func (j *Journal) Log() *Log { return j.log }

// Append makes rec durable and then applies it with its LSN: apply, or
// the client's Apply when apply is nil. From before the record gets its
// LSN until apply returns, the log is not trimmed past it: apply pins what
// it keeps. An error from apply is returned with the LSN: the record is
// durable and a replay applies it again.
func (j *Journal) Append(ctx context.Context, rec []byte, apply func(LSN) error) (LSN, error) {
	return j.append(ctx, rec, apply, j.log.Append)
}

// AppendBuffered is Append for a write-back cache: it applies rec as soon
// as the log has queued it, without waiting for its sync. The record is
// durable once Sync (or a later Append, whose group commit writes every
// record queued before it) returns; a crash before that may lose it, and
// then also every record queued after it. The log keeps rec until it is
// written: the caller must not change it.
func (j *Journal) AppendBuffered(ctx context.Context, rec []byte, apply func(LSN) error) (LSN, error) {
	return j.append(ctx, rec, apply, j.log.AppendBuffered)
}

// Sync returns once every record appended (or buffered) before it was
// called is durable.
func (j *Journal) Sync(ctx context.Context) error {
	if err := j.log.Flush(ctx); err != nil {
		return fmt.Errorf("upload buffer: %w", err)
	}
	return nil
}

func (j *Journal) append(ctx context.Context, rec []byte, apply func(LSN) error, add func(context.Context, []byte) (LSN, error)) (LSN, error) {
	if j.underPressure() {
		j.Kick() // do not wait for the next interval
	}
	floor := j.log.NextLSN() // the record's LSN is at least this
	j.hold(floor)
	defer j.unhold(floor)
	lsn, err := add(ctx, rec)
	if err != nil {
		return 0, fmt.Errorf("upload buffer: %w", err)
	}
	if apply == nil {
		return lsn, j.c.Apply(ctx, lsn, rec)
	}
	return lsn, apply(lsn)
}

// Pin keeps the log from lsn on: no record at or past lsn is trimmed
// until the pin is released.
type Pin struct {
	j   *Journal
	lsn LSN
	off bool
}

// Pin pins the log from lsn on.
func (j *Journal) Pin(lsn LSN) *Pin {
	j.hold(lsn)
	return &Pin{j: j, lsn: lsn}
}

// LSN is where the pin holds the log from.
func (p *Pin) LSN() LSN { return p.lsn }

// Release releases the pin. Releasing a nil or released pin does nothing.
func (p *Pin) Release() {
	if p == nil {
		return
	}
	p.j.pinMu.Lock()
	off := p.off
	p.off = true
	p.j.pinMu.Unlock()
	if !off {
		p.j.unhold(p.lsn)
	}
}

func (j *Journal) hold(lsn LSN) {
	j.pinMu.Lock()
	j.pins[lsn]++
	j.pinMu.Unlock()
}

func (j *Journal) unhold(lsn LSN) {
	j.pinMu.Lock()
	if j.pins[lsn]--; j.pins[lsn] <= 0 {
		delete(j.pins, lsn)
	}
	j.pinMu.Unlock()
}

// TrimPoint is where the one trimming rule puts the trim point now: below
// every pin (pinned records, appends not yet applied, the record being
// replayed), below what the client needs (Needer) and below every record
// not yet appended. Before Replay has
// started it is 0: nothing may be trimmed.
func (j *Journal) TrimPoint() LSN {
	// The log's end first: a record appended after this read was pinned
	// before it got an LSN, so the pins read next cover it.
	upTo := j.log.NextLSN()
	j.pinMu.Lock()
	for lsn := range j.pins {
		upTo = min(upTo, lsn)
	}
	j.pinMu.Unlock()
	// Then what the client says it needs: a change that released its
	// append's pin before the read above had recorded it already.
	if n, ok := j.c.(Needer); ok {
		if lsn, ok := n.Needs(); ok {
			upTo = min(upTo, lsn)
		}
	}
	return upTo
}

// Trim releases the records no service needs any more (TrimPoint).
func (j *Journal) Trim() {
	j.trimMu.Lock()
	defer j.trimMu.Unlock()
	upTo := j.TrimPoint()
	if upTo == 0 {
		return
	}
	if err := j.log.Trim(upTo); err != nil {
		j.lg.Warn("trim upload buffer", "journal", j.opts.Name, "err", err)
	}
}

// Replay applies every record the log holds, in order, through the
// client's Apply. While a record is applied the log stays pinned at it;
// what Apply keeps, it pins itself. Call it once, before the first Append
// (Start may come before it: uploads then run during the replay).
func (j *Journal) Replay(ctx context.Context) error {
	if j.replayed.Load() {
		return errors.New("uploadbuffer: the journal is replayed once")
	}
	n := 0
	err := j.log.Replay(func(lsn LSN, rec []byte) error {
		// Records below lsn are applied: what they left needing the log,
		// Apply pinned. Trim may pass them, not this one.
		next := j.Pin(lsn)
		j.replayAt.Release()
		j.replayAt = next
		n++
		return j.c.Apply(ctx, lsn, rec)
	})
	if err != nil {
		// The pin stays: nothing from the failed record on may go.
		return fmt.Errorf("replay upload buffer: %w", err)
	}
	j.replayed.Store(true)
	j.replayAt.Release()
	if n > 0 {
		j.lg.Info("replayed upload buffer", "journal", j.opts.Name, "records", n)
	}
	return nil
}

// Replaying says whether Replay has not finished yet.
func (j *Journal) Replaying() bool { return !j.replayed.Load() }

func (j *Journal) underPressure() bool {
	if j.log.Used() > j.log.Capacity()/2 {
		return true
	}
	return j.opts.Pressure != nil && j.opts.Pressure()
}
