package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/lease"
)

// leaseServeArgs are serve's arguments for a run expected to fail: the
// ports serve() would choose.
var leaseServeArgs = []string{"--iscsi-listen", "127.0.0.1:0", "--nfs-listen", "127.0.0.1:0", "--nfs-rpcbind=false"}

// mustRefuse checks that serve failed, saying every one of want.
func mustRefuse(t *testing.T, r result, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if r.code == 0 || !strings.HasPrefix(last, "gatewayd: ") {
		t.Fatalf("serve: exit %d, want a refusal; stderr:\n%s", r.code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Fatalf("refusal %q does not say %q", last, w)
		}
	}
}

func readLease(t *testing.T, srv *miniotest.Server, bucket, key string) *lease.Record {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	r, err := lease.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v\n%s", key, err, b)
	}
	return r
}

// waitExpired waits until the lease at key has expired by this host's clock.
func waitExpired(t *testing.T, srv *miniotest.Server, bucket, key string) {
	t.Helper()
	r := readLease(t, srv, bucket, key)
	deadline := time.Now().Add(5 * time.Minute)
	for !time.Now().After(r.Expires) {
		if time.Now().After(deadline) {
			t.Fatalf("lease %+v never expired", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// objectVersions lists every key under prefix with its ETag, but key skip.
func objectVersions(t *testing.T, srv *miniotest.Server, bucket, prefix, skip string) map[string]string {
	t.Helper()
	m := map[string]string{}
	pg := awss3.NewListObjectsV2Paginator(srv.Client(), &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); k != skip {
				m[k] = aws.ToString(o.ETag)
			}
		}
	}
	return m
}

// leaseHealth is the daemon's health entry "lease".
func leaseHealth(t *testing.T, dataDir string) health.State {
	t.Helper()
	r := run(t, nil, "status", "--data-dir", dataDir, "-o", "json")
	var st admin.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%+v", err, r)
	}
	for _, h := range st.Health {
		if h.Subsystem == "lease" {
			return h
		}
	}
	t.Fatalf("status has no lease health: %+v", st.Health)
	return health.State{}
}

// TestTwoGatewaysOnOnePrefix runs two real daemons on one MinIO prefix:
// only one serves at a time; the other refuses and names it; a dead one's
// lease is taken over only once expired; and a gateway whose lease is
// stolen stops writing to the bucket at once, says so, and keeps what it
// acknowledged in its buffer until it holds the lease again.
func TestTwoGatewaysOnOnePrefix(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "lease")
	s3args := minioFlags(srv)
	const leaseKey = "gw/gateway.lease"
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dirA, "--store", "s3://lease/gw"}, s3args...)...)
	mustRun(t, append([]string{"init", "--data-dir", dirB, "--store", "s3://lease/gw", "--master-key-file", filepath.Join(dirA, "master.key")}, s3args...)...)
	for _, d := range []string{dirA, dirB} {
		// Short, so that the test waits seconds for an expiry.
		setConfig(t, d, map[string]map[string]any{"store": {"lease_ttl": "8s"}})
	}

	a := serve(t, dirA)
	if r := readLease(t, srv, "lease", leaseKey); r.DataDir != dirA || r.Host != host || r.TTLMS != 8000 {
		t.Fatalf("lease of the first gateway: %+v", r)
	}
	// The second refuses to start and names the first, with or without
	// --take-over while the lease is live.
	serveB := append([]string{"serve", "--data-dir", dirB}, leaseServeArgs...)
	mustRefuse(t, run(t, nil, serveB...), "s3://lease/gw/ is in use by the gateway on host "+host, "data dir "+dirA, "last renewed", "expires in")
	mustRefuse(t, run(t, nil, append(serveB, "--take-over")...), "data dir "+dirA, "--take-over takes only an expired lease")
	// A third cannot even be initialised on the prefix.
	mustFailClearly(t, run(t, nil, append([]string{"init", "--data-dir", t.TempDir(), "--store", "s3://lease/gw",
		"--master-key-file", filepath.Join(dirA, "master.key")}, s3args...)...), "give this one another prefix")

	// The first dies; once its lease expired, --take-over takes it.
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	waitExpired(t, srv, "lease", leaseKey)
	mustRefuse(t, run(t, nil, serveB...), "data dir "+dirA, "expired", "start this one with --take-over")
	b := serve(t, dirB, "--take-over")
	if r := readLease(t, srv, "lease", leaseKey); r.DataDir != dirB {
		t.Fatalf("lease after the take-over: %+v", r)
	}
	// The first, restarted, refuses while the second holds the lease.
	mustRefuse(t, run(t, nil, append([]string{"serve", "--data-dir", dirA}, leaseServeArgs...)...), "data dir "+dirB)

	// A clean stop releases the lease: the first starts without --take-over.
	b.stop(t)
	if r := readLease(t, srv, "lease", leaseKey); r.Released == nil {
		t.Fatalf("lease after a clean stop: %+v", r)
	}
	a = serve(t, dirA)
	if h := leaseHealth(t, dirA); h.Level != health.OK {
		t.Fatalf("lease health of the serving gateway: %+v", h)
	}

	mustRun(t, "share", "create", "--data-dir", dirA, "--name", "docs")
	info := shareInfo(t, dirA, "docs")
	url := func(p string) string { return strings.Replace(info.Mount.URL, "/docs/", "/docs/"+p, 1) }
	put := func(name string, data []byte) {
		t.Helper()
		local := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		nfsTool(t, "nfs-cp", local, url(name))
	}
	v1 := []byte("written while the gateway held its lease\n")
	put("a.txt", v1)
	waitObject(t, srv, "lease", "gw/docs/a.txt", v1)

	// Someone else writes the lease: the gateway finds out at its next
	// renewal and stops writing.
	now := time.Now()
	stolen := lease.Record{Format: lease.Format, HolderID: "thief", Host: "thief-host", DataDir: "/elsewhere", PID: 1,
		Taken: now.UTC(), Renewed: now.UTC(), TTLMS: 8000, Expires: now.Add(8 * time.Second).UTC()}
	if _, err := srv.Client().PutObject(context.Background(), &awss3.PutObjectInput{Bucket: aws.String("lease"), Key: aws.String(leaseKey),
		Body: bytes.NewReader(stolen.Marshal())}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		h := leaseHealth(t, dirA)
		if h.Level == health.Error {
			if !strings.Contains(h.Message, "lost") || !strings.Contains(h.Message, "thief-host") {
				t.Fatalf("lease health says %q", h.Message)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never noticed its stolen lease: %+v\n%s", h, a.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := run(t, nil, "status", "--data-dir", dirA).stdout; !strings.Contains(out, "lost: the gateway on host thief-host") {
		t.Fatalf("status does not show the lost lease:\n%s", out)
	}

	// Writes are acknowledged into the buffer (nfs-cp creates new files);
	// uploads fail; nothing new reaches the bucket.
	before := objectVersions(t, srv, "lease", "gw/", leaseKey)
	errsBefore, _ := metric(t, dirA, "gatewayd_share_upload_errors_total")
	v2 := []byte("acknowledged after the lease was lost\n")
	put("b.txt", v2)
	put("c.txt", v2)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if n, _ := metric(t, dirA, "gatewayd_share_upload_errors_total"); n >= errsBefore+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the uploader never tried the files written behind the fence\n%s", a.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := objectVersions(t, srv, "lease", "gw/", leaseKey)
	for k, etag := range after {
		if before[k] != etag {
			t.Errorf("the fenced gateway wrote %s", k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("the fenced gateway deleted %s", k)
		}
	}
	if r := readLease(t, srv, "lease", leaseKey); r.HolderID != "thief" {
		t.Fatalf("the fenced gateway overwrote the lease: %+v", r)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Restarted, the gateway refuses while the thief's lease is live, and
	// takes it over once expired: the buffered writes then go up.
	a.stop(t)
	r := run(t, nil, append([]string{"serve", "--data-dir", dirA}, leaseServeArgs...)...)
	mustRefuse(t, r, "thief-host", "/elsewhere")
	waitExpired(t, srv, "lease", leaseKey)
	a = serve(t, dirA, "--take-over")
	waitObject(t, srv, "lease", "gw/docs/b.txt", v2)
	waitObject(t, srv, "lease", "gw/docs/c.txt", v2)
	if h := leaseHealth(t, dirA); h.Level != health.OK {
		t.Fatalf("lease health after the take-over: %+v", h)
	}
	a.stop(t)
}
