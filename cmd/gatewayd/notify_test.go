package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
)

// uploadedPaths counts the distinct file.uploaded events by path.
func uploadedPaths(posts []notify.Event) map[string]int {
	n := map[string]int{}
	for _, e := range notifytest.Distinct(posts) {
		if e.Kind == notify.FileUploaded && e.Type == "file" {
			n[e.Path]++
		}
	}
	return n
}

// waitMetric waits until the metric satisfies cond and returns it.
func waitMetric(t *testing.T, dir, name string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		v, ok := metric(t, dir, name)
		if ok && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v (exported %v)", name, v, ok)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventsOnMinIO serves share docs on MinIO's bucket with the events of
// files posted to a webhook in the test (retried every 50 to 500 ms), and
// the settings of notifications more.
func eventsOnMinIO(t *testing.T, bucket string, more map[string]any) (*notifytest.Receiver, *miniotest.Server, string, *daemon) {
	t.Helper()
	hook := notifytest.NewReceiver(t, "hook-token")
	srv, dir, d := shareOnMinIO(t, bucket, "docs")
	d.stop(t)
	nc := map[string]any{
		"webhooks": []any{map[string]any{"url": hook.URL + "/hook", "token": "hook-token", "kinds": []any{"file.*"}}},
		"retry":    map[string]any{"base_delay": "50ms", "max_delay": "500ms"},
	}
	maps.Copy(nc, more)
	setConfig(t, dir, map[string]map[string]any{"notifications": nc})
	return hook, srv, dir, serve(t, dir)
}

// TestUploadEventsAcrossKill: files written over NFS (libnfs nfs-cp)
// each produce exactly one file.uploaded event at a webhook in the test,
// with the object's key, size and ETag as MinIO has them; an overwrite
// and a remove follow their file's upload in order. With the webhook
// down the events wait in the queue; the daemon is killed (kill -9) with
// events queued and files not yet uploaded; after the restart, with the
// queue at its bound (uploads wait meanwhile), the webhook comes back and
// every file's event arrives: distinct ids equal the files, none missing.
func TestUploadEventsAcrossKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	const maxQueued = 40
	hook, srv, dir, d := eventsOnMinIO(t, "events", map[string]any{"max_queued": maxQueued})
	info := shareInfo(t, dir, "docs")
	url := func(p string) string { return strings.Replace(info.Mount.URL, "/docs/", "/docs/"+p, 1) }
	local := t.TempDir()
	body := func(name string) []byte { return []byte(strings.Repeat(name+" says hello\n", len(name)*37)) }
	put := func(names ...string) {
		t.Helper()
		for _, n := range names {
			p := filepath.Join(local, n)
			if err := os.WriteFile(p, body(n), 0o644); err != nil {
				t.Fatal(err)
			}
			nfsTool(t, "nfs-cp", p, url(n))
		}
	}
	names := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%02d.txt", prefix, i))
		}
		return out
	}

	// The webhook up: one event a file, as MinIO has the object.
	first := names("f", 10)
	put(first...)
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	posts := hook.Wait("the first files' events", func(p []notify.Event) bool { return len(uploadedPaths(p)) == len(first) })
	for _, e := range notifytest.Distinct(posts) {
		head, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("events"), Key: aws.String(e.Key)})
		if err != nil {
			t.Fatalf("event %+v: %v", e, err)
		}
		name := strings.TrimPrefix(e.Path, "/")
		if e.Bucket != "events" || e.Key != "gw/docs/"+name || e.Share != "docs" || e.Size == nil ||
			*e.Size != int64(len(body(name))) || *e.Size != aws.ToInt64(head.ContentLength) || e.ETag != strings.Trim(aws.ToString(head.ETag), `"`) || e.Gateway == "" {
			t.Fatalf("event %+v, object %d bytes etag %s", e, aws.ToInt64(head.ContentLength), aws.ToString(head.ETag))
		}
	}
	// An overwrite and a remove: after the file's upload, in order.
	v, done := nfsMount(t, nfsAddr(t, dir), "docs")
	f, err := v.OpenFile(first[0], 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(append(body(first[0]), "and again\n"...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	if err := v.Remove(first[1]); err != nil {
		t.Fatal(err)
	}
	done()
	hook.Wait("the overwrite and the remove", func(p []notify.Event) bool {
		deleted := false
		for _, e := range p {
			deleted = deleted || e.Kind == notify.FileDeleted
		}
		return uploadedPaths(p)["/"+first[0]] == 2 && deleted
	})
	beforeKill := len(notifytest.Distinct(hook.Posts()))

	// The webhook down: uploads go on, their events wait in the queue.
	hook.SetDown(true)
	second := names("g", 30)
	put(second...)
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	waitMetric(t, dir, "gatewayd_notify_queue_depth", func(v float64) bool { return v >= float64(len(second)) })
	waitMetric(t, dir, "gatewayd_notify_send_failures_total", func(v float64) bool { return v > 0 })
	// More files, and kill -9 with some not uploaded yet (the settle
	// time: 2 s) and every event since the webhook went down unsent.
	third := names("h", 20)
	put(third...)
	pending, _ := metric(t, dir, `gatewayd_share_files_pending{share="docs"}`)
	queued, _ := metric(t, dir, "gatewayd_notify_queue_depth")
	d.kill(t)
	t.Logf("killed with %v events queued, %v files not uploaded", queued, pending)

	// Restarted with the webhook still down: the queue fills to its bound
	// and the remaining uploads wait.
	d = serve(t, dir)
	depth := waitMetric(t, dir, "gatewayd_notify_queue_depth", func(v float64) bool { return v >= maxQueued })
	// Uploads check the bound before they start: up to one each
	// (volumes.uploaders, 4) may finish past it.
	if depth > maxQueued+4 {
		t.Fatalf("queue depth %v, bound %d", depth, maxQueued)
	}
	if p, _ := metric(t, dir, `gatewayd_share_files_pending{share="docs"}`); p == 0 {
		t.Fatalf("no upload waits with the queue full (depth %v)", depth)
	}
	if got := len(notifytest.Distinct(hook.Posts())); got != beforeKill {
		t.Fatalf("%d events arrived with the webhook down", got-beforeKill)
	}

	// The webhook back: every file's event arrives.
	hook.SetDown(false)
	all := append(append(append([]string(nil), first...), second...), third...)
	posts = hook.Wait("every file's event", func(p []notify.Event) bool { return len(uploadedPaths(p)) == len(all) })
	waitMetric(t, dir, `gatewayd_share_files_pending{share="docs"}`, func(v float64) bool { return v == 0 })
	waitMetric(t, dir, "gatewayd_notify_queue_depth", func(v float64) bool { return v == 0 })
	posts = hook.Posts()
	ids := notifytest.Distinct(posts)
	up := uploadedPaths(posts)
	for _, n := range all {
		want := 1
		if n == first[0] {
			want = 2 // written, then written again
		}
		if up["/"+n] != want {
			t.Errorf("%s: %d distinct uploaded events, want %d", n, up["/"+n], want)
		}
	}
	if len(up) != len(all) {
		t.Errorf("uploaded events for %d paths, %d files written", len(up), len(all))
	}
	// In order per file: by seq and by arrival.
	last := map[string]uint64{}
	kinds := map[string][]notify.Kind{}
	for _, e := range ids {
		if e.Type != "file" {
			continue
		}
		if s, ok := last[e.Path]; ok && e.Seq <= s {
			t.Errorf("%s: event seq %d arrived after %d", e.Path, e.Seq, s)
		}
		last[e.Path] = e.Seq
		kinds[e.Path] = append(kinds[e.Path], e.Kind)
	}
	if k := kinds["/"+first[1]]; len(k) != 2 || k[0] != notify.FileUploaded || k[1] != notify.FileDeleted {
		t.Errorf("%s: events %v, want uploaded then deleted", first[1], k)
	}
	// At least once: a repeat carries the id of an event already taken,
	// and only one taken before the kill can repeat (its delivery not
	// recorded when the process died).
	repeats := len(posts) - len(ids)
	if repeats > beforeKill {
		t.Errorf("%d repeated posts, more than the %d events taken before the kill", repeats, beforeKill)
	}
	t.Logf("%d files, %d distinct events (%d repeated posts), %d posts refused while down, queue depth peaked at %v",
		len(all), len(ids), repeats, hook.Refused(), depth)
	for _, m := range []string{`gatewayd_notify_events_queued_total{kind="file.uploaded"}`, "gatewayd_notify_events_sent_total",
		"gatewayd_notify_send_failures_total"} {
		waitMetric(t, dir, m, func(v float64) bool { return v > 0 })
	}
	if _, ok := metric(t, dir, "gatewayd_notify_events_dropped_total"); !ok {
		t.Error("gatewayd_notify_events_dropped_total not exported")
	}
}

// TestRenameEvents: a file renamed over NFS (go-nfs-client's RENAME)
// after its upload produces one file.renamed event at a webhook in the
// test, with the object's key and path before and after, after the
// file's file.uploaded; MinIO holds the object at the new key only.
func TestRenameEvents(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	hook, srv, dir, _ := eventsOnMinIO(t, "renames", nil)
	info := shareInfo(t, dir, "docs")
	p := filepath.Join(t.TempDir(), "before.txt")
	if err := os.WriteFile(p, []byte("renamed after its upload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nfsTool(t, "nfs-cp", p, strings.Replace(info.Mount.URL, "/docs/", "/docs/before.txt", 1))
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	hook.Wait("the upload's event", func(p []notify.Event) bool { return uploadedPaths(p)["/before.txt"] == 1 })
	v, done := nfsMount(t, nfsAddr(t, dir), "docs")
	if err := v.Rename("before.txt", "after.txt"); err != nil {
		t.Fatal(err)
	}
	done()
	posts := hook.Wait("the rename's event", func(p []notify.Event) bool {
		for _, e := range p {
			if e.Kind == notify.FileRenamed {
				return true
			}
		}
		return false
	})
	var kinds []notify.Kind
	for _, e := range notifytest.Distinct(posts) {
		kinds = append(kinds, e.Kind)
		if e.Kind == notify.FileRenamed && (e.Bucket != "renames" || e.Share != "docs" || e.Type != "file" || e.Gateway == "" ||
			e.Key != "gw/docs/after.txt" || e.Path != "/after.txt" || e.OldKey != "gw/docs/before.txt" || e.OldPath != "/before.txt") {
			t.Errorf("rename event %+v", e)
		}
	}
	if len(kinds) != 2 || kinds[0] != notify.FileUploaded || kinds[1] != notify.FileRenamed {
		t.Errorf("events %v, want the upload, then the rename", kinds)
	}
	ctx := context.Background()
	if _, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("renames"), Key: aws.String("gw/docs/after.txt")}); err != nil {
		t.Errorf("the object at its new key: %v", err)
	}
	if _, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("renames"), Key: aws.String("gw/docs/before.txt")}); err == nil {
		t.Error("the object is still at its old key")
	}
}
