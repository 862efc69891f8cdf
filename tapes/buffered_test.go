package tapes_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/vfs"
)

// syncGate holds the log's segment syncs: while held, the log's writer
// has written its batch (the bytes are in the file, not durable) and
// waits in the sync.
type syncGate struct {
	mu      sync.Mutex
	release chan struct{} // nil: not held
	entered chan struct{}
}

func (g *syncGate) wrap(fsys vfs.FS) vfs.FS {
	return vfs.NewErrorFS(fsys, func(op vfs.Op, path string) error {
		if op == vfs.OpSync && strings.HasSuffix(path, ".seg") {
			g.pass()
		}
		return nil
	})
}

// pass waits while the gate is held, after telling entered.
func (g *syncGate) pass() {
	g.mu.Lock()
	release := g.release
	g.mu.Unlock()
	if release != nil {
		g.entered <- struct{}{}
		<-release
	}
}

func (g *syncGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release = make(chan struct{})
}

func (g *syncGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.release)
	g.release = nil
}

// storeGate holds the store operations it matches while held: each waits
// until the gate opens, after telling entered.
type storeGate struct {
	syncGate
	match func(op faulty.Op, key string) bool
}

func newStoreGate(match func(op faulty.Op, key string) bool) *storeGate {
	return &storeGate{syncGate: syncGate{entered: make(chan struct{}, 1000)}, match: match}
}

func (g *storeGate) hook(op faulty.Op, key string) error {
	if g.match(op, key) {
		g.pass()
	}
	return nil
}

// await waits for a held operation.
func (g *storeGate) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(2 * time.Minute):
		t.Fatal(what)
	}
}

