package tapes_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/tapes"
)

// classes counts a tape's objects by storage class.
func classes(t *testing.T, s objstore.Store, bc string) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := s.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		out[oi.StorageClass]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPoolsAndRetentionLock (fake clock): pools are checked and kept in
// meta; a tape archived from a pool goes to the pool's class and is locked
// for the pool's days from then: delete and a move to another pool are
// refused with the date it unlocks (a governance lock yields to an
// explicit bypass, a compliance lock to nothing); once the lock ends both
// proceed, and an archived tape moved to another pool changes class and
// takes that pool's lock.
func TestPoolsAndRetentionLock(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, p := range []tapes.Pool{
		{Name: "bad name", StorageClass: "GLACIER"},
		{Name: "x", StorageClass: "glacier"},
		{Name: "x", StorageClass: "GLACIER", LockDays: 3},
		{Name: "x", StorageClass: "GLACIER", Lock: "forever", LockDays: 3},
		{Name: "x", StorageClass: "GLACIER", Lock: tapes.LockCompliance},
		{Name: "x", StorageClass: "GLACIER", Lock: tapes.LockCompliance, LockDays: tapes.MaxLockDays + 1},
	} {
		if _, err := e.lib.CreatePool(ctx, p); !errors.Is(err, tapes.ErrBadInput) {
			t.Fatalf("pool %+v: %v, want ErrBadInput", p, err)
		}
	}
	mustPool := func(p tapes.Pool) {
		t.Helper()
		if _, err := e.lib.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	mustPool(tapes.Pool{Name: "deep", StorageClass: "DEEP_ARCHIVE", Lock: "COMPLIANCE", LockDays: 30})
	mustPool(tapes.Pool{Name: "gov", StorageClass: "GLACIER", Lock: tapes.LockGovernance, LockDays: 10})
	mustPool(tapes.Pool{Name: "plain", StorageClass: "GLACIER_IR"})
	if _, err := e.lib.CreatePool(ctx, tapes.Pool{Name: "gov", StorageClass: "GLACIER"}); !errors.Is(err, tapes.ErrExists) {
		t.Fatalf("second pool gov: %v", err)
	}
	if _, err := e.lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: "NP", Size: 8 << 20, Pool: "nope"}); !errors.Is(err, tapes.ErrNoPool) {
		t.Fatalf("tape in a pool that does not exist: %v", err)
	}
	create := func(prefix, pool string) string {
		t.Helper()
		bcs, err := e.lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: prefix, Size: 8 << 20, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		tp := e.open(bcs[0])
		if err := tp.WriteRecord(ctx, 0, record(7, 100000), false); err != nil {
			t.Fatal(err)
		}
		if err := tp.Close(ctx); err != nil {
			t.Fatal(err)
		}
		return bcs[0]
	}
	deep, gov, free := create("DP", "deep"), create("GV", "gov"), create("FR", "")
	if err := e.lib.DeletePool(ctx, "deep"); !errors.Is(err, tapes.ErrPoolUsed) {
		t.Fatalf("delete a pool with a tape: %v", err)
	}
	// In the library nothing is locked: a tape moves between pools.
	if _, err := e.lib.AssignPool(ctx, free, "plain", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.lib.AssignPool(ctx, free, "", false); err != nil {
		t.Fatal(err)
	}
	archivedAt := e.clk.Now()
	for _, bc := range []string{deep, gov} {
		if err := e.lib.Archive(ctx, bc); err != nil {
			t.Fatal(err)
		}
	}
	if c := classes(t, e.store, deep); c["DEEP_ARCHIVE"] == 0 || len(c) != 1 {
		t.Fatalf("deep tape's objects by class: %v", c)
	}
	if c := classes(t, e.store, gov); c["GLACIER"] == 0 || len(c) != 1 {
		t.Fatalf("gov tape's objects by class: %v", c)
	}
	in, _ := e.lib.Info(ctx, deep)
	if want := archivedAt.Add(30 * 24 * time.Hour); !in.LockUntil.Equal(want) || in.LockMode != tapes.LockCompliance {
		t.Fatalf("deep tape's lock: %+v, want until %v", in, want)
	}
	locked := func(label string, err error) {
		t.Helper()
		if !errors.Is(err, tapes.ErrLocked) || !strings.Contains(err.Error(), "until") {
			t.Fatalf("%s: %v, want ErrLocked with its date", label, err)
		}
	}
	locked("delete deep", e.lib.Delete(ctx, deep))
	locked("delete deep bypassing governance", e.lib.DeleteTape(ctx, deep, true))
	_, err := e.lib.AssignPool(ctx, deep, "gov", true)
	locked("move deep", err)
	_, err = e.lib.AssignPool(ctx, gov, "plain", false)
	locked("move gov", err)
	locked("delete gov", e.lib.Delete(ctx, gov))
	// Still locked after a restart: the lock is in meta.
	e.restart()
	locked("delete deep after a restart", e.lib.Delete(ctx, deep))
	if err := e.lib.DeleteTape(ctx, gov, true); err != nil {
		t.Fatalf("delete gov bypassing governance: %v", err)
	}

	// A day before the end: still locked; after it: moves.
	e.clk.Advance(29 * 24 * time.Hour)
	locked("delete deep a day early", e.lib.Delete(ctx, deep))
	e.clk.Advance(24*time.Hour + time.Second)
	movedAt := e.clk.Now()
	if in, err = e.lib.AssignPool(ctx, deep, "gov", false); err != nil {
		t.Fatal(err)
	}
	if want := movedAt.Add(10 * 24 * time.Hour); !in.LockUntil.Equal(want) || in.LockMode != tapes.LockGovernance || in.Pool != "gov" {
		t.Fatalf("after the move to gov: %+v", in)
	}
	if c := classes(t, e.store, deep); c["GLACIER"] == 0 || len(c) != 1 {
		t.Fatalf("moved tape's objects by class: %v", c)
	}
	locked("delete the moved tape", e.lib.Delete(ctx, deep))
	e.clk.Advance(10*24*time.Hour + time.Second)
	if err := e.lib.Delete(ctx, deep); err != nil {
		t.Fatal(err)
	}
	if err := e.lib.DeletePool(ctx, "deep"); err != nil {
		t.Fatal(err)
	}
	// Spares of a pool are made in the pool.
	if err := e.lib.SetSpareRule(ctx, tapes.SpareRule{Count: 2, Prefix: "SP", Size: 8 << 20, Pool: "plain"}); err != nil {
		t.Fatal(err)
	}
	if err := e.lib.SetSpareRule(ctx, tapes.SpareRule{Count: 2, Prefix: "SP", Size: 8 << 20, Pool: "deep"}); !errors.Is(err, tapes.ErrNoPool) {
		t.Fatalf("spares in a deleted pool: %v", err)
	}
	list, _ := e.lib.List(ctx)
	n := 0
	for _, in := range list {
		if strings.HasPrefix(in.Barcode, "SP") && in.Pool == "plain" {
			n++
		}
	}
	ps, err := e.lib.Pools(ctx)
	if n != 2 || err != nil || len(ps) != 2 || ps[0].Name != "gov" || ps[1].Name != "plain" {
		t.Fatalf("spares in pool plain: %d; pools %+v %v", n, ps, err)
	}
}

