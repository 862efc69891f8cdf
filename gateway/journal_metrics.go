package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// journalCollector exports the same figures of every service's journal
// (docs/metrics.md), labelled by the service's kind and the journal's name.
type journalCollector struct {
	journals []journalSource
}

type journalSource struct {
	kind  string // volume, share, tape
	stats func() uploadbuffer.JournalStats
}

var journalLabels = []string{"kind", "name"}

func journalDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("gatewayd_journal_"+name, help, journalLabels, nil)
}

var (
	descJournalRecords     = journalDesc("appended_records_total", "Records appended to the journal's log (written; durable when a sync covers them).")
	descJournalBytes       = journalDesc("appended_bytes_total", "Bytes of the records appended to the journal's log.")
	descJournalSyncs       = journalDesc("syncs_total", "Syncs of the journal's log (fdatasync) that made records durable: group commits, syncs of records written without one, background syncs of full segments.")
	descJournalUnsynced    = journalDesc("unsynced_groups_total", "Groups of records written to the journal's log without a sync of their own (buffered writes, the records that filled a segment); a later sync makes them durable.")
	descJournalSyncBytes   = journalDesc("sync_bytes", "Bytes each sync of the log made durable (records with their headers).")
	descJournalGroupSize   = journalDesc("group_commit_records", "Records each sync of the log made durable.")
	descJournalPending     = journalDesc("pending_bytes", "Bytes of log on disk: the segments holding records not all trimmed.")
	descJournalCapacity    = journalDesc("capacity_bytes", "The log's configured size.")
	descJournalWaits       = journalDesc("append_waits_total", "Appends that waited for space in a full log (backpressure).")
	descJournalQueued      = journalDesc("uploads_queued", "Units (chunks, files, tapes) waiting for an upload worker.")
	descJournalInFlight    = journalDesc("uploads_in_flight", "Units uploading now.")
	descJournalUploads     = journalDesc("uploads_total", "Uploads of units, attempted.")
	descJournalUploadErrs  = journalDesc("upload_errors_total", "Uploads of units that failed and will be retried.")
	descJournalUploadBytes = journalDesc("uploaded_bytes_total", "Bytes the journal's uploads sent to the object store.")
	descJournalYields      = journalDesc("upload_yields_total", "Waits of background uploads for the writes committing before them.")
	descJournalTrims       = journalDesc("trims_total", "Trims that moved the log's trim point.")
	descJournalTrimmed     = journalDesc("trimmed_records_total", "Records released by trims: their changes are in the object store.")
	descJournalReplayed    = journalDesc("replayed_records_total", "Records replayed from the log at start.")
)

func (c journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJournalRecords, descJournalBytes, descJournalSyncs, descJournalUnsynced, descJournalSyncBytes,
		descJournalGroupSize, descJournalPending, descJournalCapacity, descJournalWaits, descJournalQueued, descJournalInFlight,
		descJournalUploads, descJournalUploadErrs, descJournalUploadBytes, descJournalYields, descJournalTrims,
		descJournalTrimmed, descJournalReplayed} {
		ch <- d
	}
}

func (c journalCollector) Collect(ch chan<- prometheus.Metric) {
	for _, src := range c.journals {
		st := src.stats()
		lv := []string{src.kind, st.Name}
		num := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
			ch <- prometheus.MustNewConstMetric(d, t, v, lv...)
		}
		num(descJournalRecords, prometheus.CounterValue, float64(st.Log.Appends))
		num(descJournalBytes, prometheus.CounterValue, float64(st.Log.Bytes))
		num(descJournalSyncs, prometheus.CounterValue, float64(st.Log.Syncs))
		num(descJournalUnsynced, prometheus.CounterValue, float64(st.Log.Unsynced))
		ch <- syncHistogram(descJournalSyncBytes, st.Log.SyncBytes, uploadbuffer.SyncBytesBound, float64(st.Log.SyncedBytes), lv)
		ch <- syncHistogram(descJournalGroupSize, st.Log.SyncRecords, uploadbuffer.SyncRecordsBound, float64(st.Log.Appends), lv)
		num(descJournalPending, prometheus.GaugeValue, float64(st.LogUsed))
		num(descJournalCapacity, prometheus.GaugeValue, float64(st.LogCapacity))
		num(descJournalWaits, prometheus.CounterValue, float64(st.Log.Waits))
		num(descJournalQueued, prometheus.GaugeValue, float64(st.Queued))
		num(descJournalInFlight, prometheus.GaugeValue, float64(st.Running))
		num(descJournalUploads, prometheus.CounterValue, float64(st.Uploads))
		num(descJournalUploadErrs, prometheus.CounterValue, float64(st.UploadErrors))
		num(descJournalUploadBytes, prometheus.CounterValue, float64(st.UploadedBytes))
		num(descJournalYields, prometheus.CounterValue, float64(st.Yields))
		num(descJournalTrims, prometheus.CounterValue, float64(st.Log.Trims))
		num(descJournalTrimmed, prometheus.CounterValue, float64(st.Log.TrimmedRecords))
		num(descJournalReplayed, prometheus.CounterValue, float64(st.Log.Replayed))
	}
}

// syncHistogram is a histogram of the log's group commits from its
// buckets (the last one unbounded).
func syncHistogram(d *prometheus.Desc, counts [uploadbuffer.SyncBuckets]uint64, bound func(int) int64, sum float64, lv []string) prometheus.Metric {
	buckets := map[float64]uint64{}
	var n uint64
	for i, c := range counts {
		n += c
		if i < len(counts)-1 {
			buckets[float64(bound(i))] = n
		}
	}
	return prometheus.MustNewConstHistogram(d, n, sum, buckets, lv...)
}
