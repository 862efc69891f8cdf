package uploadbuffer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// seenClient uploads its units at once and tells, for each upload, the
// log's NextLSN when the upload began.
type seenClient struct {
	units []Unit
	log   *Log
	began chan LSN
	gate  chan struct{} // when set, every upload waits for it
}

func (c *seenClient) Apply(context.Context, LSN, []byte) error { return nil }

func (c *seenClient) Pending(context.Context) ([]Unit, error) { return c.units, nil }

func (c *seenClient) Upload(context.Context, Unit) (int64, error) {
	c.began <- c.log.NextLSN()
	if c.gate != nil {
		<-c.gate
	}
	return 1, nil
}

// yieldSetup opens a journal of one unit over a log whose syncs are held
// back, and queues an append that waits in its sync.
func yieldSetup(t *testing.T, opts JournalOptions, yieldMax time.Duration) (*Journal, *seenClient, LSN, func()) {
	t.Helper()
	g := newGatedFS()
	l := open(t, g, "/log", 1<<20, 64<<10)
	c := &seenClient{units: []Unit{{Key: "a"}}, log: l, began: make(chan LSN, 4)}
	opts.Parallel = max(opts.Parallel, 1)
	j := NewJournal(l, c, opts)
	j.sched.yieldMax = yieldMax
	release := g.hold()
	t.Cleanup(func() { release(); j.Close(); l.Close() })
	lsn := appendInSync(t, g, l, []byte("foreground"))
	return j, c, lsn, release
}

func roundDone(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(long):
		t.Fatalf("%s never ended", what)
	}
}

// A background upload waits while an append is committing, and goes once
// the append is durable.
func TestBackgroundUploadYieldsToAppends(t *testing.T) {
	j, c, lsn, release := yieldSetup(t, JournalOptions{}, long)
	done := make(chan error, 1)
	go func() { done <- j.Round(context.Background()) }()
	deadline := time.Now().Add(long)
	for j.log.Stats().Yields == 0 {
		select {
		case next := <-c.began:
			t.Fatalf("a background upload began while an append was committing (NextLSN %d, the append's LSN %d)", next, lsn)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload never yielded")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if next := waitFor(t, "the upload", c.began); next <= lsn {
		t.Fatalf("the upload began before the append was durable (NextLSN %d, append %d)", next, lsn)
	}
	roundDone(t, "the round", done)
	if st := j.Stats(); st.Yields == 0 || st.Uploads != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Uploads are what frees a full buffer: under pressure they do not wait
// for appends, and neither does a flush (a snapshot, a recovery point).
// The appends' sync stays held throughout: an upload that waited for it
// would never end.
func TestUploadsDoNotYieldUnderPressureOrFlush(t *testing.T) {
	j, c, lsn, _ := yieldSetup(t, JournalOptions{Pressure: func() bool { return true }}, long)
	done := make(chan error, 1)
	go func() { done <- j.Round(context.Background()) }()
	roundDone(t, "a round under pressure", done)
	if next := waitFor(t, "the upload under pressure", c.began); next > lsn {
		t.Fatalf("the append was durable: the test did not hold its sync")
	}

	j, c, lsn, _ = yieldSetup(t, JournalOptions{}, long)
	go func() { done <- j.Flush(context.Background(), nil) }()
	roundDone(t, "a flush", done)
	if next := waitFor(t, "the flush's upload", c.began); next > lsn {
		t.Fatalf("the append was durable: the test did not hold its sync")
	}
	if st := j.Stats(); st.Yields != 0 {
		t.Fatalf("a flush yielded: %+v", st)
	}
}

// A background upload's wait is bounded: with appends committing for
// ever, it goes after yieldMax.
func TestBackgroundUploadYieldIsBounded(t *testing.T) {
	j, c, lsn, _ := yieldSetup(t, JournalOptions{}, time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- j.Round(context.Background()) }()
	roundDone(t, "the round", done)
	if next := waitFor(t, "the upload", c.began); next > lsn {
		t.Fatalf("the append was durable: the test did not hold its sync")
	}
	if st := j.Stats(); st.Yields == 0 {
		t.Fatalf("the upload never waited: %+v", st)
	}
}

// While appends go on past a background upload's wait, one background
// upload at a time goes: a second one waits for the first to end.
func TestOneBackgroundUploadWhileAppendsWait(t *testing.T) {
	j, c, _, _ := yieldSetup(t, JournalOptions{Parallel: 2}, time.Millisecond)
	c.units = []Unit{{Key: "a"}, {Key: "b"}}
	c.gate = make(chan struct{})
	var once sync.Once
	openGate := func() { once.Do(func() { close(c.gate) }) }
	t.Cleanup(openGate) // before the journal closes: its workers wait here
	done := make(chan error, 1)
	go func() { done <- j.Round(context.Background()) }()
	waitFor(t, "an upload", c.began) // one of them, held by the gate
	deadline := time.Now().Add(long)
	for j.sched.stats.busyWaits.Load() == 0 {
		select {
		case <-c.began:
			t.Fatal("two background uploads went at once while appends waited")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second upload never waited for the first")
		}
		time.Sleep(time.Millisecond)
	}
	openGate()
	waitFor(t, "the second upload", c.began)
	roundDone(t, "the round", done)
}

// A background upload waiting for the one place goes when pressure comes:
// a full buffer drains with every worker, whatever upload holds the place.
func TestBackgroundUploadWaitEndsUnderPressure(t *testing.T) {
	var pressure atomic.Bool
	j, c, _, _ := yieldSetup(t, JournalOptions{Parallel: 2, Pressure: pressure.Load}, time.Millisecond)
	c.units = []Unit{{Key: "a"}, {Key: "b"}}
	c.gate = make(chan struct{})
	var once sync.Once
	openGate := func() { once.Do(func() { close(c.gate) }) }
	t.Cleanup(openGate)
	done := make(chan error, 1)
	go func() { done <- j.Round(context.Background()) }()
	waitFor(t, "an upload", c.began) // one of them, held by the gate, holding the place
	deadline := time.Now().Add(long)
	for j.sched.stats.busyWaits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second upload never waited for the place")
		}
		time.Sleep(time.Millisecond)
	}
	pressure.Store(true)
	select {
	case <-c.began:
	case <-time.After(long):
		t.Fatal("the waiting upload did not go under pressure")
	}
	openGate()
	roundDone(t, "the round", done)
}
