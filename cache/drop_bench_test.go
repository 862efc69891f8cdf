package cache

import (
	"fmt"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// BenchmarkDropVolume drops one small volume (a share's file) from a cache
// that holds 20,000 others on disk, as a remove through a share does.
func BenchmarkDropVolume(b *testing.B) {
	c, err := Open(vfs.Default, b.TempDir(), Options{Capacity: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i := range 20000 {
		if err := c.PutClean(Key{Volume: fmt.Sprint("file-", i), Index: 0}, fill(1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprint("new-", i)
		if err := c.PutClean(Key{Volume: v, Index: 0}, fill(2)); err != nil {
			b.Fatal(err)
		}
		if err := c.DropVolume(v); err != nil {
			b.Fatal(err)
		}
	}
}
