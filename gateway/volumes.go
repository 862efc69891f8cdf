package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/volume"
)

// VolumeStatus is what the admin API says about a volume.
type VolumeStatus struct {
	volume.Info
	Stats volume.Stats `json:"stats"`
	// Gateway-wide figures shown beside the volume's own.
	CacheHitPercent  float64 `json:"cache_hit_percent"`
	UploadBufferUsed int64   `json:"upload_buffer_used"`
}

// CreateVolumeRequest is the body of POST /v1/volumes.
type CreateVolumeRequest struct {
	Name      string      `json:"name"`
	Size      int64       `json:"size"`
	Kind      volume.Kind `json:"kind"`
	ChunkSize int         `json:"chunk_size,omitempty"`
	Disk      string      `json:"disk,omitempty"`
	// FromSnapshot restores the new volume from a snapshot (Size 0: the
	// snapshot's size).
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// ISCSI sets the volume's iSCSI access control (CHAP, allowed initiators).
	ISCSI *ISCSIAccess `json:"iscsi,omitempty"`
	// WriteCache turns the volume's write cache on (volume.Info.WriteCache).
	WriteCache bool `json:"write_cache,omitempty"`
}

// UpdateVolumeRequest is the body of PATCH /v1/volumes/{name}: the
// settings to change (nil: unchanged).
type UpdateVolumeRequest struct {
	WriteCache *bool `json:"write_cache,omitempty"`
}

// GrowVolumeRequest is the body of POST /v1/volumes/{name}/grow.
type GrowVolumeRequest struct {
	Size int64 `json:"size"`
}

func statusOf(ctx context.Context, vm *volume.Manager, v *volume.Volume) VolumeStatus {
	st := vm.Stats()
	return VolumeStatus{
		Info: v.Info(), Stats: v.Stats(ctx),
		CacheHitPercent:  st.Cache.HitPercent(),
		UploadBufferUsed: st.LogUsed,
	}
}

// registerVolumeAPI adds the /v1/volumes endpoints. iscsiFE is nil when
// the iSCSI frontend is off.
func registerVolumeAPI(srv *admin.Server, vm *volume.Manager, iscsiFE *iscsiFrontend) {
	srv.Handle("GET /v1/volumes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := []VolumeStatus{}
		for _, v := range vm.List() {
			out = append(out, statusOf(r.Context(), vm, v))
		}
		admin.WriteJSON(w, http.StatusOK, out)
	}))
	srv.Handle("POST /v1/volumes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CreateVolumeRequest
		if err := decodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if req.ISCSI != nil {
			if err := req.ISCSI.Validate(); err != nil {
				admin.WriteError(w, http.StatusBadRequest, err)
				return
			}
			if iscsiFE == nil {
				admin.WriteError(w, http.StatusBadRequest, errors.New("iSCSI settings given but the iSCSI frontend is off (iscsi.listen is empty)"))
				return
			}
		}
		if iscsiFE != nil {
			if err := iscsiFE.checkName(req.Name); err != nil {
				admin.WriteError(w, http.StatusConflict, err)
				return
			}
		}
		info, err := vm.Create(r.Context(), volume.CreateOptions{Name: req.Name, Size: req.Size, Kind: req.Kind, ChunkSize: req.ChunkSize, Disk: req.Disk, FromSnapshot: req.FromSnapshot, WriteCache: req.WriteCache})
		if err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		if iscsiFE != nil {
			err := func() error {
				if req.ISCSI != nil {
					if err := iscsiFE.setAccess(r.Context(), info.ID, *req.ISCSI); err != nil {
						return err
					}
				}
				v, err := vm.Get(info.ID)
				if err != nil {
					return err
				}
				return iscsiFE.serve(r.Context(), v)
			}()
			if err != nil {
				// Without its access settings the volume must not be
				// served: undo the create.
				if derr := vm.Delete(r.Context(), info.ID); derr != nil {
					err = fmt.Errorf("%w (and removing the half-created volume failed: %v)", err, derr)
				}
				admin.WriteError(w, httpCode(err), err)
				return
			}
		}
		admin.WriteJSON(w, http.StatusCreated, VolumeStatus{Info: info})
	}))
	srv.Handle("GET /v1/volumes/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, statusOf(r.Context(), vm, v))
	}))
	srv.Handle("PATCH /v1/volumes/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req UpdateVolumeRequest
		if err := decodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if req.WriteCache == nil {
			admin.WriteError(w, http.StatusBadRequest, errors.New("no setting to change (write_cache)"))
			return
		}
		info, err := vm.SetWriteCache(r.Context(), r.PathValue("name"), *req.WriteCache)
		if info.ID != "" && iscsiFE != nil {
			// The setting is stored, even if the flush after it failed:
			// initiators learn of it either way.
			iscsiFE.writeCacheChanged(info)
		}
		if err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		v, err := vm.Get(info.ID)
		if err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, statusOf(r.Context(), vm, v))
	}))
	srv.Handle("DELETE /v1/volumes/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		info := v.Info()
		if iscsiFE != nil {
			if n := iscsiFE.sessionsOf(info); len(n) > 0 && r.URL.Query().Get("force") != "1" {
				admin.WriteError(w, http.StatusConflict, fmt.Errorf("volume %s is in use by %d iSCSI session(s) (initiator %s); log them out first or delete with --force", info.Name, len(n), n[0]))
				return
			}
			iscsiFE.srv.RemoveTarget(TargetName(iscsiFE.prefix, info.Name))
		}
		if err := vm.Delete(r.Context(), info.ID); err != nil {
			if iscsiFE != nil {
				iscsiFE.serve(r.Context(), v)
			}
			admin.WriteError(w, httpCode(err), err)
			return
		}
		if iscsiFE != nil {
			iscsiFE.removed(r.Context(), info)
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("name")})
	}))
	srv.Handle("POST /v1/volumes/{name}/grow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req GrowVolumeRequest
		if err := decodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := vm.Grow(r.Context(), r.PathValue("name"), req.Size); err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, httpCode(err), err)
			return
		}
		if iscsiFE != nil {
			iscsiFE.grown(v.Info())
		}
		admin.WriteJSON(w, http.StatusOK, statusOf(r.Context(), vm, v))
	}))
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

