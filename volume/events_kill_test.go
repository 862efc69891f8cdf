package volume

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/crashpoint"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
)

// A kill -9 right after a recovery point's manifest is in the store, or
// right after a snapshot is completed: after the restart the event queue
// holds its event, once. The recovery point's is queued at the start, from
// its intent and the manifest in the store, with the id it was to have.
func TestVolumeEventsAcrossKill(t *testing.T) {
	for _, kind := range []notify.Kind{notify.VolumeRecoveryPoint, notify.VolumeSnapshot} {
		t.Run(string(kind), func(t *testing.T) {
			if point, dir, ok := crashpoint.Child(t); ok {
				volumeEventsChild(t, dir, point)
				return
			}
			dir := t.TempDir()
			crashpoint.Run(t, string(kind), dir)
			// The restarted manager writes recovery points of its own
			// (the first at once): only the child's are counted.
			restart := time.Now()
			st, q := openWithEvents(t, dir)
			defer st.close()
			evs, err := q.Events(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			var snap string
			for _, e := range evs {
				if e.Kind == kind && e.Volume == "crash" && e.Time.Before(restart) {
					ids, snap = append(ids, e.ID), e.Snapshot
				}
			}
			if len(ids) != 1 {
				t.Fatalf("after the kill: %d %s events, want 1; queue %+v", len(ids), kind, evs)
			}
			if kind == notify.VolumeSnapshot {
				sn, err := st.m.Snapshots(context.Background(), "crash")
				if err != nil || len(sn) != 1 || snap != sn[0].ID {
					t.Fatalf("snapshots %+v (%v), events %+v", sn, err, evs)
				}
				return
			}
			// Settled: the child's intent is gone. An intent there now is
			// the restarted manager's own recovery point's, under way.
			var intent []byte
			err = st.m.opts.Meta.View(context.Background(), func(tx meta.Txn) error {
				var err error
				intent, err = tx.Get(intentKey(evs[0].VolumeID))
				return err
			})
			switch {
			case errors.Is(err, meta.ErrNotFound):
			case err != nil:
				t.Fatalf("after the start: reading the intent: %v", err)
			default:
				var e notify.Event
				if err := json.Unmarshal(intent, &e); err != nil {
					t.Fatalf("after the start: an intent that is no event: %q: %v", intent, err)
				}
				if e.ID == ids[0] || e.Time.Before(restart) {
					t.Fatalf("after the start: the child's intent is still there: %+v", e)
				}
			}
		})
	}
}

// openWithEvents opens the on-disk state in dir with an event queue in
// its metadata store.
func openWithEvents(t *testing.T, dir string) (*crashState, *notify.Queue) {
	t.Helper()
	var q *notify.Queue
	st := openCrashStateWith(t, dir, func(o *Options) {
		var err error
		if q, err = notify.Open(context.Background(), o.Meta, notify.Options{}); err != nil {
			t.Fatal(err)
		}
		o.Events = q
	})
	t.Cleanup(q.Close)
	return st, q
}

// volumeEventsChild writes to a cached volume, writes a recovery point and
// takes a snapshot, dying at point.
func volumeEventsChild(t *testing.T, dir, point string) {
	st, _ := openWithEvents(t, dir)
	st.m.crashHook = func(p string) {
		if p == point {
			crashpoint.Kill()
		}
	}
	ctx := context.Background()
	if _, err := st.m.Create(ctx, CreateOptions{Name: "crash", Kind: Cached, Size: crashVolSize, ChunkSize: crashChunk}); err != nil {
		t.Fatal(err)
	}
	v, err := st.m.Get("crash")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WriteAt(ctx, pattern(1, 100*kib), 0); err != nil {
		t.Fatal(err)
	}
	if err := st.m.RecoveryPoint(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.m.CreateSnapshot(ctx, "crash", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("not killed at %s", point)
}
