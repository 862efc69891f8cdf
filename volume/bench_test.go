package volume

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/objstore/localdir"
)

// The volume benchmarks run the same I/O pattern through the volume API
// (cached and stored, uploader running against a local-directory store)
// and on a plain local file with fdatasync after each write, in one run.
// BENCHMARKS.md records the figures and the ratios.

const benchVolSize = 256 * mib

type benchTarget interface {
	write(p []byte, off int64) error
	read(p []byte, off int64) error
}

type volTarget struct{ v *Volume }

func (t volTarget) write(p []byte, off int64) error { return t.v.WriteAt(context.Background(), p, off) }
func (t volTarget) read(p []byte, off int64) error  { return t.v.ReadAt(context.Background(), p, off) }

// fileTarget is the peer: pwrite + fdatasync, like a database's own log.
type fileTarget struct{ f *os.File }

func (t fileTarget) write(p []byte, off int64) error {
	if _, err := t.f.WriteAt(p, off); err != nil {
		return err
	}
	return t.f.Sync()
}
func (t fileTarget) read(p []byte, off int64) error { _, err := t.f.ReadAt(p, off); return err }

func BenchmarkVolumeIO(b *testing.B) {
	targets := map[string]func(b *testing.B) benchTarget{
		"file+fdatasync": func(b *testing.B) benchTarget {
			f, err := os.Create(filepath.Join(b.TempDir(), "plain.img"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { f.Close() })
			if err := f.Truncate(benchVolSize); err != nil {
				b.Fatal(err)
			}
			return fileTarget{f}
		},
		"cached": func(b *testing.B) benchTarget { return volTarget{benchVolume(b, Cached)} },
		"stored": func(b *testing.B) benchTarget { return volTarget{benchVolume(b, Stored)} },
	}
	patterns := []struct {
		name  string
		size  int
		rand  bool
		write bool
	}{
		{"seqwrite-1M", 1 * mib, false, true},
		{"randwrite-4K", 4 * kib, true, true},
		{"seqread-1M", 1 * mib, false, false},
		{"randread-4K", 4 * kib, true, false},
	}
	for _, p := range patterns {
		for _, name := range []string{"file+fdatasync", "cached", "stored"} {
			b.Run(p.name+"/"+name, func(b *testing.B) {
				tgt := targets[name](b)
				buf := pattern(1, p.size)
				if !p.write { // fill what will be read
					for off := int64(0); off < benchVolSize; off += mib {
						if err := tgt.write(pattern(uint64(off), mib), off); err != nil {
							b.Fatal(err)
						}
					}
				}
				r := rand.New(rand.NewPCG(1, 1))
				blocks := benchVolSize / int64(p.size)
				b.SetBytes(int64(p.size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := (int64(i) % blocks) * int64(p.size)
					if p.rand {
						off = r.Int64N(blocks) * int64(p.size)
					}
					var err error
					if p.write {
						err = tgt.write(buf, off)
					} else {
						err = tgt.read(buf, off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchVolume is a volume on real disk state with the uploader running
// against a local-directory store.
func benchVolume(b *testing.B, kind Kind) *Volume {
	e := newEnv(b, 1<<30, 512*mib)
	store, err := localdir.Open(filepath.Join(e.dir, "objects"))
	if err != nil {
		b.Fatal(err)
	}
	e.store = store
	e.opts = func(o *Options) { o.UploadInterval = 100 * time.Millisecond; o.SettleTime = 500 * time.Millisecond }
	e.start()
	return e.create("bench", kind, benchVolSize, 0)
}

// BenchmarkSparseTiBRSS reports the resident memory of a gateway holding a
// 1 TiB cached volume after scattered writes across all of it, with the
// production stores (badger metadata, local-directory object store) so
// that nothing test-only holds data in memory.
func BenchmarkSparseTiBRSS(b *testing.B) {
	for i := 0; i < b.N; i++ {
		e := newEnv(b, 1<<30, 256*mib)
		store, err := localdir.Open(filepath.Join(e.dir, "objects"))
		if err != nil {
			b.Fatal(err)
		}
		md, err := metabadger.Open(filepath.Join(e.dir, "meta"), nil)
		if err != nil {
			b.Fatal(err)
		}
		e.store, e.md = store, md
		e.opts = func(o *Options) { o.UploadInterval = 50 * time.Millisecond; o.SettleTime = time.Millisecond }
		e.start()
		ctx := context.Background()
		v := e.create("tib", Cached, 1<<40, 0)
		before := rssMiB()
		const writes = 5000
		r := rand.New(rand.NewPCG(3, 3))
		buf := pattern(5, 4*kib)
		for w := 0; w < writes; w++ {
			if err := v.WriteAt(ctx, buf, r.Int64N((1<<40)/(4*kib))*4*kib); err != nil {
				b.Fatal(err)
			}
		}
		if err := e.m.Drain(ctx); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(before, "RSS-MiB-empty")
		b.ReportMetric(rssMiB(), "RSS-MiB-after")
		b.ReportMetric(float64(ms.HeapInuse)/mib, "heap-MiB-after")
		b.ReportMetric(float64(countPrefix(b, e.md, mapPrefix(v.Info().ID))), "chunks-mapped")
		e.close()
		md.Close()
	}
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
