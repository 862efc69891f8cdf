package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithy "github.com/aws/smithy-go"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// client talks to endpoint with the SDK's retries off, so that every
// injected fault reaches the test.
func client(srv *miniotest.Server, endpoint string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:     aws.String(endpoint),
		Region:           srv.Region,
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		RetryMaxAttempts: 1,
	})
}

func put(ctx context.Context, c *s3.Client, key string, body []byte) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("faults"), Key: aws.String(key), Body: bytes.NewReader(body)})
	return err
}

func get(ctx context.Context, c *s3.Client, key string) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("faults"), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isConnError says whether err is a broken connection rather than an
// answer from the server.
func isConnError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF")
}

// onMinIO starts a MinIO with a bucket "faults" and a proxy in front of
// it, and returns them with a client of the proxy and a context that
// bounds the test.
func onMinIO(t *testing.T) (*miniotest.Server, *Proxy, *s3.Client, context.Context) {
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "faults")
	p, err := Start(srv.Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	return srv, p, client(srv, p.URL()), ctx
}

// TestFaultsOnMinIO drives each fault through the proxy against a real
// MinIO and checks what a client sees and what the server did.
func TestFaultsOnMinIO(t *testing.T) {
	srv, p, c, ctx := onMinIO(t)
	direct := srv.Client()
	data := testrand.Bytes(1, 1<<20)

	// No faults: everything passes, signatures included.
	if err := put(ctx, c, "clean", data); err != nil {
		t.Fatal(err)
	}
	if got, err := get(ctx, c, "clean"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clean get: %d bytes, %v", len(got), err)
	}

	p.SetFaults(Faults{SlowDown: 1})
	if err := put(ctx, c, "slow", data); apiCode(err) != "SlowDown" {
		t.Fatalf("put with SlowDown: %v", err)
	}
	p.SetFaults(Faults{InternalError: 1})
	if _, err := get(ctx, c, "clean"); apiCode(err) != "InternalError" {
		t.Fatalf("get with InternalError: %v", err)
	}
	p.SetFaults(Faults{ResetBefore: 1})
	if err := put(ctx, c, "reset-before", data); err == nil || !isConnError(err) {
		t.Fatalf("put with a reset before: %v", err)
	}
	if _, err := get(ctx, direct, "reset-before"); err == nil {
		t.Fatal("a put reset before forwarding reached the server")
	}
	p.SetFaults(Faults{ResetAfter: 1})
	if err := put(ctx, c, "reset-after", data); err == nil || !isConnError(err) {
		t.Fatalf("put with a reset after: %v", err)
	}
	if got, err := get(ctx, direct, "reset-after"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a put whose response was lost is not on the server: %d bytes, %v", len(got), err)
	}
	p.SetFaults(Faults{Truncate: 1})
	got, err := get(ctx, c, "clean")
	if err == nil || len(got) >= len(data) || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("truncated get: %d bytes, %v", len(got), err)
	}
	p.SetFaults(Faults{Latency: 1, MaxLatency: 50 * time.Millisecond})
	if got, err := get(ctx, c, "clean"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("delayed get: %d bytes, %v", len(got), err)
	}

	p.SetFaults(Faults{})
	p.SetOutage(true)
	for range 3 {
		if _, err := get(ctx, c, "clean"); err == nil || !isConnError(err) {
			t.Fatalf("get in an outage: %v", err)
		}
	}
	p.SetOutage(false)
	if got, err := get(ctx, c, "clean"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after the outage: %d bytes, %v", len(got), err)
	}
	p.Outage(time.Hour)
	if _, err := get(ctx, c, "clean"); err == nil {
		t.Fatal("get inside an outage window succeeded")
	}
	p.Outage(0)
	if _, err := get(ctx, c, "clean"); err != nil {
		t.Fatalf("get after the window: %v", err)
	}

	// Go's HTTP client sends an idempotent request once more when a
	// reused connection breaks before any answer, so resets can count
	// more than the calls that saw them.
	st := p.Stats()
	t.Log(st)
	if st.SlowDown != 1 || st.InternalError != 1 || st.ResetBefore < 1 || st.ResetAfter < 1 || st.Truncated != 1 ||
		st.Delayed != 1 || st.OutageResets < 4 || st.Injected() < 9 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMixedRatesAreSeeded: the same seed draws the same faults, and mixed
