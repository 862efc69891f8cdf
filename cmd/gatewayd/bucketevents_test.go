package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/internal/miniotest"
)

// TestBucketEventsReachNFS: MinIO sends the bucket's notifications to
// gatewayd's webhook receiver; with attr_ttl at an hour (no refresh by the
// TTL during the test) an object put with the SDK appears in an NFS
// listing and reads back, an overwrite reads back, a delete disappears. A
// request with the wrong token is refused.
func TestBucketEventsReachNFS(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	const token = "bucket-events-test-token"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	queue := filepath.Join(t.TempDir(), "events")
	if err := os.MkdirAll(queue, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := miniotest.StartWithEnv(t, miniotest.Webhook("GATEWAYD", "http://"+addr+"/", token, queue)...)
	srv.CreateBucket(t, "events")
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir, "--store", "s3://events/gw", "--s3-endpoint", srv.Endpoint, "--s3-path-style",
		"--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey)
	setConfig(t, dir, map[string]map[string]any{"shares": {"attr_ttl": "1h",
		"bucket_events": map[string]any{"listen": addr, "token": token}}})
	serve(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")

	ctx := context.Background()
	s3c := srv.Client()
	if _, err := s3c.PutBucketNotificationConfiguration(ctx, &awss3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String("events"),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String("arn:minio:sqs::GATEWAYD:webhook"),
			Events:   []s3types.Event{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"},
		}}},
	}); err != nil {
		t.Fatal(err)
	}

	info := shareInfo(t, dir, "docs")
	url := func(p string) string { return strings.Replace(info.Mount.URL, "/docs/", "/docs/"+p, 1) }
	// The share lists the root now: from here on only an event shows a
	// change (the listing is trusted for the hour of attr_ttl).
	if out := nfsTool(t, "nfs-ls", url("")); strings.Contains(out, "incoming") {
		t.Fatalf("new share lists %s", out)
	}
	put := func(key, body string) {
		t.Helper()
		if _, err := s3c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("events"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Minute); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
		}
	}

	put("gw/docs/incoming/report one.txt", "first version\n")
	until("the object put in the bucket listed over NFS", func() bool {
		return strings.Contains(nfsTool(t, "nfs-ls", url("")), "incoming") &&
			strings.Contains(nfsTool(t, "nfs-ls", url("incoming")), "report one.txt")
	})
	if got := nfsTool(t, "nfs-cat", url("incoming/report one.txt")); got != "first version\n" {
		t.Fatalf("nfs-cat of the object put in the bucket: %q", got)
	}

	put("gw/docs/incoming/report one.txt", "second, longer version\n")
	until("the overwrite read over NFS", func() bool {
		return nfsTool(t, "nfs-cat", url("incoming/report one.txt")) == "second, longer version\n"
	})

	if _, err := s3c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("events"), Key: aws.String("gw/docs/incoming/report one.txt")}); err != nil {
		t.Fatal(err)
	}
	until("the deleted object gone from the NFS listing", func() bool {
		return !strings.Contains(nfsTool(t, "nfs-ls", url("incoming")), "report one.txt")
	})

	// The token is checked.
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(`{"Records":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer not-"+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong token got %s", resp.Status)
	}
	if n, ok := metric(t, dir, "gatewayd_bucket_events_unauthorized_total"); !ok || n < 1 {
		t.Fatalf("gatewayd_bucket_events_unauthorized_total: %v %v", n, ok)
	}
	n, _ := metric(t, dir, `gatewayd_bucket_events_applied_total{outcome="applied"}`)
	t.Logf("changes applied: %v", n)
}
