package tapes_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/health"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/vfs"
)

// writeMixed writes records of many sizes and filemarks at end-of-data.
func writeMixed(t testing.TB, tp *tapes.Tape, m *model, seed uint64, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	sizes := []int{1, 80, 512, 4096, 65536, 100000, 262144, 300001}
	for i := 0; i < n; i++ {
		at := uint64(len(m.objs))
		if r.IntN(6) == 0 {
			k := 1 + r.IntN(2)
			if err := tp.WriteFilemarks(ctx, at, k); err != nil {
				t.Fatal(err)
			}
			m.filemarks(at, k)
			continue
		}
		d := record(seed*1000+uint64(i), sizes[r.IntN(len(sizes))])
		if err := tp.WriteRecord(ctx, at, d, r.IntN(2) == 0); err != nil {
			t.Fatal(err)
		}
		m.write(at, d)
	}
}

func TestWriteReadReopen(t *testing.T) {
	e := newEnv(t)
	e.start()
	bc := e.create(1, 1<<30)[0]
	if bc != "GW0001L5" {
		t.Fatalf("barcode %q", bc)
	}
	tp := e.open(bc)
	var m model
	writeMixed(t, tp, &m, 1, 60)
	m.check(t, tp) // from the log's twin in memory and the uploaded segments
	if err := e.lib.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m.check(t, tp)
	used := tp.Used()
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A new library with an empty log and nothing in memory reads the
	// tape from the store alone.
	e.restart()
	tp = e.open(bc)
	m.check(t, tp)
	if tp.Used() != used {
		t.Fatalf("used %d after reopen, %d before", tp.Used(), used)
	}
	in, err := e.lib.Info(ctx, bc)
	if err != nil || in.EOD != uint64(len(m.objs)) || in.Used != used {
		t.Fatalf("info %+v %v", in, err)
	}
	// Append after reopen, then truncate into the middle and rewrite.
	writeMixed(t, tp, &m, 2, 20)
	at := uint64(len(m.objs) / 3)
	d := record(77, 5000)
	if err := tp.WriteRecord(ctx, at, d, false); err != nil {
		t.Fatal(err)
	}
	m.write(at, d)
	m.check(t, tp)
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.restart()
	tp = e.open(bc)
	m.check(t, tp)
	checkNoOrphans(t, e, bc)
	tp.Close(ctx)
}

// checkNoOrphans checks that the tape's objects are exactly those its index
// names: no segment or index page outlives a truncation.
func checkNoOrphans(t testing.TB, e *env, bc string) {
	t.Helper()
	if err := e.lib.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	refs, may, err := e.lib.Referenced(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	err = e.store.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		if !refs[oi.Key] && !may[oi.Key] {
			extra = append(extra, oi.Key)
		}
		delete(refs, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) > 0 {
		t.Errorf("objects the index does not name: %v", extra)
	}
	if len(refs) > 0 {
		t.Errorf("objects the index names that are missing: %v", refs)
	}
}

// flushFailingAfter flushes with the store failing every put after the
// first n, and leaves it failing.
func (e *env) flushFailingAfter(n int) {
	var puts atomic.Int32
	e.cut.SetHook(func(op faulty.Op, _ string) error {
		if op == faulty.OpPut && puts.Add(1) > int32(n) {
			return errDead
		}
		return nil
	})
	e.lib.Flush(ctx)
}

// TestRandomAgainstModel writes, rewrites, erases and flushes at random,
// with restarts and crashes, and checks the tape against a model.
func TestRandomAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		randomAgainstModel(t, seed, false)
	}
}

// TestRandomBufferedAgainstModel is TestRandomAgainstModel with the
// handle buffered and syncs among the steps: after a crash the tape is
// what it was at the last durable point (a sync, a flush, a close) and
// some of the writes after it, in order.
func TestRandomBufferedAgainstModel(t *testing.T) {
	for seed := uint64(5); seed <= 8; seed++ {
		randomAgainstModel(t, seed, true)
	}
}

