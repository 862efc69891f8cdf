package tapes_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/tapes"
)

// TestWORMTape: a WORM tape appends; writing over a record, over the
// tape's first filemark, or erasing what it holds fails with
// ErrWORMOverwrite, buffered or not; filemarks just before end-of-data
// after the first are written over. The tape stays WORM across a
// restart and when its meta is rebuilt from the store (the index root
// says so); a rewritable tape beside it overwrites as ever.
func TestWORMTape(t *testing.T) {
	e := newEnv(t)
	e.start()
	bcs, err := e.lib.CreateTapes(ctx, tapes.CreateOptions{Count: 2, Prefix: "WM", Size: 64 << 20, WORM: true})
	if err != nil {
		t.Fatal(err)
	}
	rw := e.create(1, 64<<20)[0]
	if in, _ := e.lib.Info(ctx, bcs[0]); !in.WORM {
		t.Fatalf("WORM tape's info: %+v", in)
	}
	tp := e.open(bcs[0])
	if !tp.WORM() {
		t.Fatal("WORM tape's handle is not WORM")
	}
	var m model
	refused := func(label string, err error) {
		t.Helper()
		if !errors.Is(err, tapes.ErrWORMOverwrite) {
			t.Fatalf("%s: %v, want ErrWORMOverwrite", label, err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// R F R F
	for i, d := range [][]byte{record(1, 5000), nil, record(2, 70000), nil} {
		if d == nil {
			must(tp.WriteFilemarks(ctx, uint64(i), 1))
			m.filemarks(uint64(i), 1)
			continue
		}
		must(tp.WriteRecord(ctx, uint64(i), d, i == 0))
		m.write(uint64(i), d)
	}
	for _, buffered := range []bool{false, true} {
		tp.SetBuffered(buffered)
		refused("record over record 0", tp.WriteRecord(ctx, 0, []byte("x"), false))
		refused("record over record 2", tp.WriteRecord(ctx, 2, []byte("x"), false))
		refused("filemark over the first filemark", tp.WriteFilemarks(ctx, 1, 1))
		refused("truncate at the first filemark", tp.WriteFilemarks(ctx, 1, 0))
		refused("erase at 0", tp.Erase(ctx, 0))
		refused("erase at the first filemark", tp.Erase(ctx, 1))
	}
	tp.SetBuffered(false)
	m.check(t, tp)
	// Appending, and writing over the filemarks before end-of-data
	// after the first: R F R F F F, then a record over object 4.
	must(tp.WriteFilemarks(ctx, 4, 2))
	m.filemarks(4, 2)
	must(tp.Erase(ctx, 6)) // at end-of-data: nothing erased
	d := record(3, 300001)
	must(tp.WriteRecord(ctx, 4, d, false))
	m.write(4, d)
	m.check(t, tp)
	must(tp.Close(ctx))

	// A WORM tape that starts with a filemark keeps it.
	tp2 := e.open(bcs[1])
	must(tp2.WriteFilemarks(ctx, 0, 2))
	refused("over the first filemark at 0", tp2.WriteFilemarks(ctx, 0, 1))
	must(tp2.WriteRecord(ctx, 1, []byte("over the second"), false))
	must(tp2.Close(ctx))

	// The rewritable tape overwrites.
	tr := e.open(rw)
	must(tr.WriteRecord(ctx, 0, []byte("one"), false))
	must(tr.WriteRecord(ctx, 0, []byte("two"), false))
	must(tr.Erase(ctx, 0))
	if tr.WORM() {
		t.Fatal("rewritable tape says WORM")
	}
	must(tr.Close(ctx))

	for _, how := range []string{"restart", "crash", "meta rebuilt from the store"} {
		switch how {
		case "restart":
			e.restart()
		case "crash":
			e.crash()
		default:
			e.close()
			e.md = metamem.New()
			e.start()
		}
		if in, err := e.lib.Info(ctx, bcs[0]); err != nil || !in.WORM {
			t.Fatalf("after %s: %+v %v", how, in, err)
		}
		if in, err := e.lib.Info(ctx, rw); err != nil || in.WORM {
			t.Fatalf("after %s the rewritable tape: %+v %v", how, in, err)
		}
		tp = e.open(bcs[0])
		if !tp.WORM() {
			t.Fatalf("after %s the tape is not WORM", how)
		}
		refused("after "+how, tp.WriteRecord(ctx, 0, []byte("x"), false))
		m.check(t, tp)
		must(tp.Close(ctx))
	}
}

// TestWORMTapeRetainedFromWrite: on a bucket with Object Lock, a WORM tape
// of a locked pool has every object it writes retained in the pool's
// mode for the pool's days from the write, before any archive; a
// rewritable tape of the same pool is not. The WORM tape is not deleted
// while its objects are retained; once they are no longer, it is.
func TestWORMTapeRetainedFromWrite(t *testing.T) {
	e := newEnv(t)
	locked := mem.NewLocked("locked")
	locked.SetClock(e.clk.Now)
	e.store = locked
	e.start()
	if _, err := e.lib.CreatePool(ctx, tapes.Pool{Name: "keep", StorageClass: "GLACIER", Lock: tapes.LockGovernance, LockDays: 3}); err != nil {
		t.Fatal(err)
	}
	var bcs []string
	for _, worm := range []bool{true, false} {
		got, err := e.lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: "K", Size: 8 << 20, Pool: "keep", WORM: worm})
		if err != nil {
			t.Fatal(err)
		}
		tp := e.open(got[0])
		var m model
		writeMixed(t, tp, &m, 9, 20)
		if err := tp.Close(ctx); err != nil {
			t.Fatal(err)
		}
		bcs = append(bcs, got[0])
	}
	written := e.clk.Now()
	for i, bc := range bcs {
		n := 0
		if err := e.store.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
			ret, err := objstore.GetRetention(ctx, e.store, oi.Key)
			if err != nil {
				return err
			}
			// The blank root was written at create, before the pool's
			// retention applied to the tape's writes; every later
			// object is retained.
			if oi.Key == "tapes/"+bc+"/index" || strings.Contains(oi.Key, "/seg/") {
				n++
				if want := i == 0; ret.Holds(written) != want || want && (ret.Mode != objstore.Governance || ret.Until.Before(written.Add(3*24*time.Hour))) {
					t.Errorf("%s: retention %v (WORM %v)", oi.Key, ret, want)
				}
			}
			return nil
		}); err != nil || n < 2 {
			t.Fatalf("tape %s: %d objects, %v", bc, n, err)
		}
	}
	if err := e.lib.Delete(ctx, bcs[0]); !errors.Is(err, tapes.ErrLocked) || !strings.Contains(err.Error(), "Object Lock") {
		t.Fatalf("delete of a WORM tape whose objects are retained: %v", err)
	}
	if err := e.lib.Delete(ctx, bcs[1]); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(3*24*time.Hour + time.Second)
	if err := e.lib.Delete(ctx, bcs[0]); err != nil {
		t.Fatal(err)
	}
}
