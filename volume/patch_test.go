package volume

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
)

// scatter writes n random 4 KiB blocks at random 4 KiB-aligned offsets
// and mirrors them into model.
func scatter(t testing.TB, v *Volume, r *rand.Rand, model []byte, n int) {
	t.Helper()
	for range n {
		off := int64(r.IntN(len(model)/4096)) * 4096
		data := pattern(r.Uint64(), 4096)
		if err := v.WriteAt(context.Background(), data, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], data)
	}
}

// putRatio is the bytes PUT to the store per byte written by scattered
// 4 KiB writes to a cached volume of 1 MiB chunks, in upload rounds (each
// round is one settle period: writes, then every pending chunk goes up).
type putFigures struct {
	written, put, rpPut int64
}

// measureSmallWrites: hot writes the same blocks every round instead of
// random ones.
func measureSmallWrites(t *testing.T, whole, fresh, hot bool, rounds int) putFigures {
	const size, chunk, perRound = 32 << 20, 1 << 20, 16
	e := newEnv(t, 256<<20, 256<<20)
	cs := &countingStore{Store: e.store}
	e.store = cs
	e.opts = func(o *Options) { o.WholeChunkUploads = whole }
	e.start()
	v := e.create("small", Cached, size, chunk)
	model := make([]byte, size)
	if !fresh {
		copy(model, pattern(21, size))
		writeAll(t, v, model, 1<<20)
	}
	if err := e.m.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := cs.put.Load()
	r := rand.New(rand.NewPCG(22, 22))
	var f putFigures
	hotBlocks := rand.New(rand.NewPCG(23, 23))
	for range rounds {
		if hot {
			*hotBlocks = *rand.New(rand.NewPCG(23, 23)) // the same offsets every round
			for range perRound {
				off := int64(hotBlocks.IntN(size/4096)) * 4096
				data := pattern(r.Uint64(), 4096)
				if err := v.WriteAt(context.Background(), data, off); err != nil {
					t.Fatal(err)
				}
				copy(model[off:], data)
			}
		} else {
			scatter(t, v, r, model, perRound)
		}
		f.written += perRound * 4096
		if err := e.m.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	f.put = cs.put.Load() - before
	before = cs.put.Load()
	if err := e.m.RecoveryPoint(context.Background(), "small"); err != nil {
		t.Fatal(err)
	}
	f.rpPut = cs.put.Load() - before
	// From the store alone (the cache starts empty after a restart):
	// bases with their patches applied, then after the recovery point's
	// compaction.
	e.restart()
	mustEqual(t, "volume read from the store", readAll(t, e.vol("small"), 1<<20), model)
	return f
}

// Small writes upload small: scattered 4 KiB writes to a cached volume of
// 1 MiB chunks cost about 256 bytes PUT per byte written when every upload
// is a whole chunk, and about one with patches.
func TestSmallWritesUploadSmall(t *testing.T) {
	for _, c := range []struct {
		name              string
		whole, fresh, hot bool
		rounds            int
		min, max          float64
	}{
		{"whole-chunks", true, false, false, 8, 150, 300},
		{"patches", false, false, false, 8, 1, 1.5},
		{"whole-chunks-fresh-volume", true, true, false, 8, 150, 300},
		{"patches-fresh-volume", false, true, false, 8, 1, 1.5},
		// Past the patch list's length: merged patches.
		{"whole-chunks-40-rounds", true, false, false, 40, 150, 300},
		{"patches-40-rounds", false, false, false, 40, 1, 4},
		{"whole-chunks-same-blocks-40-rounds", true, false, true, 40, 150, 300},
		{"patches-same-blocks-40-rounds", false, false, true, 40, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.whole && c.rounds > 8 && testing.Short() {
				t.Skip("the whole-chunk figure is the same as over 8 rounds")
			}
			f := measureSmallWrites(t, c.whole, c.fresh, c.hot, c.rounds)
			ratio := float64(f.put) / float64(f.written)
			t.Logf("%s: %d bytes written in 4 KiB writes over %d upload rounds, %d bytes PUT: %.2f per byte written; the recovery point after them put %d more (%.1f per byte written)",
				c.name, f.written, c.rounds, f.put, ratio, f.rpPut, float64(f.rpPut)/float64(f.written))
			if ratio < c.min || ratio > c.max {
				t.Errorf("%.2f bytes PUT per byte written, want %.0f to %.1f", ratio, c.min, c.max)
			}
		})
	}
}

