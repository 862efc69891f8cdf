package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/miniotest"
)

// TestShareWait: files written over NFS, with the settle time at an hour
// (no upload would start during the test): `share wait --path sub --flush`
// returns with every file under sub in MinIO and the others not; `share
// wait --flush` then with every file in MinIO, checked there at once.
func TestShareWait(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "wait")
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://wait/gw"}, minioFlags(srv)...)...)
	setConfig(t, dir, map[string]map[string]any{"shares": {"settle_time": "1h"}})
	serve(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs")
	v, done := nfsMount(t, nfsAddr(t, dir), "docs")
	defer done()
	if _, err := v.Mkdir("sub", 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 6 {
		p := fmt.Sprintf("top-%d.txt", i)
		if i%2 == 1 {
			p = fmt.Sprintf("sub/file-%d.txt", i)
		}
		f, err := v.OpenFile(p, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		body := strings.Repeat(p+"\n", 1000)
		if _, err := f.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		want[p] = body
	}
	inS3 := func(p string) bool {
		t.Helper()
		out, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("wait"), Key: aws.String("gw/docs/" + p)})
		if err != nil {
			if strings.Contains(err.Error(), "NotFound") || strings.Contains(err.Error(), "404") {
				return false
			}
			t.Fatal(err)
		}
		if aws.ToInt64(out.ContentLength) != int64(len(want[p])) {
			t.Fatalf("%s in S3 has %d bytes, want %d", p, aws.ToInt64(out.ContentLength), len(want[p]))
		}
		return true
	}
	out := mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--path", "sub", "--flush")
	if !strings.Contains(out, "in S3") {
		t.Fatalf("share wait said %q", out)
	}
	for p := range want {
		if got := inS3(p); got != strings.HasPrefix(p, "sub/") {
			t.Fatalf("after share wait --path sub --flush: %s in S3 %v", p, got)
		}
	}
	mustRun(t, "share", "wait", "--data-dir", dir, "docs", "--flush")
	for p := range want {
		if !inS3(p) {
			t.Fatalf("after share wait --flush: %s not in S3", p)
		}
	}
	// Nothing pending: it returns at once.
	if out := mustRun(t, "share", "wait", "--data-dir", dir, "docs"); !strings.Contains(out, "(0 changes waited for)") {
		t.Fatalf("share wait with nothing pending said %q", out)
	}
	r := run(t, nil, "share", "wait", "--data-dir", dir, "nosuch")
	mustFailClearly(t, r, "nosuch")
}
