package miniotest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
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

// A 4-node cluster keeps serving reads and writes with one node killed,
// and the node serves the objects, old and new, after its restart.
func TestClusterSurvivesANodeKill(t *testing.T) {
	c := StartCluster(t, 4)
	if len(c.Endpoints()) != 4 {
		t.Fatalf("endpoints %v", c.Endpoints())
	}
	ctx := t.Context()
	first, other := c.Nodes[0], c.Nodes[1]
	first.CreateBucket(t, "cluster")
	// A write meets 503 SlowDownWrite now and then around a node's
	// death and return; S3 clients retry those.
	put := func(s *Server, key, body string) {
		t.Helper()
		if err := retry(func(ctx context.Context) error {
			_, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cluster"), Key: aws.String(key), Body: bytes.NewReader([]byte(body))})
			return err
		}, "put "+key+" through "+s.Endpoint); err != nil {
			t.Fatal(err)
		}
	}
	get := func(s *Server, key, want string) {
		t.Helper()
		out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("cluster"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("get %s through %s: %v", key, s.Endpoint, err)
		}
		b, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || string(b) != want {
			t.Fatalf("get %s through %s: %q, %v; want %q", key, s.Endpoint, b, err, want)
		}
	}
	put(first, "before", "written with every node up")
	get(other, "before", "written with every node up")
	// Erasure-coded: the nodes' drives hold parts of the object (all of
	// them once MinIO has healed a drive that came up late).
	var parts int
	for i := range c.Nodes {
		if _, err := os.Stat(filepath.Join(c.Nodes[i].BucketDir("cluster"), "before", "xl.meta")); err == nil {
			parts++
		}
	}
	if parts < 3 {
		t.Fatalf("%d of the 4 drives hold a part of the object", parts)
	}

	if err := c.KillNode(2); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(c.Nodes[2].Endpoint + "/minio/health/live"); err == nil {
		t.Fatal("a killed node still answers")
	}
	put(other, "during", "written with node 2 down")
	get(first, "before", "written with every node up")
	get(first, "during", "written with node 2 down")

	if err := c.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartNode(2); err == nil {
		t.Fatal("a running node was started a second time")
	}
	// Read through nodes that stayed up: the restarted one may answer
	// NoSuchKey for a while for what it missed (see RestartNode).
	get(first, "before", "written with every node up")
	get(other, "during", "written with node 2 down")
	put(c.Nodes[2], "after", "written after the restart")
	get(first, "after", "written after the restart")

	c.Stop()
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("drives left after Stop: %v", err)
	}
}

func TestClusterNeedsFourNodes(t *testing.T) {
	if _, err := startCluster(3); err == nil || !strings.Contains(err.Error(), "at least 4") {
		t.Fatalf("a cluster of 3: %v", err)
	}
}
