package bandwidthapi

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/limiter"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

func TestBandwidthScheduleWindows(t *testing.T) {
	s := BandwidthSchedule{Windows: []Window{
		{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "08:00", End: "18:00", Bandwidth: Bandwidth{UploadBytesPerSec: 1 << 20}},
		{Start: "22:00", End: "06:00", Bandwidth: Bandwidth{UploadBytesPerSec: 100 << 20, DownloadBytesPerSec: 7}},
		{Days: []string{"sun"}, Start: "12:00", End: "24:00"},
	}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	base := Bandwidth{UploadBytesPerSec: 5 << 20}
	for _, c := range []struct {
		at     string
		window int
	}{
		{"2026-11-23 09:00", 1}, // Monday
		{"2026-11-23 07:59", 0},
		{"2026-11-23 18:00", 0},
		{"2026-11-28 09:00", 0}, // Saturday
		{"2026-11-28 23:30", 2},
		{"2026-11-29 05:59", 2}, // Sunday morning: Saturday's night window
		{"2026-11-29 06:00", 0},
		{"2026-11-29 13:00", 3},
		{"2026-11-29 23:59", 2}, // the nightly window comes first
	} {
		at, err := time.Parse("2006-01-02 15:04", c.at)
		if err != nil {
			t.Fatal(err)
		}
		if _, w := s.Effective(at, base); w != c.window {
			t.Errorf("at %s: window %d, want %d", c.at, w, c.window)
		}
	}
	for _, bad := range []Window{{Start: "8:00x", End: "09:00"}, {Start: "08:00", End: "08:00"}, {Days: []string{"someday"}, Start: "01:00", End: "02:00"},
		{Start: "01:00", End: "02:00", Bandwidth: Bandwidth{UploadBytesPerSec: -1}}} {
		if err := (BandwidthSchedule{Windows: []Window{bad}}).Validate(); err == nil {
			t.Errorf("window %+v accepted", bad)
		}
	}
}

// The limiter's limits follow the schedule as the (fake) clock moves, and
// the schedule survives a restart through meta.
func TestBandwidthScheduleFollowsClock(t *testing.T) {
	start := time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC) // Monday 07:00
	clk := clock.NewFake(start)
	lim := limiter.New(mem.New("bw"), limiter.Options{Clock: clk})
	md := metamem.New()
	b := &Control{lim: lim, md: md, now: clk.Now, window: -1, cur: Bandwidth{UploadBytesPerSec: 5 << 20}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, clk, time.UTC, nil) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("gave up waiting for %s (upload limit %d, status %+v)", what, lim.UploadLimit(), b.get())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("the base limit", func() bool { return lim.UploadLimit() == 5<<20 })
	s := BandwidthSchedule{Windows: []Window{{Days: []string{"mon"}, Start: "08:00", End: "09:00", Bandwidth: Bandwidth{UploadBytesPerSec: 1 << 20, DownloadBytesPerSec: 2 << 20}}}}
	if err := b.setSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	if lim.UploadLimit() != 5<<20 {
		t.Fatal("a window not yet open changed the limit")
	}
	// Into the window: within one schedule tick the limiter follows.
	for clk.Now().Before(start.Add(time.Hour + 30*time.Second)) {
		waitFor("the schedule loop to sleep", func() bool { return clk.Waiters() > 0 })
		clk.Advance(15 * time.Second)
	}
	waitFor("the window's limits", func() bool { return lim.UploadLimit() == 1<<20 && lim.DownloadLimit() == 2<<20 })
	if st := b.get(); st.Window != 1 || st.Effective.UploadBytesPerSec != 1<<20 || st.UploadBytesPerSec != 5<<20 {
		t.Fatalf("status in the window: %+v", st)
	}
	// Out of it again.
	for clk.Now().Before(start.Add(2*time.Hour + 30*time.Second)) {
		waitFor("the schedule loop to sleep", func() bool { return clk.Waiters() > 0 })
		clk.Advance(15 * time.Second)
	}
	waitFor("the base limits back", func() bool { return lim.UploadLimit() == 5<<20 && lim.DownloadLimit() == 0 })
	cancel()
	<-done
	got, err := loadBandwidthSchedule(context.Background(), md)
	if err != nil || len(got.Windows) != 1 || got.Windows[0].Start != "08:00" {
		t.Fatalf("schedule read back from meta: %+v %v", got, err)
	}
}

// countingStore counts the bytes of completed puts.
type countingStore struct {
	objstore.Store
	put atomic.Int64
}

func (s *countingStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := s.Store.Put(ctx, key, r, size)
	if err == nil {
		s.put.Add(size)
	}
	return err
}

// The bytes actually uploaded follow the schedule: an upload running
// without pause across a window moves at the base rate before it, at the
// window's rate inside it and at the base rate after it, all on one fake
// clock shared by the limiter and the schedule loop.
func TestUploadRateFollowsSchedule(t *testing.T) {
	start := time.Date(2026, 11, 23, 7, 59, 0, 0, time.UTC) // Monday 07:59
	clk := clock.NewFake(start)
	inner := &countingStore{Store: mem.New("bw")}
	const baseRate, windowRate = 256 << 10, 64 << 10
	lim := limiter.New(inner, limiter.Options{Clock: clk})
	b := &Control{lim: lim, md: metamem.New(), now: clk.Now, window: -1, cur: Bandwidth{UploadBytesPerSec: baseRate},
		schedule: BandwidthSchedule{Windows: []Window{{Days: []string{"mon"}, Start: "08:00", End: "08:01", Bandwidth: Bandwidth{UploadBytesPerSec: windowRate}}}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.Run(ctx, clk, time.UTC, nil) }()
	go func() { // the uploader: one 16 KiB object after another
		defer wg.Done()
		store := lim.Store()
		obj := make([]byte, 16<<10)
		for i := 0; ctx.Err() == nil; i++ {
			_ = objstore.PutBytes(ctx, store, fmt.Sprintf("o/%d", i), obj)
		}
	}()
	defer wg.Wait()
	defer cancel()

	// Step the clock whenever both the schedule loop and the uploader wait
	// on it, noting the bytes uploaded at each mark.
	marks := []time.Duration{10 * time.Second, 50 * time.Second, // before the window
		80 * time.Second, 110 * time.Second, // in it (after the schedule's 15 s look)
		140 * time.Second, 170 * time.Second} // after it
	at := make([]int64, len(marks))
	deadline := time.Now().Add(2 * time.Minute)
	for next := 0; next < len(marks); {
		for clk.Waiters() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("gave up at %v of fake time: %d waiters", clk.Now().Sub(start), clk.Waiters())
			}
			time.Sleep(20 * time.Microsecond)
		}
		if clk.Now().Sub(start) >= marks[next] {
			at[next] = inner.put.Load()
			next++
			continue
		}
		clk.Advance(50 * time.Millisecond)
	}
	for i, c := range []struct {
		what string
		rate float64
	}{{"before the window", baseRate}, {"in the window", windowRate}, {"after the window", baseRate}} {
		span := (marks[2*i+1] - marks[2*i]).Seconds()
		got := float64(at[2*i+1]-at[2*i]) / span
		if got < 0.9*c.rate || got > 1.1*c.rate {
			t.Errorf("%s: uploaded %.0f bytes/s of fake time, want %.0f", c.what, got, c.rate)
		}
	}
}
