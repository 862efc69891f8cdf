package bucketevents

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/sqstest"
)

// TestSQSPoller (an SQS-compatible server, package sqstest): the poller applies the changes of
// an S3 notification (event names as MinIO and as AWS give them), EventBridge events and an SNS notification around an
// S3 one, ignores S3's test event and another bucket's records, deletes a
// message that is not JSON, and deletes the messages only once their
// changes are applied.
func TestSQSPoller(t *testing.T) {
	queue := sqstest.Start(t, 10*time.Minute)
	bodies := []string{
		`{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"gw/docs/a+b.txt","eTag":"e1"}}},` +
			`{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"gw/docs/old.txt"}}},` +
			`{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"other"},"object":{"key":"gw/docs/x"}}}]}`,
		`{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"gw/docs/eb.txt","etag":"e2"}}}`,
		`{"version":"0","detail-type":"Object Deleted","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"gw/docs/eb-gone.txt"}}}`,
		`{"Type":"Notification","Message":"{\"Records\":[{\"eventName\":\"s3:ObjectCreated:Copy\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"gw/docs/sns.txt\",\"eTag\":\"e3\"}}}]}"}`,
		`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`,
		`not json`,
	}
	for _, b := range bodies {
		queue.Send(t, b)
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
	if err := r.PollSQS(ctx, SQSOptions{QueueURL: queue.QueueURL, Endpoint: queue.URL, AccessKey: sqstest.AccessKey, SecretKey: sqstest.SecretKey, WaitTime: time.Second}); err != nil {
		t.Fatal(err)
	}
	// Every message received, the changes queued, none applied (the share
	// is held): the server must hold them all in flight, none deleted.
	waitFor(t, "messages received and changes queued", func() bool {
		return r.SQSStats().Messages == uint64(len(bodies)) && r.Stats().Received == 5
	})
	if visible, inFlight := queue.Counts(t); visible != 0 || inFlight != len(bodies) {
		t.Fatalf("before the changes were applied the server holds %d messages visible, %d in flight; want 0, %d", visible, inFlight, len(bodies))
	}
	rec.hold.Unlock()
	held = false
	waitFor(t, "every message deleted on the server", func() bool {
		visible, inFlight := queue.Counts(t)
		return visible == 0 && inFlight == 0
	})
	// The poller counts a deletion once the server's answer is back,
	// which may come after the server shows the message gone.
	waitFor(t, "every deletion counted", func() bool { return r.SQSStats().Deleted >= uint64(len(bodies)) })
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
	// The messages: all deleted, the one that is no JSON failed, the rest
	// applied (S3's test event among them: nothing to apply).
	if st := r.SQSStats(); st.Messages != uint64(len(bodies)) || st.Deleted != uint64(len(bodies)) || st.Applied != uint64(len(bodies)-1) ||
		st.Failed != 1 || st.ReceiveErrors != 0 || st.DeleteErrors != 0 || st.Lag <= 0 || st.Lag > time.Hour {
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
