package bucketevents

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
)

// The poller's tests run against fakeSQS, an in-process stand-in for SQS
// speaking the AWS JSON protocol aws-sdk-go-v2's SQS client uses: a unit
// test of the poller, not a test against a real SQS-compatible server.
// goaws v0.4.5 (github.com/Admiral-Piett/goaws, the newest the module
// proxy serves) builds and runs, but answers only the older query
// protocol: the client's JSON requests get 400 Bad Request. No other
// SQS-compatible server was found in Debian or the Go module proxy.

// fakeSQS holds one queue: messages in it, messages received and not
// deleted (in flight), and counts of the calls.
type fakeSQS struct {
	mu       sync.Mutex
	queue    []fakeMsg
	inFlight map[string]fakeMsg // by receipt handle
	receipts int
	receives int // receives that returned messages
	deletes  int // messages deleted
}

type fakeMsg struct{ id, body string }

func (f *fakeSQS) send(body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, fakeMsg{id: fmt.Sprintf("m%d", len(f.queue)+len(f.inFlight)+f.deletes), body: body})
}

func (f *fakeSQS) counts() (queued, inFlight, receives, deletes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue), len(f.inFlight), f.receives, f.deletes
}

func (f *fakeSQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if in["QueueUrl"] != "http://sqs.test/123/gw-events" {
		http.Error(w, fmt.Sprintf("queue %v", in["QueueUrl"]), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Header.Get("X-Amz-Target") {
	case "AmazonSQS.ReceiveMessage":
		var out []map[string]string
		for len(f.queue) > 0 && len(out) < int(in["MaxNumberOfMessages"].(float64)) {
			m := f.queue[0]
			f.queue = f.queue[1:]
			f.receipts++
			h := fmt.Sprintf("r%d", f.receipts)
			f.inFlight[h] = m
			out = append(out, map[string]string{"MessageId": m.id, "ReceiptHandle": h, "Body": m.body})
		}
		if len(out) > 0 {
			f.receives++
		}
		json.NewEncoder(w).Encode(map[string]any{"Messages": out})
	case "AmazonSQS.DeleteMessageBatch":
		var ok []map[string]string
		for _, e := range in["Entries"].([]any) {
			e := e.(map[string]any)
			delete(f.inFlight, e["ReceiptHandle"].(string))
			f.deletes++
			ok = append(ok, map[string]string{"Id": e["Id"].(string)})
		}
		json.NewEncoder(w).Encode(map[string]any{"Successful": ok, "Failed": []any{}})
	default:
		http.Error(w, "unknown target "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
	}
}

// TestSQSPoller (unit test, fake SQS): the poller applies the changes of
// an S3 notification, EventBridge events and an SNS notification around an
// S3 one, ignores S3's test event and another bucket's records, deletes a
// message that is not JSON, and deletes the messages only once their
// changes are applied.
func TestSQSPoller(t *testing.T) {
	fake := &fakeSQS{inFlight: map[string]fakeMsg{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	bodies := []string{
		`{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"gw/docs/a+b.txt","eTag":"e1"}}},` +
			`{"eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"gw/docs/old.txt"}}},` +
			`{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"other"},"object":{"key":"gw/docs/x"}}}]}`,
		`{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"gw/docs/eb.txt","etag":"e2"}}}`,
		`{"version":"0","detail-type":"Object Deleted","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"gw/docs/eb-gone.txt"}}}`,
		`{"Type":"Notification","Message":"{\"Records\":[{\"eventName\":\"s3:ObjectCreated:Copy\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"gw/docs/sns.txt\",\"eTag\":\"e3\"}}}]}"}`,
		`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`,
		`not json`,
	}
	for _, b := range bodies {
		fake.send(b)
	}
	rec := &recorder{}
	rec.hold.Lock() // the shares apply nothing until released
	held := true
	defer func() {
		if held {
			rec.hold.Unlock()
		}
	}()
	r, err := New(Options{Bucket: "b", Prefix: "gw"}, rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.PollSQS(ctx, SQSOptions{QueueURL: "http://sqs.test/123/gw-events", Endpoint: srv.URL, AccessKey: "x", SecretKey: "y", WaitTime: time.Second}); err != nil {
		t.Fatal(err)
	}
	// Every message received, the changes queued, none applied (the share
	// is held): none may be deleted yet.
	waitFor(t, "messages received and changes queued", func() bool {
		queued, inFlight, _, _ := fake.counts()
		return queued == 0 && inFlight == len(bodies) && r.Stats().Received == 5
	})
	if _, _, _, deletes := fake.counts(); deletes != 0 {
		t.Fatalf("%d messages deleted before their changes were applied", deletes)
	}
	rec.hold.Unlock()
	held = false
	waitFor(t, "every message deleted", func() bool {
		_, inFlight, _, deletes := fake.counts()
		return inFlight == 0 && deletes == len(bodies)
	})
	want := map[string]fileshare.ObjectChange{
		"docs/a b.txt":     {Key: "docs/a b.txt", ETag: "e1"},
		"docs/old.txt":     {Key: "docs/old.txt", Removed: true},
		"docs/eb.txt":      {Key: "docs/eb.txt", ETag: "e2"},
		"docs/eb-gone.txt": {Key: "docs/eb-gone.txt", Removed: true},
		"docs/sns.txt":     {Key: "docs/sns.txt", ETag: "e3"},
	}
	changes, _ := rec.seen()
	got := map[string]fileshare.ObjectChange{}
	for _, c := range changes {
		got[c.Key] = c
	}
	if len(changes) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes applied:\n%v\nwant\n%v", changes, want)
	}
	if st := r.Stats(); st.Received != 5 || st.Ignored != 1 {
		t.Errorf("receiver stats %+v: want 5 received, 1 ignored (another bucket)", st)
	}
	if st := r.SQSStats(); st.Messages != uint64(len(bodies)) || st.Deleted != uint64(len(bodies)) || st.Errors != 0 {
		t.Errorf("poller stats %+v", st)
	}
}

// TestWebhookTakesEventBridge: the webhook takes the same formats.
func TestWebhookTakesEventBridge(t *testing.T) {
	rec := &recorder{}
	r := start(t, rec, 16)
	req, err := http.NewRequest(http.MethodPost, "http://"+r.Addr()+"/",
		strings.NewReader(`{"detail-type":"Object Deleted","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"gw/docs/x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer sesame")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitFor(t, "the change applied", func() bool { c, _ := rec.seen(); return len(c) == 1 })
	if c, _ := rec.seen(); c[0] != (fileshare.ObjectChange{Key: "docs/x", Removed: true}) {
		t.Fatalf("change %+v", c[0])
	}
}