// entryOf returns chunk index's map entry.
func entryOf(t testing.TB, v *Volume, index uint64) chunkEntry {
	t.Helper()
	raw, err := v.mapEntry(context.Background(), index)
	if err != nil {
		t.Fatal(err)
	}
	ent, err := parseEntry(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ent
}

// A patched chunk reads back right while it collects patches, goes up
// whole once its patches pass the bound, and snapshots and recovery
// points name whole chunks only, which restore as they always did.
func TestPatchedChunksCompactAndRestore(t *testing.T) {
	const size, chunk = 4 << 20, 256 << 10
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("p", Cached, size, chunk)
	model := pattern(31, size)
	writeAll(t, v, model, 1<<20)
	ctx := context.Background()
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// Many rounds of small writes to chunk 1: the list never grows past
	// maxPatches, and reads from the store see every write.
	r := rand.New(rand.NewPCG(32, 32))
	for round := range 3 * maxPatches {
		off := int64(chunk) + int64(r.IntN(chunk/4096-1))*4096
		data := pattern(r.Uint64(), 8192)
		if err := v.WriteAt(ctx, data, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], data)
		if err := e.m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if ent := entryOf(t, v, 1); len(ent.patches) > maxPatches {
			t.Fatalf("round %d: %d patches", round, len(ent.patches))
		}
		got, err := v.fetch(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "chunk from the store", got, model[chunk:2*chunk])
	}
	if st := e.m.Stats(); st.PatchesUploaded == 0 || st.PatchMerges == 0 || st.ChunksUploaded <= size/chunk {
		t.Fatalf("no patches, no merged patch or no compaction: %+v", st)
	}
	// Leave chunks 1 and 3 patched, and one written (pending) at the snapshot.
	for _, off := range []int64{chunk + 8192, 3*chunk + 4096} {
		data := pattern(uint64(off), 4096)
		if err := v.WriteAt(ctx, data, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], data)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if raw, _ := v.mapEntry(ctx, 3); len(raw) == 32 {
		t.Fatal("chunk 3 not patched")
	}
	pend := pattern(33, 4096)
	if err := v.WriteAt(ctx, pend, 2*chunk); err != nil {
		t.Fatal(err)
	}
	copy(model[2*chunk:], pend)
	si, err := e.m.CreateSnapshot(ctx, "p", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := v.mapEntry(ctx, 3); len(raw) != 32 {
		t.Fatal("chunk 3 still patched after the snapshot compacted it")
	}
	if rep, err := snapshots.Verify(ctx, e.store, e.codec, snapshots.SnapshotKey(si.ID), 2); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	target := t.TempDir() + "/disk.img"
	if _, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, target, snapshots.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "stand-alone restore", got, model)
	for _, kind := range []Kind{Cached, Stored} {
		rv := e.restore("from-"+string(kind), si.ID, kind)
		mustEqual(t, "restored "+string(kind), readAll(t, rv, 1<<20), model)
	}
	// Patches over a restored volume's base page, then a recovery point
	// that names whole chunks only.
	rv := e.vol("from-" + string(Cached))
	want := readAll(t, rv, 1<<20)
	scatter(t, rv, r, want, 16)
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if e.m.Stats().PatchesUploaded == 0 {
		t.Fatal("no patches")
	}
	if err := e.m.RecoveryPoint(ctx, rv.info.ID); err != nil {
		t.Fatal(err)
	}
	man, ids, err := ReadRecoveryPoint(ctx, e.store, e.codec, rv.info.ID)
	if err != nil {
		t.Fatal(err)
	}
	rp := make([]byte, man.Size)
	for i, id := range ids {
		b, err := snapshots.ReadChunk(ctx, e.store, e.codec, id, chunk)
		if err != nil {
			t.Fatal(err)
		}
		copy(rp[int64(i)*chunk:], b)
	}
	mustEqual(t, "recovery point", rp, want)
	e.restart()
	mustEqual(t, "restored cached volume after a restart", readAll(t, e.vol(rv.info.ID), 1<<20), want)
}

