package tapes_test

import (
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/crashpoint"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/tapes"
)

// A kill -9 right after a tape's archive, or its retrieval, is recorded:
// after the restart the event queue holds that tape's event, once.
func TestTapeEventsAcrossKill(t *testing.T) {
	for _, kind := range []notify.Kind{notify.TapeArchived, notify.TapeRetrieved} {
		t.Run(string(kind), func(t *testing.T) {
			if point, dir, ok := crashpoint.Child(t); ok {
				tapeEventsChild(t, dir, point)
				return
			}
			dir := t.TempDir()
			crashpoint.Run(t, string(kind), dir)
			d, q := openWithEvents(t, dir)
			defer d.close()
			evs, err := q.Events(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range evs {
				if e.Kind == kind && e.Tape == killBarcode {
					n++
				}
			}
			in, err := d.lib.Info(ctx, killBarcode)
			if err != nil {
				t.Fatal(err)
			}
			want := map[notify.Kind]tapes.State{notify.TapeArchived: tapes.StateArchived, notify.TapeRetrieved: tapes.StateRetrieved}[kind]
			if in.State != want || n != 1 {
				t.Fatalf("after the kill: tape %s, %d %s events (want %s, 1); queue %+v", in.State, n, kind, want, evs)
			}
		})
	}
}

// openWithEvents opens the library on disk in dir with an event queue
// in its metadata store.
func openWithEvents(t *testing.T, dir string) (*onDisk, *notify.Queue) {
	t.Helper()
	var q *notify.Queue
	d, err := openOnDisk(dir, 20*time.Millisecond, func(o *tapes.Options) {
		var err error
		if q, err = notify.Open(ctx, o.Meta, notify.Options{}); err != nil {
			t.Fatal(err)
		}
		o.Events = q
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return d, q
}

// tapeEventsChild writes a tape, archives it and retrieves it, dying at
// point.
func tapeEventsChild(t *testing.T, dir, point string) {
	d, _ := openWithEvents(t, dir)
	tapes.SetCrashHook(func(p string) {
		if p == point {
			crashpoint.Kill()
		}
	})
	if _, err := d.lib.Create(ctx, 1, "GW", 1<<30); err != nil {
		t.Fatal(err)
	}
	tp, err := d.lib.Open(ctx, killBarcode)
	if err != nil {
		t.Fatal(err)
	}
	var m model
	writeMixed(t, tp, &m, 7, 4)
	tp.Close(ctx)
	if err := d.lib.Archive(ctx, killBarcode); err != nil {
		t.Fatal(err)
	}
	if _, err := d.lib.Retrieve(ctx, killBarcode); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("not killed at %s", point)
}
