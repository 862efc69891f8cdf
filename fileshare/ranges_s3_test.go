package fileshare

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/faultproxy"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/retry"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

// pattern is size bytes of a fixed sequence, without holding them.
type pattern struct{ pos, size int64 }

func patternByte(i int64) byte { return byte((uint64(i) * 0x9e3779b97f4a7c15) >> 57) }

func (p *pattern) Read(b []byte) (int, error) {
	if p.pos >= p.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.size-p.pos))
	for i := range n {
		b[i] = patternByte(p.pos + int64(i))
	}
	p.pos += int64(n)
	return n, nil
}

func (p *pattern) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += p.pos
	case io.SeekEnd:
		off += p.size
	}
	p.pos = off
	return off, nil
}

// withoutComposer hides a store's Composer: the upload as it was before.
type withoutComposer struct {
	objstore.Store
	objstore.MetadataPutter
	objstore.DirLister
	objstore.Copier
}

// The figure of BENCHMARKS.md: the bytes that cross the wire to MinIO when
// 4 KiB in the middle of a large file (64 MiB; GATEWAYD_COMPOSE_FILE_SIZE
// sets it, in bytes) is written through a share and uploaded, with the
// store composing the object and, in the same run, without (the whole file
// read back and sent again, as before). Both objects must come out equal
// to the file.
func TestComposeBytesOnTheWire(t *testing.T) {
	size := int64(64 << 20)
	if v := os.Getenv("GATEWAYD_COMPOSE_FILE_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 16<<20 {
			t.Fatalf("GATEWAYD_COMPOSE_FILE_SIZE=%q: want a size in bytes, at least 16 MiB", v)
		}
		size = n
	}
	srv := miniotest.Start(t)
	change := []byte(fmt.Sprintf("%4096s", "a 4 KiB change"))
	at := size/2 + 12345
	// The file after the change, hashed.
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(&pattern{size: size}, at)); err != nil {
		t.Fatal(err)
	}
	h.Write(change)
	p := &pattern{size: size}
	p.Seek(at+int64(len(change)), io.SeekStart)
	if _, err := io.Copy(h, p); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", h.Sum(nil))

	type result struct {
		up, down, requests int64
		took               time.Duration
	}
	run := func(bucket string, compose bool) result {
		srv.CreateBucket(t, bucket)
		// The bytes on the wire are counted by a proxy that injects no fault.
		wire, err := faultproxy.Start(srv.Endpoint, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wire.Close() })
		open := func(endpoint string) *s3.Store {
			st, err := s3.Open(t.Context(), s3.Config{Bucket: bucket, Endpoint: endpoint, Region: srv.Region, PathStyle: true,
				AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		direct := open(srv.Endpoint)
		// The file as another S3 application left it.
		if err := direct.Put(t.Context(), "docs/big", &pattern{size: size}, size); err != nil {
			t.Fatal(err)
		}
		var st objstore.Store = retry.New(open(wire.URL()), retry.Options{})
		if !compose {
			st = withoutComposer{st, st.(objstore.MetadataPutter), st.(objstore.DirLister), st.(objstore.Copier)}
		}
		e := newEnvOn(t, st)
		ctx := context.Background()
		must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
		s := e.share("docs")
		must[Attr](t)(s.WriteAt(ctx, "big", change, at))
		was, start := wire.Stats(), time.Now()
		if err := e.m.Flush(ctx, ""); err != nil {
			t.Fatal(err)
		}
		now := wire.Stats()
		r := result{up: now.BytesUp - was.BytesUp, down: now.BytesDown - was.BytesDown, requests: now.Requests - was.Requests, took: time.Since(start)}
		rc, err := direct.Get(t.Context(), "docs/big", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got := sha256.New()
		if n, err := io.Copy(got, rc); err != nil || n != size {
			t.Fatalf("read back %d bytes: %v", n, err)
		}
		if fmt.Sprintf("%x", got.Sum(nil)) != want {
			t.Fatalf("compose %v: the object differs from the file", compose)
		}
		if n := e.m.Stats().UploadsReplaced; n != 0 {
			t.Errorf("compose %v: the share's own upload taken for replaced by another application", compose)
		}
		e.close()
		return r
	}
	before := run("whole", false)
	after := run("composed", true)
	mib := func(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
	for _, x := range []struct {
		name string
		r    result
	}{{"whole file (before)", before}, {"composed (after)", after}} {
		t.Logf("%d MiB file, 4 KiB changed, %s: sent %s, received %s, %d requests, %v",
			size>>20, x.name, mib(x.r.up), mib(x.r.down), x.r.requests, x.r.took.Round(time.Millisecond))
	}
	t.Logf("sent: %.0fx less; the floor is S3's 5 MiB part (%s)", float64(before.up)/float64(after.up), mib(s3.MinPartSize))
	if before.up < size || after.up > s3.MinPartSize+1<<20 || after.down > s3.MinPartSize+1<<20 {
		t.Fatalf("sent %d and received %d bytes composing, sent %d whole", after.up, after.down, before.up)
	}
}
