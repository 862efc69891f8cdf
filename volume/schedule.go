package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
)

// Schedule takes a snapshot of a volume every Every and keeps the newest
// Keep snapshots it took (snapshots taken by hand are never pruned).
type Schedule struct {
	VolumeID   string    `json:"volume_id"`
	VolumeName string    `json:"volume_name"`
	Every      Duration  `json:"every"`
	Keep       int       `json:"keep"`
	Lock       Duration  `json:"lock,omitempty"`    // each snapshot's lock period (Object Lock)
	Since      time.Time `json:"since"`             // when the schedule was set
	LastRun    time.Time `json:"last_run,omitzero"` // when it last took a snapshot
	LastError  string    `json:"last_error,omitempty"`
	NextRun    time.Time `json:"next_run,omitzero"`
}

// Duration is a time.Duration written as "1h0m0s" in JSON.
type Duration time.Duration

// MarshalText writes the duration as Go formats it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "90m", "1h", ...
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// MinScheduleInterval is the shortest schedule interval accepted.
const MinScheduleInterval = time.Minute

func schedKey(volumeID string) []byte { return []byte("sched/" + volumeID) }

func (s Schedule) tag() string { return "every " + time.Duration(s.Every).String() }

// SetSchedule sets (or replaces) a volume's snapshot schedule.
func (m *Manager) SetSchedule(ctx context.Context, nameOrID string, every time.Duration, keep int) (Schedule, error) {
	return m.SetLockedSchedule(ctx, nameOrID, every, keep, 0)
}

// SetLockedSchedule sets a schedule whose snapshots are each locked for
// lock (0: not locked). Pruning leaves a locked snapshot until its lock
// ends.
func (m *Manager) SetLockedSchedule(ctx context.Context, nameOrID string, every time.Duration, keep int, lock time.Duration) (Schedule, error) {
	if err := m.checkLock(lock); err != nil {
		return Schedule{}, err
	}
	v, err := m.Get(nameOrID)
	if err != nil {
		return Schedule{}, err
	}
	if every < MinScheduleInterval {
		return Schedule{}, errkind.Mark(errkind.Permanent, fmt.Errorf("schedule interval %s: at least %s", every, MinScheduleInterval))
	}
	if keep < 1 || keep > 10000 {
		return Schedule{}, errkind.Mark(errkind.Permanent, fmt.Errorf("keep %d: from 1 to 10000 snapshots", keep))
	}
	info := v.Info()
	s := Schedule{VolumeID: info.ID, VolumeName: info.Name, Every: Duration(every), Keep: keep, Lock: Duration(lock), Since: m.opts.Clock.Now().UTC()}
	return s, m.putSchedule(ctx, s)
}

func (m *Manager) putSchedule(ctx context.Context, s Schedule) error {
	s.NextRun = time.Time{}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set(schedKey(s.VolumeID), b) })
}

// RemoveSchedule stops a volume's schedule; the snapshots it took stay.
func (m *Manager) RemoveSchedule(ctx context.Context, nameOrID string) error {
	v, err := m.Get(nameOrID)
	if err != nil {
		return err
	}
	return m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete(schedKey(v.info.ID)) })
}

// Schedules lists the snapshot schedules with their next run.
func (m *Manager) Schedules(ctx context.Context) ([]Schedule, error) {
	var out []Schedule
	err := m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate([]byte("sched/"), func(_, val []byte) error {
			var s Schedule
			if err := json.Unmarshal(val, &s); err != nil {
				return errkind.Mark(errkind.Corrupt, fmt.Errorf("snapshot schedule: %w", err))
			}
			s.NextRun = s.next()
			out = append(out, s)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].VolumeName < out[j].VolumeName })
	return out, err
}

func (s Schedule) next() time.Time {
	last := s.LastRun
	if last.IsZero() {
		last = s.Since
	}
	return last.Add(time.Duration(s.Every))
}

// RunSchedules takes the snapshots that are due and prunes what each
// schedule no longer keeps. The manager runs it every few seconds of its
// clock; tests call it after moving a fake clock.
func (m *Manager) RunSchedules(ctx context.Context) error {
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	all, err := m.Schedules(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range all {
		now := m.opts.Clock.Now().UTC()
		if now.Before(s.NextRun) {
			continue
		}
		if _, err := m.Get(s.VolumeID); errors.Is(err, ErrNotFound) {
			// The volume is gone; so is its schedule.
			_ = m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete(schedKey(s.VolumeID)) })
			continue
		}
		_, err := m.CreateSnapshot(ctx, s.VolumeID, SnapshotOptions{Schedule: s.tag(), Lock: time.Duration(s.Lock)})
		s.LastRun, s.LastError = now, ""
		if err == nil {
			err = m.prune(ctx, s)
		}
		if err != nil {
			s.LastError = err.Error()
			errs = append(errs, fmt.Errorf("volume %s: scheduled snapshot: %w", s.VolumeName, err))
		}
		if err := m.putSchedule(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// prune deletes the oldest snapshots a schedule took beyond its Keep; a
// locked one stays until its lock ends (a later run deletes it).
func (m *Manager) prune(ctx context.Context, s Schedule) error {
	snaps, err := m.Snapshots(ctx, s.VolumeID)
	if err != nil {
		return err
	}
	var taken []SnapshotInfo
	for _, si := range snaps {
		if si.Schedule != "" {
			taken = append(taken, si)
		}
	}
	now := m.opts.Clock.Now()
	for _, si := range taken[:max(len(taken)-s.Keep, 0)] {
		if si.Lock != nil && si.Lock.Holds(now) {
			continue
		}
		if err := m.DeleteSnapshot(ctx, si.ID); err != nil {
			return err
		}
	}
	return nil
}

// housekeeping runs, from the uploader's loop, the snapshot schedules
// and, every GCInterval, garbage collection.
func (m *Manager) housekeeping(ctx context.Context) {
	now := m.opts.Clock.Now()
	if now.Sub(m.lastSchedules) >= 10*time.Second {
		m.lastSchedules = now
		if err := m.RunSchedules(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("snapshot schedules", "err", err)
		}
	}
	if m.lastGC.IsZero() {
		m.lastGC = now
	}
	if m.opts.GCInterval > 0 && now.Sub(m.lastGC) >= m.opts.GCInterval {
		m.lastGC = now
		if _, err := m.CollectGarbage(ctx, m.opts.GCGrace, false); err != nil && ctx.Err() == nil {
			m.log.Warn("garbage collection", "err", err)
		}
	}
}
