package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/sqstest"
)

// TestBucketEventsFromSQS: the daemon polls an SQS queue for the bucket's
// notifications (sqstest's stand-in for SQS, in the JSON protocol; no
// SQS-compatible server runs here): with attr_ttl at an hour, an object
// put into MinIO with the SDK, whose event record is queued as S3 sends it
// to SQS, shows in an NFS listing and reads back; its message is deleted
// once applied.
func TestBucketEventsFromSQS(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "sqsevents")
	queue := sqstest.Start(t)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir, "--store", "s3://sqsevents/gw", "--s3-endpoint", srv.Endpoint, "--s3-path-style",
		"--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey)
	setConfig(t, dir, map[string]map[string]any{"shares": {"attr_ttl": "1h",
		"bucket_events": map[string]any{"sqs": map[string]any{"queue_url": sqstest.QueueURL, "endpoint": queue.URL,
			"access_key": "sqs-key", "secret_key": "sqs-secret"}}}})
	serve(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")
	info := shareInfo(t, dir, "docs")
	url := func(p string) string { return strings.Replace(info.Mount.URL, "/docs/", "/docs/"+p, 1) }
	// The root is listed now: from here on only an event shows a change.
	if out := nfsTool(t, "nfs-ls", url("")); strings.Contains(out, "from-sqs") {
		t.Fatalf("new share lists %s", out)
	}
	ctx := context.Background()
	const body = "put while the gateway watched the queue\n"
	out, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("sqsevents"), Key: aws.String("gw/docs/from-sqs.txt"), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	queue.Send(fmt.Sprintf(`{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"sqsevents"},"object":{"key":"gw/docs/from-sqs.txt","size":%d,"eTag":%q}}}]}`,
		len(body), strings.Trim(aws.ToString(out.ETag), `"`)))
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		_, _, deleted := queue.Counts()
		if deleted == 1 && strings.Contains(nfsTool(t, "nfs-ls", url("")), "from-sqs.txt") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the object never showed over NFS, or its message was not deleted (%d deleted)", deleted)
		}
	}
	if got := nfsTool(t, "nfs-cat", url("from-sqs.txt")); got != body {
		t.Fatalf("nfs-cat: %q", got)
	}
	if out := mustRun(t, "config", "print", "--data-dir", dir); strings.Contains(out, "sqs-secret") {
		t.Fatalf("config print shows the SQS secret key:\n%s", out)
	}
}
