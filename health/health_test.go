package health

import (
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
)

func TestRegistryWorstLevelAndSince(t *testing.T) {
	fc := clock.NewFake(time.Unix(1000, 0))
	r := New(fc)
	s3 := r.Register("objstore")
	buf := r.Register("uploadbuffer")

	states, worst := r.Snapshot()
	if worst != OK || len(states) != 2 {
		t.Fatalf("fresh registry: worst=%v states=%v", worst, states)
	}

	fc.Advance(time.Minute)
	buf.Warn("upload buffer 90% full")
	fc.Advance(time.Minute)
	buf.Warn("upload buffer 90% full") // same condition: Since must not move
	s3.Fail("cannot reach endpoint")

	states, worst = r.Snapshot()
	if worst != Error {
		t.Fatalf("worst = %v, want error", worst)
	}
	if states[0].Subsystem != "objstore" || states[1].Subsystem != "uploadbuffer" {
		t.Fatalf("not sorted: %v", states)
	}
	if got := states[1].Since; !got.Equal(time.Unix(1060, 0)) {
		t.Fatalf("Since moved on an unchanged condition: %v", got)
	}

	s3.OK()
	if _, worst = r.Snapshot(); worst != Warning {
		t.Fatalf("after recovery worst = %v, want warning", worst)
	}
	if r.Register("objstore") == nil {
		t.Fatal("re-register returned nil")
	}
	if states, _ := r.Snapshot(); len(states) != 2 {
		t.Fatalf("re-register added an entry: %v", states)
	}
}
