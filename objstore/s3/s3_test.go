package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

var bucketSeq atomic.Int64

// newBucket creates a fresh bucket on the shared MinIO server.
func newBucket(t testing.TB) (*miniotest.Server, string) {
	srv := miniotest.Shared(t)
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), bucketSeq.Add(1))
	srv.CreateBucket(t, name)
	return srv, name
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is small enough for the suite to exercise multipart uploads
// and list pagination.
func testConfig(srv *miniotest.Server, bucket string) Config {
	return Config{
		Bucket:             bucket,
		Prefix:             "gw",
		Endpoint:           srv.Endpoint,
		Region:             srv.Region,
		PathStyle:          true,
		AccessKeyID:        srv.AccessKey,
		SecretAccessKey:    srv.SecretKey,
		PartSize:           MinPartSize,
		MultipartThreshold: MinPartSize,
		ListPageSize:       4,
	}
}

func newStore(t testing.TB) (*Store, *miniotest.Server) {
	srv, bucket := newBucket(t)
	s, err := Open(t.Context(), testConfig(srv, bucket), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Copies above 6 MiB go in 5 MiB parts, so the suite's large copy
	// takes the UploadPartCopy path.
	s.copyThreshold = 6 << 20
	s.copyPartSize = MinPartSize
	return s, srv
}

func TestConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store {
		s, _ := newStore(t)
		return s
	})
}

func TestOpenMissingBucket(t *testing.T) {
	srv := miniotest.Shared(t)
	cfg := testConfig(srv, "no-such-bucket")
	_, err := Open(t.Context(), cfg, nil)
	want := "s3: bucket no-such-bucket does not exist at " + srv.Endpoint
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if !errkind.IsPermanent(err) {
		t.Fatalf("missing bucket is %v, want permanent", errkind.Of(err))
	}
}

