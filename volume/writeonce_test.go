package volume

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// diskCount is a vfs.FS that counts the bytes written to local disk, the
// upload buffer's segments' and the cache's apart.
type diskCount struct {
	vfs.FS
	log, cache atomic.Int64
}

type diskCountFile struct {
	vfs.File
	n *atomic.Int64
}

func (f diskCountFile) WriteAt(p []byte, off int64) (int, error) {
	f.n.Add(int64(len(p)))
	return f.File.WriteAt(p, off)
}

func (f diskCountFile) Write(p []byte) (int, error) {
	f.n.Add(int64(len(p)))
	return f.File.Write(p)
}

func (d *diskCount) wrap(f vfs.File, err error, name string) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	switch {
	case strings.Contains(name, "/log/") && strings.HasSuffix(name, ".seg"): // not the trim point's file
		return diskCountFile{f, &d.log}, nil
	case strings.Contains(name, "/cache/"):
		return diskCountFile{f, &d.cache}, nil
	}
	return f, nil
}

func (d *diskCount) Create(name string) (vfs.File, error) {
	f, err := d.FS.Create(name)
	return d.wrap(f, err, name)
}

func (d *diskCount) OpenReadWrite(name string) (vfs.File, error) {
	f, err := d.FS.OpenReadWrite(name)
	return d.wrap(f, err, name)
}

// A cached volume writes each acknowledged byte to local disk once, into
// the upload buffer: the cache serves reads of it from there and writes it
// into its chunk file only after the upload (bytes overwritten meanwhile
// not at all). After a restart the replay rebuilds the same from the log.
// The test logs the bytes written per byte acknowledged (BENCHMARKS.md).
func TestCachedVolumeWritesOnceLocally(t *testing.T) {
	for _, pat := range []struct {
		name   string
		size   int
		random bool
		n      int
	}{
		{"randwrite-4K", 4 * kib, true, 4096},
		{"seqwrite-1M", mib, false, 48},
	} {
		t.Run(pat.name, func(t *testing.T) {
			ctx := context.Background()
			d := &diskCount{FS: vfs.Default}
			e := newEnv(t, 256*mib, 256*mib)
			e.fs = d
			e.start()
			v := e.create("v", Cached, 64*mib, mib)
			want := make([]byte, v.Size())
			rng := rand.New(rand.NewPCG(3, 4))
			acked := int64(0)
			for i := 0; i < pat.n; i++ {
				off := int64(i*pat.size) % v.Size()
				if pat.random {
					off = rng.Int64N(v.Size()/int64(pat.size)) * int64(pat.size)
				}
				p := pattern(uint64(i), pat.size)
				if err := v.WriteAt(ctx, p, off); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], p)
				acked += int64(len(p))
			}
			ackLog, ackCache := d.log.Load(), d.cache.Load()
			if ackCache != 0 {
				t.Fatalf("%d bytes written into cache files for %d acknowledged: the bytes were written twice", ackCache, acked)
			}
			mustEqual(t, "read before upload", readAll(t, v, 64*kib), want)

			// A restart without an upload: the replay reads the writes
			// back from the log (and writes nothing).
			e.close()
			e.start()
			v = e.vol("v")
			mustEqual(t, "read after replay", readAll(t, v, 64*kib), want)
			if err := e.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			total := d.log.Load() + d.cache.Load()
			t.Logf("%s: %d bytes acknowledged; written locally when acknowledged %.3f per byte (log %d, cache %d); in all, with the cache's write after the upload, %.3f per byte (cache %d)",
				pat.name, acked, float64(ackLog+ackCache)/float64(acked), ackLog, ackCache, float64(total)/float64(acked), d.cache.Load())
			if d.log.Load() != ackLog {
				t.Fatalf("the replay or the upload wrote %d bytes into the log", d.log.Load()-ackLog)
			}
			if d.cache.Load() > acked {
				t.Fatalf("the cache wrote %d bytes for %d acknowledged", d.cache.Load(), acked)
			}
			mustEqual(t, "read after upload", readAll(t, v, 64*kib), want)
		})
	}
}
