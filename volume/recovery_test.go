package volume

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
)

// The recovery point alone (manifest, pages, chunks in the bucket) rebuilds
// the volume; a second one uploads only the pages that changed.
func TestRecoveryPointRebuildsFromBucketAlone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64*mib, 64*mib)
	e.start()
	const cs = 64 * kib
	size := int64(3 * 4096 * cs) // three map pages
	v := e.create("rp", Cached, size, cs)
	shadow := map[int64][]byte{}
	write := func(off int64, seed uint64) {
		p := pattern(seed, 100*kib)
		if err := v.WriteAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
		shadow[off] = p
	}
	write(0, 1)
	write(10*mib, 2)
	write(2*4096*cs+5*kib, 3) // third page
	if err := e.m.RecoveryPoint(ctx, "rp"); err != nil {
		t.Fatal(err)
	}
	pagesBefore := countObjects(t, e.store, "maps/")
	if pagesBefore != 2 {
		t.Fatalf("%d page objects for two non-empty pages", pagesBefore)
	}

	write(2*4096*cs+300*kib, 4) // changes the third page only (no overlap with the write before)
	if err := e.m.RecoveryPoint(ctx, "rp"); err != nil {
		t.Fatal(err)
	}
	if got := countObjects(t, e.store, "maps/"); got != pagesBefore+1 {
		t.Fatalf("second recovery point: %d page objects, want %d (only the changed page)", got, pagesBefore+1)
	}

	// From the bucket alone, with only the keys: rebuild every written range.
	man, ids, err := ReadRecoveryPoint(ctx, e.store, e.codec, v.Info().ID)
	if err != nil {
		t.Fatal(err)
	}
	if man.Size != size || man.ChunkSize != cs || man.VolumeName != "rp" {
		t.Fatalf("manifest %+v", man)
	}
	image := make([]byte, size)
	for index, id := range ids {
		blob, err := objstore.GetAll(ctx, e.store, id.ObjectKey())
		if err != nil {
			t.Fatal(err)
		}
		plain, err := e.codec.Decode(id, blob)
		if err != nil {
			t.Fatal(err)
		}
		copy(image[int64(index)*cs:], plain)
	}
	for off, p := range shadow {
		mustEqual(t, "rebuilt from the recovery point", image[off:off+int64(len(p))], p)
	}
	if v.Stats(ctx).LastRecoveryPoint.IsZero() {
		t.Fatal("last recovery point not recorded")
	}
}

// Recovery points follow their interval on the injected clock.
func TestRecoveryPointInterval(t *testing.T) {
	ctx := context.Background()
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, 64*mib, 64*mib)
	e.opts = func(o *Options) {
		o.Clock, o.UploadInterval, o.SettleTime, o.RecoveryPointInterval = fake, time.Second, time.Millisecond, time.Minute
	}
	e.start()
	v := e.create("rp", Cached, 4*mib, 64*kib)
	tick := func(d time.Duration) {
		waitFor(t, "the uploader to wait on the clock", func() bool { return fake.Waiters() > 0 })
		fake.Advance(d)
		waitFor(t, "the uploader to finish its round", func() bool { return fake.Waiters() > 0 })
	}
	tick(time.Second) // first round: no recovery point yet, so one is due at once
	first := v.Stats(ctx).LastRecoveryPoint
	if first.IsZero() {
		t.Fatal("no recovery point after the first round")
	}
	if err := v.WriteAt(ctx, pattern(1, 4*kib), 0); err != nil {
		t.Fatal(err)
	}
	tick(30 * time.Second)
	if got := v.Stats(ctx).LastRecoveryPoint; !got.Equal(first) {
		t.Fatalf("recovery point after 30s of a 1m interval: %v", got)
	}
	tick(31 * time.Second)
	got := v.Stats(ctx).LastRecoveryPoint
	if !got.Equal(fake.Now()) {
		t.Fatalf("recovery point at %v, want %v", got, fake.Now())
	}
	_, ids, err := ReadRecoveryPoint(ctx, e.store, e.codec, v.Info().ID)
	if err != nil || len(ids) != 1 {
		t.Fatalf("recovery point after the write: %d chunks, %v", len(ids), err)
	}
}

func countObjects(t *testing.T, s objstore.Store, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(context.Background(), prefix, func(objstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