func httpCode(err error) int {
	switch {
	case errors.Is(err, volume.ErrExists), errors.Is(err, volume.ErrDiskInUse):
		return http.StatusConflict
	case errkind.IsNotFound(err):
		return http.StatusNotFound
	case errkind.IsRetryable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// volumeCollector exports the data-path figures under the names of the
// AWS Storage Gateway metrics they correspond to (docs/metrics.md).
type volumeCollector struct{ vm *volume.Manager }

var (
	descCachePercentUsed   = prometheus.NewDesc("gatewayd_cache_percent_used", "CachePercentUsed: cache space used, percent of its size.", nil, nil)
	descCachePercentDirty  = prometheus.NewDesc("gatewayd_cache_percent_dirty", "CachePercentDirty: cache space holding data not yet uploaded, percent.", nil, nil)
	descCacheHitPercent    = prometheus.NewDesc("gatewayd_cache_hit_percent", "CacheHitPercent: reads served from the cache, percent since start.", nil, nil)
	descUploadBufferUsed   = prometheus.NewDesc("gatewayd_upload_buffer_percent_used", "UploadBufferPercentUsed: upload buffer used, percent of its size.", nil, nil)
	descCloudBytesUp       = prometheus.NewDesc("gatewayd_cloud_bytes_uploaded_total", "CloudBytesUploaded: bytes uploaded to the object store.", nil, nil)
	descCloudBytesDown     = prometheus.NewDesc("gatewayd_cloud_bytes_downloaded_total", "CloudBytesDownloaded: bytes downloaded from the object store.", nil, nil)
	descQueuedWrites       = prometheus.NewDesc("gatewayd_volume_queued_write_bytes", "QueuedWrites: bytes of a volume written but not yet uploaded.", []string{"volume"}, nil)
	descUploadErrors       = prometheus.NewDesc("gatewayd_upload_errors_total", "Chunk uploads that failed and will be retried.", nil, nil)
	descChunksUp           = prometheus.NewDesc("gatewayd_volume_chunks_uploaded_total", "Whole chunks put to the object store.", nil, nil)
	descPatchesUp          = prometheus.NewDesc("gatewayd_volume_patches_uploaded_total", "Patches put to the object store instead of whole chunks (small changes).", nil, nil)
	descCompactions        = prometheus.NewDesc("gatewayd_volume_compactions_total", "Patched chunks uploaded whole by snapshots and recovery points.", nil, nil)
	descTimeSinceRP        = prometheus.NewDesc("gatewayd_volume_time_since_last_recovery_point_seconds", "TimeSinceLastRecoveryPoint: seconds since the volume's data was last recorded in the object store.", []string{"volume"}, nil)
	descVolumeLastUploadTS = prometheus.NewDesc("gatewayd_volume_last_upload_timestamp_seconds", "When a chunk of the volume was last uploaded.", []string{"volume"}, nil)
	descHydrationLeft      = prometheus.NewDesc("gatewayd_volume_hydration_chunks_remaining", "Chunks of a restored stored volume not yet copied onto its disk.", []string{"volume"}, nil)
	descSnapshots          = prometheus.NewDesc("gatewayd_volume_snapshots", "Snapshots of the volume in the catalog.", []string{"volume"}, nil)
	descTimeSinceSnapshot  = prometheus.NewDesc("gatewayd_volume_time_since_last_snapshot_seconds", "Seconds since the volume's newest snapshot was taken.", []string{"volume"}, nil)
	descCacheUsedBytes     = prometheus.NewDesc("gatewayd_cache_used_bytes", "CacheUsed: bytes of the cache in use.", nil, nil)
	descCacheFreeBytes     = prometheus.NewDesc("gatewayd_cache_free_bytes", "CacheFree: bytes of the cache not in use.", nil, nil)
	descBufferUsedBytes    = prometheus.NewDesc("gatewayd_upload_buffer_used_bytes", "UploadBufferUsed: bytes of the upload buffer in use.", nil, nil)
	descBufferFreeBytes    = prometheus.NewDesc("gatewayd_upload_buffer_free_bytes", "UploadBufferFree: bytes of the upload buffer not in use.", nil, nil)
	descWriteBytes         = prometheus.NewDesc("gatewayd_write_bytes_total", "WriteBytes: bytes written to volumes by their initiators.", nil, nil)
)

func (c volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCachePercentUsed, descCachePercentDirty, descCacheHitPercent, descUploadBufferUsed,
		descCloudBytesUp, descCloudBytesDown, descQueuedWrites, descUploadErrors, descVolumeLastUploadTS, descTimeSinceRP,
		descHydrationLeft, descSnapshots, descTimeSinceSnapshot, descCacheUsedBytes, descCacheFreeBytes, descBufferUsedBytes,
		descBufferFreeBytes, descWriteBytes, descChunksUp, descPatchesUp, descCompactions} {
		ch <- d
	}
}

func percent(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * part / whole
}

func (c volumeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.vm.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descCachePercentUsed, percent(float64(st.Cache.Used), float64(st.Cache.Capacity)))
	gauge(descCachePercentDirty, percent(float64(st.Cache.Dirty), float64(st.Cache.Capacity)))
	gauge(descCacheHitPercent, st.Cache.HitPercent())
	gauge(descUploadBufferUsed, percent(float64(st.LogUsed), float64(st.LogCapacity)))
	gauge(descCacheUsedBytes, float64(st.Cache.Used))
	gauge(descCacheFreeBytes, float64(max(st.Cache.Capacity-st.Cache.Used, 0)))
	gauge(descBufferUsedBytes, float64(st.LogUsed))
	gauge(descBufferFreeBytes, float64(max(st.LogCapacity-st.LogUsed, 0)))
	ch <- prometheus.MustNewConstMetric(descWriteBytes, prometheus.CounterValue, float64(st.BytesWritten))
	ch <- prometheus.MustNewConstMetric(descCloudBytesUp, prometheus.CounterValue, float64(st.BytesUploaded))
	ch <- prometheus.MustNewConstMetric(descCloudBytesDown, prometheus.CounterValue, float64(st.BytesDownloaded))
	ch <- prometheus.MustNewConstMetric(descUploadErrors, prometheus.CounterValue, float64(st.UploadErrors))
	ch <- prometheus.MustNewConstMetric(descChunksUp, prometheus.CounterValue, float64(st.ChunksUploaded))
	ch <- prometheus.MustNewConstMetric(descPatchesUp, prometheus.CounterValue, float64(st.PatchesUploaded))
	ch <- prometheus.MustNewConstMetric(descCompactions, prometheus.CounterValue, float64(st.Compactions))
	for _, v := range c.vm.List() {
		vs := v.Stats(context.Background())
		gauge(descQueuedWrites, float64(vs.DirtyBytes), v.Info().Name)
		if !vs.LastRecoveryPoint.IsZero() {
			gauge(descTimeSinceRP, time.Since(vs.LastRecoveryPoint).Seconds(), v.Info().Name)
		}
		if !vs.LastUpload.IsZero() {
			gauge(descVolumeLastUploadTS, float64(vs.LastUpload.UnixNano())/1e9, v.Info().Name)
		}
		if h := vs.Hydration; h != nil {
			gauge(descHydrationLeft, float64(h.TotalChunks-h.DoneChunks), v.Info().Name)
		}
	}
	// Snapshots per volume, and the age of each volume's newest.
	if snaps, err := c.vm.Snapshots(context.Background(), ""); err == nil {
		count := map[string]int{}
		newest := map[string]time.Time{}
		for _, si := range snaps {
			count[si.VolumeName]++
			if si.Created.After(newest[si.VolumeName]) {
				newest[si.VolumeName] = si.Created
			}
		}
		for name, n := range count {
			gauge(descSnapshots, float64(n), name)
			gauge(descTimeSinceSnapshot, time.Since(newest[name]).Seconds(), name)
		}
	}
}
