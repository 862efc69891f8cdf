package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
)

// TestRemoveRenameEventsAcrossKill: a client removes and renames uploaded
// files over NFS, one after another, and the daemon is killed (kill -9)
// in the middle of it. After the restart every remove and rename the
// daemon acknowledged has its event at the webhook in the test, exactly
// once by id (a replay that repeats a delete or a move repeats its id,
// which the queue takes once), and the one in flight at the kill has at
// most one; MinIO holds what the events say.
func TestRemoveRenameEventsAcrossKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	hook, srv, dir, d := eventsOnMinIO(t, "killevents", nil)
	const files = 60
	name := func(i int) string { return fmt.Sprintf("f%02d.txt", i) }
	v, done := nfsMount(t, nfsAddr(t, dir), "docs")
	for i := range files {
		f, err := v.OpenFile(name(i), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(name(i) + " is here\n")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	hook.Wait("every file's upload", func(p []notify.Event) bool { return len(uploadedPaths(p)) == files })

	// Even files renamed, odd ones removed; the kill lands among them.
	acked := make(chan int, files)
	go func() {
		defer close(acked)
		for i := range files {
			var err error
			if i%2 == 0 {
				err = v.Rename(name(i), "r-"+name(i))
			} else {
				err = v.Remove(name(i))
			}
			if err != nil {
				return
			}
			acked <- i
		}
	}()
	n := 0
	for range acked {
		if n++; n == files/3 {
			break
		}
	}
	d.kill(t)
	for range acked { // answered before the kill
		n++
	}
	done()
	t.Logf("killed after %d removes and renames acknowledged", n)

	serve(t, dir)
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	// The events of every acknowledged operation.
	key := func(n string) string { return "gw/docs/" + n }
	ops := func(p []notify.Event) map[string][]notify.Event {
		out := map[string][]notify.Event{}
		for _, e := range notifytest.Distinct(p) {
			switch e.Kind {
			case notify.FileDeleted:
				out[e.Key] = append(out[e.Key], e)
			case notify.FileRenamed:
				out[e.OldKey] = append(out[e.OldKey], e)
			}
		}
		return out
	}
	hook.Wait("the events of the acknowledged operations", func(p []notify.Event) bool {
		got := ops(p)
		for i := range n {
			if len(got[key(name(i))]) == 0 {
				return false
			}
		}
		return true
	})
	waitMetric(t, dir, "gatewayd_notify_queue_depth", func(v float64) bool { return v == 0 })
	got := ops(hook.Posts())
	ctx := context.Background()
	exists := func(k string) bool {
		_, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("killevents"), Key: aws.String(k)})
		return err == nil
	}
	for i := range files {
		old, evs := key(name(i)), got[key(name(i))]
		if len(evs) > 1 || len(evs) == 0 && i < n {
			t.Errorf("%s: %d distinct events %+v, want 1", name(i), len(evs), evs)
			continue
		}
		if len(evs) == 0 {
			if !exists(old) {
				t.Errorf("%s: gone from the store without an event", name(i))
			}
			continue
		}
		e := evs[0]
		if i%2 == 0 && (e.Kind != notify.FileRenamed || e.Key != key("r-"+name(i)) || !exists(e.Key)) ||
			i%2 == 1 && e.Kind != notify.FileDeleted || exists(old) {
			t.Errorf("%s: event %+v; in the store: old key %v", name(i), e, exists(old))
		}
	}
	if len(got) > n+1 {
		t.Errorf("events of %d files, %d operations acknowledged and one in flight", len(got), n)
	}
	posts := 0
	for _, e := range hook.Posts() {
		if e.Kind == notify.FileDeleted || e.Kind == notify.FileRenamed {
			posts++
		}
	}
	t.Logf("%d distinct events of removes and renames, %d posts of them", len(got), posts)
}
