package volume

import (
	"context"
	"testing"

	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
)

// A recovery point written and a snapshot completed each publish one
// event naming the volume (and the snapshot).
func TestVolumeEvents(t *testing.T) {
	ev := &notifytest.Recorder{}
	e := newEnv(t, 64<<20, 64<<20)
	e.opts = func(o *Options) { o.Events = ev }
	e.start()
	ctx := context.Background()
	v := e.create("v", Cached, 4<<20, 64<<10)
	if err := v.WriteAt(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RecoveryPoint(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	got := ev.Take()
	if len(got) != 1 || got[0].Kind != notify.VolumeRecoveryPoint || got[0].Volume != "v" || got[0].VolumeID != v.Info().ID ||
		got[0].Size == nil || *got[0].Size != 4<<20 || got[0].ID == "" || got[0].Time.IsZero() {
		t.Fatalf("recovery point events %+v", got)
	}
	si, err := e.m.CreateSnapshot(ctx, "v", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got = ev.Take()
	if len(got) != 1 || got[0].Kind != notify.VolumeSnapshot || got[0].Snapshot != si.ID || got[0].Volume != "v" {
		t.Fatalf("snapshot events %+v", got)
	}
}
