package notify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
)

// waitFor waits until r took n events and returns them.
func waitFor(r *notifytest.Receiver, n int) []notify.Event {
	return r.Wait(fmt.Sprintf("%d events", n), func(p []notify.Event) bool { return len(p) >= n })
}

func openQueue(t *testing.T, md meta.Store, o notify.Options) *notify.Queue {
	t.Helper()
	q, err := notify.Open(context.Background(), md, o)
	if err != nil {
		t.Fatal(err)
	}
	q.Start()
	t.Cleanup(q.Close)
	return q
}

// Events go out in publish order, as JSON with the token and headers, the
// store's prefix on keys; a webhook gets only the kinds it asked for.
func TestDeliveredInOrder(t *testing.T) {
	all, files := notifytest.NewReceiver(t, ""), notifytest.NewReceiver(t, "")
	md := mem.New()
	q := openQueue(t, md, notify.Options{Gateway: "gw1", Bucket: "b", Prefix: "/pfx/", Webhooks: []notify.Webhook{
		{URL: all.URL, Token: "tok", Headers: map[string]string{"X-Team": "storage"}},
		{URL: files.URL, Kinds: []string{"file.*"}},
	}})
	ctx := context.Background()
	for i := range 50 {
		e := notify.Event{Kind: notify.FileUploaded, Share: "docs", Path: fmt.Sprintf("/f%d", i), Key: fmt.Sprintf("docs/f%d", i), Size: notify.Size(int64(i))}
		if i%10 == 9 {
			e = notify.Event{Kind: notify.VolumeSnapshot, Volume: "v", Snapshot: strconv.Itoa(i)}
		}
		if err := q.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got := waitFor(all, 50)
	for i, e := range got {
		if i > 0 && e.Seq <= got[i-1].Seq {
			t.Fatalf("event %d seq %d after %d", i, e.Seq, got[i-1].Seq)
		}
		if e.Gateway != "gw1" || e.ID == "" || e.Time.IsZero() {
			t.Fatalf("event %d: %+v", i, e)
		}
		if e.Kind == notify.FileUploaded && (e.Path != fmt.Sprintf("/f%d", i) || e.Key != fmt.Sprintf("pfx/docs/f%d", i) || e.Bucket != "b" || *e.Size != int64(i)) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	h := all.Headers()[0]
	if h.Get("Authorization") != "Bearer tok" || h.Get("X-Team") != "storage" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	fe := waitFor(files, 45)
	for _, e := range fe {
		if e.Kind != notify.FileUploaded {
			t.Fatalf("file.* webhook got %s", e.Kind)
		}
	}
	// The receivers have every event; the queue counts one sent once the
	// receiver's answer is back, which may come after the test saw it.
	deadline := time.Now().Add(5 * time.Minute)
	for q.Stats().Sent < 95 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := q.Stats(); st.Sent != 95 || st.Queued[notify.FileUploaded] != 45 || st.Queued[notify.VolumeSnapshot] != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// The JSON a webhook gets, byte for byte (docs/events.md shows this one).
func TestEventJSON(t *testing.T) {
	e := notify.Event{ID: "5d1c5e1b3c0f4f2a9e0b7d6c8a4f2e10", Seq: 42, Kind: notify.FileUploaded,
		Time: time.Date(2026, 12, 5, 1, 30, 0, 123000000, time.UTC), Gateway: "8f14e45fceea167a", Bucket: "media",
		Key: "gw/docs/reports/q4.pdf", Share: "docs", Path: "/reports/q4.pdf", Type: "file", Size: notify.Size(1048576),
		ETag: "9b2cf535f27731c974343645a3985328"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"5d1c5e1b3c0f4f2a9e0b7d6c8a4f2e10","seq":42,"kind":"file.uploaded","time":"2026-12-05T01:30:00.123Z","gateway":"8f14e45fceea167a","bucket":"media","key":"gw/docs/reports/q4.pdf","share":"docs","path":"/reports/q4.pdf","type":"file","size":1048576,"etag":"9b2cf535f27731c974343645a3985328"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	doc, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```json\n"+want+"\n```") {
		t.Fatal("docs/events.md does not show this event's JSON")
	}
	// And the rename's example.
	e = notify.Event{ID: "0c6a4b3e9f2d41d8a5e7b19c2f3d4e5a", Seq: 43, Kind: notify.FileRenamed,
		Time: time.Date(2026, 12, 5, 1, 31, 0, 456000000, time.UTC), Gateway: "8f14e45fceea167a", Bucket: "media",
		Key: "gw/docs/reports/q4-final.pdf", Share: "docs", Path: "/reports/q4-final.pdf",
		OldKey: "gw/docs/reports/q4.pdf", OldPath: "/reports/q4.pdf", Type: "file"}
	if b, err = json.Marshal(e); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```json\n"+string(b)+"\n```") {
		t.Fatalf("docs/events.md does not show the rename's JSON:\n%s", b)
	}
}

// An event published again with the same id is not queued twice, also
// after every webhook took it (within KeepDelivered).
func TestRepeatNotQueuedTwice(t *testing.T) {
	r := notifytest.NewReceiver(t, "")
	q := openQueue(t, mem.New(), notify.Options{Webhooks: []notify.Webhook{{URL: r.URL}}})
	ctx := context.Background()
	id := notify.StableID("docs", "a.txt", "17")
	for range 3 {
		if err := q.Publish(ctx, notify.Event{ID: id, Kind: notify.FileUploaded}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Publish(ctx, notify.Event{Kind: notify.FileDeleted}); err != nil {
		t.Fatal(err)
	}
	waitFor(r, 2)
	if err := q.Publish(ctx, notify.Event{ID: id, Kind: notify.FileUploaded}); err != nil {
		t.Fatal(err)
	}
	if err := q.Publish(ctx, notify.Event{Kind: notify.FileDeleted}); err != nil {
		t.Fatal(err)
	}
	got := waitFor(r, 3)
	if len(got) != 3 || got[0].ID != id || got[1].Kind != notify.FileDeleted || got[2].Kind != notify.FileDeleted {
		t.Fatalf("got %+v", got)
	}
	if d := q.Stats().Duplicates; d != 3 {
		t.Fatalf("duplicates %d, want 3", d)
	}
}

// A receiver that is down: the events wait in the store (also across a
// reopen), at most MaxQueued of them (then Full, and failed uploads'
// events are dropped), and all arrive in order once it takes them again.
func TestReceiverDown(t *testing.T) {
	r := notifytest.NewReceiver(t, "")
	r.SetDown(true)
	md := mem.New()
	o := notify.Options{Webhooks: []notify.Webhook{{URL: r.URL}}, MaxQueued: 20, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}
	q, err := notify.Open(context.Background(), md, o)
	if err != nil {
		t.Fatal(err)
	}
	q.Start()
	ctx := context.Background()
	for i := range 20 {
		if q.Full() {
			t.Fatalf("full at %d events", i)
		}
		if err := q.Publish(ctx, notify.Event{Kind: notify.FileUploaded, Path: fmt.Sprintf("/f%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if !q.Full() {
		t.Fatal("not full at MaxQueued")
	}
	if err := q.Publish(ctx, notify.Event{Kind: notify.FileUploadFailed, Path: "/x"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for q.Stats().Failures < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no retries")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := q.Stats(); st.Dropped != 1 || st.Depth != 20 || st.Sent != 0 {
		t.Fatalf("stats %+v", st)
	}
	q.Close()

	q = openQueue(t, md, o)
	if st := q.Stats(); st.Depth != 20 || !q.Full() {
		t.Fatalf("reopened: %+v", st)
	}
	r.SetDown(false)
	got := waitFor(r, 20)
	for i, e := range got {
		if e.Path != fmt.Sprintf("/f%d", i) {
			t.Fatalf("event %d is %s", i, e.Path)
		}
	}
	deadline = time.Now().Add(5 * time.Minute)
	for q.Full() || q.Stats().Depth != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("depth %d", q.Stats().Depth)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MaxAttempts gives an event up and goes on with the next.
func TestGiveUp(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var e notify.Event
		_ = json.NewDecoder(req.Body).Decode(&e)
		if e.Path == "/bad" {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		paths = append(paths, e.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	q := openQueue(t, mem.New(), notify.Options{Webhooks: []notify.Webhook{{URL: srv.URL}}, MaxAttempts: 3, BaseDelay: time.Millisecond})
	for _, p := range []string{"/a", "/bad", "/c"} {
		if err := q.Publish(context.Background(), notify.Event{Kind: notify.FileDeleted, Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		mu.Lock()
		n := len(paths)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := q.Stats(); st.Dropped != 1 || st.Failures != 3 || paths[0] != "/a" || paths[1] != "/c" {
		t.Fatalf("%v %+v", paths, st)
	}
}

// Delivered events beyond KeepDelivered are pruned with their ids; the
// newer ones are still recognised.
func TestPrune(t *testing.T) {
	r := notifytest.NewReceiver(t, "")
	md := mem.New()
	q := openQueue(t, md, notify.Options{Webhooks: []notify.Webhook{{URL: r.URL}}, KeepDelivered: 10})
	ctx := context.Background()
	for i := range 40 {
		if err := q.Publish(ctx, notify.Event{ID: strconv.Itoa(i), Kind: notify.FileUploaded}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(r, 40)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n := 0
		_ = md.View(ctx, func(tx meta.Txn) error {
			n = 0
			return tx.Iterate(notify.EntryPrefix, func(_, _ []byte) error { n++; return nil })
		})
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events kept, want 10", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = q.Publish(ctx, notify.Event{ID: "35", Kind: notify.FileUploaded}) // kept: a repeat
	_ = q.Publish(ctx, notify.Event{ID: "5", Kind: notify.FileUploaded})  // pruned: new again
	got := waitFor(r, 41)
	if len(got) != 41 || got[40].ID != "5" {
		t.Fatalf("last events %+v", got[38:])
	}
}

// The child half of TestPublishedSurviveKill: publish events one by one
// into a badger store, printing each index once Publish returned.
func init() {
	dir := os.Getenv("GATEWAYD_NOTIFY_CRASH_CHILD")
	if dir == "" {
		return
	}
	md, err := metabadger.Open(dir, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	// A webhook that is never reached: every event stays queued.
	q, err := notify.Open(context.Background(), md, notify.Options{Webhooks: []notify.Webhook{{URL: "http://127.0.0.1:1/"}}, MaxQueued: 1 << 30})
	if err != nil {
		fmt.Println("open queue:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	for range 4 { // concurrent publishers, as uploaders are
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if err := q.Publish(context.Background(), notify.Event{ID: strconv.Itoa(i), Kind: notify.FileUploaded, Path: "/" + strconv.Itoa(i)}); err != nil {
					fmt.Println("publish:", err)
					os.Exit(2)
				}
				fmt.Println(i)
			}
		}()
	}
	wg.Wait()
}

// A published event survives kill -9 of the process: after a reopen every
// acknowledged one is delivered, each once, in seq order.
func TestPublishedSurviveKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "GATEWAYD_NOTIFY_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := strconv.Atoi(sc.Text()); err != nil {
			t.Fatalf("child: %s", sc.Text())
		}
		acked[sc.Text()] = true
		if len(acked) == 300 {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for sc.Scan() { // printed before the kill landed
		acked[sc.Text()] = true
	}
	if len(acked) < 300 {
		t.Fatalf("child acknowledged %d events", len(acked))
	}
	md, err := metabadger.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	r := notifytest.NewReceiver(t, "")
	// The same webhook moved: a new one starts where the old one was.
	q := openQueue(t, md, notify.Options{Webhooks: []notify.Webhook{{URL: r.URL}}})
	depth := q.Stats().Depth
	if depth < int64(len(acked)) {
		t.Fatalf("queue holds %d events, %d acknowledged", depth, len(acked))
	}
	got := waitFor(r, int(depth))
	seen := map[string]bool{}
	for i, e := range got {
		if seen[e.ID] {
			t.Fatalf("event %s twice", e.ID)
		}
		seen[e.ID] = true
		if i > 0 && e.Seq <= got[i-1].Seq {
			t.Fatalf("seq %d after %d", e.Seq, got[i-1].Seq)
		}
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged event %s lost", id)
		}
	}
	t.Logf("%d events acknowledged before the kill, %d delivered after", len(acked), len(got))
	// Publishing an acknowledged one again (a service repeating work
	// the crash cut short) queues nothing.
	for id := range acked {
		if err := q.Publish(context.Background(), notify.Event{ID: id, Kind: notify.FileUploaded}); err != nil {
			t.Fatal(err)
		}
		break
	}
	if d := q.Stats().Duplicates; d != 1 {
		t.Fatalf("duplicates %d", d)
	}
}
