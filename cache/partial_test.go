package cache

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

func readOK(t *testing.T, c *Cache, k Key, off, n int64) []byte {
	t.Helper()
	got := make([]byte, n)
	ok, err := c.ReadAt(k, got, off)
	if !ok || err != nil {
		t.Fatalf("read [%d,+%d) of %v: ok=%v err=%v", off, n, k, ok, err)
	}
	return got
}

func TestPartialWriteReadsWhatItHoldsAndMerges(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 10*chunk)
	if err := c.WriteAt(ctx, key(1), chunk, []byte("abc"), 100, nil); err != nil {
		t.Fatal(err)
	}
	if !c.Partial(key(1)) {
		t.Fatal("a write without a base made a whole entry")
	}
	if got := readOK(t, c, key(1), 100, 3); string(got) != "abc" {
		t.Fatalf("written bytes read %q", got)
	}
	for _, r := range [][2]int64{{99, 3}, {101, 3}, {0, chunk}, {200, 1}} {
		if ok, err := c.ReadAt(key(1), make([]byte, r[1]), r[0]); ok || err != nil {
			t.Fatalf("read [%d,+%d) beyond the written extent: ok=%v err=%v", r[0], r[1], ok, err)
		}
	}
	// An adjacent write joins the extent; one further away starts another.
	c.WriteAt(ctx, key(1), chunk, []byte("de"), 103, nil)
	c.WriteAt(ctx, key(1), chunk, []byte("Z"), 2000, nil)
	if got := readOK(t, c, key(1), 100, 5); string(got) != "abcde" {
		t.Fatalf("joined extents read %q", got)
	}
	if ok, _ := c.ReadAt(key(1), make([]byte, 2000-100+1), 100); ok {
		t.Fatal("a read across the gap between two extents hit")
	}
	if _, _, err := c.Snapshot(key(1)); !errors.Is(err, ErrPartial) {
		t.Fatalf("snapshot of a partial entry: %v", err)
	}
	data, written, err := c.SnapshotPartial(key(1))
	wantData := make([]byte, chunk)
	copy(wantData[100:], "abcde")
	wantData[2000] = 'Z'
	if err != nil || !bytes.Equal(data, wantData) || len(written) != 2 || written[0] != (Extent{100, 105}) || written[1] != (Extent{2000, 2001}) {
		t.Fatalf("partial copy: extents %v, err %v", written, err)
	}
	if d := c.Dirty(); len(d) != 1 {
		t.Fatalf("dirty %v", d)
	}
	if markClean(t, c, key(1), c.entries[key(1)].gen) {
		t.Fatal("a partial entry was marked clean")
	}
	st := c.Stats()
	if st.PartialChunks != 1 || st.DirtyChunks != 1 || st.Hits != 2 || st.Misses != 5 {
		t.Fatalf("stats %+v", st)
	}

	// Merge: the base fills what was not written; written bytes win.
	merged, err := c.Merge(key(1), fill('b'))
	if !merged || err != nil {
		t.Fatalf("merge: %v %v", merged, err)
	}
	want := fill('b')
	copy(want[100:], "abcde")
	want[2000] = 'Z'
	if got := readOK(t, c, key(1), 0, chunk); !bytes.Equal(got, want) {
		t.Fatal("merged chunk is not the base under the writes")
	}
	data, gen, err := c.Snapshot(key(1))
	if err != nil || !bytes.Equal(data, want) {
		t.Fatalf("snapshot after merge: %v", err)
	}
	if data, written, err = c.SnapshotPartial(key(1)); err != nil || written != nil || !bytes.Equal(data, want) {
		t.Fatalf("partial copy after merge: extents %v, err %v", written, err)
	}
	if merged, _ := c.Merge(key(1), fill('x')); merged {
		t.Fatal("merged twice")
	}
	if !markClean(t, c, key(1), gen) {
		t.Fatal("a merged entry could not be marked clean")
	}
	if st := c.Stats(); st.PartialChunks != 0 || st.DirtyChunks != 0 {
		t.Fatalf("stats after merge and upload %+v", st)
	}
	if merged, err := c.Merge(key(7), fill('x')); merged || err != nil {
		t.Fatalf("merge of an absent chunk: %v %v", merged, err)
	}
}