// TestPoolLockRetainsObjects: on a bucket with Object Lock (the memory
// store's model), a tape archived from a locked pool has every object
// retained in the pool's mode until its lock ends: the bucket's keys
// alone cannot remove them, and a governance bypass is refused since the
// bucket would keep them anyway. Once the lock ends the tape is deleted
// with every version of its objects.
func TestPoolLockRetainsObjects(t *testing.T) {
	e := newEnv(t)
	locked := mem.NewLocked("locked")
	locked.SetClock(e.clk.Now)
	e.store = locked
	e.start()
	for _, p := range []tapes.Pool{
		{Name: "comp", StorageClass: "GLACIER", Lock: tapes.LockCompliance, LockDays: 5},
		{Name: "gov", StorageClass: "GLACIER", Lock: tapes.LockGovernance, LockDays: 5},
	} {
		if _, err := e.lib.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var bcs []string
	for _, pool := range []string{"comp", "gov"} {
		got, err := e.lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: strings.ToUpper(pool), Size: 8 << 20, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		tp := e.open(got[0])
		var m model
		writeMixed(t, tp, &m, 5, 12)
		if err := tp.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.lib.Archive(ctx, got[0]); err != nil {
			t.Fatal(err)
		}
		bcs = append(bcs, got[0])
	}
	for i, mode := range []objstore.RetentionMode{objstore.Compliance, objstore.Governance} {
		in, _ := e.lib.Info(ctx, bcs[i])
		n := 0
		if err := e.store.List(ctx, "tapes/"+bcs[i]+"/", func(oi objstore.ObjectInfo) error {
			n++
			ret, err := objstore.GetRetention(ctx, e.store, oi.Key)
			if err != nil || ret.Mode != mode || !ret.Until.Equal(in.LockUntil) {
				t.Errorf("%s: retention %v %v, want %s until %v", oi.Key, ret, err, mode, in.LockUntil)
			}
			if err := objstore.Purge(ctx, e.store, oi.Key); !objstore.IsObjectLocked(err) {
				t.Errorf("%s: purge of a retained object: %v", oi.Key, err)
			}
			return nil
		}); err != nil || n == 0 {
			t.Fatalf("tape %s: %d objects, %v", bcs[i], n, err)
		}
	}
	if err := e.lib.DeleteTape(ctx, bcs[1], true); !errors.Is(err, tapes.ErrLocked) || !strings.Contains(err.Error(), "Object Lock") {
		t.Fatalf("governance bypass on a bucket with Object Lock: %v", err)
	}
	e.clk.Advance(5*24*time.Hour + time.Second)
	for _, bc := range bcs {
		if err := e.lib.Delete(ctx, bc); err != nil {
			t.Fatal(err)
		}
		if c := classes(t, e.store, bc); len(c) != 0 {
			t.Fatalf("tape %s deleted, objects left: %v", bc, c)
		}
	}
}

// coldEnv is an env whose store models cold storage: objects archived to
// GLACIER or DEEP_ARCHIVE read only once restored, which takes delay.
func coldEnv(t *testing.T, delay time.Duration) (*env, *mem.Cold) {
	e := newEnv(t)
	cold := mem.NewCold(mem.New("cold"), mem.ColdOptions{Delay: delay, Now: e.clk.Now})
	e.store = cold
	e.opts = func(o *tapes.Options) {
		o.Restorer = cold
		o.RetrievePoll = time.Minute
	}
	return e, cold
}

// TestRetrieveFromColdStorage (with the store's cold model): retrieving
// an archived tape asks a restore of each of its objects at the tier
// given and shows the tape retrieving with counts; a crash in the middle
// neither loses the retrieval nor asks again for restores under way; once
// the restores are done the tape is in a slot, read-only, and reads back
// what was written.
func TestRetrieveFromColdStorage(t *testing.T) {
	e, cold := coldEnv(t, 5*time.Hour)
	e.start()
	bc := e.create(1, 64<<20)[0]
	tp := e.open(bc)
	var m model
	writeMixed(t, tp, &m, 77, 30)
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.lib.Archive(ctx, bc); err != nil {
		t.Fatal(err)
	}
	objects := classes(t, e.store, bc)["GLACIER"]
	if objects < 3 {
		t.Fatalf("archived tape's objects by class: %v", classes(t, e.store, bc))
	}
	if _, err := cold.Get(ctx, "tapes/"+bc+"/index", 0, -1); !errors.Is(err, objstore.ErrArchived) {
		t.Fatalf("read of an archived object: %v", err)
	}
	if _, err := e.lib.RetrieveTape(ctx, bc, "Slow"); !errors.Is(err, tapes.ErrBadInput) {
		t.Fatalf("retrieve at tier Slow: %v", err)
	}
	in, err := e.lib.RetrieveTape(ctx, bc, objstore.TierBulk)
	if err != nil {
		t.Fatal(err)
	}
	if r := in.Retrieval; in.State != tapes.StateRetrieving || r == nil || r.Objects != objects || r.Restoring != objects || r.Readable != 0 || r.Tier != "Bulk" {
		t.Fatalf("retrieving: %+v %+v", in, in.Retrieval)
	}
	if n := cold.Requests(); n != objects {
		t.Fatalf("%d restores asked for %d objects", n, objects)
	}
	if _, err := e.lib.Open(ctx, bc); err == nil {
		t.Fatal("a retrieving tape opened")
	}
	if err := e.lib.Archive(ctx, bc); err == nil {
		t.Fatal("a retrieving tape archived again")
	}

	// A crash mid-retrieval; polls before the restores are done.
	e.crash()
	for range 3 {
		waitIdle(e)
		e.clk.Advance(time.Hour)
		waitPolled(t, e, bc, e.clk.Now())
	}
	in, _ = e.lib.Info(ctx, bc)
	if in.State != tapes.StateRetrieving || in.Retrieval.Restoring != objects {
		t.Fatalf("after a crash and 3 hours: %+v %+v", in, in.Retrieval)
	}
	if n := cold.Requests(); n != objects {
		t.Fatalf("%d restores asked after the crash, %d before", n, objects)
	}
	// Done: in the lowest free slot, read-only, the same bytes.
	e.clk.Advance(2*time.Hour + time.Second)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if in, _ = e.lib.Info(ctx, bc); in.State == tapes.StateRetrieved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not retrieved: %+v %+v", in, in.Retrieval)
		}
		waitIdle(e)
		e.clk.Advance(time.Minute)
	}
	if !in.ReadOnly || in.Place != (tapes.Element{Type: tapes.ElementSlot, Index: 0}) || in.Retrieval != nil {
		t.Fatalf("retrieved: %+v", in)
	}
	if c := classes(t, e.store, bc); c[""] != objects || len(c) != 1 {
		t.Fatalf("retrieved tape's objects by class: %v", c)
	}
	tp = e.open(bc)
	m.check(t, tp)
	if err := tp.WriteRecord(ctx, tp.EOD(), []byte("x"), false); !errors.Is(err, tapes.ErrWriteProtected) {
		t.Fatalf("write to a retrieved tape: %v", err)
	}
	tp.Close(ctx)
}

