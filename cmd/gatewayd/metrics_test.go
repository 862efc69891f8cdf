package main

// TestMetricsTable holds docs/metrics.md to the daemon: every metric in
// its table is exported, every gatewayd_ metric exported is in the table,
// and each one changes when the thing it measures happens, on the real
// daemon over MinIO: writes over iSCSI and NFS held back by a bandwidth
// limit, then uploaded; reads that hit and miss the cache; snapshots; a
// restore that hydrates; recovery points; the NFS and iSCSI calls timed;
// and MinIO going away.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// documentedMetrics reads the metric names (without labels) from the
// table in docs/metrics.md.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `(gatewayd_[a-z0-9_]+)(\\{[a-z0-9_,]+\\})?` \\|")
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) < 20 {
		t.Fatalf("docs/metrics.md: only %d metrics in the table", len(names))
	}
	return names
}

// scrape reads every sample of /metrics: series (name and labels as
// printed) to value.
func scrape(t *testing.T, dataDir string) map[string]float64 {
	t.Helper()
	body := metricsText(t, dataDir)
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscanf(line[i+1:], "%g", &v); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func metricsText(t *testing.T, dataDir string) string {
	t.Helper()
	var resp *http.Response
	var err error
	// A loaded machine can drop the admin connection; try a few times.
	for range 5 {
		tr := unixTransport(filepath.Join(dataDir, "admin.sock"))
		tr.DisableKeepAlives = true
		if resp, err = (&http.Client{Transport: tr}).Get("http://gatewayd/metrics"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricWatch waits for metric conditions and remembers which metrics
// were seen to change.
type metricWatch struct {
	t       *testing.T
	dataDir string
	changed map[string]bool
	d       *daemon
}

// waitChange waits until series satisfies cond (v is 0 and ok false while
// the series is absent), and records its metric as changed (a histogram's
// _count series stands for the histogram).
func (w *metricWatch) waitChange(what, series string, cond func(v float64, ok bool) bool) float64 {
	w.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		m := scrape(w.t, w.dataDir)
		v, ok := m[series]
		if cond(v, ok) {
			name, _, _ := strings.Cut(series, "{")
			w.changed[strings.TrimSuffix(name, "_count")] = true
			return v
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: %s never got there (now %v, present %v)\ndaemon log:\n%s", what, series, v, ok, w.d.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *metricWatch) value(series string) float64 {
	w.t.Helper()
	v, ok := scrape(w.t, w.dataDir)[series]
	if !ok {
		w.t.Fatalf("%s is not exported", series)
	}
	return v
}

func above(x float64) func(float64, bool) bool {
	return func(v float64, ok bool) bool { return ok && v > x }
}
func below(x float64) func(float64, bool) bool {
	return func(v float64, ok bool) bool { return ok && v < x }
}

func TestMetricsTable(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	documented := documentedMetrics(t)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "meterbucket")
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://meterbucket/gw"}, minioFlags(srv)...)...)
	// Quick recovery points and uploads, a slow hydration, and few retries
	// so that failures show soon.
	setConfig(t, dir, map[string]map[string]any{
		"volumes": {"recovery_point_interval": "2s", "settle_time": "100ms", "upload_interval": "100ms", "hydrate_rate": "32KiB"},
		"shares":  {"settle_time": "100ms"},
		"store":   {"retry": map[string]any{"max_attempts": 2, "base_delay": "50ms", "max_delay": "100ms"}},
	})
	d := serve(t, dir)
	w := &metricWatch{t: t, dataDir: dir, changed: map[string]bool{}, d: d}

	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "c1", "--size", "16M", "--chunk-size", "64K")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")

	// build_info carries the gateway's id.
	var st admin.Status
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--data-dir", dir, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	w.waitChange("build info", fmt.Sprintf(`gatewayd_build_info{gateway_id="%s",version="dev"}`, st.GatewayID), func(v float64, ok bool) bool { return ok && v == 1 })
	w.waitChange("health of the object store probe", `gatewayd_health_level{subsystem="objstore"}`, func(v float64, ok bool) bool { return ok && v == 0 })

	// Writes held back by an upload limit of 1 KiB/s: they fill the cache
	// and the buffers and wait there.
	base := scrape(t, dir)
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "1K")
	ctx := context.Background()
	l := attach(t, ctx, dir, "c1")
	data := testrand.Bytes(7, 2<<20)
	l.write(0, data)
	w.waitChange("written bytes", "gatewayd_write_bytes_total", above(base["gatewayd_write_bytes_total"]+float64(len(data))-1))
	iscsiWrites := `gatewayd_iscsi_command_duration_seconds_count{op="write"}`
	w.waitChange("iSCSI writes timed", iscsiWrites, above(base[iscsiWrites]))
	w.waitChange("cache in use", "gatewayd_cache_percent_used", above(0))
	w.waitChange("cache in use", "gatewayd_cache_used_bytes", above(float64(len(data))-1))
	w.waitChange("cache free", "gatewayd_cache_free_bytes", below(base["gatewayd_cache_free_bytes"]))
	w.waitChange("dirty cache", "gatewayd_cache_percent_dirty", above(0))
	w.waitChange("upload buffer", "gatewayd_upload_buffer_percent_used", above(0))
	w.waitChange("upload buffer", "gatewayd_upload_buffer_used_bytes", above(float64(len(data))-1))
	w.waitChange("upload buffer free", "gatewayd_upload_buffer_free_bytes", below(base["gatewayd_upload_buffer_free_bytes"]))
	w.waitChange("queued writes", `gatewayd_volume_queued_write_bytes{volume="c1"}`, above(0))

	nfs, unmount := nfsMount(t, nfsAddr(t, dir), "docs")
	defer unmount()
	file := testrand.Bytes(8, 256<<10)
	f, err := nfs.OpenFile("report.bin", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(file); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w.waitChange("a file waiting", `gatewayd_share_files_pending{share="docs"}`, above(0))
	w.waitChange("NFS writes timed", `gatewayd_nfs_request_duration_seconds_count{proc="WRITE"}`, above(0))
	w.waitChange("share buffer", "gatewayd_share_upload_buffer_percent_used", above(0))

	// The limit lifted: everything goes up and the figures fall back.
	mustRun(t, "bandwidth", "set", "--data-dir", dir, "--upload", "0")
	w.waitChange("bytes uploaded", "gatewayd_cloud_bytes_uploaded_total", above(base["gatewayd_cloud_bytes_uploaded_total"]+float64(len(data))-1))
	w.waitChange("last upload", `gatewayd_volume_last_upload_timestamp_seconds{volume="c1"}`, above(float64(time.Now().Add(-time.Hour).Unix())))
	w.waitChange("queued writes uploaded", `gatewayd_volume_queued_write_bytes{volume="c1"}`, func(v float64, ok bool) bool { return ok && v == 0 })
	w.waitChange("dirty cache uploaded", "gatewayd_cache_percent_dirty", func(v float64, ok bool) bool { return ok && v == 0 })
	w.waitChange("file uploaded", "gatewayd_share_files_uploaded_total", above(base["gatewayd_share_files_uploaded_total"]))
	w.waitChange("file bytes uploaded", "gatewayd_share_bytes_uploaded_total", above(base["gatewayd_share_bytes_uploaded_total"]+float64(len(file))-1))
	w.waitChange("no file waiting", `gatewayd_share_files_pending{share="docs"}`, func(v float64, ok bool) bool { return ok && v == 0 })
	w.waitChange("chunks uploaded", "gatewayd_volume_chunks_uploaded_total", above(base["gatewayd_volume_chunks_uploaded_total"]))

	// A small write to an uploaded chunk goes up as a patch; a recovery
	// point (every 2 s here) names whole chunks, so it compacts the chunk.
	small := testrand.Bytes(10, 4096)
	l.write(64<<10, small)
	copy(data[64<<10:], small)
	w.waitChange("a patch uploaded", "gatewayd_volume_patches_uploaded_total", above(base["gatewayd_volume_patches_uploaded_total"]))
	w.waitChange("a patched chunk compacted", "gatewayd_volume_compactions_total", above(base["gatewayd_volume_compactions_total"]))

	// Recovery points every 2s: the age grows, then falls back.
	rp := `gatewayd_volume_time_since_last_recovery_point_seconds{volume="c1"}`
	grown := w.waitChange("recovery point ageing", rp, above(1))
	w.waitChange("a new recovery point", rp, below(grown))

	// Reads of what was written hit the cache.
	if got := l.read(0, 1<<20); string(got) != string(data[:1<<20]) {
		t.Fatal("read back different data")
	}
	w.waitChange("cache hits", "gatewayd_cache_hit_percent", above(0))
	iscsiReads := `gatewayd_iscsi_command_duration_seconds_count{op="read"}`
	w.waitChange("iSCSI reads timed", iscsiReads, above(base[iscsiReads]))

	// Snapshots: counted per volume; a newer one makes the age fall
	// below the first one's (2 s apart at least, however slow a scrape).
	mustRun(t, "snapshot", "create", "--data-dir", dir, "c1")
	w.waitChange("one snapshot", `gatewayd_volume_snapshots{volume="c1"}`, func(v float64, ok bool) bool { return ok && v == 1 })
	w.waitChange("snapshot ageing", `gatewayd_volume_time_since_last_snapshot_seconds{volume="c1"}`, above(2))
	first := snapshotList(t, dir)[0].Created
	mustRun(t, "snapshot", "create", "--data-dir", dir, "c1")
	w.waitChange("two snapshots", `gatewayd_volume_snapshots{volume="c1"}`, func(v float64, ok bool) bool { return ok && v == 2 })
	w.waitChange("a newer snapshot", `gatewayd_volume_time_since_last_snapshot_seconds{volume="c1"}`, func(v float64, ok bool) bool {
		return ok && v < time.Since(first).Seconds()-1
	})
	list := snapshotList(t, dir)

	// A cached volume restored from the snapshot reads from the bucket; a
	// stored one hydrates its disk, slowly (volumes.hydrate_rate).
	down := w.value("gatewayd_cloud_bytes_downloaded_total")
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "c2", "--from-snapshot", list[0].ID)
	if got := attach(t, ctx, dir, "c2").read(0, 1<<20); string(got) != string(data[:1<<20]) {
		t.Fatal("restored volume reads different data")
	}
	w.waitChange("bytes downloaded", "gatewayd_cloud_bytes_downloaded_total", above(down))
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "s2", "--kind", "stored", "--from-snapshot", list[0].ID)
	left := w.waitChange("hydration under way", `gatewayd_volume_hydration_chunks_remaining{volume="s2"}`, above(0))
	w.waitChange("hydration progressing", `gatewayd_volume_hydration_chunks_remaining{volume="s2"}`, below(left))

	// Tapes: created, one moved into a drive by the changer and written.
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "2", "--barcode-prefix", "MET", "--size", "1G")
	w.waitChange("tapes in slots", `gatewayd_tapes{state="library"}`, func(v float64, ok bool) bool { return ok && v == 2 })
	changer, drive, logout := library(t, dir)
	defer logout()
	tctx := context.Background()
	must(t, changer.Ready(tctx))
	slot, err := changer.FirstFull(tctx, 2)
	must(t, err)
	empty, err := changer.FirstEmpty(tctx, 4)
	must(t, err)
	must(t, changer.Move(tctx, slot.Address, empty.Address))
	w.waitChange("a tape in a drive", `gatewayd_tapes{state="drive"}`, func(v float64, ok bool) bool { return ok && v == 1 })
	w.waitChange("a drive loaded", "gatewayd_tape_drives_loaded", func(v float64, ok bool) bool { return ok && v == 1 })
	must(t, drive.Ready(tctx))
	must(t, drive.VariableMode(tctx))
	for i := range 8 {
		must(t, drive.Write(tctx, testrand.Bytes(uint64(50+i), 256<<10)))
	}
	must(t, drive.WriteFilemarks(tctx, 1))
	w.waitChange("tape segments uploaded", "gatewayd_tape_segments_uploaded_total", above(0))
	w.waitChange("tape bytes uploaded", "gatewayd_tape_bytes_uploaded_total", above(2<<20-1))
	w.waitChange("tape bytes used", "gatewayd_tape_used_bytes", above(2<<20-1))

	// MinIO goes away: uploads fail, and the volumes report it.
	f, err = nfs.OpenFile("after.bin", 0o644) // looked up while S3 answers
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	l.write(4<<20, testrand.Bytes(9, 128<<10))
	if _, err := f.Write([]byte("written while S3 is away")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w.waitChange("upload errors", "gatewayd_upload_errors_total", above(base["gatewayd_upload_errors_total"]))
	w.waitChange("share upload errors", "gatewayd_share_upload_errors_total", above(base["gatewayd_share_upload_errors_total"]))
	w.waitChange("volumes unhealthy", `gatewayd_health_level{subsystem="volumes"}`, above(0))

	// Both ways: the table and the exported families (every volume
	// and share metric has a sample by now) agree.
	exported := map[string]bool{}
	for _, line := range strings.Split(metricsText(t, dir), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok && strings.HasPrefix(name, "gatewayd_") {
			exported[strings.Fields(name)[0]] = true
		}
	}
	for _, name := range documented {
		// The bucket event receiver's metrics exist only when it is
		// configured (shares.bucket_events.listen): TestBucketEventsReachNFS
		// checks each of them, TestBucketEventsFromSQS the SQS poller's.
		if strings.HasPrefix(name, "gatewayd_bucket_events_") {
			continue
		}
		// Likewise the event senders' (notifications.webhooks):
		// TestUploadEventsAcrossKill checks them.
		if strings.HasPrefix(name, "gatewayd_notify_") {
			continue
		}
		// The audit log's: TestAuditEndToEnd (written records by
		// protocol, no errors); audit's TestWriteFailureCounted counts
		// an error.
		if strings.HasPrefix(name, "gatewayd_audit_") {
			delete(exported, name)
			continue
		}
		if !exported[name] {
			t.Errorf("docs/metrics.md lists %s, which the daemon does not export", name)
		}
		// The sidecar collection runs once a day: fileshare's
		// TestXattrSidecarsCollectedInTheBackground sees its counts move.
		// Read delegations need a client with a back channel: the
		// appliance run's nfs4 scenario sees granted and recalled move.
		if strings.HasPrefix(name, "gatewayd_share_xattr_") || name == "gatewayd_nfs4_delegations_total" {
			delete(exported, name)
			continue
		}
		// TestJournalMetrics checks the journal's metrics on each
		// service, TestTapeRetrieveColdStorage the retrieval's (it needs
		// cold storage). An upload replaced needs another application's
		// put between the share's put and its stat: fileshare's
		// TestObjectReplacedAsItIsUploaded counts one.
		if !w.changed[name] && !strings.HasPrefix(name, "gatewayd_journal_") && name != "gatewayd_tape_retrieval_objects" &&
			name != "gatewayd_share_uploads_replaced_total" {
			t.Errorf("docs/metrics.md lists %s, and no check here saw it change", name)
		}
		delete(exported, name)
	}
	for name := range exported {
		t.Errorf("the daemon exports %s, which docs/metrics.md does not list", name)
	}
}

// setConfig merges options (section: key: value, one level of nesting
// more allowed) into the data directory's gatewayd.yaml.
func setConfig(t *testing.T, dataDir string, opts map[string]map[string]any) {
	t.Helper()
	path := filepath.Join(dataDir, "gatewayd.yaml")
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var merge func(dst, src map[string]any)
	merge = func(dst map[string]any, src map[string]any) {
		for k, v := range src {
			if sub, ok := v.(map[string]any); ok {
				old, _ := dst[k].(map[string]any)
				if old == nil {
					old = map[string]any{}
				}
				merge(old, sub)
				v = old
			}
			dst[k] = v
		}
	}
	src := map[string]any{}
	for k, v := range opts {
		src[k] = v
	}
	merge(cfg, src)
	if b, err = yaml.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
