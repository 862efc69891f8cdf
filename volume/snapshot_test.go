package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
)

// countingStore counts the bytes put through it.
type countingStore struct {
	objstore.Store
	put atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := c.Store.Put(ctx, key, r, size)
	if err == nil {
		c.put.Add(size)
	}
	return err
}

func writeAll(t testing.TB, v *Volume, data []byte, step int) {
	t.Helper()
	for off := 0; off < len(data); off += step {
		end := min(off+step, len(data))
		if err := v.WriteAt(context.Background(), data[off:end], int64(off)); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
	}
}

func (e *env) restore(name, snap string, kind Kind) *Volume {
	e.t.Helper()
	if _, err := e.m.Create(context.Background(), CreateOptions{Name: name, Kind: kind, FromSnapshot: snap}); err != nil {
		e.t.Fatal(err)
	}
	return e.vol(name)
}

// The snapshot holds exactly what the volume held at the instant it was
// taken, while writes of other data run during its upload: some chunks
// uploaded before, some dirty at the instant and overwritten during the
// upload (copy-on-write), some unmapped.
func TestSnapshotIsPointInTime(t *testing.T) {
	for _, kind := range []Kind{Cached, Stored} {
		t.Run(string(kind), func(t *testing.T) {
			const size, chunk = 4 << 20, 64 << 10
			e := newEnv(t, 64<<20, 64<<20)
			release := make(chan struct{})
			halfway := make(chan struct{})
			e.opts = func(o *Options) { o.Uploaders = 2 }
			e.start()
			e.m.afterCapture = func() {
				close(release)
				<-halfway // half of B is written before any frozen chunk is taken
			}
			v := e.create("pit", kind, size, chunk)
			a := pattern(1, size)
			writeAll(t, v, a[:size/2], 48<<10)
			if err := e.m.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The second half is dirty at the instant.
			for off := size / 2; off < size; off += 48 << 10 {
				end := min(off+48<<10, size)
				if err := v.WriteAt(context.Background(), a[off:end], int64(off)); err != nil {
					t.Fatal(err)
				}
			}

			b := pattern(2, size)
			done := make(chan error, 1)
			go func() {
				<-release
				for i, off := 0, 0; off < size; i, off = i+1, off+40<<10 {
					end := min(off+40<<10, size)
					if err := v.WriteAt(context.Background(), b[off:end], int64(off)); err != nil {
						done <- err
						return
					}
					if off >= size/2 && i%2 == 0 {
						select {
						case <-halfway:
						default:
							close(halfway)
						}
					}
				}
				if err := v.Unmap(context.Background(), 0, chunk*2); err != nil {
					done <- err
					return
				}
				done <- nil
			}()
			si, err := e.m.CreateSnapshot(context.Background(), "pit", SnapshotOptions{Description: "A"})
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if si.Chunks != size/chunk {
				t.Errorf("snapshot has %d chunks, want %d", si.Chunks, size/chunk)
			}
			bNow := append([]byte(nil), b...)
			clear(bNow[:chunk*2])
			mustEqual(t, "volume after B", readAll(t, v, 128<<10), bNow)
			for _, rk := range []Kind{Cached, Stored} {
				r := e.restore("r-"+string(rk), si.ID, rk)
				mustEqual(t, "restored "+string(rk), readAll(t, r, 100<<10), a)
			}
			// And from the bucket alone, after the volume is gone.
			rep, err := snapshots.Verify(context.Background(), e.store, e.codec, snapshots.SnapshotKey(si.ID), 4)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %+v %v", rep, err)
			}
		})
	}
}

