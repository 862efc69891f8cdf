package main

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// TestJournalMetrics reads the gatewayd_journal_ metrics (docs/metrics.md)
// from the real daemon's /metrics for each service that writes through a
// journal: volume writes over iSCSI, a file over NFS and tape records, held
// back by an upload limit; a kill -9 and a restart that replays them; the
// limit lifted so that they go up and the logs are trimmed; and MinIO
// going away so that uploads fail. TestMetricsTable leaves these metrics
// to this test.
func TestJournalMetrics(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "journalmeter")
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://journalmeter/gw"}, minioFlags(srv)...)...)
	setConfig(t, dir, map[string]map[string]any{
		"volumes": {"settle_time": "100ms", "upload_interval": "100ms"},
		"shares":  {"settle_time": "100ms"},
		"store":   {"retry": map[string]any{"max_attempts": 2, "base_delay": "50ms", "max_delay": "100ms"}},
	})
	d := serve(t, dir)
	w := &metricWatch{t: t, dataDir: dir, changed: map[string]bool{}, d: d}
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "v1", "--size", "16M", "--chunk-size", "64K")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "JRN", "--size", "1G")

	kinds := map[string]string{"volume": "volumes", "share": "shares", "tape": "tapes"}
	series := func(metric, kind string) string {
		return fmt.Sprintf(`gatewayd_journal_%s{kind="%s",name="%s"}`, metric, kind, kinds[kind])
	}

	// Held back by an upload limit of 1 KiB/s, the writes stay in the logs.
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "1K")
	ctx := context.Background()
	attach(t, ctx, dir, "v1").write(0, testrand.Bytes(21, 2<<20))
	nfs, unmount := nfsMount(t, nfsAddr(t, dir), "docs")
	for i := range 3 {
		f, err := nfs.OpenFile(fmt.Sprintf("f%d.bin", i), 0o644)
		must(t, err)
		_, err = f.Write(testrand.Bytes(uint64(22+i), 128<<10))
		must(t, err)
		must(t, f.Close())
	}
	unmount()
	changer, drive, logout := library(t, dir)
	slot, err := changer.FirstFull(ctx, 2)
	must(t, err)
	empty, err := changer.FirstEmpty(ctx, 4)
	must(t, err)
	must(t, changer.Move(ctx, slot.Address, empty.Address))
	must(t, drive.Ready(ctx))
	must(t, drive.VariableMode(ctx))
	for i := range 4 {
		must(t, drive.Write(ctx, testrand.Bytes(uint64(30+i), 256<<10)))
	}
	must(t, drive.WriteFilemarks(ctx, 1))
	logout()

	for kind := range kinds {
		w.waitChange(kind+" records appended", series("appended_records_total", kind), above(0))
		w.waitChange(kind+" bytes appended", series("appended_bytes_total", kind), above(0))
		w.waitChange(kind+" syncs", series("syncs_total", kind), above(0))
		w.waitChange(kind+" bytes per sync", series("sync_bytes_count", kind), above(0))
		w.waitChange(kind+" group commits", series("group_commit_records_count", kind), above(0))
		w.waitChange(kind+" log in use", series("pending_bytes", kind), above(0))
		w.waitChange(kind+" log capacity", series("capacity_bytes", kind), above(0))
	}
	// Sums agree with the counters: records per group commit, bytes per sync.
	m := scrape(t, dir)
	for kind := range kinds {
		recs := m[series("appended_records_total", kind)]
		if sum := m[series("group_commit_records_sum", kind)]; sum != recs {
			t.Errorf("%s: group commit records sum %v, appended records %v", kind, sum, recs)
		}
		if sum := m[series("sync_bytes_sum", kind)]; sum < m[series("appended_bytes_total", kind)] {
			t.Errorf("%s: bytes synced %v, fewer than appended %v", kind, sum, m[series("appended_bytes_total", kind)])
		}
	}
	// 32 chunks of 64 KiB waiting, four uploading at 1 KiB/s.
	w.waitChange("volume uploads in flight", series("uploads_in_flight", "volume"), above(0))
	w.waitChange("volume uploads queued", series("uploads_queued", "volume"), above(0))

	// kill -9 and a restart: the records still in the logs are replayed.
	must(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	d = serve(t, dir)
	w.d = d
	for kind := range kinds {
		w.waitChange(kind+" records replayed", series("replayed_records_total", kind), above(0))
	}

	// The limit lifted: everything goes up and the logs are trimmed.
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "0")
	// The tape, replayed, is in the store already: new records go up.
	_, drive, logout = library(t, dir)
	must(t, drive.Ready(ctx)) // the tape is still in the drive, at the beginning
	must(t, drive.VariableMode(ctx))
	for i := range 2 {
		must(t, drive.Write(ctx, testrand.Bytes(uint64(34+i), 256<<10)))
	}
	must(t, drive.WriteFilemarks(ctx, 1))
	logout()
	for kind := range kinds {
		w.waitChange(kind+" uploads", series("uploads_total", kind), above(0))
		w.waitChange(kind+" bytes uploaded", series("uploaded_bytes_total", kind), above(0))
		w.waitChange(kind+" trims", series("trims_total", kind), above(0))
		w.waitChange(kind+" records trimmed", series("trimmed_records_total", kind), above(0))
	}
	w.waitChange("volume uploads drained", series("uploads_queued", "volume"), func(v float64, ok bool) bool { return ok && v == 0 })
	w.waitChange("volume uploads ended", series("uploads_in_flight", "volume"), func(v float64, ok bool) bool { return ok && v == 0 })

	// MinIO goes away: the volume's uploads fail.
	srv.Stop()
	attach(t, ctx, dir, "v1").write(4<<20, testrand.Bytes(40, 128<<10))
	w.waitChange("volume upload errors", series("upload_errors_total", "volume"), above(0))

	// Exported for every kind, and none but the documented ones.
	documented := map[string]bool{}
	for _, name := range documentedMetrics(t) {
		if strings.HasPrefix(name, "gatewayd_journal_") {
			documented[name] = true
		}
	}
	m = scrape(t, dir)
	for name := range documented {
		metric := strings.TrimPrefix(name, "gatewayd_journal_")
		if metric == "sync_bytes" || metric == "group_commit_records" { // histograms
			metric += "_count"
		}
		for kind := range kinds {
			if s := series(metric, kind); !has(m, s) {
				t.Errorf("%s is not exported", s)
			}
		}
	}
	for s := range m {
		name, _, _ := strings.Cut(s, "{")
		if strings.HasSuffix(name, "_bucket") {
			continue // a histogram's buckets, with an le label
		}
		name = strings.TrimSuffix(strings.TrimSuffix(name, "_count"), "_sum")
		if strings.HasPrefix(name, "gatewayd_journal_") && !documented[name] {
			t.Errorf("%s is exported and not in docs/metrics.md", s)
		}
	}
}

func has(m map[string]float64, series string) bool {
	_, ok := m[series]
	return ok
}
