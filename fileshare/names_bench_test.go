package fileshare

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkReadDirNames lists a directory of 2,000 files, as smbd's
// search for a new name in another case does at every create: files not
// yet uploaded, and the same files once uploaded.
func BenchmarkReadDirNames(b *testing.B) {
	const files = 2000
	for _, uploaded := range []bool{false, true} {
		name := "unborn"
		if uploaded {
			name = "uploaded"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			ctx := context.Background()
			must[Config](b)(e.m.Create(ctx, Config{Name: "bench"}))
			s := e.share("bench")
			must[Attr](b)(s.Mkdir(ctx, "d", 0o755, 0, 0))
			for i := range files {
				must[Attr](b)(s.Create(ctx, fmt.Sprintf("d/file-%05d.txt", i), 0o644, 0, 0, true))
			}
			if uploaded {
				if err := e.m.Flush(ctx, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				names, err := s.ReadDirNames(ctx, "d")
				if err != nil {
					b.Fatal(err)
				}
				if len(names) != files {
					b.Fatalf("%d names, want %d", len(names), files)
				}
			}
		})
	}
}
