// Package miniotest runs a real MinIO server for tests: on a free loopback
// port, with a temporary data directory, stopped when the test (or the test
// binary) ends. Tests that need S3 use it instead of a fake, so that what
// they check is what an S3-compatible server does. StartCluster runs a
// distributed, erasure-coded MinIO of several nodes instead, whose nodes a
// test can kill and restart.
//
// The minio binary is looked up on PATH, then in $GOBIN and $GOPATH/bin (as
// `go env` reports them). When it is missing the test fails with the
// command that installs it; it is never skipped.
package miniotest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/childproc"
	"github.com/gatewayd/gatewayd/internal/freeport"
)

// InstallCommand installs the MinIO version the tests are known to pass with.
const InstallCommand = "GOFLAGS=-mod=mod go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"

const (
	accessKey = "gatewayd-test"
	secretKey = "gatewayd-test-secret"
	// readyTimeout is generous: it only bounds how long a broken server
	// takes to fail the test, never how fast a healthy one must be.
	readyTimeout = 2 * time.Minute
)

// Server is a running MinIO server, alone or one node of a Cluster.
type Server struct {
	Endpoint  string // "http://127.0.0.1:PORT"
	AccessKey string
	SecretKey string
	Region    string

	dataDir string // removed by Stop; a cluster's nodes share the cluster's
	drive   string // where the server keeps its objects
	bin     string
	args    []string // for `minio`, to start it again the same way
	env     []string // extra environment
	output  *syncBuffer
	stop    sync.Once
	cluster bool // a node of a Cluster

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited <-chan struct{} // closed when cmd has exited
}

// Start starts a server of its own for t and stops it when t ends.
func Start(t testing.TB) *Server {
	return StartWithEnv(t)
}

// StartWithEnv is Start with extra environment for the server, such as
// MinIO's notification targets (see Webhook).
func StartWithEnv(t testing.TB, env ...string) *Server {
	t.Helper()
	s, err := start(env...)
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the test binary's one shared server, starting it on first
// use. Call Main from TestMain to stop it when the tests are done; if the
// test binary dies first, the server dies with it.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = start() })
	if shared.err != nil {
		t.Fatalf("miniotest: %v", shared.err)
	}
	return shared.srv
}

// Main runs the tests and then stops the shared server. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	return code
}

// Binary returns the path of the minio binary, or an error that says how to
// install it.
func Binary() (string, error) {
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := goEnv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, gopath := range filepath.SplitList(goEnv("GOPATH")) {
		if gopath != "" {
			dirs = append(dirs, filepath.Join(gopath, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "minio")
		if info, err := os.Stat(p); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("the minio binary is not on PATH nor in %s; install it with:\n\t%s",
		strings.Join(dirs, ", "), InstallCommand)
}

// goEnv returns a Go environment setting, asking the go command when the
// environment does not say.
func goEnv(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Webhook is the environment giving MinIO a webhook notification target
// id sending to endpoint with token; its ARN is arn:minio:sqs::ID:webhook.
// With a queueDir, events wait there while the endpoint is down, and MinIO
// sends them from it on a fixed 3 s tick; with none ("") MinIO posts each
// event at once and drops it when the endpoint is down.
func Webhook(id, endpoint, token, queueDir string) []string {
	env := []string{
		"MINIO_NOTIFY_WEBHOOK_ENABLE_" + id + "=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_" + id + "=" + endpoint,
		"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_" + id + "=" + token,
	}
	if queueDir != "" {
		env = append(env, "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_"+id+"="+queueDir)
	}
	return env
}

func start(env ...string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	// A port picked free can be taken before MinIO binds it; try again then.
	var lastErr error
	for range 3 {
		s, err := startOnce(bin, env)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startOnce(bin string, env []string) (*Server, error) {
	ports, err := freeport.Ports(2)
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "miniotest-")
	if err != nil {
		return nil, err
	}
	drive := filepath.Join(dataDir, "data")
	s := newServer(bin, dataDir, drive, ports[0], ports[1], drive)
	s.env = env
	if err := s.launch(); err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	if err := s.waitReady(time.Now().Add(readyTimeout)); err != nil {
		s.Stop()
		return nil, fmt.Errorf("minio server on %s: %w\n%s", s.Endpoint, err, s.output.tail())
	}
	return s, nil
}

// newServer describes a server on port serving drives (paths, or the URLs
// of a cluster's drives); launch starts it.
func newServer(bin, dataDir, drive string, port, consolePort int, drives ...string) *Server {
	args := []string{"server",
		"--address", fmt.Sprintf("127.0.0.1:%d", port),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort),
		"--certs-dir", drive + ".certs",
		"--quiet"}
	return &Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: accessKey,
		SecretKey: secretKey,
		Region:    "us-east-1",
		dataDir:   dataDir,
		drive:     drive,
		bin:       bin,
		args:      append(args, drives...),
		output:    &syncBuffer{},
	}
}

// launch starts the minio process; it does not wait for it to be ready.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+accessKey,
		"MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
		// In a container MinIO takes no loopback address for its own
		// until told which is: a cluster's nodes differ only by port.
		"_MINIO_SERVER_LOCAL="+strings.TrimPrefix(s.Endpoint, "http://"),
	)
	cmd.Env = append(cmd.Env, s.env...)
	cmd.Stdout = s.output
	cmd.Stderr = s.output
	// The server must not outlive the test binary, however it ends.
	exited, err := childproc.Start(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// halt stops the process with sig, and with SIGKILL if it is still there
// after grace; it returns once the process has exited.
func (s *Server) halt(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) waitReady(deadline time.Time) error {
	client := &http.Client{Timeout: 2 * time.Second}
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	for {
		// Live means the process answers; the object layer may still be
		// initialising ("Server not initialized yet"), so a listing must
		// work too before tests use it.
		resp, err := client.Get(s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = s.Client().ListBuckets(ctx, &s3.ListBucketsInput{})
				cancel()
				if err == nil && s.cluster {
					err = s.clusterHealthy(client)
				}
				if err == nil {
					return nil
				}
			} else {
				err = fmt.Errorf("health check: %s", resp.Status)
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready in time: %w", err)
		}
	}
}

// Stop stops the server and removes its data. It is safe to call twice.
// A cluster's nodes are stopped by the cluster.
func (s *Server) Stop() {
	s.stop.Do(func() {
		s.halt(syscall.SIGTERM, 10*time.Second)
		if s.dataDir != "" {
			os.RemoveAll(s.dataDir)
		}
	})
}

// Client returns an S3 client for the server.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// CreateBucket creates a bucket, failing t if it cannot.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("miniotest: create bucket %s: %v", name, err)
	}
}

// PutObject puts body at key in bucket, as another S3 application would,
// failing t if it cannot.
func (s *Server) PutObject(t testing.TB, bucket, key string, body []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("miniotest: put %s/%s: %v", bucket, key, err)
	}
}

// CreateLockedBucket creates a bucket with Object Lock enabled (and so
// versioning), failing t if it cannot.
func (s *Server) CreateLockedBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("miniotest: create bucket %s with object lock: %v", name, err)
	}
}

// syncBuffer collects the server's output for error messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf.String()
	if len(out) > 4000 {
		out = "..." + out[len(out)-4000:]
	}
	return out
}

// StartServer starts a server outside a test (benchmarks); the caller
// stops it.
func StartServer() (*Server, error) { return start() }

// BucketDir is where the server keeps a bucket's objects on disk, for
// measuring how much a writer stored.
func (s *Server) BucketDir(bucket string) string { return filepath.Join(s.drive, bucket) }
