package volume

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

// chunkGate holds back GETs of chunk objects: all of them while it is
// closed, and those of held keys until they are released. It counts the
// GETs asked for.
type chunkGate struct {
	mu      sync.Mutex
	changed *sync.Cond
	closed  bool
	held    map[string]bool
	asked   int // chunk GETs asked for
	waiting int // chunk GETs held back now
}

func newChunkGate() *chunkGate {
	g := &chunkGate{held: map[string]bool{}}
	g.changed = sync.NewCond(&g.mu)
	return g
}

func (g *chunkGate) hook(op faulty.Op, key string) error {
	if op != faulty.OpGet || !strings.HasPrefix(key, "chunks/") {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	g.waiting++
	for g.closed || g.held[key] {
		g.changed.Wait()
	}
	g.waiting--
	return nil
}

// update changes the gate under its lock and wakes the GETs it holds.
func (g *chunkGate) update(f func()) {
	g.mu.Lock()
	f()
	g.changed.Broadcast()
	g.mu.Unlock()
}

func (g *chunkGate) counts() (asked, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.asked, g.waiting
}

// Hydration yields to on-demand reads: a read of a chunk far ahead of the
// background pass goes to the store while the whole backlog waits, and
// the background pass starts no chunk until the read's copy is done. On a
// real MinIO; the checks count GETs and waits, they time nothing.
func TestHydrationYieldsToOnDemandReads(t *testing.T) {
	const size, chunk, parallel = 4 << 20, 64 << 10, 2
	ctx := context.Background()
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "hydrate")
	st, err := s3.Open(ctx, s3.Config{Bucket: "hydrate", Prefix: "gw", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	gate := newChunkGate()
	e := newEnv(t, 64<<20, 64<<20)
	e.store = faulty.New(st, faulty.Options{Hook: gate.hook}).Store()
	e.opts = func(o *Options) { o.HydrateParallel = parallel }
	e.start()
	src := e.create("src", Cached, size, chunk)
	a := pattern(11, size)
	writeAll(t, src, a, 1<<20)
	si, err := e.m.CreateSnapshot(ctx, "src", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The background pass starts and its workers wait in their GETs.
	gate.update(func() { gate.closed = true })
	r := e.restore("dst", si.ID, Stored)
	waitFor(t, "the background pass's GETs", func() bool { _, w := gate.counts(); return w == parallel })
	last := uint64(size/chunk - 1)
	if err := r.expandPageOf(ctx, last); err != nil {
		t.Fatal(err)
	}
	raw, err := r.mapEntry(ctx, last)
	if err != nil || raw == nil {
		t.Fatalf("map entry of the last chunk: %v", err)
	}
	id, err := parseChunkID(raw)
	if err != nil {
		t.Fatal(err)
	}
	key := id.ObjectKey()
	gate.update(func() { gate.held[key] = true })

	// A read of the last chunk, the backlog's end: its GET is asked for
	// while the background's wait (not after them).
	got := make([]byte, 4096)
	read := make(chan error, 1)
	go func() { read <- r.ReadAt(ctx, got, size-4096) }()
	waitFor(t, "the read's GET", func() bool { _, w := gate.counts(); return w == parallel+1 })

	// The background's GETs go on; the read's stays held. Each worker,
	// its chunk done, must wait for the read's copy, not start another.
	gate.update(func() { gate.closed = false })
	waitFor(t, "the background pass waiting for the read", func() bool {
		if left := r.hyd.left.Load(); left < int64(size/chunk-parallel) {
			t.Fatalf("the background pass went on while an on-demand read was under way (%d chunks left)", left)
		}
		return r.hyd.yields.Load() >= parallel
	})
	if asked, _ := gate.counts(); asked != parallel+1 {
		t.Fatalf("%d chunk GETs asked for while the read waited, want the background's %d and the read's", asked, parallel)
	}
	select {
	case err := <-read:
		t.Fatalf("the read ended before its GET was let through: %v", err)
	default:
	}
	gate.update(func() { delete(gate.held, key) })
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "read ahead of hydration", got, a[size-4096:])
	waitFor(t, "hydration", func() bool { return r.Stats(ctx).Hydration.Complete })
	mustEqual(t, "hydrated", readAll(t, r, 256<<10), a)
}