// A patch of one volume's chunk never applies to another volume, chunk,
// base or position, and a changed byte is refused.
func TestPatchBinding(t *testing.T) {
	codec := testCodec(t)
	base := codec.ID([]byte("base"))
	tgt := snapshots.PatchTarget{Volume: "vol-a", Index: 7, ChunkSize: 1 << 20, Base: base, Seq: 2}
	p := snapshots.Patch{Target: tgt, Extents: []snapshots.PatchExtent{{Off: 4096, Data: []byte("hello")}, {Off: 1 << 19, Data: []byte("world")}}}
	id, blob, err := codec.SealPatch(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.OpenPatch(id, blob, tgt)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	got.Apply(chunk)
	if string(chunk[4096:4101]) != "hello" || string(chunk[1<<19:1<<19+5]) != "world" {
		t.Fatal("applied patch is wrong")
	}
	other := func(f func(*snapshots.PatchTarget)) snapshots.PatchTarget { x := tgt; f(&x); return x }
	for name, want := range map[string]snapshots.PatchTarget{
		"other volume":     other(func(x *snapshots.PatchTarget) { x.Volume = "vol-b" }),
		"other chunk":      other(func(x *snapshots.PatchTarget) { x.Index = 8 }),
		"other chunk size": other(func(x *snapshots.PatchTarget) { x.ChunkSize = 1 << 19 }),
		"other base":       other(func(x *snapshots.PatchTarget) { x.Base = codec.ID([]byte("other")) }),
		"hole base":        other(func(x *snapshots.PatchTarget) { x.Base, x.BaseHole = snapshots.ChunkID{}, true }),
		"other position":   other(func(x *snapshots.PatchTarget) { x.Seq = 3 }),
	} {
		if _, err := codec.OpenPatch(id, blob, want); !errkind.IsCorrupt(err) {
			t.Errorf("%s: %v, want corrupt", name, err)
		}
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x40
		if _, err := codec.OpenPatch(id, bad, tgt); !errkind.IsCorrupt(err) {
			t.Fatalf("byte %d changed: %v, want corrupt", i, err)
		}
	}
	if _, err := codec.OpenPatch(id, blob[:len(blob)-1], tgt); !errkind.IsCorrupt(err) {
		t.Fatalf("truncated: %v", err)
	}
	// Another patch's blob under this id, and a chunk read as a patch.
	id2, blob2, _ := codec.SealPatch(snapshots.Patch{Target: tgt, Extents: []snapshots.PatchExtent{{Off: 0, Data: []byte("x")}}})
	if _, err := codec.OpenPatch(id, blob2, tgt); !errkind.IsCorrupt(err) {
		t.Fatalf("patch %v read as %v: %v", id2, id, err)
	}
	cid, cblob, _ := codec.Encode([]byte("a chunk"))
	if _, err := codec.OpenPatch(cid, cblob, tgt); !errkind.IsCorrupt(err) {
		t.Fatalf("chunk read as a patch: %v", err)
	}
	// Malformed extents are refused when written.
	for _, xs := range [][]snapshots.PatchExtent{
		{{Off: 10, Data: []byte("ab")}, {Off: 11, Data: []byte("c")}}, // overlap
		{{Off: 10, Data: []byte("ab")}, {Off: 12, Data: []byte("c")}}, // touching
		{{Off: 1 << 20, Data: []byte("a")}},                           // outside
		{{Off: 0, Data: nil}},                                         // empty
	} {
		if _, _, err := codec.SealPatch(snapshots.Patch{Target: tgt, Extents: xs}); err == nil {
			t.Errorf("extents %v accepted", xs)
		}
	}
}

// A tampered patch in the store is reported as corrupt by a read, never
// returned as data.
func TestTamperedPatchIsReported(t *testing.T) {
	const size, chunk = 1 << 20, 256 << 10
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("t", Cached, size, chunk)
	ctx := context.Background()
	writeAll(t, v, pattern(41, size), 1<<20)
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.WriteAt(ctx, pattern(42, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	raw, _ := v.mapEntry(ctx, 0)
	ent, err := parseEntry(raw)
	if err != nil || len(ent.patches) != 1 {
		t.Fatalf("entry %x: %v", raw, err)
	}
	key := snapshots.PatchKey(ent.patches[0].id)
	blob, err := objstore.GetAll(ctx, e.store, key)
	if err != nil {
		t.Fatal(err)
	}
	blob[len(blob)/2] ^= 1
	if err := objstore.PutBytes(ctx, e.store, key, blob); err != nil {
		t.Fatal(err)
	}
	e.restart() // the cache starts empty: reads go to the store
	p := make([]byte, 4096)
	err = e.vol("t").ReadAt(ctx, p, 0)
	if !errkind.IsCorrupt(err) || !strings.Contains(err.Error(), "patch") {
		t.Fatalf("read over a tampered patch: %v", err)
	}
}

// Garbage collection keeps the patches a chunk map names and removes
// those a compaction superseded; the volume reads back from the store
// throughout.
func TestGCAndPatches(t *testing.T) {
	const size, chunk = 2 << 20, 256 << 10
	ctx := context.Background()
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("g", Cached, size, chunk)
	model := pattern(51, size)
	writeAll(t, v, model, 1<<20)
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(52, 52))
	for range 3 {
		scatter(t, v, r, model, 6)
		if err := e.m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	named := 0
	for i := range uint64(size / chunk) {
		raw, _ := v.mapEntry(ctx, i)
		if ent, err := parseEntry(raw); err == nil {
			named += len(ent.patches)
		}
	}
	count := func() int {
		n := 0
		_ = e.store.List(ctx, "patches/", func(objstore.ObjectInfo) error { n++; return nil })
		return n
	}
	if named == 0 || count() != named {
		t.Fatalf("%d patches named by the map, %d in the store", named, count())
	}
	if _, err := e.m.CollectGarbage(ctx, 0, false); err != nil {
		t.Fatal(err)
	}
	if count() != named {
		t.Fatalf("garbage collection left %d of the %d patches the map names", count(), named)
	}
	e.restart()
	v = e.vol("g")
	mustEqual(t, "after garbage collection, from the store", readAll(t, v, 1<<20), model)
	// A snapshot compacts every patched chunk: the patches are garbage.
	if _, err := e.m.CreateSnapshot(ctx, "g", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.CollectGarbage(ctx, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if count() != 0 || st.Deleted < named {
		t.Fatalf("after compaction: %d patches left, %d objects deleted of %d superseded patches", count(), st.Deleted, named)
	}
	e.restart()
	mustEqual(t, "after compaction and garbage collection", readAll(t, e.vol("g"), 1<<20), model)
}

// Many small writes scattered over one chunk keep a bounded list of dirty
// extents, and the chunk still uploads and reads back right.
func TestDirtyExtentsBounded(t *testing.T) {
	const size, chunk = 1 << 20, 1 << 20
	ctx := context.Background()
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("d", Cached, size, chunk)
	model := pattern(61, size)
	writeAll(t, v, model, 1<<20)
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 * maxDirtyExtents {
		off := int64(i) * 512 // 16 bytes every 512: at most 1/32 of the span changes
		data := pattern(uint64(i), 16)
		if err := v.WriteAt(ctx, data, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], data)
	}
	v.mu.Lock()
	n := len(v.dirty[0])
	v.mu.Unlock()
	if n > maxDirtyExtents {
		t.Fatalf("%d dirty extents kept", n)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if ent := entryOf(t, v, 0); len(ent.patches) != 1 {
		t.Fatalf("entry with %d patches, want 1", len(ent.patches))
	}
	e.restart()
	mustEqual(t, "from the store", readAll(t, e.vol("d"), 1<<20), model)
}
