package miniotest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/freeport"
)

// Cluster is a distributed MinIO: n server processes on loopback, each
// with its own port and drive, erasure-coding every object across the n
// drives. With 4 nodes MinIO keeps 2 parity shards, so the cluster reads
// and writes with any one node down; tests stop and start nodes to see
// what a client of the cluster goes through meanwhile. The cluster keeps
// a bucket of its own, miniotest-probe.
type Cluster struct {
	Nodes []*Server // Nodes[i].Endpoint is node i's S3 endpoint

	dir  string
	stop sync.Once
}

// MinClusterNodes is the smallest cluster: MinIO erasure-codes over 4
// drives at least, and each node here has one.
const MinClusterNodes = 4

// StartCluster starts a cluster of n nodes for t and stops it when t ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := startCluster(n)
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

func startCluster(n int) (*Cluster, error) {
	if n < MinClusterNodes {
		return nil, fmt.Errorf("a cluster of %d nodes: MinIO's erasure coding needs at least %d drives, one a node here", n, MinClusterNodes)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	// A port picked free can be taken before MinIO binds it; try again then.
	var lastErr error
	for range 3 {
		c, err := startClusterOnce(bin, n)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startClusterOnce(bin string, n int) (*Cluster, error) {
	ports, err := freeport.Ports(2 * n)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "miniotest-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	// Every node is given every node's drive as a URL; a node serves the
	// drives whose host and port are its own.
	var drives []string
	for i := range n {
		drives = append(drives, fmt.Sprintf("http://127.0.0.1:%d%s", ports[i], c.drive(i)))
	}
	for i := range n {
		s := newServer(bin, "", c.drive(i), ports[i], ports[n+i], drives...)
		s.cluster = true
		c.Nodes = append(c.Nodes, s)
	}
	// The nodes wait for each other before any is ready: start all, then
	// wait for each.
	for _, s := range c.Nodes {
		if err := s.launch(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(readyTimeout)
	for i, s := range c.Nodes {
		if err := s.waitReady(deadline); err != nil {
			c.Stop()
			return nil, fmt.Errorf("minio cluster node %d on %s: %w\n%s", i, s.Endpoint, err, s.output.tail())
		}
	}
	// Just after the nodes are ready a write can still meet 503
	// SlowDownWrite; the first write waits for that to pass.
	if err := retry(func(ctx context.Context) error {
		_, err := c.Nodes[0].Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(probeBucket)})
		return err
	}, "create the probe bucket"); err != nil {
		c.Stop()
		return nil, fmt.Errorf("minio cluster: %w", err)
	}
	return c, nil
}

// clusterHealthy asks the node whether it reaches enough drives to read
// and write. A node that has just started answers listings before it has
// joined its peers, and meanwhile answers NoSuchKey for objects written
// while it was down.
func (s *Server) clusterHealthy(client *http.Client) error {
	for _, path := range []string{"/minio/health/cluster", "/minio/health/cluster/read"} {
		resp, err := client.Get(s.Endpoint + path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
	}
	return nil
}

func (c *Cluster) drive(i int) string { return filepath.Join(c.dir, fmt.Sprintf("node%d", i)) }

// Endpoints are the nodes' S3 endpoints.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, s := range c.Nodes {
		eps = append(eps, s.Endpoint)
	}
	return eps
}

// probeBucket holds, for each node that is down, an object written after
// it went down: RestartNode waits until the node serves it.
const probeBucket = "miniotest-probe"

// KillNode stops node i with SIGKILL, as a crash or a power cut would,
// and returns once the process is gone (its drive stays) and an object
// written since is on the other nodes.
func (c *Cluster) KillNode(i int) error {
	c.Nodes[i].halt(syscall.SIGKILL, time.Minute)
	live := c.Nodes[(i+1)%len(c.Nodes)]
	return retry(func(ctx context.Context) error {
		_, err := live.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(probeBucket), Key: aws.String(probeKey(i)), Body: strings.NewReader(probeKey(i))})
		return err
	}, fmt.Sprintf("write through %s with node %d down", live.Endpoint, i))
}

func probeKey(i int) string { return fmt.Sprintf("written-while-node-%d-was-down", i) }

// RestartNode starts node i again on its port and drive, and waits
// (within a generous deadline) until it serves requests again: MinIO's
// health checks pass, it serves the object KillNode wrote, and a write
// through it (deleting that object) succeeds, where it first answers 503
// SlowDownWrite. Even then the restarted node was seen to answer
// NoSuchKey, for a while, for other objects written while it was down
// (its own drive lacks them until healed): clients that must see every
// object read through nodes that stayed up.
func (c *Cluster) RestartNode(i int) error {
	s := c.Nodes[i]
	s.mu.Lock()
	running := s.exited != nil
	if running {
		select {
		case <-s.exited:
			running = false
		default:
		}
	}
	s.mu.Unlock()
	if running {
		return fmt.Errorf("minio cluster node %d on %s is running", i, s.Endpoint)
	}
	if err := s.launch(); err != nil {
		return err
	}
	if err := s.waitReady(time.Now().Add(readyTimeout)); err != nil {
		return fmt.Errorf("minio cluster node %d on %s after a restart: %w\n%s", i, s.Endpoint, err, s.output.tail())
	}
	if err := retry(func(ctx context.Context) error {
		out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(probeBucket), Key: aws.String(probeKey(i))})
		if err == nil {
			out.Body.Close()
		}
		return err
	}, fmt.Sprintf("node %d on %s after a restart: read an object written while it was down", i, s.Endpoint)); err != nil {
		return err
	}
	// Writes through it meet 503 SlowDownWrite for a moment too.
	return retry(func(ctx context.Context) error {
		_, err := s.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(probeBucket), Key: aws.String(probeKey(i))})
		return err
	}, fmt.Sprintf("node %d on %s after a restart: write", i, s.Endpoint))
}

// retry calls f until it succeeds or readyTimeout passes.
func retry(f func(context.Context) error, what string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still failing after %v: %w", what, readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops every node and removes the drives. It is safe to call twice.
func (c *Cluster) Stop() {
	c.stop.Do(func() {
		var wg sync.WaitGroup
		for _, s := range c.Nodes {
			wg.Add(1)
			go func() { defer wg.Done(); s.halt(syscall.SIGTERM, 10*time.Second) }()
		}
		wg.Wait()
		os.RemoveAll(c.dir)
	})
}