// Buffered writes are acknowledged before they are durable and are
// durable once Sync returns: a power loss while the log's sync of the
// last records is held loses exactly those (the tape ends at the last
// durable record, readable and writable), and one at the moment Sync
// returns loses nothing. The second check fails if Sync returns before
// the records are synced.
func TestBufferedWritesDurableAtSync(t *testing.T) {
	e := newEnv(t)
	g := &syncGate{entered: make(chan struct{}, 1000)}
	e.wrap = g.wrap
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	tp.SetBuffered(true)
	var durable model
	for i := range 12 {
		if i%5 == 4 {
			durable.filemarks(tp.EOD(), 1)
			if err := tp.WriteFilemarks(ctx, tp.EOD(), 1); err != nil {
				t.Fatal(err)
			}
			continue
		}
		d := record(uint64(i), 1000+i*997)
		durable.write(tp.EOD(), d)
		if err := tp.WriteRecord(ctx, tp.EOD(), d, i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := tp.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	// Now the log's syncs are held: these writes are acknowledged, and
	// readable, while none of them is durable (not in the log, nor in a
	// stored index: they wait for the next sync point).
	g.hold()
	all := model{objs: append(durable.objs[:0:0], durable.objs...), data: append(durable.data[:0:0], durable.data...)}
	for i := 100; i < 106; i++ {
		d := record(uint64(i), 3000+i)
		all.write(tp.EOD(), d)
		if err := tp.WriteRecord(ctx, tp.EOD(), d, false); err != nil {
			t.Fatal(err)
		}
	}
	all.filemarks(tp.EOD(), 1)
	if err := tp.WriteFilemarks(ctx, tp.EOD(), 1); err != nil {
		t.Fatal(err)
	}
	all.check(t, tp)
	synced := make(chan *vfs.MemFS, 1)
	syncErr := make(chan error, 1)
	go func() {
		err := tp.Sync(ctx)
		synced <- e.fs.Crash() // power lost the moment Sync returned
		syncErr <- err
	}()
	select {
	case <-g.entered:
	case <-time.After(2 * time.Minute):
		t.Fatal("the log's writer never reached its sync")
	}
	beforeSync := e.fs.Crash() // power lost while the sync is held
	g.open()
	var atSync *vfs.MemFS
	select {
	case atSync = <-synced:
	case <-time.After(2 * time.Minute):
		t.Fatal("Sync did not return once the log's sync was let go")
	}
	select {
	case err := <-syncErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Sync's result never came")
	}

	e.crashTo(beforeSync)
	tp = e.open(bc)
	durable.check(t, tp)
	tp.Close(ctx)

	e.crashTo(atSync)
	tp = e.open(bc)
	all.check(t, tp)
	// Still a tape: writes go on at its end, and are kept.
	tp.SetBuffered(true)
	d := record(999, 5000)
	all.write(tp.EOD(), d)
	if err := tp.WriteRecord(ctx, tp.EOD(), d, false); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.crash()
	tp = e.open(bc)
	all.check(t, tp)
	tp.Close(ctx)
}

// A record whose samples do not compress is stored as it is; one that
// compresses anywhere in its start, middle or end is compressed.
func TestCompressionSample(t *testing.T) {
	e := newEnv(t)
	e.start()
	tp := e.open(e.create(1, 1<<30)[0])
	const n = 300000
	random := record(1, n) // odd seed: incompressible
	if err := tp.WriteRecord(ctx, 0, random, true); err != nil {
		t.Fatal(err)
	}
	if u := tp.Used(); u != n {
		t.Fatalf("random record uses %d", u)
	}
	// Random but for its last 4 KiB, which are zeros.
	tail := append(append([]byte(nil), random[:n-4096]...), make([]byte, 4096)...)
	if err := tp.WriteRecord(ctx, 0, tail, true); err != nil {
		t.Fatal(err)
	}
	if u := tp.Used(); u >= n-2048 {
		t.Fatalf("record with a compressible end uses %d", u)
	}
	var m model
	m.write(0, tail)
	m.check(t, tp)
	tp.Close(ctx)
}

// A stream of buffered records, with rewrites and filemarks, goes on
// while segments upload behind it: when the store holds the uploads the
// writer waits for them (and goes on once they are done), the buffers of
// log records and segments are reused as the stream goes, and after a
// power loss at the sync every record is back as written. A buffer
// reused before the log wrote its record, or a segment's before it was
// stored, shows as a record that differs.
func TestBufferedStreamUploadsBehind(t *testing.T) {
	e := newEnv(t)
	g := newStoreGate(func(op faulty.Op, key string) bool { return op == faulty.OpPut && strings.Contains(key, "/seg/") })
	e.start()
	e.cut.SetHook(g.hook)
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	tp.SetBuffered(true)
	var m model
	seed := uint64(1)
	write := func(tp *tapes.Tape, at uint64, n int) error {
		seed++
		d := record(seed, n)
		m.write(at, d)
		return tp.WriteRecord(ctx, at, d, seed%3 == 0)
	}
	for i := range 60 {
		at := tp.EOD()
		switch {
		case i%10 == 9:
			m.filemarks(at, 1)
			if err := tp.WriteFilemarks(ctx, at, 1); err != nil {
				t.Fatal(err)
			}
			continue
		case i%15 == 14:
			at -= 3 // a rewrite: the tape ends after it
		}
		if err := write(tp, at, 20000+i*2731); err != nil {
			t.Fatal(err)
		}
	}
	m.check(t, tp)

	// The store holds segment uploads: the writer fills the segments it
	// may keep in memory, then waits.
	g.hold()
	done := make(chan error, 1)
	go func() {
		for range 16 { // 1.6 MB: six segments of 256 KiB
			if err := write(tp, tp.EOD(), 100000); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	g.await(t, "no segment upload started while the tape was written")
	g.open()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the writer did not go on once the uploads could")
	}
	if err := tp.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m.check(t, tp)
	e.crash()
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}

// Deleting what a rewrite left behind (the old segments of a tape written
// again from its beginning) does not hold up the uploads of the new
// writes: with the deletes held, the writer goes on past the segments it
// may keep in memory.
func TestDeletesDoNotHoldUploads(t *testing.T) {
	e := newEnv(t)
	g := newStoreGate(func(op faulty.Op, _ string) bool { return op == faulty.OpDelete })
	e.start()
	e.cut.SetHook(g.hook)
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	var m model
	for i := range 12 { // 1.2 MB: four segments
		d := record(uint64(i), 100000)
		m.write(uint64(i), d)
		if err := tp.WriteRecord(ctx, uint64(i), d, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := tp.Close(ctx); err != nil { // all of it in the store
		t.Fatal(err)
	}

	tp = e.open(bc)
	tp.SetBuffered(true)
	d := record(100, 100000)
	m.write(0, d)
	if err := tp.WriteRecord(ctx, 0, d, false); err != nil { // the old segments are garbage
		t.Fatal(err)
	}
	g.hold()
	other := e.open(bc)
	closed := make(chan error, 1)
	go func() { closed <- other.Close(ctx) }() // uploads the index, then deletes
	g.await(t, "no delete after the rewrite")
	wrote := make(chan error, 1)
	go func() {
		for i := 1; i < 20; i++ { // 1.9 MB: seven segments
			d := record(uint64(100+i), 100000)
			m.write(uint64(i), d)
			if err := tp.WriteRecord(ctx, uint64(i), d, false); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the writes waited for the deletes")
	}
	g.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	m.check(t, tp)
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.crash()
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}