// rates come out near their share.
func TestMixedRatesAreSeeded(t *testing.T) {
	f := Faults{SlowDown: 0.1, InternalError: 0.05, ResetBefore: 0.05, ResetAfter: 0.05, Truncate: 0.05, Latency: 0.2, MaxLatency: time.Millisecond}
	draw := func(seed uint64) ([]decision, map[decision]int) {
		p := &Proxy{}
		p.rng = newRand(seed)
		p.faults = f
		var seq []decision
		n := map[decision]int{}
		for range 20000 {
			d, _, _ := p.decide()
			seq = append(seq, d)
			n[d]++
		}
		return seq, n
	}
	a, n := draw(7)
	b, _ := draw(7)
	c, _ := draw(8)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed drew different faults")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds drew the same faults")
	}
	for d, want := range map[decision]float64{slowDown: 0.1, internalError: 0.05, resetBefore: 0.05, resetAfter: 0.05, truncate: 0.05, pass: 0.7} {
		got := float64(n[d]) / 20000
		if got < want*0.8 || got > want*1.2 {
			t.Errorf("decision %d: share %.3f, want about %.2f", d, got, want)
		}
	}
}

func TestStartRefusesBadTarget(t *testing.T) {
	for _, target := range []string{"", "127.0.0.1:9000", "https://127.0.0.1:9000", "http://"} {
		if p, err := Start(target, 1); err == nil {
			p.Close()
			t.Errorf("Start(%q) accepted", target)
		}
	}
}

// TestCountsBytes: the body bytes that cross the proxy each way are
// counted, those of requests the proxy refuses and of its own error
// responses not.
func TestCountsBytes(t *testing.T) {
	_, p, c, ctx := onMinIO(t)
	const size = 1 << 20
	data := testrand.Bytes(2, size)

	if err := put(ctx, c, "counted", data); err != nil {
		t.Fatal(err)
	}
	s := p.Stats()
	// The client may frame the body (aws-chunked signatures and a
	// checksum trailer): a little more than the data, never less.
	if s.BytesUp < size || s.BytesUp > size+16<<10 || s.BytesDown != 0 {
		t.Fatalf("after a put of %d bytes: %d bytes up, %d down", size, s.BytesUp, s.BytesDown)
	}
	up := s.BytesUp
	if got, err := get(ctx, c, "counted"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %d bytes, %v", len(got), err)
	}
	if s = p.Stats(); s.BytesUp != up || s.BytesDown != size {
		t.Fatalf("after a get of %d bytes: %d bytes up (%d before), %d down", size, s.BytesUp, up, s.BytesDown)
	}

	// Refused by the proxy: nothing reaches the server or comes back from it.
	p.SetFaults(Faults{SlowDown: 1})
	if err := put(ctx, c, "refused", data); apiCode(err) != "SlowDown" {
		t.Fatalf("put with SlowDown: %v", err)
	}
	if _, err := get(ctx, c, "counted"); apiCode(err) != "SlowDown" {
		t.Fatalf("get with SlowDown: %v", err)
	}
	p.SetFaults(Faults{ResetBefore: 1})
	if err := put(ctx, c, "reset", data); err == nil || !isConnError(err) {
		t.Fatalf("put with a reset before: %v", err)
	}
	if s = p.Stats(); s.BytesUp != up || s.BytesDown != size {
		t.Fatalf("after refused requests: %d bytes up (%d before), %d down (%d before)", s.BytesUp, up, s.BytesDown, size)
	}
	if s.Requests != 5 {
		t.Fatalf("%d requests counted, want 5", s.Requests)
	}
}
