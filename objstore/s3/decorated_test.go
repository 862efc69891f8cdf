package s3

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/limiter"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
	"github.com/gatewayd/gatewayd/objstore/retry"
)

// The decorators stacked as the gateway stacks them, over MinIO, with one
// call in five failing: retries must hide every fault from the suite.
// (Broken Get bodies are the caller's to retry, so they are not injected.)
func TestConformanceDecoratedWithFaults(t *testing.T) {
	var injectors []*faulty.Injector
	objstoretest.Run(t, func(t *testing.T) objstore.Store {
		s, _ := newStore(t)
		rates := map[faulty.Op]float64{}
		for _, op := range []faulty.Op{faulty.OpPut, faulty.OpGet, faulty.OpStat, faulty.OpList, faulty.OpDelete, faulty.OpCopy, faulty.OpSetStorageClass, faulty.OpCompose} {
			rates[op] = 0.2
		}
		// Per object rather than per page: a listing of a few dozen
		// objects still fails about every other time.
		rates[faulty.OpListEntry] = 0.02
		f := faulty.New(s, faulty.Options{Seed: uint64(len(injectors)), Rates: rates})
		injectors = append(injectors, f)
		lim := limiter.New(f.Store(), limiter.Options{MaxInFlight: 4})
		return retry.New(lim.Store(), retry.Options{MaxAttempts: 30, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	})
	total := 0
	for _, f := range injectors {
		total += f.Injected(faulty.OpPut) + f.Injected(faulty.OpGet) + f.Injected(faulty.OpListEntry)
	}
	if total < 50 {
		t.Fatalf("only %d faults injected; the test does not test much", total)
	}
	t.Logf("%d faults injected and hidden by retries", total)
}

func BenchmarkPutGet(b *testing.B) {
	srv, bucket := newBucket(b)
	cfg := testConfig(srv, bucket)
	cfg.PartSize, cfg.MultipartThreshold, cfg.ListPageSize = 0, 0, 0 // defaults
	s, err := Open(b.Context(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{16 << 20, 128 << 20} {
		data := make([]byte, size)
		rand.Read(data)
		b.Run(fmt.Sprintf("Put/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if err := s.Put(b.Context(), fmt.Sprint("bench-", size, "-", i%4), bytes.NewReader(data), int64(size)); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The peer, in the same run: one bare SDK PutObject of the same
		// bytes with the same client (no store code around it).
		b.Run(fmt.Sprintf("Put-bare-sdk/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				_, err := s.client.PutObject(b.Context(), &awss3.PutObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(fmt.Sprint(s.prefix, "bare-", size, "-", i%4)),
					Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(size)),
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				rc, err := s.Get(b.Context(), fmt.Sprint("bench-", size, "-0"), 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != int64(size) {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get-bare-sdk/%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				out, err := s.client.GetObject(b.Context(), &awss3.GetObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(fmt.Sprint(s.prefix, "bench-", size, "-0")),
				})
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, out.Body)
				out.Body.Close()
				if err != nil || n != int64(size) {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}

// newLockedStore opens a store on a fresh bucket created with Object Lock.
func newLockedStore(t testing.TB) *Store {
	srv := miniotest.Shared(t)
	name := fmt.Sprintf("lock-%d-%d", os.Getpid(), bucketSeq.Add(1))
	srv.CreateLockedBucket(t, name)
	s, err := Open(t.Context(), testConfig(srv, name), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestObjectLockConformance(t *testing.T) {
	objstoretest.RunObjectLock(t, func(t *testing.T) objstore.Store { return newLockedStore(t) })
}

// The gateway's stack of decorators over a locked bucket, with one call in
// five failing: Object Lock calls are retried like the others.
func TestObjectLockDecoratedWithFaults(t *testing.T) {
	var injectors []*faulty.Injector
	objstoretest.RunObjectLock(t, func(t *testing.T) objstore.Store {
		rates := map[faulty.Op]float64{}
		for _, op := range []faulty.Op{faulty.OpPut, faulty.OpGet, faulty.OpStat, faulty.OpDelete, faulty.OpRetain} {
			rates[op] = 0.2
		}
		f := faulty.New(newLockedStore(t), faulty.Options{Seed: uint64(len(injectors)), Rates: rates})
		injectors = append(injectors, f)
		lim := limiter.New(f.Store(), limiter.Options{MaxInFlight: 4})
		return retry.New(lim.Store(), retry.Options{MaxAttempts: 30, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	})
	total := 0
	for _, f := range injectors {
		total += f.Injected(faulty.OpRetain) + f.Injected(faulty.OpDelete) + f.Injected(faulty.OpPut) + f.Injected(faulty.OpStat) + f.Injected(faulty.OpGet)
	}
	if total < 5 {
		t.Fatalf("only %d faults injected; the test does not test much", total)
	}
	t.Logf("%d faults injected and hidden by retries", total)
}
