package fileshare

import (
	"context"
	"sync"
	"testing"
)

// BenchmarkWrite1MiBBuffered writes a file sequentially in 1 MiB writes
// that are durable at the next Sync, as an NFS client's UNSTABLE writes
// are, and syncs at the end: with Write (the record is a copy) and with
// WriteFrom (the record is the caller's buffer, handed back when written).
func BenchmarkWrite1MiBBuffered(b *testing.B) {
	for _, from := range []bool{false, true} {
		name := "Write"
		if from {
			name = "WriteFrom"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			ctx := context.Background()
			must[Config](b)(e.m.Create(ctx, Config{Name: "bench"}))
			s := e.share("bench")
			must[Attr](b)(s.Create(ctx, "f", 0o644, 0, 0, true))
			const head = 128
			p := make([]byte, BlockSize)
			bufs := sync.Pool{New: func() any { return make([]byte, head+BlockSize) }}
			b.SetBytes(BlockSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := int64(i%128) * BlockSize
				var err error
				if from {
					buf := bufs.Get().([]byte)
					_, _, err = s.WriteFrom(ctx, "f", buf, head, off, Buffered, func() { bufs.Put(buf) })
				} else {
					_, err = s.Write(ctx, "f", p, off, Buffered)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
