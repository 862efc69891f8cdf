package cache

import (
	"bytes"
	"context"
	"runtime"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// TestReplayedWritesDoNotWaitForRoom: writes of replayed records (logged
// or not) go in over capacity when clean chunks cannot make room, at once;
// a new write still waits for room, and uploads (MarkClean) bring the
// cache back within its capacity.
func TestReplayedWritesDoNotWaitForRoom(t *testing.T) {
	ctx := context.Background()
	const capChunks, replayed = 2, 5
	c := openCache(t, vfs.NewMem(), capChunks*chunk)
	if err := c.PutClean(key(9), fill('p')); err != nil {
		t.Fatal(err)
	}
	log := newFakeLog()
	for i := uint64(0); i < replayed; i++ {
		var src *Source
		if i%2 == 0 {
			s := log.log(7, fill(byte('a'+i)))
			src = &s
		}
		if err := c.WriteReplayed(ctx, key(i), chunk, fill(byte('a'+i)), 0, noBase, src); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	if st.Used != replayed*chunk || st.Dirty != replayed*chunk || st.Waits != 0 || st.Evictions != 1 {
		t.Fatalf("after the replayed writes %+v: want %d bytes used and dirty, no waits, the clean chunk evicted", st, replayed*chunk)
	}
	for i := uint64(0); i < replayed; i++ {
		got := make([]byte, chunk)
		if ok, err := c.ReadAt(key(i), got, 0); !ok || err != nil || !bytes.Equal(got, fill(byte('a'+i))) {
			t.Fatalf("chunk %d: %v %v, %q...", i, ok, err, got[:4])
		}
	}

	// A new write waits for room.
	done := make(chan error, 1)
	go func() { done <- c.WriteAt(ctx, key(20), chunk, fill('n'), 0, noBase) }()
	for c.Stats().Waits == 0 {
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("a new write got in over capacity: %v", err)
	default:
	}
	for i := uint64(0); i < replayed; i++ {
		_, gen, err := c.Snapshot(key(i))
		if err != nil {
			t.Fatal(err)
		}
		if !markClean(t, c, key(i), gen) {
			t.Fatalf("MarkClean of chunk %d refused", i)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Used > st.Capacity || st.Dirty != chunk {
		t.Fatalf("after the uploads %+v: want within capacity, the new chunk dirty", st)
	}
	got := make([]byte, chunk)
	if ok, err := c.ReadAt(key(20), got, 0); !ok || err != nil || !bytes.Equal(got, fill('n')) {
		t.Fatalf("the new chunk: %v %v", ok, err)
	}
}
