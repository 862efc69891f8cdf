package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/miniotest"
)

// listKeys lists the keys in bucket under each prefix, straight from the
// server.
func listKeys(t *testing.T, srv *miniotest.Server, bucket string, prefixes ...string) []string {
	t.Helper()
	var keys []string
	for _, prefix := range prefixes {
		listObjects(t, srv, bucket, prefix, func(key string, _ int64) { keys = append(keys, key) })
	}
	return keys
}

// listObjects calls fn with the key and size of each object in bucket
// under prefix, straight from the server.
func listObjects(t *testing.T, srv *miniotest.Server, bucket, prefix string, fn func(key string, size int64)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pg := awss3.NewListObjectsV2Paginator(srv.Client(), &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			fn(aws.ToString(o.Key), aws.ToInt64(o.Size))
		}
	}
}

// scanForMarkers reads every object in bucket and fails t if one holds a
// marker outside the prefix allowed for it ("" allows it nowhere). The
// object's user metadata is scanned too. It returns how many objects it
// read; a scan of an empty bucket fails, since it would prove nothing.
func scanForMarkers(t *testing.T, srv *miniotest.Server, bucket string, allowed map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	keys := listKeys(t, srv, bucket, "")
	if len(keys) == 0 {
		t.Fatalf("bucket %s is empty: nothing to scan", bucket)
	}
	seen := map[string]int{}
	for _, key := range keys {
		out, err := srv.Client().GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		body, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		for _, v := range out.Metadata {
			body = append(body, v...)
		}
		for marker, prefix := range allowed {
			if !bytes.Contains(body, []byte(marker)) {
				continue
			}
			seen[marker]++
			if prefix == "" || !strings.HasPrefix(key, prefix) {
				t.Errorf("object %s holds the plaintext marker %q", key, marker)
			}
		}
	}
	for marker, prefix := range allowed {
		// A marker allowed somewhere must be found there, or the scan
		// could not have seen plaintext at all.
		if prefix != "" && seen[marker] == 0 {
			t.Errorf("no object under %s holds %q: the scan did not see the plaintext written", prefix, marker)
		}
	}
	return len(keys)
}
