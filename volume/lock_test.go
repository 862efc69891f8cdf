package volume

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/snapshots"
)

// lockedEnv is an env on the model of a bucket with Object Lock, whose
// retention requests are counted, on a fake clock.
func lockedEnv(t *testing.T, mode objstore.RetentionMode) (*env, *clock.Fake, *faulty.Injector) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	store := mem.NewLocked("locked")
	store.SetClock(clk.Now)
	f := faulty.New(store, faulty.Options{})
	e := newEnv(t, 64<<20, 64<<20)
	e.store = f.Store()
	e.opts = func(o *Options) {
		o.Clock, o.ObjectLock = clk, mode
		// A recovery point may put a page again over a retained one
		// (the same bytes: a new current version above the retained
		// one, which stays); none here, so that the current version
		// of every object is the one the snapshot retained.
		o.RecoveryPointInterval = 1000 * time.Hour
	}
	e.start()
	return e, clk, f
}

// mustRetained checks that every object si needs is retained at least
// until its lock ends, in its mode: a purge of it fails, and the version
// left (the retained one: the same bytes, when a writer put them again
// over it meanwhile) is retained long enough.
func mustRetained(t *testing.T, e *env, si SnapshotInfo) {
	t.Helper()
	ctx := context.Background()
	man, err := snapshots.ReadManifest(ctx, e.store, e.codec, snapshots.SnapshotKey(si.ID))
	if err != nil {
		t.Fatal(err)
	}
	if man.Lock == nil || !man.Lock.Until.Equal(si.Lock.Until) || man.Lock.Mode != si.Lock.Mode {
		t.Fatalf("manifest of %s: lock %v, the catalog says %v", si.ID, man.Lock, si.Lock)
	}
	cm, err := snapshots.ReadChunkMap(ctx, e.store, e.codec, man)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := snapshots.SnapshotObjects(ctx, e.store, e.codec, man.Pages, cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, snapshots.SnapshotKey(si.ID))
	for _, k := range keys {
		if err := objstore.Purge(ctx, e.store, k); !objstore.IsObjectLocked(err) {
			t.Fatalf("snapshot %s locked %s needs %s: purge: %v", si.ID, si.Lock, k, err)
		}
		r, err := objstore.GetRetention(ctx, e.store, k)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Covers(*si.Lock) {
			t.Fatalf("snapshot %s locked %s needs %s, retained %s", si.ID, si.Lock, k, r)
		}
	}
}

