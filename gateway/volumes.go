package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/volume"
)

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