func randomAgainstModel(t *testing.T, seed uint64, buffered bool) {
	e := newEnv(t)
	e.opts = func(o *tapes.Options) { o.SegmentSize = 64 << 10 }
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	tp.SetBuffered(buffered)
	r := rand.New(rand.NewPCG(seed, 2))
	var m model
	// Buffered: the model at the last durable point and the writes since.
	durable, since := m.clone(), []func(*model){}
	done := func(f func(*model)) {
		f(&m)
		since = append(since, f)
	}
	settle := func() { durable, since = m.clone(), nil }
	crashed := func() {
		t.Helper()
		tp = e.open(bc)
		tp.SetBuffered(buffered)
		for k := len(since); k >= 0; k-- {
			w := durable.clone()
			for _, f := range since[:k] {
				f(&w)
			}
			if matches(tp, w) {
				m = w
				settle()
				return
			}
		}
		t.Fatalf("seed %d: after a crash the tape (EOD %d) is not the last durable state (EOD %d) and some of the %d writes after it", seed, tp.EOD(), len(durable.objs), len(since))
	}
	for step := 0; step < 300; step++ {
		eod := uint64(len(m.objs))
		at := eod
		if eod > 0 && r.IntN(5) == 0 {
			at = uint64(r.IntN(int(eod) + 1))
		}
		switch k := r.IntN(100); {
		case k < 60:
			d := record(seed<<32|uint64(step), 1+r.IntN(40000))
			if err := tp.WriteRecord(ctx, at, d, r.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
			done(func(m *model) { m.write(at, d) })
		case k < 75:
			n := r.IntN(3)
			if err := tp.WriteFilemarks(ctx, at, n); err != nil {
				t.Fatal(err)
			}
			done(func(m *model) { m.filemarks(at, n) })
		case k < 80:
			if err := tp.Erase(ctx, at); err != nil {
				t.Fatal(err)
			}
			done(func(m *model) { m.filemarks(at, 0) })
		case k < 85:
			if err := e.lib.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			settle()
		case k < 88:
			if err := tp.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			settle()
		case k < 92:
			tp.Close(ctx)
			e.restart()
			settle()
			tp = e.open(bc)
			tp.SetBuffered(buffered)
		case k < 94:
			e.crash()
			crashed()
		case k < 96:
			// Die in the middle of an upload: some puts land.
			e.flushFailingAfter(r.IntN(4))
			e.crash()
			crashed()
		case k < 99:
			// An upload fails midway and the library carries on.
			e.flushFailingAfter(r.IntN(4))
			e.cut.SetHook(nil)
		default:
			m.check(t, tp)
		}
		if !buffered {
			settle()
		}
	}
	m.check(t, tp)
	checkNoOrphans(t, e, bc)
	e.crash()
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
	e.close()
}

func TestCapacityAndEarlyWarning(t *testing.T) {
	e := newEnv(t)
	e.start()
	bc := e.create(1, 1<<20)[0]
	tp := e.open(bc)
	if tp.Capacity() != 1<<20 || tp.EarlyWarning() != 64<<10 {
		t.Fatalf("capacity %d early warning %d", tp.Capacity(), tp.EarlyWarning())
	}
	var m model
	d := record(1, 100000) // incompressible
	for {
		at := uint64(len(m.objs))
		err := tp.WriteRecord(ctx, at, d, true)
		if errors.Is(err, tapes.ErrEndOfMedium) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		m.write(at, d)
	}
	if len(m.objs) != 10 || tp.Used() != 10*100000 || tp.EOD() != 10 {
		t.Fatalf("%d records, used %d, EOD %d", len(m.objs), tp.Used(), tp.EOD())
	}
	if tp.Used() <= tp.Capacity()-tp.EarlyWarning() {
		t.Fatalf("used %d is not in the early-warning zone", tp.Used())
	}
	// A record that fits still goes in; rewriting over the end frees room.
	small := record(3, 48576)
	if err := tp.WriteRecord(ctx, 10, small, false); err != nil {
		t.Fatal(err)
	}
	m.write(10, small)
	if err := tp.WriteRecord(ctx, 11, []byte{1}, false); !errors.Is(err, tapes.ErrEndOfMedium) {
		t.Fatalf("write past capacity: %v", err)
	}
	if err := tp.WriteRecord(ctx, 9, small, false); err != nil {
		t.Fatal(err)
	}
	m.write(9, small)
	m.check(t, tp)
	// Compressible data counts its compressed size.
	z := record(4, 200000)
	if err := tp.WriteRecord(ctx, 0, z, true); err != nil {
		t.Fatal(err)
	}
	m.write(0, z)
	if u := tp.Used(); u <= 0 || u >= 100000 {
		t.Fatalf("compressed record of %d bytes uses %d", len(z), u)
	}
	if err := tp.WriteRecord(ctx, 1, z, false); err != nil {
		t.Fatal(err)
	}
	m.write(1, z)
	if u := tp.Used(); u < 200000 {
		t.Fatalf("uncompressed record counted %d", u)
	}
	tp.Close(ctx)
	e.restart()
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.start()
	bc := e.create(1, 1<<20)[0]
	tp := e.open(bc)
	defer tp.Close(ctx)
	for name, err := range map[string]error{
		"beyond EOD":   tp.WriteRecord(ctx, 1, []byte{1}, false),
		"empty record": tp.WriteRecord(ctx, 0, nil, false),
		"huge record":  tp.WriteRecord(ctx, 0, make([]byte, tapes.MaxRecord+1), false),
		"filemarks":    tp.WriteFilemarks(ctx, 3, 1),
		"erase":        tp.Erase(ctx, 2),
	} {
		if err == nil || errkind.Of(err) != errkind.Permanent {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := tp.Stat(ctx, 0); err == nil {
		t.Error("stat beyond EOD succeeded")
	}
	if _, err := tp.ReadRecord(ctx, 0, nil); err == nil {
		t.Error("read beyond EOD succeeded")
	}
	for _, c := range []struct {
		n      int
		prefix string
		size   int64
	}{{1, "gw", 1 << 20}, {1, "TOOLONGX", 1 << 20}, {1, "GW", 1000}, {0, "GW", 1 << 20}, {21, "GW", 1 << 20}} {
		if _, err := e.lib.Create(ctx, c.n, c.prefix, c.size); !errors.Is(err, tapes.ErrBadInput) && !errors.Is(err, tapes.ErrNoSlot) {
			t.Errorf("create %v: %v", c, err)
		}
	}
	if _, err := e.lib.Open(ctx, "NOPE0001L5"); !errors.Is(err, tapes.ErrNoTape) {
		t.Errorf("open missing tape: %v", err)
	}
}

func TestCorruptSegment(t *testing.T) {
	e := newEnv(t)
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	var m model
	writeMixed(t, tp, &m, 5, 10)
	tp.Close(ctx)
	e.restart()
	var seg string
	e.store.List(ctx, "tapes/"+bc+"/seg/", func(oi objstore.ObjectInfo) error {
		if seg == "" {
			seg = oi.Key
		}
		return nil
	})
	b, err := objstore.GetAll(ctx, e.store, seg)
	if err != nil {
		t.Fatal(err)
	}
	b[30] ^= 1 // inside the first block's ciphertext
	objstore.PutBytes(ctx, e.store, seg, b)
	tp = e.open(bc)
	defer tp.Close(ctx)
	first := uint64(0)
	for m.objs[first].Filemark {
		first++
	}
	_, err = tp.ReadRecord(ctx, first, make([]byte, tapes.MaxRecord))
	if !errors.Is(err, tapes.ErrCorrupt) || errkind.Of(err) != errkind.Corrupt {
		t.Fatalf("reading a tampered block: %v", err)
	}
	// The index root under another tape's name does not open either.
	root, _ := objstore.GetAll(ctx, e.store, "tapes/"+bc+"/index")
	other := e.create(1, 1<<30)[0]
	objstore.PutBytes(ctx, e.store, "tapes/"+other+"/index", root)
	if _, err := e.lib.Open(ctx, other); !errors.Is(err, tapes.ErrCorrupt) {
		t.Fatalf("open with a swapped index: %v", err)
	}
}

func TestInventory(t *testing.T) {
	e := newEnv(t)
	e.start()
	bcs := e.create(3, 4<<20)
	if strings.Join(bcs, " ") != "GW0001L5 GW0002L5 GW0003L5" {
		t.Fatalf("barcodes %v", bcs)
	}
	sh := shelf{e.lib}
	inv, err := sh.Inventory(ctx)
	if err != nil || len(inv.Slots) != 20 || len(inv.Drives) != 2 || len(inv.IE) != 1 || inv.Slots[0] != bcs[0] || inv.Slots[2] != bcs[2] {
		t.Fatalf("inventory %+v %v", inv, err)
	}
	slot := func(i int) tapes.Element { return tapes.Element{Type: tapes.ElementSlot, Index: i} }
	drive := func(i int) tapes.Element { return tapes.Element{Type: tapes.ElementDrive, Index: i} }
	ie := tapes.Element{Type: tapes.ElementIE}
	if err := sh.Move(ctx, slot(5), drive(0)); !errors.Is(err, tapes.ErrSourceEmpty) {
		t.Fatalf("move from empty slot: %v", err)
	}
	if err := sh.Move(ctx, slot(0), slot(1)); !errors.Is(err, tapes.ErrDestinationFull) {
		t.Fatalf("move to full slot: %v", err)
	}
	if err := sh.Move(ctx, ie, slot(9)); !errors.Is(err, tapes.ErrSourceEmpty) {
		t.Fatalf("move from the I/E element: %v", err)
	}
	if err := sh.Move(ctx, slot(0), tapes.Element{Type: tapes.ElementDrive, Index: 2}); !errors.Is(err, tapes.ErrBadInput) {
		t.Fatalf("move to a drive that does not exist: %v", err)
	}
	if err := sh.Move(ctx, slot(0), drive(1)); err != nil {
		t.Fatal(err)
	}
	if err := sh.Move(ctx, slot(2), slot(7)); err != nil {
		t.Fatal(err)
	}
	if err := e.lib.Delete(ctx, bcs[0]); !errors.Is(err, tapes.ErrInDrive) {
		t.Fatalf("delete a tape in a drive: %v", err)
	}
	med, err := sh.Open(ctx, bcs[0])
	if err != nil {
		t.Fatal(err)
	}
	var m model
	writeMixed(t, med.(*tapes.Tape), &m, 9, 12)
	if err := med.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sh.Move(ctx, drive(1), slot(0)); err != nil {
		t.Fatal(err)
	}
	// Archive: the tape leaves through the I/E element, its objects go
	// to the archive class.
	if err := sh.Move(ctx, slot(0), ie); err != nil {
		t.Fatal(err)
	}
	inv, _ = sh.Inventory(ctx)
	if inv.Slots[0] != "" || inv.IE[0] != "" || inv.Slots[7] != bcs[2] {
		t.Fatalf("inventory after archive %+v", inv)
	}
	in, _ := e.lib.Info(ctx, bcs[0])
	if in.State != tapes.StateArchived || in.ArchivePending || in.EOD != uint64(len(m.objs)) {
		t.Fatalf("archived tape: %+v", in)
	}
	n := 0
	e.store.List(ctx, "tapes/"+bcs[0]+"/", func(oi objstore.ObjectInfo) error {
		n++
		if oi.StorageClass != "GLACIER" {
			t.Errorf("%s in class %q", oi.Key, oi.StorageClass)
		}
		return nil
	})
	if n < 3 {
		t.Fatalf("%d objects", n)
	}
	if _, err := e.lib.Open(ctx, bcs[0]); err == nil {
		t.Fatal("opened an archived tape")
	}
	// Retrieve: back in the lowest free slot, read-only, same bytes.
	in, err = e.lib.Retrieve(ctx, bcs[0])
	if err != nil || in.Place != slot(0) || !in.ReadOnly || in.State != tapes.StateRetrieved {
		t.Fatalf("retrieve: %+v %v", in, err)
	}
	e.restart()
	tp := e.open(bcs[0])
	if !tp.ReadOnly() {
		t.Fatal("retrieved tape is writable")
	}
	m.check(t, tp)
	if err := tp.WriteRecord(ctx, tp.EOD(), []byte("x"), false); !errors.Is(err, tapes.ErrWriteProtected) {
		t.Fatalf("write to a retrieved tape: %v", err)
	}
	if err := tp.WriteFilemarks(ctx, 0, 1); !errors.Is(err, tapes.ErrWriteProtected) {
		t.Fatalf("filemark on a retrieved tape: %v", err)
	}
	tp.Close(ctx)
	// Delete removes the tape and every object of it.
	if err := e.lib.Delete(ctx, bcs[0]); err != nil {
		t.Fatal(err)
	}
	e.store.List(ctx, "tapes/"+bcs[0]+"/", func(oi objstore.ObjectInfo) error {
		t.Errorf("left after delete: %s", oi.Key)
		return nil
	})
	list, _ := e.lib.List(ctx)
	if len(list) != 2 {
		t.Fatalf("list %+v", list)
	}
	// Numbers continue after the highest in use.
	if more := e.create(1, 4<<20); more[0] != "GW0004L5" {
		t.Fatalf("next barcode %v", more)
	}
}

func TestSpareRule(t *testing.T) {
	e := newEnv(t)
	e.start()
	if err := e.lib.SetSpareRule(ctx, tapes.SpareRule{Count: 2, Prefix: "SP", Size: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	blank := func() (n int) {
		list, _ := e.lib.List(ctx)
		for _, in := range list {
			if in.State == tapes.StateLibrary && in.EOD == 0 {
				n++
			}
		}
		return n
	}
	if n := blank(); n != 2 {
		t.Fatalf("%d spare tapes", n)
	}
	// Loading one into a drive leaves one spare: the rule adds one.
	if err := e.lib.Move(ctx, tapes.Element{Type: tapes.ElementSlot, Index: 0}, tapes.Element{Type: tapes.ElementDrive, Index: 0}); err != nil {
		t.Fatal(err)
	}
	if n := blank(); n != 2 {
		t.Fatalf("%d spare tapes after a load", n)
	}
	// Writing a spare in place makes it no longer blank; the next tick
	// adds one.
	tp := e.open("SP0002L5")
	if err := tp.WriteRecord(ctx, 0, []byte("data"), false); err != nil {
		t.Fatal(err)
	}
	waitIdle(e)
	e.clk.Advance(10 * time.Second)
	waitIdle(e)
	if n := blank(); n != 2 {
		t.Fatalf("%d spare tapes after a tick", n)
	}
	list, _ := e.lib.List(ctx)
	if len(list) != 4 {
		t.Fatalf("%d tapes", len(list))
	}
	tp.Close(ctx)
}

// waitIdle waits until the library's loop waits on the clock again.
func waitIdle(e *env) {
	for e.clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
}

// TestRecreatedBarcode: a tape deleted while the log still holds its
// writes, and made again under the same barcode, starts blank after a
// crash: the old writes are not replayed onto it.
func TestRecreatedBarcode(t *testing.T) {
	e := newEnv(t)
	e.start()
	bcs := e.create(2, 1<<30)
	a, b := e.open(bcs[0]), e.open(bcs[1])
	if err := a.WriteRecord(ctx, 0, []byte("kept"), false); err != nil { // holds the log below b's writes
		t.Fatal(err)
	}
	for i := range 3 {
		if err := b.WriteRecord(ctx, uint64(i), []byte("gone"), false); err != nil {
			t.Fatal(err)
		}
	}
	b.Close(ctx)
	if err := e.lib.Delete(ctx, bcs[1]); err != nil {
		t.Fatal(err)
	}
	if again := e.create(1, 1<<30); again[0] != bcs[1] {
		t.Fatalf("recreated as %v", again)
	}
	e.crash()
	tp := e.open(bcs[1])
	if tp.EOD() != 0 || tp.Used() != 0 {
		t.Fatalf("recreated tape has EOD %d, used %d", tp.EOD(), tp.Used())
	}
	tp.Close(ctx)
	m := model{}
	m.write(0, []byte("kept"))
	tp = e.open(bcs[0])
	m.check(t, tp)
	tp.Close(ctx)
}

// TestConcurrentDrives writes several tapes at once while uploads run
// and other readers look on, then checks every tape.
func TestConcurrentDrives(t *testing.T) {
	e := newEnv(t)
	e.opts = func(o *tapes.Options) { o.SegmentSize = 32 << 10; o.MaxPendingSegments = 1 }
	e.start()
	bcs := e.create(3, 1<<30)
	models := make([]model, len(bcs))
	done := make(chan error, len(bcs))
	stop := make(chan struct{})
	for i, bc := range bcs {
		tp := e.open(bc)
		go func() {
			r := rand.New(rand.NewPCG(uint64(i), 9))
			m := &models[i]
			for step := 0; step < 60; step++ {
				at := uint64(len(m.objs))
				if at > 2 && r.IntN(6) == 0 {
					at -= 2
				}
				d := record(uint64(i)<<20|uint64(step), 1+r.IntN(50000))
				if err := tp.WriteRecord(ctx, at, d, r.IntN(2) == 0); err != nil {
					done <- err
					return
				}
				m.write(at, d)
				if r.IntN(10) == 0 {
					if err := tp.WriteFilemarks(ctx, uint64(len(m.objs)), 1); err != nil {
						done <- err
						return
					}
					m.filemarks(uint64(len(m.objs)), 1)
				}
			}
			done <- tp.Close(ctx)
		}()
	}
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.lib.Flush(ctx)
			e.lib.List(ctx)
			e.clk.Advance(10 * time.Second)
		}
	}()
	for range bcs {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-flushed
	e.restart()
	for i, bc := range bcs {
		tp := e.open(bc)
		models[i].check(t, tp)
		tp.Close(ctx)
		checkNoOrphans(t, e, bc)
	}
}

// TestAdoptFromStore: a library opened on new metadata over a bucket that
// holds tapes lists them and reads them; an archived one stays archived.
func TestAdoptFromStore(t *testing.T) {
	e := newEnv(t)
	e.start()
	bcs := e.create(3, 1<<30)
	tp := e.open(bcs[1])
	var m model
	writeMixed(t, tp, &m, 21, 15)
	tp.Close(ctx)
	if err := e.lib.Archive(ctx, bcs[2]); err != nil {
		t.Fatal(err)
	}
	e.close()
	e.md = metamem.New()
	e.fs = vfs.NewMem() // and no log either
	e.start()
	list, err := e.lib.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("adopted %+v %v", list, err)
	}
	if list[1].EOD != uint64(len(m.objs)) || list[1].Place.Type != tapes.ElementSlot || list[2].State != tapes.StateArchived {
		t.Fatalf("adopted %+v", list)
	}
	tp = e.open(bcs[1])
	m.check(t, tp)
	tp.Close(ctx)
	if _, err := e.lib.Retrieve(ctx, bcs[2]); err != nil {
		t.Fatal(err)
	}
	// Adoption happens once: a deleted tape is not adopted again.
	if err := e.lib.Delete(ctx, bcs[0]); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if list, _ := e.lib.List(ctx); len(list) != 2 {
		t.Fatalf("after restart %+v", list)
	}
}

// TestPageBoundaries writes a tape of several index pages and truncates it
// at, before and across page boundaries.
func TestPageBoundaries(t *testing.T) {
	e := newEnv(t)
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	var m model
	fms := map[int]bool{100: true, tapes.PageObjects - 1: true, tapes.PageObjects: true, 2*tapes.PageObjects - 1: true, 8250: true}
	appendN := func(n int, seed uint64) {
		for i := 0; i < n; i++ {
			at := uint64(len(m.objs))
			if fms[len(m.objs)] {
				if err := tp.WriteFilemarks(ctx, at, 1); err != nil {
					t.Fatal(err)
				}
				m.filemarks(at, 1)
				continue
			}
			d := record(seed+uint64(i), 1+i%9)
			if err := tp.WriteRecord(ctx, at, d, false); err != nil {
				t.Fatal(err)
			}
			m.write(at, d)
		}
	}
	reopen := func() {
		t.Helper()
		tp.Close(ctx)
		e.restart()
		tp = e.open(bc)
		m.check(t, tp)
		checkNoOrphans(t, e, bc)
	}
	appendN(8300, 1)
	m.check(t, tp)
	reopen()
	for _, at := range []uint64{2 * tapes.PageObjects, tapes.PageObjects, tapes.PageObjects - 10} {
		d := record(at, 33)
		if err := tp.WriteRecord(ctx, at, d, true); err != nil {
			t.Fatal(err)
		}
		m.write(at, d)
		appendN(100, at<<8)
		m.check(t, tp)
		reopen()
	}
	if err := tp.Erase(ctx, 0); err != nil {
		t.Fatal(err)
	}
	m.filemarks(0, 0)
	reopen()
	tp.Close(ctx)
}

// TestUploadsFailing: while the store refuses writes, writes still land
// (in the log) until too many segments wait, then they wait; health
// warns, and once the store is back it all goes up.
func TestUploadsFailing(t *testing.T) {
	e := newEnv(t)
	reg := health.New(e.clk)
	e.opts = func(o *tapes.Options) {
		o.Health = reg.Register("tapes")
		o.SegmentSize = 64 << 10
		o.MaxPendingSegments = 2
	}
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	e.cut.SetHook(func(op faulty.Op, _ string) error {
		if op == faulty.OpPut {
			return errDead
		}
		return nil
	})
	var m model
	d := record(1, 40<<10)
	for i := range 3 { // two segments closed, the third open
		if err := tp.WriteRecord(ctx, uint64(i), d, false); err != nil {
			t.Fatal(err)
		}
		m.write(uint64(i), d)
	}
	waitIdle(e)
	e.clk.Advance(10 * time.Second)
	waitIdle(e)
	if _, level := reg.Snapshot(); level != health.Warning {
		t.Fatalf("health %v while uploads fail", level)
	}
	m.check(t, tp)
	// The next write waits for the store: it is blocked on the clock
	// beside the uploader.
	wrote := make(chan error, 1)
	go func() { wrote <- tp.WriteRecord(ctx, 3, d, false) }()
	for e.clk.Waiters() < 2 {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-wrote:
		t.Fatalf("write returned while the store is away: %v", err)
	default:
	}
	e.cut.SetHook(nil)
	e.clk.Advance(time.Second)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	m.write(3, d)
	waitIdle(e)
	e.clk.Advance(10 * time.Second)
	waitIdle(e)
	if states, level := reg.Snapshot(); level != health.OK {
		t.Fatalf("health %v after the store is back: %+v", level, states)
	}
	tp.Close(ctx)
	e.crash() // nothing needed from the log any more
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}

// TestArchiveRetried: when moving a tape's objects to the archive class
// fails, the tape has left the library all the same and the move is
// finished on a later tick.
func TestArchiveRetried(t *testing.T) {
	e := newEnv(t)
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	var m model
	writeMixed(t, tp, &m, 41, 10)
	tp.Close(ctx)
	e.cut.SetHook(func(op faulty.Op, _ string) error {
		if op == faulty.OpSetStorageClass {
			return errDead
		}
		return nil
	})
	if err := e.lib.Archive(ctx, bc); !errors.Is(err, errDead) {
		t.Fatalf("archive with the class move failing: %v", err)
	}
	in, _ := e.lib.Info(ctx, bc)
	if in.State != tapes.StateArchived || !in.ArchivePending || in.Place.Type != 0 {
		t.Fatalf("after a failed class move: %+v", in)
	}
	e.cut.SetHook(nil)
	waitIdle(e)
	e.clk.Advance(10 * time.Second)
	waitIdle(e)
	if in, _ := e.lib.Info(ctx, bc); in.ArchivePending {
		t.Fatalf("still pending after a tick: %+v", in)
	}
	e.store.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		if oi.StorageClass != "GLACIER" {
			t.Errorf("%s in class %q", oi.Key, oi.StorageClass)
		}
		return nil
	})
	if _, err := e.lib.Retrieve(ctx, bc); err != nil {
		t.Fatal(err)
	}
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}

// TestCrashAfterSkippedSegment: a rewrite that drops every object of the
// open segment moves on to the next segment id, past the nextSeg of the
// stored root, where Open looks for segments no index names. A crash
// after that segment is uploaded and before an index names it must not
// leave it in the store for good.
func TestCrashAfterSkippedSegment(t *testing.T) {
	e := newEnv(t)
	e.opts = func(o *tapes.Options) { o.SegmentSize = 64 << 10 }
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	tp.SetBuffered(true)
	write := func(at uint64, n int) {
		t.Helper()
		if err := tp.WriteRecord(ctx, at, record(at+1, n), false); err != nil {
			t.Fatal(err)
		}
	}
	for at := range uint64(3) {
		write(at, 10<<10)
	}
	if err := e.lib.Flush(ctx); err != nil { // the stored root's nextSeg: the open segment
		t.Fatal(err)
	}
	write(3, 10<<10)
	write(4, 10<<10)
	// Back to 3: the open segment's objects all go, its id with them.
	for at := uint64(3); at < 12; at++ {
		write(at, 10<<10)
	}
	// The full segment goes up; the index after it fails.
	e.flushFailingAfter(1)
	e.crash()
	tp = e.open(bc)
	checkNoOrphans(t, e, bc)
	tp.Close(ctx)
}
