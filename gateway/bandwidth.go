package gateway

import (
	"errors"
	"net/http"
	"sync"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/objstore/limiter"
)

// Bandwidth is the object store's bandwidth limits in bytes per second;
// 0 means unlimited.
type Bandwidth struct {
	UploadBytesPerSec   int64 `json:"upload_bytes_per_sec"`
	DownloadBytesPerSec int64 `json:"download_bytes_per_sec"`
}

// bandwidthControl changes the limiter's limits at runtime and remembers
// them for GET.
type bandwidthControl struct {
	mu  sync.Mutex
	cur Bandwidth
	lim *limiter.Limiter
}

func (b *bandwidthControl) set(bw Bandwidth) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lim.SetUploadLimit(bw.UploadBytesPerSec)
	b.lim.SetDownloadLimit(bw.DownloadBytesPerSec)
	b.cur = bw
}

func (b *bandwidthControl) get() Bandwidth {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// registerBandwidthAPI adds GET and PUT /v1/bandwidth. Changes apply at
// once to transfers in flight; they last until the daemon restarts (the
// config file holds the limits it starts with).
func registerBandwidthAPI(srv *admin.Server, b *bandwidthControl) {
	srv.Handle("GET /v1/bandwidth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, b.get())
	}))
	srv.Handle("PUT /v1/bandwidth", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var bw Bandwidth
		if err := decodeBody(r, &bw); err != nil {
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
}

var errNegativeLimit = errors.New("bandwidth limits must not be negative (0 means unlimited)")
