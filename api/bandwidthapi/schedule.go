package bandwidthapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/meta"
)

// A bandwidth schedule sets the store's limits by day of week and time of
// day: the first window that covers the moment wins, and outside every
// window the base limits (from the config file or `bandwidth set`) apply.
// Windows are in the gateway's local time; one may cross midnight
// (22:00-06:00), which then belongs to the day it starts on.

// Window is one span of the week with its limits.
type Window struct {
	// Days are "mon".."sun"; empty means every day.
	Days  []string `json:"days,omitempty"`
	Start string   `json:"start"` // "HH:MM"
	End   string   `json:"end"`   // "HH:MM" or "24:00"; before Start: crosses midnight
	Bandwidth
}

// BandwidthSchedule is the windows, in order of precedence.
type BandwidthSchedule struct {
	Windows []Window `json:"windows"`
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func parseHHMM(s string) (int, error) {
	if s == "24:00" { // the end of the day
		return 24 * 60, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Validate checks every window.
func (s BandwidthSchedule) Validate() error {
	for i, w := range s.Windows {
		for _, d := range w.Days {
			if _, ok := weekdays[strings.ToLower(d)]; !ok {
				return fmt.Errorf("window %d: day %q: want mon, tue, wed, thu, fri, sat or sun", i+1, d)
			}
		}
		start, err := parseHHMM(w.Start)
		if err != nil {
			return fmt.Errorf("window %d: %w", i+1, err)
		}
		end, err := parseHHMM(w.End)
		if err != nil {
			return fmt.Errorf("window %d: %w", i+1, err)
		}
		if start == end {
			return fmt.Errorf("window %d: starts and ends at %s", i+1, w.Start)
		}
		if w.UploadBytesPerSec < 0 || w.DownloadBytesPerSec < 0 {
			return fmt.Errorf("window %d: %w", i+1, errNegativeLimit)
		}
	}
	return nil
}

// covers says whether w covers t (t in the gateway's time zone).
func (w Window) covers(t time.Time) bool {
	start, err1 := parseHHMM(w.Start)
	end, err2 := parseHHMM(w.End)
	if err1 != nil || err2 != nil {
		return false
	}
	minute := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if end < start { // crosses midnight: after start today, or before end on the next day
		if minute >= start {
			return w.onDay(day)
		}
		if minute < end {
			return w.onDay((day + 6) % 7)
		}
		return false
	}
	return minute >= start && minute < end && w.onDay(day)
}

func (w Window) onDay(d time.Weekday) bool {
	if len(w.Days) == 0 {
		return true
	}
	for _, s := range w.Days {
		if weekdays[strings.ToLower(s)] == d {
			return true
		}
	}
	return false
}

// Effective returns the limits at t: the first covering window's, else base.
func (s BandwidthSchedule) Effective(t time.Time, base Bandwidth) (Bandwidth, int) {
	for i, w := range s.Windows {
		if w.covers(t) {
			return w.Bandwidth, i + 1
		}
	}
	return base, 0
}

var bwScheduleKey = []byte("bandwidth/schedule")

func loadBandwidthSchedule(ctx context.Context, md meta.Store) (BandwidthSchedule, error) {
	var s BandwidthSchedule
	err := md.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get(bwScheduleKey)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &s)
	})
	if errors.Is(err, meta.ErrNotFound) {
		err = nil
	}
	return s, err
}

func saveBandwidthSchedule(ctx context.Context, md meta.Store, s BandwidthSchedule) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return md.Update(ctx, func(tx meta.Txn) error { return tx.Set(bwScheduleKey, b) })
}

// Run applies the schedule's limits whenever they change,
// looking every 15 seconds of clk, until ctx ends.
func (b *Control) Run(ctx context.Context, clk clock.Clock, loc *time.Location, log *slog.Logger) {
	for {
		b.apply(clk.Now().In(loc), log)
		if clock.Sleep(ctx, clk, 15*time.Second) != nil {
			return
		}
	}
}

// apply sets the limits the schedule calls for at t.
func (b *Control) apply(t time.Time, log *slog.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	eff, window := b.schedule.Effective(t, b.cur)
	if eff == b.applied && window == b.window {
		return
	}
	b.lim.SetUploadLimit(eff.UploadBytesPerSec)
	b.lim.SetDownloadLimit(eff.DownloadBytesPerSec)
	b.applied, b.window = eff, window
	if log != nil {
		log.Info("bandwidth limits", "upload_bytes_per_sec", eff.UploadBytesPerSec, "download_bytes_per_sec", eff.DownloadBytesPerSec, "window", window)
	}
}
