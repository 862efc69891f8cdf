package uploadbuffer

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// durableRecords replays what of the log in dir survives a power loss now.
func durableRecords(t *testing.T, mem *vfs.MemFS, dir string) [][]byte {
	t.Helper()
	l, err := Open(mem.Crash(), dir, Options{Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recs [][]byte
	if err := l.Replay(func(_ LSN, rec []byte) error {
		recs = append(recs, append([]byte(nil), rec...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// AppendBuffered applies its record while no sync can complete, and the
// record is not durable then; once Journal.Sync has returned, every
// buffered record is.
func TestJournalAppendBufferedDurableAtSync(t *testing.T) {
	mem := vfs.NewMem()
	var held atomic.Bool
	release := make(chan struct{})
	fs := vfs.NewErrorFS(mem, func(op vfs.Op, _ string) error {
		if op == vfs.OpSync && held.Load() {
			<-release
		}
		return nil
	})
	l, err := Open(fs, "/log", Options{Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	j := NewJournal(l, &listClient{running: map[string]int{}}, JournalOptions{})
	defer func() { j.Close(); l.Close() }()
	ctx := context.Background()
	if err := j.Replay(ctx); err != nil {
		t.Fatal(err)
	}

	held.Store(true)
	var recs [][]byte
	var applied []LSN
	for i := range 5 {
		rec := []byte(fmt.Sprintf("buffered record %d", i))
		lsn, err := j.AppendBuffered(ctx, rec, func(lsn LSN) error {
			applied = append(applied, lsn)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != i+1 || applied[i] != lsn {
			t.Fatalf("record %d: applied %v, LSN %d", i, applied, lsn)
		}
		recs = append(recs, rec)
	}
	if got := durableRecords(t, mem, "/log"); len(got) != 0 {
		t.Fatalf("%d records durable while every sync was held", len(got))
	}
	synced := make(chan error, 1)
	go func() { synced <- j.Sync(ctx) }()
	held.Store(false)
	close(release)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	got := durableRecords(t, mem, "/log")
	if len(got) != len(recs) {
		t.Fatalf("after Sync, %d of %d buffered records durable", len(got), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i], recs[i]) {
			t.Fatalf("record %d after Sync: %q, want %q", i, got[i], recs[i])
		}
	}
}
