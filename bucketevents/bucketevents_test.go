package bucketevents

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
)

// recorder is an Applier that records what it is given; while hold is
// locked it blocks (a slow share under a storm).
type recorder struct {
	hold      sync.Mutex
	mu        sync.Mutex
	changes   []fileshare.ObjectChange
	refreshes int
}

func (r *recorder) ApplyObjectChange(ch fileshare.ObjectChange) fileshare.ChangeOutcome {
	r.hold.Lock()
	defer r.hold.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, ch)
	return fileshare.ChangeApplied
}

func (r *recorder) RefreshAll() {
	r.hold.Lock()
	defer r.hold.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshes++
}

func (r *recorder) seen() ([]fileshare.ObjectChange, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fileshare.ObjectChange(nil), r.changes...), r.refreshes
}

func start(t *testing.T, rec *recorder, size int) *Receiver {
	t.Helper()
	r, err := New(Options{Listen: "127.0.0.1:0", Token: "sesame", Bucket: "b", Prefix: "gw", QueueSize: size}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func record(name, bucket, key, etag string) string {
	return fmt.Sprintf(`{"eventName":%q,"s3":{"bucket":{"name":%q},"object":{"key":%q,"eTag":%q,"size":1}}}`, name, bucket, key, etag)
}

func post(t *testing.T, r *Receiver, token string, records ...string) int {
	t.Helper()
	body := `{"EventName":"s3:ObjectCreated:Put","Key":"b/x","Records":[` + strings.Join(records, ",") + `]}`
	req, err := http.NewRequest(http.MethodPost, "http://"+r.Addr()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

func TestRecordsBecomeChanges(t *testing.T) {
	rec := &recorder{}
	r := start(t, rec, 0)
	if code := post(t, r, "wrong", record("s3:ObjectCreated:Put", "b", "gw/s/a", "e")); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code := post(t, r, "", record("s3:ObjectCreated:Put", "b", "gw/s/a", "e")); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	code := post(t, r, "sesame",
		record("s3:ObjectCreated:Put", "b", "gw/s/a+b%2Fc%C3%A9.txt", "e1"),
		record("s3:ObjectRemoved:Delete", "b", "gw/s/d/", ""),
		record("s3:ObjectCreated:Put", "other", "gw/s/x", "e"), // another bucket
		record("s3:ObjectCreated:Put", "b", "gwx/s/x", "e"),    // outside the prefix
		record("s3:ObjectAccessed:Get", "b", "gw/s/x", "e"),    // not a change
		record("s3:ObjectCreated:CompleteMultipartUpload", "b", "gw/s/m", "e3"))
	if code != http.StatusOK {
		t.Fatalf("post: %d", code)
	}
	if code := post(t, r, "sesame", "{not json"); code != http.StatusBadRequest {
		t.Fatalf("bad body: %d", code)
	}
	want := []fileshare.ObjectChange{{Key: "s/a b/cé.txt", ETag: "e1"}, {Key: "s/d/", Removed: true}, {Key: "s/m", ETag: "e3"}}
	waitFor(t, "three changes applied", func() bool { ch, _ := rec.seen(); return len(ch) == len(want) })
	// Each outcome is counted once the share's apply returns, after the
	// recorder has the change.
	waitFor(t, "three outcomes counted", func() bool { return r.Stats().Outcomes["applied"] >= 3 })
	got, _ := rec.seen()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("change %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	st := r.Stats()
	if st.Received != 3 || st.Ignored != 3 || st.Unauthorized != 2 || st.Outcomes["applied"] != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestStormIsBounded: 10,000 events while the shares are slow stay within
// the queue's size: changes of one key coalesce, and past the size the
// queue falls back to one refresh of everything.
func TestStormIsBounded(t *testing.T) {
	const size, n = 256, 10000
	rec := &recorder{}
	r := start(t, rec, size)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	rec.hold.Lock() // the shares apply nothing meanwhile
	for i := 0; i < n; i += 100 {
		var recs []string
		for j := i; j < i+100; j++ {
			recs = append(recs, record("s3:ObjectCreated:Put", "b", "gw/s/same", fmt.Sprint(j)))
		}
		if code := post(t, r, "sesame", recs...); code != http.StatusOK {
			t.Fatalf("post: %d", code)
		}
	}
	if q := r.Stats().Queued; q > 1 {
		t.Fatalf("%d events of one key queued %d changes", n, q)
	}
	maxQueued := 0
	for i := 0; i < n; i += 100 {
		var recs []string
		for j := i; j < i+100; j++ {
			recs = append(recs, record("s3:ObjectCreated:Put", "b", fmt.Sprintf("gw/s/dir/file-%05d", j), "e"))
		}
		if code := post(t, r, "sesame", recs...); code != http.StatusOK {
			t.Fatalf("post: %d", code)
		}
		maxQueued = max(maxQueued, r.Stats().Queued)
	}
	var during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&during)
	st := r.Stats()
	rec.hold.Unlock()
	if maxQueued > size {
		t.Fatalf("queue held %d changes, bound %d", maxQueued, size)
	}
	if st.Overflows == 0 {
		t.Fatalf("%d distinct keys past a queue of %d did not overflow: %+v", n, size, st)
	}
	waitFor(t, "the refresh after the overflow", func() bool { _, refreshes := rec.seen(); return refreshes > 0 })
	waitFor(t, "the queue drained", func() bool { return r.Stats().Queued == 0 })
	changes, refreshes := rec.seen()
	if len(changes) > 1+size*int(st.Overflows+1) {
		t.Fatalf("%d changes applied after %d overflows of a queue of %d", len(changes), st.Overflows, size)
	}
	t.Logf("%d events (%d of one key, %d distinct): at most %d queued (bound %d), %d coalesced, %d overflows, %d refreshes, %d changes applied; heap in use %d KiB before, %d KiB with the queue full",
		2*n, n, n, maxQueued, size, st.Coalesced, st.Overflows, refreshes, len(changes), before.HeapInuse>>10, during.HeapInuse>>10)
}