// Changing 1% of a volume uploads about 1% of it for the next snapshot.
func TestIncrementalSnapshotUploadsTheChange(t *testing.T) {
	for _, kind := range []Kind{Cached, Stored} {
		t.Run(string(kind), func(t *testing.T) {
			const size, chunk = 64 << 20, 64 << 10
			e := newEnv(t, 128<<20, 128<<20)
			cs := &countingStore{Store: e.store}
			e.store = cs
			e.start()
			v := e.create("inc", kind, size, chunk)
			writeAll(t, v, pattern(3, size), 1<<20)
			before := cs.put.Load()
			full, err := e.m.CreateSnapshot(context.Background(), "inc", SnapshotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			fullBytes := cs.put.Load() - before
			if err := e.m.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Count from before the change: the uploader may take some
			// chunks before the snapshot does.
			before = cs.put.Load()
			r := rand.New(rand.NewPCG(4, 4))
			changed := size / chunk / 100 // 1% of the chunks
			for range changed {
				off := int64(r.IntN(size/4096)) * 4096
				if err := v.WriteAt(context.Background(), pattern(r.Uint64(), 4096), off); err != nil {
					t.Fatal(err)
				}
			}
			inc, err := e.m.CreateSnapshot(context.Background(), "inc", SnapshotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			incBytes := cs.put.Load() - before
			ratio := float64(incBytes) / float64(fullBytes)
			t.Logf("full snapshot put %d bytes, incremental after 1%% change put %d (%.2f%%); parent %s", fullBytes, incBytes, 100*ratio, inc.Parent)
			if fullBytes < size {
				t.Errorf("full snapshot put %d bytes, less than the %d-byte volume", fullBytes, size)
			}
			if ratio > 0.02 || incBytes < int64(changed)*int64(chunk)/2 {
				t.Errorf("incremental snapshot put %.2f%% of the full one after a 1%% change", 100*ratio)
			}
			if inc.Parent != full.ID {
				t.Errorf("parent %q, want %q", inc.Parent, full.ID)
			}
			// A snapshot of an unchanged volume uploads only its manifest.
			before = cs.put.Load()
			if _, err := e.m.CreateSnapshot(context.Background(), "inc", SnapshotOptions{}); err != nil {
				t.Fatal(err)
			}
			if n := cs.put.Load() - before; n > 4096 {
				t.Errorf("snapshot of an unchanged volume put %d bytes", n)
			}
		})
	}
}

// A stored volume restored from a snapshot reads and writes correctly
// while it hydrates, and hydration resumes after a restart.
func TestStoredRestoreHydratesLazily(t *testing.T) {
	const size, chunk = 8 << 20, 64 << 10
	e := newEnv(t, 64<<20, 64<<20)
	var limit atomic.Int64
	e.opts = func(o *Options) { o.HydrateBytesPerSec = limit.Load() }
	e.start()
	src := e.create("src", Cached, size, chunk)
	a := pattern(5, size)
	clear(a[chunk : 3*chunk]) // holes are skipped
	writeAll(t, src, a, 1<<20)
	si, err := e.m.CreateSnapshot(context.Background(), "src", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Hydrate slowly: two chunks a second.
	limit.Store(2 * chunk)
	e.restart()
	r := e.restore("dst", si.ID, Stored)
	st := r.Stats(context.Background()).Hydration
	if st == nil || st.Complete || st.TotalChunks != size/chunk-2 {
		t.Fatalf("hydration status %+v", st)
	}
	// A read and a write far ahead of the background pass.
	got := make([]byte, 4096)
	if err := r.ReadAt(context.Background(), got, size-8192); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "read ahead of hydration", got, a[size-8192:size-4096])
	w := pattern(6, 1000)
	if err := r.WriteAt(context.Background(), w, size-chunk-500); err != nil {
		t.Fatal(err)
	}
	copy(a[size-chunk-500:], w)
	// Restart mid-hydration (the write is in the upload buffer only), now
	// without a rate limit.
	limit.Store(0)
	e.restart()
	r = e.vol("dst")
	if st := r.Stats(context.Background()).Hydration; st == nil || st.Complete {
		t.Fatalf("hydration after restart: %+v", st)
	}
	mustEqual(t, "restored after restart", readAll(t, r, 256<<10), a)
	waitFor(t, "hydration", func() bool { return r.Stats(context.Background()).Hydration.Complete })
	e.restart()
	r = e.vol("dst")
	if st := r.Stats(context.Background()).Hydration; st == nil || !st.Complete {
		t.Fatalf("hydration after completion and restart: %+v", st)
	}
	if n := countPrefix(t, e.md, hydrationPrefix(r.info.ID)); n != 0 {
		t.Fatalf("%d hydration keys left", n)
	}
	mustEqual(t, "hydrated", readAll(t, r, 256<<10), a)
}

// One changed byte in any object of a snapshot is found by verify and is
// an error on read, never data.
func TestTamperedSnapshotIsReported(t *testing.T) {
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("t", Cached, 1<<20, 64<<10)
	writeAll(t, v, pattern(7, 1<<20), 1<<20)
	si, err := e.m.CreateSnapshot(context.Background(), "t", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, prefix := range []string{"chunks/", "maps/", "snapshots/"} {
		_ = e.store.List(context.Background(), prefix, func(oi objstore.ObjectInfo) error {
			keys = append(keys, oi.Key)
			return nil
		})
	}
	for _, key := range []string{keys[0], keys[len(keys)-2], keys[len(keys)-1]} {
		t.Run(strings.Split(key, "/")[0], func(t *testing.T) {
			orig, err := objstore.GetAll(context.Background(), e.store, key)
			if err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), orig...)
			bad[len(bad)/2] ^= 0x01
			if err := objstore.PutBytes(context.Background(), e.store, key, bad); err != nil {
				t.Fatal(err)
			}
			defer objstore.PutBytes(context.Background(), e.store, key, orig)
			rep, err := snapshots.Verify(context.Background(), e.store, e.codec, snapshots.SnapshotKey(si.ID), 2)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.Problems[0].Object != key || rep.Problems[0].What != "corrupt" {
				t.Fatalf("verify after tampering with %s: %+v", key, rep)
			}
			name := fmt.Sprintf("r%d", len(key))
			_, err = e.m.Create(context.Background(), CreateOptions{Name: name, Kind: Cached, FromSnapshot: si.ID})
			if err == nil {
				r := e.vol(name)
				buf := make([]byte, 1<<20)
				err = r.ReadAt(context.Background(), buf, 0)
				_ = e.m.Delete(context.Background(), name)
			}
			if err == nil {
				t.Fatalf("restore and read after tampering with %s succeeded", key)
			}
		})
	}
}

// Garbage collection after many snapshots, deletes and writes keeps every
// live snapshot whole and leaves nothing unreferenced behind.
func TestRandomizedGC(t *testing.T) {
	const size, chunk = 2 << 20, 64 << 10
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	r := rand.New(rand.NewPCG(8, 8))
	vols := []*Volume{e.create("g1", Cached, size, chunk), e.create("g2", Stored, size, chunk)}
	want := map[string][]byte{} // snapshot -> content
	content := map[*Volume][]byte{vols[0]: make([]byte, size), vols[1]: make([]byte, size)}
	var live []string
	gc := func() snapshots.GCStats {
		st, err := e.m.CollectGarbage(context.Background(), 0, false)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for round := range 40 {
		v := vols[r.IntN(2)]
		switch op := r.IntN(5); {
		case op < 2:
			off := int64(r.IntN(size/4096)) * 4096
			n := min(int64(4096*(1+r.IntN(40))), size-off)
			data := pattern(r.Uint64(), int(n))
			if r.IntN(4) == 0 {
				clear(data) // zeroes make holes
			}
			if err := v.WriteAt(context.Background(), data, off); err != nil {
				t.Fatal(err)
			}
			copy(content[v][off:], data)
		case op == 2:
			si, err := e.m.CreateSnapshot(context.Background(), v.info.Name, SnapshotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want[si.ID] = append([]byte(nil), content[v]...)
			live = append(live, si.ID)
		case op == 3 && len(live) > 0:
			i := r.IntN(len(live))
			if err := e.m.DeleteSnapshot(context.Background(), live[i]); err != nil {
				t.Fatal(err)
			}
			delete(want, live[i])
			live = append(live[:i], live[i+1:]...)
		default:
			if err := e.m.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			gc()
		}
		if round%10 == 9 {
			if err := e.m.RecoveryPoint(context.Background(), "g1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.m.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := gc()
	t.Logf("last GC: %+v; %d live snapshots", st, len(live))
	// Nothing unreferenced survives.
	referenced := map[string]bool{}
	roots, err := e.m.GCRoots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for id := range roots.Chunks {
		referenced[id.ObjectKey()] = true
	}
	manifests := []string{snapshots.SnapshotPrefix, "volumes/"}
	for _, prefix := range manifests {
		_ = e.store.List(context.Background(), prefix, func(oi objstore.ObjectInfo) error {
			man, err := snapshots.ReadManifest(context.Background(), e.store, e.codec, oi.Key)
			if err != nil {
				t.Fatal(err)
			}
			for _, ref := range man.Pages {
				referenced[snapshots.PageKey(ref.ID)] = true
			}
			ids, err := snapshots.ReadChunkMap(context.Background(), e.store, e.codec, man)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				referenced[id.ObjectKey()] = true
			}
			return nil
		})
	}
	for _, prefix := range []string{"chunks/", "maps/"} {
		_ = e.store.List(context.Background(), prefix, func(oi objstore.ObjectInfo) error {
			if !referenced[oi.Key] {
				t.Errorf("unreferenced %s survived GC", oi.Key)
			}
			return nil
		})
	}
	// Every live snapshot verifies and restores to what it held.
	for i, id := range live {
		rep, err := snapshots.Verify(context.Background(), e.store, e.codec, snapshots.SnapshotKey(id), 2)
		if err != nil || !rep.OK() {
			t.Fatalf("snapshot %s after GC: %+v %v", id, rep, err)
		}
		rv := e.restore(fmt.Sprintf("check%d", i), id, Cached)
		mustEqual(t, "snapshot "+id, readAll(t, rv, 256<<10), want[id])
	}
}

// Objects younger than the grace period stay even when unreferenced.
func TestGCGracePeriod(t *testing.T) {
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("g", Cached, 1<<20, 64<<10)
	writeAll(t, v, pattern(9, 1<<20), 1<<20)
	si, err := e.m.CreateSnapshot(context.Background(), "g", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeleteSnapshot(context.Background(), si.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(context.Background(), "g"); err != nil {
		t.Fatal(err)
	}
	st, err := snapshots.CollectGarbage(context.Background(), e.store, e.codec, snapshots.GCOptions{Grace: time.Hour, ExtraRoots: e.m.GCRoots})
	if err != nil || st.Deleted != 0 || st.KeptYoung == 0 {
		t.Fatalf("GC within the grace period: %+v %v", st, err)
	}
	st, err = snapshots.CollectGarbage(context.Background(), e.store, e.codec, snapshots.GCOptions{
		Grace: time.Hour, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }, ExtraRoots: e.m.GCRoots})
	if err != nil || st.Deleted != st.Candidates || st.Deleted == 0 {
		t.Fatalf("GC after the grace period: %+v %v", st, err)
	}
}

// GC run concurrently with snapshots and writes never removes what a
// snapshot names.
func TestGCDuringSnapshots(t *testing.T) {
	const size, chunk = 2 << 20, 64 << 10
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("c", Cached, size, chunk)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var gcErr atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := e.m.CollectGarbage(ctx, 0, false); err != nil && ctx.Err() == nil {
				gcErr.Store(err)
				return
			}
		}
	}()
	var ids []string
	contents := map[string][]byte{}
	cur := make([]byte, size)
	for i := range 12 {
		data := pattern(uint64(100+i), size/4)
		off := (i % 4) * size / 4
		if err := v.WriteAt(context.Background(), data, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(cur[off:], data)
		if i%3 == 0 {
			if err := e.m.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		si, err := e.m.CreateSnapshot(context.Background(), "c", SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, si.ID)
		contents[si.ID] = append([]byte(nil), cur...)
	}
	cancel()
	wg.Wait()
	if err := gcErr.Load(); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		rv := e.restore(fmt.Sprintf("cc%d", i), id, Cached)
		mustEqual(t, "snapshot "+id, readAll(t, rv, 256<<10), contents[id])
	}
	if !bytes.Equal(readAll(t, v, 256<<10), cur) {
		t.Fatal("volume changed")
	}
}

// A schedule takes a snapshot each interval of the (fake) clock and keeps
// the newest Keep of them; snapshots taken by hand stay.
func TestSnapshotSchedule(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, 64<<20, 64<<20)
	e.opts = func(o *Options) { o.Clock = clk }
	e.start()
	v := e.create("s", Cached, 1<<20, 64<<10)
	ctx := context.Background()
	if _, err := e.m.SetSchedule(ctx, "s", 30*time.Second, 3); err == nil {
		t.Fatal("a 30s schedule was accepted")
	}
	if _, err := e.m.SetSchedule(ctx, "s", time.Hour, 3); err != nil {
		t.Fatal(err)
	}
	manual, err := e.m.CreateSnapshot(ctx, "s", SnapshotOptions{Description: "by hand"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.RunSchedules(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(mustSnapshots(t, e.m)); n != 1 {
		t.Fatalf("%d snapshots before the first interval", n)
	}
	for i := range 5 {
		if err := v.WriteAt(ctx, pattern(uint64(i), 4096), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		if err := e.m.RunSchedules(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute) // not due again yet
		if err := e.m.RunSchedules(ctx); err != nil {
			t.Fatal(err)
		}
	}
	snaps := mustSnapshots(t, e.m)
	if len(snaps) != 4 || snaps[0].ID != manual.ID {
		t.Fatalf("after 5 runs keeping 3: %d snapshots (%+v)", len(snaps), snaps)
	}
	for _, si := range snaps[1:] {
		if si.Schedule != "every 1h0m0s" {
			t.Errorf("scheduled snapshot %s tagged %q", si.ID, si.Schedule)
		}
	}
	scheds, err := e.m.Schedules(ctx)
	if err != nil || len(scheds) != 1 || !scheds[0].NextRun.Equal(clk.Now().Add(-time.Minute).Add(time.Hour).UTC()) {
		t.Fatalf("schedules %+v %v", scheds, err)
	}
	if err := e.m.RemoveSchedule(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if err := e.m.RunSchedules(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(mustSnapshots(t, e.m)); n != 4 {
		t.Fatalf("%d snapshots after the schedule was removed", n)
	}
}

func mustSnapshots(t *testing.T, m *Manager) []SnapshotInfo {
	t.Helper()
	s, err := m.Snapshots(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// failingGets fails chunk downloads after the first n.
type failingGets struct {
	objstore.Store
	left atomic.Int64
}

func (f *failingGets) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "chunks/") && f.left.Add(-1) < 0 {
		return nil, fmt.Errorf("injected: store went away")
	}
	return f.Store.Get(ctx, key, off, n)
}

// Disaster recovery writes a snapshot to a file from the bucket alone,
// skips holes on a new file, zeroes them on an old one, and resumes after
// an interruption.
func TestRestoreToFile(t *testing.T) {
	const size, chunk = 8 << 20, 64 << 10
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	v := e.create("dr", Cached, size, chunk)
	a := pattern(11, size)
	clear(a[2*chunk : 10*chunk])
	writeAll(t, v, a, 1<<20)
	si, err := e.m.CreateSnapshot(context.Background(), "dr", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := dir + "/disk.img"
	fg := &failingGets{Store: e.store}
	fg.left.Store(30)
	_, err = snapshots.RestoreToFile(context.Background(), fg, e.codec, si.ID, target, snapshots.RestoreOptions{Parallel: 3})
	if err == nil || !strings.Contains(err.Error(), "run it again to resume") {
		t.Fatalf("interrupted restore: %v", err)
	}
	var last snapshots.RestoreProgress
	prog, err := snapshots.RestoreToFile(context.Background(), e.store, e.codec, si.ID, target, snapshots.RestoreOptions{
		Parallel: 3, Progress: func(p snapshots.RestoreProgress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if prog.Resumed < 20 || prog.Holes != 8 || prog.DoneChunks != size/chunk-8 || last.DoneBytes != prog.TotalBytes {
		t.Fatalf("resumed restore: %+v (last progress %+v)", prog, last)
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "restored file", got, a)
	if _, err := os.Stat(target + snapshots.RestoreStateSuffix); !os.IsNotExist(err) {
		t.Fatalf("state file left behind: %v", err)
	}
	// Onto an existing file full of other data: refused without Force;
	// with it, holes are written as zeroes.
	old := pattern(12, size)
	if err := os.WriteFile(target, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshots.RestoreToFile(context.Background(), e.store, e.codec, si.ID, target, snapshots.RestoreOptions{}); !errors.Is(err, snapshots.ErrTargetNotEmpty) {
		t.Fatalf("restore over a file holding data without Force: %v", err)
	}
	got, _ = os.ReadFile(target)
	mustEqual(t, "file after a refused restore", got, old)
	if _, err := snapshots.RestoreToFile(context.Background(), e.store, e.codec, si.ID, target, snapshots.RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(target)
	mustEqual(t, "restored over old data", got, a)
	// A wrong snapshot id and an unknown one.
	if _, err := snapshots.RestoreToFile(context.Background(), e.store, e.codec, "snap-nope", target, snapshots.RestoreOptions{}); err == nil {
		t.Fatal("bad id accepted")
	}
	if _, err := snapshots.RestoreToFile(context.Background(), e.store, e.codec, "snap-0000000000000000", target, snapshots.RestoreOptions{}); !errors.Is(err, snapshots.ErrSnapshotNotFound) {
		t.Fatalf("unknown snapshot: %v", err)
	}
}

// A stored volume made on an existing disk snapshots the data already on
// it, not an empty map.
func TestSnapshotOfExistingDisk(t *testing.T) {
	const size, chunk = 4 << 20, 64 << 10
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	data := pattern(21, size)
	clear(data[chunk : 2*chunk])
	path := t.TempDir() + "/existing.img"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(context.Background(), CreateOptions{Name: "ex", Kind: Stored, Size: size, ChunkSize: chunk, Disk: path}); err != nil {
		t.Fatal(err)
	}
	si, err := e.m.CreateSnapshot(context.Background(), "ex", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if si.Chunks != size/chunk-1 {
		t.Fatalf("snapshot of an existing disk has %d chunks, want %d", si.Chunks, size/chunk-1)
	}
	mustEqual(t, "restored existing disk", readAll(t, e.restore("exr", si.ID, Cached), 1<<20), data)
}

// Snapshots taken while the cache is full of data not yet uploaded and
// writes wait for room finish, and so do the writes; each holds the
// volume's bytes at its instant (the writer holds still from just before
// the instant until the capture, so the test knows them), and the volume
// holds every write. A stored volume's snapshots, taken while its writes
// wait for room in a small log (checkpoints free it), do the same.
func TestSnapshotUnderCachePressure(t *testing.T) {
	t.Run("cached", func(t *testing.T) {
		snapshotsUnderPressure(t, Cached, newEnv(t, 64<<20, 1<<20)) // the cache holds 16 of the 128 chunks
	})
	t.Run("stored", func(t *testing.T) {
		snapshotsUnderPressure(t, Stored, newEnv(t, 1<<20, 64<<20)) // the log holds some 60 of the writes
	})
}

func snapshotsUnderPressure(t *testing.T, kind Kind, e *env) {
	const size, chunk = 8 << 20, 64 << 10
	e.opts = func(o *Options) { o.UploadInterval, o.SettleTime = 10*time.Millisecond, time.Millisecond }
	e.start()
	v := e.create("p", kind, size, chunk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	werr := make(chan error, 1)
	var writes atomic.Int64
	shadow := make([]byte, size) // the writer's, or its pauser's while it holds still
	pause := make(chan chan struct{})
	go func() {
		r := rand.New(rand.NewPCG(30, 30))
		for ctx.Err() == nil {
			select {
			case resume := <-pause:
				select {
				case <-resume:
				case <-ctx.Done():
				}
			default:
			}
			off := int64(r.IntN(size/4096)) * 4096
			p := pattern(r.Uint64(), 16<<10)[:min(16<<10, size-int(off))]
			if err := v.WriteAt(context.Background(), p, off); err != nil {
				werr <- err
				return
			}
			copy(shadow[off:], p)
			writes.Add(1)
		}
		werr <- nil
	}()
	done := make(chan error, 1)
	go func() {
		for i := range 3 {
			for writes.Load() < int64(100*(i+1)) { // the cache or log is full and writes wait
				time.Sleep(time.Millisecond)
			}
			resume := make(chan struct{})
			pause <- resume // the writer is between two writes
			atInstant := append([]byte(nil), shadow...)
			release := sync.OnceFunc(func() { close(resume) })
			e.m.afterCapture = release
			si, err := e.m.CreateSnapshot(context.Background(), "p", SnapshotOptions{})
			release()
			if err != nil {
				done <- err
				return
			}
			rep, err := snapshots.Verify(context.Background(), e.store, e.codec, snapshots.SnapshotKey(si.ID), 2)
			if err == nil && !rep.OK() {
				err = fmt.Errorf("verify: %+v", rep)
			}
			if err == nil {
				err = sameBytes(fmt.Sprintf("snapshot %d", i+1), restoredFile(t, e, si.ID), atInstant)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Minute): // a deadlock, not a slow machine
		t.Fatal("snapshots under pressure did not finish")
	}
	cancel()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "volume after the snapshots", readAll(t, v, chunk), shadow)
	t.Logf("%d writes during 3 snapshots; waits for room: %d in the cache, %d in the log",
		writes.Load(), e.cache.Stats().Waits, e.log.Stats().Waits)
}

// restoredFile restores a snapshot into a new file and returns its bytes.
func restoredFile(t *testing.T, e *env, snap string) []byte {
	target := filepath.Join(t.TempDir(), "restored.img")
	if _, err := snapshots.RestoreToFile(context.Background(), e.store, e.codec, snap, target, snapshots.RestoreOptions{Parallel: 3}); err != nil {
		t.Errorf("restore %s: %v", snap, err)
		return nil
	}
	b, err := os.ReadFile(target)
	if err != nil {
		t.Error(err)
	}
	return b
}

// sameBytes is mustEqual's comparison as an error, for goroutines other
// than the test's.
func sameBytes(what string, got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	if len(got) != len(want) {
		return fmt.Errorf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	i := 0
	for got[i] == want[i] {
		i++
	}
	return fmt.Errorf("%s: first difference at byte %d: got %#x want %#x", what, i, got[i], want[i])
}

// A restored volume keeps the snapshot's map pages as its base until a
// chunk in a page is touched: snapshots of it name untouched pages as
// they are, GC keeps their chunks after the source snapshot is gone, and
// writes, unmaps and restarts expand pages without losing anything.
func TestRestoredVolumeBasePages(t *testing.T) {
	const chunk = 64 << 10
	const page = snapshots.PageEntries * chunk // 256 MiB of volume per map page
	const size = 2 * page
	e := newEnv(t, 64<<20, 64<<20)
	cs := &countingStore{Store: e.store}
	e.store = cs
	e.start()
	ctx := context.Background()
	src := e.create("src", Cached, size, chunk)
	want := map[int64][]byte{} // offset -> 64 KiB written there
	for i, off := range []int64{0, 5 * chunk, page - chunk, page, page + 7*chunk, size - chunk} {
		data := pattern(uint64(40+i), chunk)
		if err := src.WriteAt(ctx, data, off); err != nil {
			t.Fatal(err)
		}
		want[off] = data
	}
	si, err := e.m.CreateSnapshot(ctx, "src", SnapshotOptions{})
	if err != nil || len(si.Pages) != 2 {
		t.Fatalf("source snapshot: %+v %v", si, err)
	}
	check := func(v *Volume, what string) {
		t.Helper()
		for off := int64(0); off < size; off += chunk {
			got := make([]byte, chunk)
			if err := v.ReadAt(ctx, got, off); err != nil {
				t.Fatalf("%s: read at %d: %v", what, off, err)
			}
			exp := want[off]
			if exp == nil {
				exp = make([]byte, chunk)
			}
			mustEqual(t, fmt.Sprintf("%s at %d", what, off), got, exp)
		}
	}
	for _, kind := range []Kind{Cached, Stored} {
		name := "r-" + string(kind)
		r := e.restore(name, si.ID, kind)
		if n := countPrefix(t, e.md, mapPrefix(r.info.ID)); kind == Cached && n != 0 {
			t.Fatalf("%s: %d chunk map entries right after create; want the pages only", kind, n)
		}
		// A snapshot of the untouched volume names the same pages.
		before := cs.put.Load()
		s2, err := e.m.CreateSnapshot(ctx, name, SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s2.Pages[0] != si.Pages[0] || s2.Pages[1] != si.Pages[1] || s2.Chunks != si.Chunks {
			t.Fatalf("%s: snapshot of an untouched restored volume: %+v, source %+v", kind, s2, si)
		}
		if n := cs.put.Load() - before; n > 4096 {
			t.Fatalf("%s: snapshot of an untouched restored volume put %d bytes", kind, n)
		}
	}
	// The source snapshot and volume go; GC must keep what the restored
	// volumes' base pages name.
	if err := e.m.DeleteSnapshot(ctx, si.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	snaps := mustSnapshots(t, e.m)
	for _, s := range snaps {
		if err := e.m.DeleteSnapshot(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.CollectGarbage(ctx, 0, false); err != nil {
		t.Fatal(err)
	}
	rc := e.vol("r-cached")
	// A write in the second page and an unmap in the first; the first
	// page's other chunks stay as they were.
	w := pattern(50, chunk)
	if err := rc.WriteAt(ctx, w, page+7*chunk); err != nil {
		t.Fatal(err)
	}
	want[page+7*chunk] = w
	if err := rc.Unmap(ctx, 5*chunk, chunk); err != nil {
		t.Fatal(err)
	}
	delete(want, 5*chunk)
	check(rc, "cached after write and unmap")
	e.restart()
	check(e.vol("r-cached"), "cached after restart")
	waitFor(t, "hydration", func() bool { return e.vol("r-stored").Stats(ctx).Hydration.Complete })
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	s3, err := e.m.CreateSnapshot(ctx, "r-cached", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check(e.restore("again", s3.ID, Cached), "restored from the restored volume")
	if _, err := e.m.CollectGarbage(ctx, 0, false); err != nil {
		t.Fatal(err)
	}
	e.restart()
	check(e.vol("again"), "after GC")
	// The stored one's data is as it was at its restore.
	delete(want, page+7*chunk)
	want[5*chunk] = pattern(41, chunk)
	want[page+7*chunk] = pattern(44, chunk)
	check(e.vol("r-stored"), "stored after hydration")
}
