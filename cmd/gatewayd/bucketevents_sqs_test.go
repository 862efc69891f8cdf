package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/sqstest"
)

// TestBucketEventsFromSQS: the daemon polls an SQS-compatible server
// (fauxqs, package sqstest) for the bucket's notifications. MinIO has no
// SQS target, so the test queues each object's event record as S3 sends
// it to SQS, after putting the object into MinIO with the SDK. With
// attr_ttl at an hour the object shows in an NFS listing and reads back,
// and its message is gone from the server once applied. A message that a
// consumer received and never deleted (a gateway that died with it)
// comes back after the queue's visibility timeout and is applied and
// deleted by the restarted daemon. The poller's metrics count it all.
func TestBucketEventsFromSQS(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "sqsevents")
	const visibility = 15 * time.Second
	queue := sqstest.Start(t, visibility)
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://sqsevents/gw"}, minioFlags(srv)...)...)
	setConfig(t, dir, map[string]map[string]any{"shares": {"attr_ttl": "1h",
		"bucket_events": map[string]any{"sqs": map[string]any{"queue_url": queue.QueueURL, "endpoint": queue.URL,
			"access_key": sqstest.AccessKey, "secret_key": sqstest.SecretKey}}}})
	d := serve(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")
	info := shareInfo(t, dir, "docs")
	url := func(p string) string { return strings.Replace(info.Mount.URL, "/docs/", "/docs/"+p, 1) }
	// The root is listed now: from here on only an event shows a change.
	if out := nfsTool(t, "nfs-ls", url("")); strings.Contains(out, "from-sqs") {
		t.Fatalf("new share lists %s", out)
	}
	ctx := context.Background()
	// put writes an object into MinIO and returns its event record.
	put := func(key, body string) string {
		t.Helper()
		out, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("sqsevents"), Key: aws.String(key), Body: strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put",`+
			`"s3":{"s3SchemaVersion":"1.0","bucket":{"name":"sqsevents","arn":"arn:aws:s3:::sqsevents"},"object":{"key":%q,"size":%d,"eTag":%q}}}]}`,
			key, len(body), strings.Trim(aws.ToString(out.ETag), `"`))
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Minute); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
		}
	}
	empty := func() bool { visible, inFlight := queue.Counts(t); return visible == 0 && inFlight == 0 }

	const body = "put while the gateway watched the queue\n"
	queue.Send(t, put("gw/docs/from-sqs.txt", body))
	queue.Send(t, "not json")
	until("the object listed over NFS", func() bool { return strings.Contains(nfsTool(t, "nfs-ls", url("")), "from-sqs.txt") })
	if got := nfsTool(t, "nfs-cat", url("from-sqs.txt")); got != body {
		t.Fatalf("nfs-cat: %q", got)
	}
	until("both messages deleted on the server", func() bool {
		return empty() && scrape(t, dir)["gatewayd_bucket_events_sqs_deleted_total"] == 2
	})
	m := scrape(t, dir)
	for series, want := range map[string]float64{"gatewayd_bucket_events_sqs_received_total": 2, "gatewayd_bucket_events_sqs_applied_total": 1,
		"gatewayd_bucket_events_sqs_deleted_total": 2, "gatewayd_bucket_events_sqs_failed_total": 1,
		`gatewayd_bucket_events_sqs_errors_total{op="receive"}`: 0, `gatewayd_bucket_events_sqs_errors_total{op="delete"}`: 0} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (exported: %v), want %v", series, got, ok, want)
		}
	}
	if lag, ok := m["gatewayd_bucket_events_sqs_lag_seconds"]; !ok || lag <= 0 || lag > 3600 {
		t.Errorf("gatewayd_bucket_events_sqs_lag_seconds = %v (exported: %v), want the age of a message just sent", lag, ok)
	}
	if out := mustRun(t, "config", "print", "--data-dir", dir); strings.Contains(out, sqstest.SecretKey) {
		t.Fatalf("config print shows the SQS secret key:\n%s", out)
	}

	// A gateway that received a message and died before applying it: the
	// test receives it in the stopped daemon's place and never deletes it.
	d.stop(t)
	const again = "overwritten while no gateway watched\n"
	queue.Send(t, put("gw/docs/from-sqs.txt", again))
	taken := time.Now() // the message's visibility timeout starts after this
	got, err := queue.Client().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queue.QueueURL), WaitTimeSeconds: 20})
	if err != nil || len(got.Messages) != 1 {
		t.Fatalf("receive in the stopped gateway's place: %v, %v", got, err)
	}
	serve(t, dir)
	until("the message back after its visibility timeout and deleted on the server", func() bool {
		return empty() && scrape(t, dir)["gatewayd_bucket_events_sqs_deleted_total"] == 1
	})
	if waited := time.Since(taken); waited < visibility {
		t.Fatalf("the message was applied and deleted %v after it was taken, before its visibility timeout of %v", waited, visibility)
	}
	info = shareInfo(t, dir, "docs") // the NFS server's port is new
	if got := nfsTool(t, "nfs-cat", url("from-sqs.txt")); got != again {
		t.Fatalf("nfs-cat after the message came back: %q", got)
	}
	m = scrape(t, dir)
	if m["gatewayd_bucket_events_sqs_received_total"] != 1 || m["gatewayd_bucket_events_sqs_applied_total"] != 1 {
		t.Errorf("restarted daemon's poller: received %v, applied %v; want 1 and 1", m["gatewayd_bucket_events_sqs_received_total"], m["gatewayd_bucket_events_sqs_applied_total"])
	}
}
