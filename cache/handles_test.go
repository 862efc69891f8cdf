//go:build unix

package cache

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// A 1 GiB volume of 1 MiB chunks, read and written at random, keeps all
// its 1024 chunk files open: no open per request once each was opened.
func TestHandlesKeepA1GiBWorkingSetOpen(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < 8*1024 {
		t.Skipf("descriptor limit %d: the bound is below a 1 GiB working set here", rl.Cur)
	}
	const chunks = 1024
	opens := func(max int) int64 {
		var n atomic.Int64
		mem := vfs.NewMem()
		fs := vfs.NewErrorFS(mem, func(op vfs.Op, _ string) error {
			if op == vfs.OpOpen {
				n.Add(1)
			}
			return nil
		})
		h := newHandles(fs)
		if max > 0 {
			h.max = max
		}
		entries := make([]*entry, chunks)
		for i := range entries {
			entries[i] = &entry{path: fmt.Sprintf("/c%d", i)}
			f, err := mem.Create(fmt.Sprintf("/c%d", i))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		for range 4 * chunks {
			i := rand.IntN(chunks)
			x, err := h.acquire(entries[i])
			if err != nil {
				t.Fatal(err)
			}
			h.release(x)
		}
		h.closeAll()
		return n.Load()
	}
	if n := opens(0); n > chunks {
		t.Fatalf("%d opens for %d chunks: the working set does not stay open", n, chunks)
	}
	if n := opens(256); n <= chunks {
		t.Fatalf("with 256 handles, %d opens for %d chunks: this test cannot see thrashing", n, chunks)
	}
}
