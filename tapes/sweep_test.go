package tapes_test

import (
	"testing"

	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/tapes"
)

// A tape rewritten from its start leaves its old segments and index
// pages to delete once the new index is up. When the gateway dies before
// those deletes, the next load deletes them: nothing in the store is left
// that no index names, though the segment after the stored index is not
// there to give it away. A clean close leaves nothing to sweep.
func TestLoadSweepsWhatADeathLeftUndeleted(t *testing.T) {
	e := newEnv(t)
	e.opts = func(o *tapes.Options) { o.SegmentSize = 64 << 10 }
	e.start()
	defer e.close()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	// Buffered: no log record, so no replay after the crash (a replayed
	// tape is swept anyway).
	tp.SetBuffered(true)
	for i := range 20 {
		if err := tp.WriteRecord(ctx, uint64(i), record(uint64(i), 30000), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.lib.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Rewritten from the start: the old segments become garbage, deleted
	// after the new index is stored; every delete fails, as for a gateway
	// that died right after the index went up.
	if err := tp.WriteRecord(ctx, 0, record(100, 1000), false); err != nil {
		t.Fatal(err)
	}
	deletes := 0
	e.cut.SetHook(func(op faulty.Op, _ string) error {
		if op == faulty.OpDelete {
			deletes++
			return errDead
		}
		return nil
	})
	if err := e.lib.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if deletes == 0 {
		t.Fatal("the rewrite's upload deleted nothing: the test does not test the sweep")
	}
	if in, err := e.lib.Info(ctx, bc); err != nil || !in.SweepPending {
		t.Fatalf("after an upload: %+v, %v; want SweepPending", in, err)
	}
	e.crash()
	tp = e.open(bc)
	checkNoOrphans(t, e, bc)
	buf := make([]byte, 40000)
	if n, err := tp.ReadRecord(ctx, 0, buf); err != nil || n != 1000 || tp.EOD() != 1 {
		t.Fatalf("the rewritten record: %d bytes, %v; EOD %d", n, err, tp.EOD())
	}

	// A clean close clears the mark, and its leftovers-free tapes are
	// not swept again.
	tp.Close(ctx)
	e.restart()
	if in, err := e.lib.Info(ctx, bc); err != nil || in.SweepPending {
		t.Fatalf("after a clean close: %+v, %v; want no SweepPending", in, err)
	}
}
