package tapes_test

import (
	"testing"

	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
	"github.com/gatewayd/gatewayd/tapes"
)

// A tape archived and retrieved publishes one event each, naming it.
func TestTapeEvents(t *testing.T) {
	ev := &notifytest.Recorder{}
	e := newEnv(t)
	e.opts = func(o *tapes.Options) { o.Events = ev }
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	var m model
	writeMixed(t, tp, &m, 7, 4)
	tp.Close(ctx)
	if err := e.lib.Archive(ctx, bc); err != nil {
		t.Fatal(err)
	}
	got := ev.Take()
	if len(got) != 1 || got[0].Kind != notify.TapeArchived || got[0].Tape != bc || got[0].Size == nil || *got[0].Size == 0 || got[0].ID == "" {
		t.Fatalf("archive events %+v", got)
	}
	if _, err := e.lib.Retrieve(ctx, bc); err != nil {
		t.Fatal(err)
	}
	got2 := ev.Take()
	if len(got2) != 1 || got2[0].Kind != notify.TapeRetrieved || got2[0].Tape != bc || got2[0].ID == got[0].ID {
		t.Fatalf("retrieve events %+v", got2)
	}
}