// waitPolled waits until the library looked at the retrieving tape at
// or after at (a tick of the uploader), moving the clock on by a minute
// while it has not.
func waitPolled(t *testing.T, e *env, bc string, at time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for i := 0; ; i++ {
		if i%100 == 99 {
			waitIdle(e)
			e.clk.Advance(time.Minute)
		}
		in, err := e.lib.Info(ctx, bc)
		if err != nil {
			t.Fatal(err)
		}
		if in.Retrieval != nil && !in.Retrieval.Checked.Before(at.UTC()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("retrieval of %s not looked at since %v: %+v", bc, at, in.Retrieval)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockedColdEnv is an env on a bucket with Object Lock whose store models
// cold storage (restores take an hour of the env's clock).
func lockedColdEnv(t *testing.T) *env {
	e := newEnv(t)
	locked := mem.NewLocked("locked")
	locked.SetClock(e.clk.Now)
	cold := mem.NewCold(locked, mem.ColdOptions{Delay: time.Hour, Now: e.clk.Now})
	e.store = cold
	e.opts = func(o *tapes.Options) { o.Restorer = cold }
	e.start()
	return e
}

// archivedTape creates a tape in pool, writes n objects to it and
// archives it.
func archivedTape(t *testing.T, e *env, pool, prefix string, seed uint64, n int) (string, model) {
	t.Helper()
	got, err := e.lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: prefix, Size: 8 << 20, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	tp := e.open(got[0])
	var m model
	writeMixed(t, tp, &m, seed, n)
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.lib.Archive(ctx, got[0]); err != nil {
		t.Fatal(err)
	}
	return got[0], m
}

// TestRetrievedTapeStaysRetained: the retrieval of a tape archived from
// a locked pool copies its objects back to the retrieve class, which S3
// does by a copy onto itself (a new version, unretained); every object
// of the retrieved tape is retained again until the tape's lock ends, so
// that nobody with the bucket's keys removes the copies gatewayd reads.
func TestRetrievedTapeStaysRetained(t *testing.T) {
	e := lockedColdEnv(t)
	if _, err := e.lib.CreatePool(ctx, tapes.Pool{Name: "vault", StorageClass: "GLACIER", Lock: tapes.LockCompliance, LockDays: 30}); err != nil {
		t.Fatal(err)
	}
	bc, m := archivedTape(t, e, "vault", "VLT", 9, 12)
	if _, err := e.lib.RetrieveTape(ctx, bc, objstore.TierStandard); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour + time.Second)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		in, err := e.lib.RetrieveTape(ctx, bc, objstore.TierStandard) // looks at once, or the uploader's tick did
		if in.State == tapes.StateRetrieved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not retrieved after the restores: %+v %+v %v", in, in.Retrieval, err)
		}
		waitIdle(e)
		e.clk.Advance(time.Minute)
	}
	in, err := e.lib.Info(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	if c := classes(t, e.store, bc); len(c) != 1 || c[""] == 0 {
		t.Fatalf("retrieved tape's objects by class: %v", c)
	}
	want := objstore.Retention{Mode: objstore.Compliance, Until: in.LockUntil}
	if err := e.store.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		if ret, err := objstore.GetRetention(ctx, e.store, oi.Key); err != nil || !ret.Covers(want) {
			t.Errorf("%s of the retrieved tape: retention %v %v, want %v", oi.Key, ret, err, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tp := e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}

// TestPoolMoveRetainsUnmovedObjects: an archived tape moved to a pool
// with a longer lock (GLACIER to DEEP_ARCHIVE) takes that lock at once, on
// its objects too where the bucket has Object Lock, while they wait for
// the restores S3 needs before it copies an archived object to another
// class: the bucket, not only gatewayd's meta, keeps them until the new
// lock ends. The move asks one restore per object (at the Bulk tier),
// never again while it runs (a restart included), and once the restores
// are done moves every object to DEEP_ARCHIVE, retained as long.
func TestPoolMoveRetainsUnmovedObjects(t *testing.T) {
	e := lockedColdEnv(t)
	cold := e.store.(*mem.Cold)
	for _, p := range []tapes.Pool{
		{Name: "short", StorageClass: "GLACIER", Lock: tapes.LockGovernance, LockDays: 1},
		{Name: "long", StorageClass: "DEEP_ARCHIVE", Lock: tapes.LockCompliance, LockDays: 3650},
	} {
		if _, err := e.lib.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	bc, m := archivedTape(t, e, "short", "MV", 11, 8)
	objects := classes(t, e.store, bc)["GLACIER"]
	if objects < 3 {
		t.Fatalf("archived tape's objects by class: %v", classes(t, e.store, bc))
	}
	e.clk.Advance(24*time.Hour + time.Second)
	asked := cold.Requests()
	in, err := e.lib.AssignPool(ctx, bc, "long", false)
	if err != nil {
		t.Fatalf("move to pool long: %v", err)
	}
	if in.Pool != "long" || in.LockMode != tapes.LockCompliance || !in.ArchivePending {
		t.Fatalf("moved to pool long: %+v", in)
	}
	if c := classes(t, e.store, bc); c["GLACIER"] != objects {
		t.Fatalf("an archived tape's objects copied to another class without a restore: %v", c)
	}
	if n := cold.Requests() - asked; n != objects {
		t.Fatalf("%d restores asked for %d objects", n, objects)
	}
	retained := func(when string) {
		t.Helper()
		want := objstore.Retention{Mode: objstore.Compliance, Until: in.LockUntil}
		n := 0
		if err := e.store.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
			n++
			if ret, err := objstore.GetRetention(ctx, e.store, oi.Key); err != nil || !ret.Covers(want) {
				t.Errorf("%s: %s (%s): retention %v %v, want %v", when, oi.Key, oi.StorageClass, ret, err, want)
			}
			return nil
		}); err != nil || n == 0 {
			t.Fatalf("%s: %d objects: %v", when, n, err)
		}
	}
	retained("while the restores run")
	// Looked at again, after a restart too: no restore asked twice.
	if in, err = e.lib.AssignPool(ctx, bc, "long", false); err != nil || !in.ArchivePending {
		t.Fatalf("assigned again while restoring: %+v %v", in, err)
	}
	e.restart()
	for range 3 {
		waitIdle(e)
		e.clk.Advance(10 * time.Minute)
	}
	waitIdle(e)
	if n := cold.Requests() - asked; n != objects {
		t.Fatalf("%d restores asked for %d objects after a restart", n, objects)
	}
	if in, _ = e.lib.Info(ctx, bc); !in.ArchivePending {
		t.Fatalf("move done before the restores: %+v %v", in, classes(t, e.store, bc))
	}
	// The restores done (an hour), the next look moves every object.
	e.clk.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if in, _ = e.lib.Info(ctx, bc); !in.ArchivePending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("move not done after the restores: %+v %v", in, classes(t, e.store, bc))
		}
		waitIdle(e)
		e.clk.Advance(time.Minute)
	}
	if c := classes(t, e.store, bc); c["DEEP_ARCHIVE"] != objects || len(c) != 1 {
		t.Fatalf("moved tape's objects by class: %v", c)
	}
	retained("after the move")
	// Its data is the tape's: retrieved (restored again from DEEP_ARCHIVE),
	// it reads back.
	if _, err := e.lib.RetrieveTape(ctx, bc, objstore.TierStandard); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour + time.Second)
	for {
		in, err := e.lib.RetrieveTape(ctx, bc, objstore.TierStandard)
		if in.State == tapes.StateRetrieved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not retrieved after the restores: %+v %+v %v", in, in.Retrieval, err)
		}
		waitIdle(e)
		e.clk.Advance(time.Minute)
	}
	tp := e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}
