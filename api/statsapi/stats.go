// Package statsapi serves the gateway-wide data-path figures at GET
// /v1/stats: the cache, the upload buffers and the transfers of volumes and
// file shares together.
package statsapi

import (
	"net/http"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/volume"
)

// GatewayStats is the gateway-wide data-path figures at one moment, served
// at GET /v1/stats: what the web console charts and `gatewayd status`
// summarises. Counters run from the daemon's start; a client gets rates
// from two samples and their Time.
type GatewayStats struct {
	Time  time.Time  `json:"time"`
	Cache CacheStats `json:"cache"`
	// UploadBuffer is the volumes' durable write log; ShareBuffer the
	// file shares'.
	UploadBuffer BufferStats `json:"upload_buffer"`
	ShareBuffer  BufferStats `json:"share_buffer"`
	// BytesUploaded and BytesDownloaded count what went to and came from
	// the object store, volumes' chunks and file shares' files together.
	BytesUploaded   uint64 `json:"bytes_uploaded"`
	BytesDownloaded uint64 `json:"bytes_downloaded"`
	UploadErrors    uint64 `json:"upload_errors"`
	// SharesPending is, per share, the files with writes not yet uploaded.
	SharesPending map[string]int `json:"shares_pending"`
}

// CacheStats is the chunk cache's size, use and hit rate.
type CacheStats struct {
	Capacity   int64   `json:"capacity"`
	Used       int64   `json:"used"`
	Dirty      int64   `json:"dirty"`
	Hits       uint64  `json:"hits"`
	Misses     uint64  `json:"misses"`
	HitPercent float64 `json:"hit_percent"`
}

// BufferStats is an upload buffer's use.
type BufferStats struct {
	Used     int64 `json:"used"`
	Capacity int64 `json:"capacity"`
}

func collect(c clock.Clock, vm *volume.Manager, shares *fileshare.Manager) GatewayStats {
	vs, ss := vm.Stats(), shares.Stats()
	return GatewayStats{
		Time: c.Now().UTC(),
		Cache: CacheStats{Capacity: vs.Cache.Capacity, Used: vs.Cache.Used, Dirty: vs.Cache.Dirty, Hits: vs.Cache.Hits, Misses: vs.Cache.Misses,
			HitPercent: vs.Cache.HitPercent()},
		UploadBuffer:    BufferStats{Used: vs.LogUsed, Capacity: vs.LogCapacity},
		ShareBuffer:     BufferStats{Used: ss.LogUsed, Capacity: ss.LogCapacity},
		BytesUploaded:   vs.BytesUploaded + ss.BytesUploaded,
		BytesDownloaded: vs.BytesDownloaded,
		UploadErrors:    vs.UploadErrors + ss.UploadErrors,
		SharesPending:   ss.Pending,
	}
}

// Register adds GET /v1/stats.
func Register(srv *admin.Server, c clock.Clock, vm *volume.Manager, shares *fileshare.Manager) {
	srv.Handle("GET /v1/stats", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, collect(c, vm, shares))
	}))
}