// A locked snapshot: everything it needs is retained until its lock ends,
// shared chunks are extended only when a newer lock ends later, delete is
// refused with the date, GC keeps retained objects without failing, and
// both proceed once the lock has ended.
func TestLockedSnapshot(t *testing.T) {
	e, clk, f := lockedEnv(t, objstore.Governance)
	ctx := context.Background()
	const chunks = 16
	v := e.create("db", Cached, chunks*64<<10, 64<<10)
	if err := v.WriteAt(ctx, pattern(1, chunks*64<<10), 0); err != nil {
		t.Fatal(err)
	}
	s1, err := e.m.CreateSnapshot(ctx, "db", SnapshotOptions{Lock: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if want := snapshots.LockEnd(s1.Created, 7*24*time.Hour); s1.Lock == nil || !s1.Lock.Until.Equal(want) || s1.Lock.Mode != objstore.Governance {
		t.Fatalf("lock %v, want governance until %s", s1.Lock, want)
	}
	if s1.Lock.Until.Before(s1.Created.Add(7*24*time.Hour)) || s1.Lock.Until.After(s1.Created.Add(7*24*time.Hour+snapshots.LockGranule(7*24*time.Hour))) {
		t.Fatalf("lock until %s for a 7d lock taken at %s", s1.Lock.Until, s1.Created)
	}
	// The first snapshot: one request per chunk and page; the manifest
	// is put retained.
	if s1.Retained.Objects != chunks+1 || s1.Retained.Retained != chunks+1 || f.Calls(faulty.OpRetain) != chunks+1 {
		t.Fatalf("first snapshot: %+v, %d retention requests; want %d objects each retained once", *s1.Retained, f.Calls(faulty.OpRetain), chunks+1)
	}
	mustRetained(t, e, s1)

	// Hourly snapshots changing one chunk each: the shared chunks are
	// extended only when the lock's end moves to a later granule.
	prev := s1
	snaps := []SnapshotInfo{s1}
	moved := 0
	for i := range 24 {
		if err := v.WriteAt(ctx, pattern(uint64(10+i), 4096), int64(i%chunks)*64<<10); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		before := f.Calls(faulty.OpRetain)
		si, err := e.m.CreateSnapshot(ctx, "db", SnapshotOptions{Lock: 7 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		calls := f.Calls(faulty.OpRetain) - before
		want := 2 // the changed chunk and its page
		if !si.Lock.Until.Equal(prev.Lock.Until) {
			want = chunks + 1
			moved++
		}
		if calls != want || si.Retained.Retained != want {
			t.Fatalf("snapshot %d: %d retention requests (%+v), want %d", i+2, calls, *si.Retained, want)
		}
		mustRetained(t, e, si)
		snaps = append(snaps, si)
		prev = si
	}
	if moved == 0 || moved > 2 {
		t.Fatalf("a 7d lock's end moved %d times in 24 hourly snapshots: its granule is %s", moved, snapshots.LockGranule(7*24*time.Hour))
	}
	t.Logf("25 snapshots: %d retention requests (%d without the record and granules)", f.Calls(faulty.OpRetain), 25*(chunks+1))

	err = e.m.DeleteSnapshot(ctx, s1.ID)
	if !errors.Is(err, snapshots.ErrSnapshotLocked) || !strings.Contains(err.Error(), s1.Lock.Until.Format(time.RFC3339)) {
		t.Fatalf("delete of a locked snapshot: %v", err)
	}
	if _, err := e.m.Snapshot(ctx, s1.ID); err != nil {
		t.Fatalf("the refused delete removed the snapshot: %v", err)
	}

	// An object no manifest names but retained (a snapshot that failed
	// after locking its chunks): GC keeps it and does not fail.
	id, blob, err := e.codec.Encode(pattern(99, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	orphan := objstore.Retention{Mode: objstore.Governance, Until: clk.Now().Add(2 * time.Hour)}
	if err := objstore.PutRetained(ctx, e.store, id.ObjectKey(), bytes.NewReader(blob), int64(len(blob)), orphan); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	st, err := e.m.CollectGarbage(ctx, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.KeptLocked != 1 {
		t.Fatalf("GC with a retained orphan: %+v", st)
	}
	if _, err := e.store.Stat(ctx, id.ObjectKey()); err != nil {
		t.Fatalf("GC removed a retained object: %v", err)
	}

	// After the lock: delete and GC proceed.
	clk.Advance(8 * 24 * time.Hour)
	for _, si := range snaps[:len(snaps)-1] {
		if err := e.m.DeleteSnapshot(ctx, si.ID); err != nil {
			t.Fatalf("delete after the lock ended: %v", err)
		}
	}
	st, err = e.m.CollectGarbage(ctx, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.KeptLocked != 0 || st.Deleted == 0 {
		t.Fatalf("GC after the locks ended: %+v", st)
	}
	if _, err := e.store.Stat(ctx, id.ObjectKey()); !objstore.IsNotFound(err) {
		t.Fatalf("the orphan after its retention: %v", err)
	}
	last := snaps[len(snaps)-1]
	got, err := e.m.CreateSnapshot(ctx, "db", SnapshotOptions{})
	if err != nil || got.Lock != nil {
		t.Fatalf("an unlocked snapshot: %+v %v", got, err)
	}
	// The newest snapshot is still whole after GC, though its lock ended.
	man, err := snapshots.ReadManifest(ctx, e.store, e.codec, snapshots.SnapshotKey(last.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshots.ReadChunkMap(ctx, e.store, e.codec, man); err != nil {
		t.Fatal(err)
	}
	if rep, err := snapshots.Verify(ctx, e.store, e.codec, snapshots.SnapshotKey(last.ID), 4); err != nil || !rep.OK() {
		t.Fatalf("verify the newest snapshot after GC: %+v %v", rep, err)
	}
}

// Compliance mode is the mode snapshots get, and a schedule's locked
// snapshots outlive its keep until their locks end.
func TestLockedSchedule(t *testing.T) {
	e, clk, _ := lockedEnv(t, objstore.Compliance)
	ctx := context.Background()
	v := e.create("s", Cached, 1<<20, 64<<10)
	if _, err := e.m.SetLockedSchedule(ctx, "s", time.Hour, 2, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := v.WriteAt(ctx, pattern(uint64(i), 4096), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		if err := e.m.RunSchedules(ctx); err != nil {
			t.Fatal(err)
		}
	}
	snaps := mustSnapshots(t, e.m)
	locked := 0
	for _, si := range snaps {
		if si.Lock == nil || si.Lock.Mode != objstore.Compliance {
			t.Fatalf("scheduled snapshot %s: lock %v", si.ID, si.Lock)
		}
		if si.Lock.Holds(clk.Now()) {
			locked++
		}
	}
	if len(snaps) <= 2 || len(snaps) != locked {
		t.Fatalf("5 hourly snapshots locked 3h, keeping 2: %d left, %d locked", len(snaps), locked)
	}
	if _, err := e.m.SetSchedule(ctx, "s", time.Hour, 2); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Hour)
	if err := e.m.RunSchedules(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(mustSnapshots(t, e.m)); n != 2 {
		t.Fatalf("after the locks ended: %d snapshots, want 2", n)
	}
}

// A gateway whose bucket has no Object Lock refuses a lock, clearly.
func TestLockWithoutObjectLock(t *testing.T) {
	e := newEnv(t, 64<<20, 64<<20)
	e.start()
	e.create("v", Cached, 1<<20, 64<<10)
	ctx := context.Background()
	_, err := e.m.CreateSnapshot(ctx, "v", SnapshotOptions{Lock: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "no Object Lock") {
		t.Fatalf("lock without Object Lock: %v", err)
	}
	if _, err := e.m.SetLockedSchedule(ctx, "v", time.Hour, 2, time.Hour); err == nil {
		t.Fatal("a locked schedule without Object Lock was accepted")
	}
	if n := len(mustSnapshots(t, e.m)); n != 0 {
		t.Fatalf("%d snapshots after refusals", n)
	}
}
