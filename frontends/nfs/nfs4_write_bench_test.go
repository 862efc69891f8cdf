package nfs

import (
	"testing"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// BenchmarkWrite1MiB: UNSTABLE 1 MiB WRITEs, one at a time, to one file
// over NFSv3 and over NFSv4.1 (a COMMIT at the end), each on a server of
// its own: what the server's two write paths cost (run with -cpuprofile
// and look at the server's functions; the two clients differ). The
// share's upload buffer holds 256 MiB: keep b.N under 200
// (-benchtime=100x).
func BenchmarkWrite1MiB(b *testing.B) {
	data := testrand.Bytes(7, 1<<20)
	b.Run("v3", func(b *testing.B) {
		f := start(b, fileshare.Config{Name: "s"})
		v, fh := f.newFile("s", "f.bin")
		b.SetBytes(1 << 20)
		b.ResetTimer()
		for i := range b.N {
			if _, err := nfstest.WriteStable(v, fh, uint64(i)<<20, data, nfstest.Unstable); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := nfstest.Commit(v, fh); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("v4.1", func(b *testing.B) {
		f := start(b, fileshare.Config{Name: "s"})
		f.newFile("s", "f.bin")
		c := nfstest.DialV4(b, f.addr, "bench")
		st, open, fh := c.Open("writer", "s", "f.bin")
		if st != nfstest.V4OK {
			b.Fatalf("OPEN: %d", st)
		}
		b.SetBytes(1 << 20)
		b.ResetTimer()
		for i := range b.N {
			var a nfstest.V4Args
			a.Op(nfstest.V4PutFH).Opaque(fh).Op(nfstest.V4Write).Fixed(open[:]).U64(uint64(i) << 20).U32(0).Opaque(data)
			if st, _ := c.Compound(&a); st != nfstest.V4OK {
				b.Fatalf("WRITE: %d", st)
			}
		}
		var a nfstest.V4Args
		a.Op(nfstest.V4PutFH).Opaque(fh).Op(nfstest.V4Commit).U64(0).U32(0)
		if st, _ := c.Compound(&a); st != nfstest.V4OK {
			b.Fatalf("COMMIT: %d", st)
		}
	})
}
