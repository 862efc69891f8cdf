package miniotest

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestStartCreateBucketStop(t *testing.T) {
	srv := Start(t)
	srv.CreateBucket(t, "bucket-one")
	ctx := t.Context()
	c := srv.Client()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket-one"), Key: aws.String("k"), Body: bytes.NewReader([]byte("hello"))}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket-one"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || string(b) != "hello" {
		t.Fatalf("get: %q, %v", b, err)
	}

	srv.Stop()
	if _, err := http.Get(srv.Endpoint + "/minio/health/live"); err == nil {
		t.Fatal("server still answers after Stop")
	}
	if _, err := os.Stat(srv.dataDir); !os.IsNotExist(err) {
		t.Fatalf("data directory left after Stop: %v", err)
	}
	srv.Stop() // a second Stop, as t.Cleanup will do, is harmless
}

func TestSharedIsShared(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatal("Shared started two servers")
	}
	resp, err := http.Get(a.Endpoint + "/minio/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %s", resp.Status)
	}
}

func TestMissingBinaryNamesTheInstallCommand(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	t.Setenv("GOBIN", empty)
	t.Setenv("GOPATH", empty)
	t.Setenv("HOME", empty)
	_, err := Binary()
	if err == nil {
		t.Fatal("Binary found minio with an empty PATH, GOBIN, GOPATH and HOME")
	}
	if !strings.Contains(err.Error(), InstallCommand) {
		t.Fatalf("error does not say how to install minio: %v", err)
	}
}

func TestMain(m *testing.M) { os.Exit(Main(m)) }