func TestOpenBadCredentials(t *testing.T) {
	srv, bucket := newBucket(t)
	cfg := testConfig(srv, bucket)
	cfg.SecretAccessKey = "wrong-secret-key"
	_, err := Open(t.Context(), cfg, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "s3: access denied to bucket "+bucket+" at "+srv.Endpoint) {
		t.Fatalf("got %v, want access denied", err)
	}
	if strings.Contains(err.Error(), "\n") || !errkind.IsPermanent(err) {
		t.Fatalf("want one permanent line, got %v: %q", errkind.Of(err), err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	endpoint := "http://" + freeport.Addr(t) // nothing listens there
	cfg := Config{Bucket: "b", Endpoint: endpoint, PathStyle: true, AccessKeyID: "k", SecretAccessKey: "s"}
	_, err := Open(t.Context(), cfg, nil)
	want := "s3: cannot reach S3 endpoint " + endpoint + ": "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v, want %q...connection refused", err, want)
	}
	if !errkind.IsRetryable(err) {
		t.Fatalf("unreachable endpoint is %v, want retryable", errkind.Of(err))
	}
}

func TestNoSuchKeyIsNotFound(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.Get(t.Context(), "missing", 0, -1)
	if !errkind.IsNotFound(err) || !objstore.IsNotFound(err) {
		t.Fatalf("get of a missing key: %v (%v), want not-found", err, errkind.Of(err))
	}
	_, err = s.Stat(t.Context(), "missing")
	if !errkind.IsNotFound(err) {
		t.Fatalf("stat of a missing key: %v (%v), want not-found", err, errkind.Of(err))
	}
}

func TestMissingBucketAfterOpenIsPermanentNotNotFound(t *testing.T) {
	s, srv := newStore(t)
	if _, err := srv.Client().DeleteBucket(t.Context(), &awss3.DeleteBucketInput{Bucket: aws.String(s.cfg.Bucket)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(t.Context(), "k", 0, -1)
	if !errkind.IsPermanent(err) || objstore.IsNotFound(err) {
		t.Fatalf("get from a deleted bucket: %v (%v), want permanent", err, errkind.Of(err))
	}
	err = objstore.PutBytes(t.Context(), s, "k", []byte("x"))
	if !errkind.IsPermanent(err) {
		t.Fatalf("put to a deleted bucket: %v (%v), want permanent", err, errkind.Of(err))
	}
}

func TestPrefixIsolation(t *testing.T) {
	s, srv := newStore(t)
	c := srv.Client()
	for _, k := range []string{"outside", "gwx/also-outside", "gw/inside"} {
		if _, err := c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	objstore.PutBytes(t.Context(), s, "mine", []byte("m"))
	var keys []string
	if err := s.List(t.Context(), "", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "inside,mine" {
		t.Fatalf("list under the prefix: %q", keys)
	}
	if _, err := c.HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String("gw/mine")}); err != nil {
		t.Fatalf("object not stored under the prefix: %v", err)
	}
}

// noReaderAt hides a reader's ReadAt, forcing the buffered multipart path.
type noReaderAt struct{ io.ReadSeeker }

func TestMultipartWithoutReaderAt(t *testing.T) {
	s, _ := newStore(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), (11<<20)/16)
	data = append(data, "tail"...)
	if err := s.Put(t.Context(), "seq", noReaderAt{bytes.NewReader(data)}, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := objstore.GetAll(t.Context(), s, "seq")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes with a different checksum", len(got))
	}
}

func TestFailedMultipartLeavesNoUpload(t *testing.T) {
	s, srv := newStore(t)
	size := int64(3*MinPartSize + 1)
	short := bytes.NewReader(make([]byte, size-100))
	for _, r := range []io.ReadSeeker{short, noReaderAt{short}} {
		short.Seek(0, io.SeekStart)
		err := s.Put(t.Context(), "short", r, size)
		if err == nil {
			t.Fatal("multipart put from a short reader succeeded")
		}
		if !errkind.IsPermanent(err) {
			t.Fatalf("a short reader is %v (%v), want permanent", errkind.Of(err), err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "cancelled", bytes.NewReader(make([]byte, size)), size); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left behind", len(out.Uploads))
	}
}

func TestConfiguredStorageClass(t *testing.T) {
	srv, bucket := newBucket(t)
	cfg := testConfig(srv, bucket)
	cfg.StorageClass = "REDUCED_REDUNDANCY"
	s, err := Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, objstoretest.LargeObjectSize} {
		key := fmt.Sprint("obj-", size)
		if err := objstore.PutBytes(t.Context(), s, key, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		oi, err := s.Stat(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if oi.StorageClass != cfg.StorageClass {
			t.Fatalf("%s: storage class %q, want %q", key, oi.StorageClass, cfg.StorageClass)
		}
	}
}

func TestPartLayout(t *testing.T) {
	for _, tc := range []struct {
		size, min, wantSize int64
		wantParts           int
	}{
		{12 << 20, 5 << 20, 5 << 20, 3},
		{15 << 20, 5 << 20, 5 << 20, 3},
		{1 << 40, 16 << 20, 105 << 20, 9987},
		{5 << 40, 16 << 20, 525 << 20, 9987},
	} {
		size, parts := partLayout(tc.size, tc.min)
		if size != tc.wantSize || parts != tc.wantParts {
			t.Errorf("partLayout(%d, %d) = %d, %d; want %d, %d", tc.size, tc.min, size, parts, tc.wantSize, tc.wantParts)
		}
		if parts > maxParts || int64(parts)*size < tc.size {
			t.Errorf("partLayout(%d, %d): %d parts of %d do not cover the object within S3's limit", tc.size, tc.min, parts, size)
		}
	}
}

func TestEmptyKeyNeverNamesThePrefix(t *testing.T) {
	s, srv := newStore(t)
	if _, err := srv.Client().PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String("gw/"), Body: strings.NewReader("prefix marker")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), ""); err == nil {
		t.Fatal("stat of the empty key found the prefix marker")
	}
	if _, err := s.Get(t.Context(), "", 0, -1); err == nil {
		t.Fatal("get of the empty key read the prefix marker")
	}
	if err := s.Delete(t.Context(), ""); err == nil {
		t.Fatal("delete of the empty key succeeded")
	}
	if _, err := srv.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String("gw/")}); err != nil {
		t.Fatalf("the prefix marker is gone: %v", err)
	}
}
