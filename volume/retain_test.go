package volume

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// TestWriteKeepsNoReferenceToData: once WriteAt or WriteThrough has
// returned, the volume no longer reads the caller's buffer (io.WriterAt's
// rule): the iSCSI target reuses a command's buffer for the next command
// as soon as the write returns. The test changes each buffer right after
// its write returns; the volume must still hold, read back and replay
// after a restart what was written. Under -race a log writer or cache
// still reading the buffer is a reported race.
func TestWriteKeepsNoReferenceToData(t *testing.T) {
	for _, kind := range []Kind{Cached, Stored} {
		for _, writeCache := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/writecache=%v", kind, writeCache), func(t *testing.T) {
				e := newEnv(t, 64<<20, 64<<20)
				e.start()
				ctx := context.Background()
				if _, err := e.m.Create(ctx, CreateOptions{Name: "v", Kind: kind, Size: 4 << 20, ChunkSize: 1 << 20, WriteCache: writeCache}); err != nil {
					t.Fatal(err)
				}
				v := e.vol("v")
				want := make([]byte, v.Size())
				buf := make([]byte, 64<<10)
				for i := range 64 {
					n := 4096 * (1 + i%16)
					off := int64(i%61) * 65536
					data := pattern(uint64(i+1), n)
					copy(buf, data)
					write := v.WriteAt
					if i%3 == 0 {
						write = v.WriteThrough
					}
					if err := write(ctx, buf[:n], off); err != nil {
						t.Fatal(err)
					}
					copy(want[off:], data)
					clear(buf) // the next command's data, in a reused buffer
				}
				if err := v.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, v, 1<<20); !bytes.Equal(got, want) {
					t.Fatal("the volume changed with the caller's buffer after the write returned")
				}
				e.restart()
				if got := readAll(t, e.vol("v"), 1<<20); !bytes.Equal(got, want) {
					t.Fatal("after a restart: the volume changed with the caller's buffer after the write returned")
				}
			})
		}
	}
}
