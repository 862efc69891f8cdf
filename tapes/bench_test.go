package tapes_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/tapes"
)

// The benchmarks write and read 256 KiB records through a tape on real
// disk: a local-directory store, badger, the upload buffer (one fdatasync
// per record: the drive is unbuffered).

const benchRecord = 256 << 10

func benchLibrary(b *testing.B) (*onDisk, *tapes.Tape) {
	d, err := openOnDisk(b.TempDir(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.lib.Create(ctx, 1, "GW", 1<<40); err != nil {
		b.Fatal(err)
	}
	tp, err := d.lib.Open(ctx, killBarcode)
	if err != nil {
		b.Fatal(err)
	}
	return d, tp
}

func BenchmarkWrite256K(b *testing.B) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		if compress {
			name = "compress"
		}
		b.Run(name, func(b *testing.B) {
			d, tp := benchLibrary(b)
			defer d.close()
			data := record(1, benchRecord) // incompressible: compression is pure cost
			b.SetBytes(benchRecord)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := tp.WriteRecord(ctx, uint64(i), data, compress); err != nil {
					b.Fatal(err)
				}
			}
			if err := tp.Close(ctx); err != nil { // everything in the store
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWriteBuffered writes records as a drive in buffered mode
// does (acknowledged once applied, durable once the index of their
// segment is stored or the sync at the end logs them), with the
// daemon's defaults (16 MiB segments, a 4 GiB upload buffer), and syncs
// at the end as a filemark does.
func BenchmarkWriteBuffered(b *testing.B) {
	for _, size := range []int{256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dK", size>>10), func(b *testing.B) {
			d, err := openOnDiskSized(b.TempDir(), 5*time.Second, 16<<20, 4<<30)
			if err != nil {
				b.Fatal(err)
			}
			defer d.close()
			if _, err := d.lib.Create(ctx, 1, "GW", 1<<40); err != nil {
				b.Fatal(err)
			}
			tp, err := d.lib.Open(ctx, killBarcode)
			if err != nil {
				b.Fatal(err)
			}
			tp.SetBuffered(true)
			data := record(1, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := tp.WriteRecord(ctx, uint64(i), data, false); err != nil {
					b.Fatal(err)
				}
			}
			if err := tp.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := tp.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkRead256K(b *testing.B) {
	d, tp := benchLibrary(b)
	const n = 256 // 64 MiB
	for i := 0; i < n; i++ {
		if err := tp.WriteRecord(ctx, uint64(i), record(uint64(i), benchRecord), false); err != nil {
			b.Fatal(err)
		}
	}
	tp.Close(ctx)
	buf := make([]byte, benchRecord)
	b.SetBytes(benchRecord)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%n == 0 { // from the store, not from memory
			tp.Close(ctx)
			if tp, _ = d.lib.Open(ctx, killBarcode); tp == nil {
				b.Fatal("open")
			}
		}
		if _, err := tp.ReadRecord(ctx, uint64(i%n), buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	tp.Close(ctx)
	d.close()
}
