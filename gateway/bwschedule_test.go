package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
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
	b := &bandwidthControl{lim: lim, md: md, now: clk.Now, window: -1, cur: Bandwidth{UploadBytesPerSec: 5 << 20}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); b.runSchedule(ctx, clk, time.UTC, nil) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
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
