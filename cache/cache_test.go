package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

const chunk = 4096

func openCache(t *testing.T, fs vfs.FS, capacity int64) *Cache {
	t.Helper()
	c, err := Open(fs, "/cache", Options{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func key(i uint64) Key { return Key{Volume: "v", Index: i} }

func fill(b byte) []byte { return bytes.Repeat([]byte{b}, chunk) }

func noBase() ([]byte, error) { return nil, nil }

func TestWriteOnBaseAndRead(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 10*chunk)
	baseCalls := 0
	base := func() ([]byte, error) { baseCalls++; return fill('b'), nil }
	if err := c.WriteAt(ctx, key(1), chunk, []byte("xyz"), 100, base); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteAt(ctx, key(1), chunk, []byte("Q"), 101, base); err != nil {
		t.Fatal(err)
	}
	if baseCalls != 1 {
		t.Fatalf("base fetched %d times", baseCalls)
	}
	got := make([]byte, 6)
	ok, err := c.ReadAt(key(1), got, 98)
	if !ok || err != nil || string(got) != "bbxQzb" {
		t.Fatalf("read %q ok=%v err=%v", got, ok, err)
	}
	// A hole base reads as zeroes around the write.
	if err := c.WriteAt(ctx, key(2), chunk, []byte("z"), 5, noBase); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 3)
	c.ReadAt(key(2), got, 4)
	if !bytes.Equal(got, []byte{0, 'z', 0}) {
		t.Fatalf("hole base: %v", got)
	}
	if ok, _ := c.ReadAt(key(3), got, 0); ok {
		t.Fatal("hit on an absent chunk")
	}
	st := c.Stats()
	if st.Hits != 2 || st.Misses != 1 || st.DirtyChunks != 2 || st.Dirty != 2*chunk || st.Used != 2*chunk {
		t.Fatalf("stats %+v", st)
	}
	// A failing base leaves nothing behind.
	boom := errors.New("store down")
	if err := c.WriteAt(ctx, key(4), chunk, []byte("x"), 0, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("base error: %v", err)
	}
	if st := c.Stats(); st.Chunks != 2 || st.Used != 2*chunk {
		t.Fatalf("after a failed base: %+v", st)
	}
}

func TestLRUEvictsCleanOnlyInOrder(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 3*chunk)
	for i := uint64(0); i < 3; i++ {
		if err := c.PutClean(key(i), fill(byte('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	c.ReadAt(key(0), make([]byte, 1), 0) // 0 is now most recently used: 1 goes first
	if err := c.PutClean(key(3), fill('d')); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.ReadAt(key(1), make([]byte, 1), 0); ok {
		t.Fatal("chunk 1 (least recently used) was not evicted")
	}
	// Make 0 dirty: it must survive everything that follows.
	if err := c.WriteAt(ctx, key(0), chunk, []byte("!"), 0, noBase); err != nil {
		t.Fatal(err)
	}
	for i := uint64(10); i < 20; i++ {
		if err := c.PutClean(key(i), fill('z')); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, 2)
	if ok, _ := c.ReadAt(key(0), got, 0); !ok || string(got) != "!a" {
		t.Fatalf("dirty chunk lost: ok=%v %q", ok, got)
	}
	st := c.Stats()
	if st.Used > 3*chunk || st.Evictions != 1+10 || st.DirtyChunks != 1 {
		t.Fatalf("stats %+v", st)
	}
	// PutClean never replaces a cached (here dirty, newer) chunk.
	c.PutClean(key(0), fill('o'))
	c.ReadAt(key(0), got, 0)
	if string(got) != "!a" {
		t.Fatalf("PutClean overwrote a dirty chunk: %q", got)
	}
}

func TestFullOfDirtyWritersWaitReadersDoNot(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 2*chunk)
	for i := uint64(0); i < 2; i++ {
		if err := c.WriteAt(ctx, key(i), chunk, fill('a'), 0, noBase); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.WriteAt(ctx, key(2), chunk, fill('c'), 0, noBase) }()
	for c.Stats().Waits == 0 {
		runtime.Gosched()
	}
	if ok, err := c.ReadAt(key(0), make([]byte, 10), 0); !ok || err != nil {
		t.Fatalf("read while full: %v %v", ok, err)
	}
	if err := c.PutClean(key(9), fill('p')); err != nil { // silently not cached
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { cancelled <- c.WriteAt(cctx, key(3), chunk, fill('d'), 0, noBase) }()
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled writer: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("writer got in without room: %v", err)
	default:
	}
	_, gen, err := c.Snapshot(key(1))
	if err != nil {
		t.Fatal(err)
	}
	if !markClean(t, c, key(1), gen) {
		t.Fatal("MarkClean with the current generation refused")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.ReadAt(key(1), make([]byte, 1), 0); ok {
		t.Fatal("the cleaned chunk should have been evicted for the waiting writer")
	}
}

func TestStaleGenerationStaysDirty(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 4*chunk)
	c.WriteAt(ctx, key(0), chunk, []byte("v1"), 0, noBase)
	data, gen, err := c.Snapshot(key(0))
	if err != nil || string(data[:2]) != "v1" {
		t.Fatalf("snapshot %q %v", data[:2], err)
	}
	c.WriteAt(ctx, key(0), chunk, []byte("v2"), 0, noBase)
	if markClean(t, c, key(0), gen) {
		t.Fatal("marked clean with a generation older than the last write")
	}
	if d := c.Dirty(); len(d) != 1 || d[0] != key(0) {
		t.Fatalf("dirty list %v", d)
	}
	if err := c.Drop(key(0)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Snapshot(key(0)); !errors.Is(err, ErrNotCached) {
		t.Fatalf("snapshot after drop: %v", err)
	}
}

func TestConcurrentChunksKeepTheirData(t *testing.T) {
	ctx := context.Background()
	c, err := Open(vfs.Default, t.TempDir(), Options{Capacity: 64 * chunk})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			k := Key{Volume: fmt.Sprint("v", w%2), Index: uint64(w)}
			for i := 0; i < 200; i++ {
				p := fill(byte(i))
				if err := c.WriteAt(ctx, k, chunk, p, 0, noBase); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, chunk)
				if ok, err := c.ReadAt(k, got, 0); !ok || err != nil || !bytes.Equal(got, p) {
					t.Errorf("worker %d round %d: ok=%v err=%v", w, i, ok, err)
					return
				}
				if data, gen, err := c.Snapshot(k); err == nil && bytes.Equal(data, p) {
					markClean(t, c, k, gen)
				}
			}
		}(w)
	}
	wg.Wait()
	if err := c.DropVolume("v0"); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Chunks != 4 {
		t.Fatalf("after DropVolume: %+v", st)
	}
	// The volume index names exactly the entries left.
	c.mu.Lock()
	n := 0
	for v, es := range c.byVolume {
		for i, e := range es {
			if v != "v1" || c.entries[Key{Volume: v, Index: i}] != e {
				t.Errorf("index holds %s/%d, not an entry of v1", v, i)
			}
			n++
		}
	}
	if n != len(c.entries) {
		t.Errorf("index holds %d chunks, the cache %d", n, len(c.entries))
	}
	c.mu.Unlock()
}

func TestOpenWipesAndDiskErrorsSurface(t *testing.T) {
	mem := vfs.NewMem()
	c := openCache(t, mem, 4*chunk)
	c.WriteAt(context.Background(), key(0), chunk, fill('x'), 0, noBase)
	c.Close()
	c = openCache(t, mem, 4*chunk)
	if ok, _ := c.ReadAt(key(0), make([]byte, 1), 0); ok {
		t.Fatal("a reopened cache kept old chunks")
	}
	if names, _ := mem.List("/cache"); len(names) != 1 || names[0] != markerFile {
		t.Fatalf("leftovers: %v", names)
	}
	// A directory with someone else's files is refused, not wiped.
	mem.MkdirAll("/other", 0o700)
	f, _ := mem.Create("/other/precious")
	f.Close()
	if _, err := Open(mem, "/other", Options{Capacity: chunk}); err == nil {
		t.Fatal("opened a cache over a directory of other files")
	}
	if _, err := mem.Stat("/other/precious"); err != nil {
		t.Fatal("the cache removed a file it did not make")
	}

	full := vfs.NewErrorFS(vfs.NewMem(), vfs.InjectAfter(vfs.OpWrite, 0, vfs.ErrNoSpace))
	c, err := Open(full, "/cache", Options{Capacity: 4 * chunk})
	if err != nil {
		t.Fatal(err)
	}
	err = c.WriteAt(context.Background(), key(0), chunk, fill('x'), 0, noBase)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v", err)
	}
	if st := c.Stats(); st.Chunks != 0 || st.Used != 0 {
		t.Fatalf("a failed write left %+v", st)
	}
}
