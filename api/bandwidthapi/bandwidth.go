// Package bandwidthapi holds the object store's bandwidth limits as the
// admin API sets them: the base limits, the weekly schedule that overrides
// them in its windows (kept in meta), the loop that applies them to the
// store's limiter, and the /v1/bandwidth endpoints.
package bandwidthapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore/limiter"
)

// Bandwidth is the object store's bandwidth limits in bytes per second;
// 0 means unlimited.
type Bandwidth struct {
	UploadBytesPerSec   int64 `json:"upload_bytes_per_sec"`
	DownloadBytesPerSec int64 `json:"download_bytes_per_sec"`
}

// BandwidthStatus is what GET /v1/bandwidth says: the base limits, and
// the limits in force now (a schedule window's, or the base).
type BandwidthStatus struct {
	Bandwidth           // base limits
	Effective Bandwidth `json:"effective"`
	Window    int       `json:"window,omitempty"` // 1-based schedule window in force; 0: none
}

// Control changes the limiter's limits at runtime: the base
// limits, and the schedule that overrides them in its windows.
type Control struct {
	mu       sync.Mutex
	cur      Bandwidth // base
	schedule BandwidthSchedule
	applied  Bandwidth // what the limiter has
	window   int
	lim      *limiter.Limiter
	md       meta.Store
	now      func() time.Time
}

// New returns the control of lim, with base as the limits outside every
// schedule window and the schedule kept in md. Nothing is applied before
// Run or a change through the API.
func New(ctx context.Context, lim *limiter.Limiter, md meta.Store, now func() time.Time, base Bandwidth) (*Control, error) {
	s, err := loadBandwidthSchedule(ctx, md)
	if err != nil {
		return nil, fmt.Errorf("bandwidth schedule: %w", err)
	}
	return &Control{lim: lim, md: md, now: now, window: -1, cur: base, schedule: s}, nil
}

func (b *Control) set(bw Bandwidth) {
	b.mu.Lock()
	b.cur = bw
	b.window = -1 // force apply
	b.mu.Unlock()
	b.apply(b.now(), nil)
}

func (b *Control) get() BandwidthStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BandwidthStatus{Bandwidth: b.cur, Effective: b.applied, Window: max(b.window, 0)}
}

func (b *Control) setSchedule(ctx context.Context, s BandwidthSchedule) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := saveBandwidthSchedule(ctx, b.md, s); err != nil {
		return err
	}
	b.mu.Lock()
	b.schedule = s
	b.window = -1
	b.mu.Unlock()
	b.apply(b.now(), nil)
	return nil
}

// Register adds GET and PUT /v1/bandwidth (the base limits)
// and /v1/bandwidth/schedule. Changes apply at once to transfers in
// flight. Base limits set here last until the daemon restarts (the config
// file holds the limits it starts with); the schedule is kept in meta.
func Register(srv *admin.Server, b *Control) {
	srv.Handle("GET /v1/bandwidth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, b.get())
	}))
	srv.Handle("PUT /v1/bandwidth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var bw Bandwidth
		if err := admin.DecodeBody(r, &bw); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if bw.UploadBytesPerSec < 0 || bw.DownloadBytesPerSec < 0 {
			admin.WriteError(w, http.StatusBadRequest, errNegativeLimit)
			return
		}
		b.set(bw)
		admin.WriteJSON(w, http.StatusOK, b.get())
	}))
	srv.Handle("GET /v1/bandwidth/schedule", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		s := b.schedule
		b.mu.Unlock()
		if s.Windows == nil {
			s.Windows = []Window{}
		}
		admin.WriteJSON(w, http.StatusOK, s)
	}))
	srv.Handle("PUT /v1/bandwidth/schedule", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s BandwidthSchedule
		if err := admin.DecodeBody(r, &s); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := b.setSchedule(r.Context(), s); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, b.get())
	}))
}

var errNegativeLimit = errors.New("bandwidth limits must not be negative (0 means unlimited)")