func TestPartialEntryOfAHoleAndWholeByWrites(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 10*chunk)
	// A chunk that never existed: merging nothing leaves zeroes around the writes.
	c.WriteAt(ctx, key(1), chunk, []byte("xy"), chunk-2, nil)
	if merged, err := c.Merge(key(1), nil); !merged || err != nil {
		t.Fatalf("merge of a hole: %v %v", merged, err)
	}
	want := make([]byte, chunk)
	copy(want[chunk-2:], "xy")
	if got := readOK(t, c, key(1), 0, chunk); !bytes.Equal(got, want) {
		t.Fatal("a hole merged is not zeroes under the writes")
	}
	// Writes that cover the chunk make it whole without a base.
	for off := int64(chunk) - 512; off >= 0; off -= 512 {
		if err := c.WriteAt(ctx, key(2), chunk, fill(byte(off / 512))[:512], off, nil); err != nil {
			t.Fatal(err)
		}
	}
	if c.Partial(key(2)) {
		t.Fatal("a chunk written all over is still partial")
	}
	if _, _, err := c.Snapshot(key(2)); err != nil {
		t.Fatal(err)
	}
	// So does one write of the whole chunk.
	c.WriteAt(ctx, key(3), chunk, fill('w'), 0, nil)
	if c.Partial(key(3)) {
		t.Fatal("a whole-chunk write made a partial entry")
	}
	// A write to a whole entry, with or without a base, keeps it whole.
	c.WriteAt(ctx, key(3), chunk, []byte("q"), 5, nil)
	if c.Partial(key(3)) || c.Stats().PartialChunks != 0 {
		t.Fatalf("stats %+v", c.Stats())
	}
}

// Partial entries are dirty: pinned until uploaded, and writers of new
// chunks wait for room rather than evict them.
func TestPartialEntryIsPinned(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 2*chunk)
	c.WriteAt(ctx, key(0), chunk, []byte("p"), 7, nil)
	for i := uint64(10); i < 20; i++ {
		if err := c.PutClean(key(i), fill('z')); err != nil {
			t.Fatal(err)
		}
	}
	if got := readOK(t, c, key(0), 7, 1); string(got) != "p" {
		t.Fatalf("partial entry lost: %q", got)
	}
	// PutClean leaves a partial entry alone.
	c.PutClean(key(0), fill('o'))
	if !c.Partial(key(0)) || string(readOK(t, c, key(0), 7, 1)) != "p" {
		t.Fatal("PutClean replaced a partial entry")
	}
	c.WriteAt(ctx, key(1), chunk, []byte("q"), 0, nil)
	done := make(chan error, 1)
	go func() { done <- c.WriteAt(ctx, key(2), chunk, []byte("r"), 0, nil) }()
	for c.Stats().Waits == 0 {
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("a third chunk got into a cache of two partial chunks: %v", err)
	default:
	}
	if st := c.Stats(); st.PartialChunks != 2 || st.Dirty != 2*chunk {
		t.Fatalf("stats %+v", st)
	}
	// Dropping one makes room.
	if err := c.Drop(key(0)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.PartialChunks != 2 || st.Chunks != 2 {
		t.Fatalf("stats after drop %+v", st)
	}
	if ok, _ := c.ReadAt(key(0), make([]byte, 1), 7); ok {
		t.Fatal("dropped partial entry still read")
	}
}

// The extent set against a byte map, under random adds.
func TestExtentsAgainstAByteMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		const size = 300
		var x extents
		model := make([]bool, size)
		for range 1 + r.IntN(12) {
			off := r.Int64N(size)
			end := off + r.Int64N(size-off+1)
			x = x.add(off, end)
			for i := off; i < end; i++ {
				model[i] = true
			}
			for i := 1; i < len(x); i++ {
				if x[i-1].End >= x[i].Off || x[i-1].Off >= x[i-1].End {
					t.Fatalf("round %d: extents %v not sorted, apart and non-empty", round, x)
				}
			}
			for range 20 {
				a := r.Int64N(size)
				b := a + r.Int64N(size-a+1)
				want := true
				for i := a; i < b; i++ {
					want = want && model[i]
				}
				if got := x.covers(a, b); got != want {
					t.Fatalf("round %d: %v covers [%d,%d) = %v, want %v", round, x, a, b, got, want)
				}
			}
			hole := make([]bool, size)
			for _, g := range x.gaps(size) {
				for i := g.Off; i < g.End; i++ {
					hole[i] = true
				}
			}
			for i := range model {
				if hole[i] == model[i] {
					t.Fatalf("round %d: gaps of %v wrong at %d", round, x, i)
				}
			}
		}
	}
}
