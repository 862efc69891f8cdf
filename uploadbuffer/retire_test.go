package uploadbuffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/stacks"
	"github.com/gatewayd/gatewayd/vfs"
)

// retireRec is a buffered record of 8 KiB, its bytes derived from i.
func retireRec(i int) []byte {
	return bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a, byte(i) ^ 0xff}, 2<<10)
}

const retireSegment = 64 << 10 // 7 records of retireRec a segment

// appendBuffered appends n records of retireRec from first, buffered, and
// returns their contents by LSN.
func appendBuffered(t *testing.T, l *Log, first, n int) map[LSN][]byte {
	t.Helper()
	recs := map[LSN][]byte{}
	for i := first; i < first+n; i++ {
		lsn, err := l.AppendBuffered(context.Background(), retireRec(i))
		if err != nil {
			t.Fatal(err)
		}
		recs[lsn] = retireRec(i)
	}
	return recs
}

func segmentsOf(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, n := range names {
		if strings.HasSuffix(n, ".seg") {
			segs = append(segs, path.Join(dir, n))
		}
	}
	return segs
}

// A full segment's records are not synced by the writer: with every sync
// of the segments held, buffered records go on into the next segment and
// are written, and none is durable until the syncs are let go; then Flush
// makes all of them durable.
func TestFullSegmentSyncedInBackground(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 4<<20, retireSegment)
	defer l.Close()
	release := g.hold()
	defer release()
	recs := appendBuffered(t, l, 0, 12) // two segments
	last := LSN(len(recs))
	returns(t, "Written of a record in the second segment while the first one's sync is held", func() {
		if err := l.Written(context.Background(), last); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the background sync of the full segment", g.entered)
	if n := len(segmentsOf(t, g.mem, "/log")); n != 2 {
		t.Fatalf("%d segments, want 2", n)
	}
	if l.NextLSN() != 1 {
		t.Fatalf("NextLSN %d while no sync has ended", l.NextLSN())
	}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan error, 1)
	go func() { synced <- l.Sync(ctx, 1) }()
	waitStack(t, "the writer syncing for Sync", synced, "uploadbuffer.(*Log).syncAll(")
	cancel()
	if err := <-synced; err == nil {
		t.Fatal("Sync of a record in the full segment returned nil while its sync was held")
	}
	if got := replayAll(t, open(t, g.mem.Crash(), "/log", 4<<20, retireSegment)); len(got) != 0 {
		t.Fatalf("%d records survive a power loss while every sync was held", len(got))
	}
	release()
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := replayAll(t, open(t, g.mem.Crash(), "/log", 4<<20, retireSegment))
	if len(got) != len(recs) {
		t.Fatalf("%d records survive a power loss after Flush, want %d", len(got), len(recs))
	}
	for lsn, b := range recs {
		if !bytes.Equal(got[lsn], b) {
			t.Fatalf("record %d replayed with other bytes", lsn)
		}
	}
	st := l.Stats()
	if st.Syncs == 0 || st.Unsynced == 0 {
		t.Fatalf("stats %+v: want syncs and groups written without one", st)
	}
}

// At most maxRetired full segments wait for their sync: with the syncs
// held, the writer waits before it starts another, and goes on once they
// are let go.
func TestRetiredSegmentsBounded(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 4<<20, retireSegment)
	defer l.Close()
	release := g.hold()
	defer release()
	recs := appendBuffered(t, l, 0, 7*(maxRetired+2)) // past maxRetired+1 segments
	waitStack(t, "the writer waiting for the full segments' syncs", nil, "uploadbuffer.(*Log).awaitRetired(", "uploadbuffer.(*Log).retireSegment(")
	if n := len(segmentsOf(t, g.mem, "/log")); n != maxRetired+1 {
		t.Fatalf("%d segments while the writer waits, want %d", n, maxRetired+1)
	}
	if w, want := l.WrittenLSN(), LSN(7*(maxRetired+1)+1); w != want {
		t.Fatalf("WrittenLSN %d while the writer waits to start segment %d, want %d", w, maxRetired+2, want)
	}
	release()
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, open(t, g.mem.Crash(), "/log", 4<<20, retireSegment)); len(got) != len(recs) {
		t.Fatalf("%d records survive, want %d", len(got), len(recs))
	}
}

// A durable Append whose record starts a new segment waits for the full
// segment's background sync: with only that sync held, it is not
// answered, and it is once the sync ends.
func TestDurableAppendWaitsForFullSegmentSync(t *testing.T) {
	mem := vfs.NewMem()
	first := path.Join("/log", segName(1))
	hold, entered := make(chan struct{}), make(chan struct{}, 10)
	var armed atomic.Bool // after Open, which syncs the first segment
	fs := vfs.NewErrorFS(mem, func(op vfs.Op, p string) error {
		if op == vfs.OpSync && p == first && armed.Load() {
			entered <- struct{}{}
			<-hold
		}
		return nil
	})
	l := open(t, fs, "/log", 4<<20, retireSegment)
	defer l.Close()
	armed.Store(true)
	var once bool
	release := func() {
		if !once {
			once = true
			close(hold)
		}
	}
	defer release()
	recs := appendBuffered(t, l, 0, 7) // fills the first segment
	done := make(chan error, 1)
	var lsn LSN
	go func() {
		var err error
		lsn, err = l.Append(context.Background(), retireRec(7))
		done <- err
	}()
	waitFor(t, "the background sync of the first segment", entered)
	waitStack(t, "the durable Append's sync waiting for the full segment's", done, "uploadbuffer.(*Log).awaitRetired(", "uploadbuffer.(*Log).syncAll(")
	release()
	if err := waitFor(t, "the durable Append", done); err != nil {
		t.Fatal(err)
	}
	recs[lsn] = retireRec(7)
	if got := replayAll(t, open(t, mem.Crash(), "/log", 4<<20, retireSegment)); len(got) != len(recs) {
		t.Fatalf("%d records survive a power loss after the durable Append, want %d", len(got), len(recs))
	}
}

// waitStack waits until a goroutine's stack holds every one of parts;
// an answer on early (when not nil) first fails the test.
func waitStack(t *testing.T, what string, early <-chan error, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(long)
	for !stacks.Has(parts...) {
		select {
		case err := <-early:
			t.Fatalf("answered before %s: %v", what, err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// everythingOnDisk returns a copy of the log in dir as if the disk had
// written everything back, synced or not: the files and their entries.
func everythingOnDisk(t *testing.T, live *vfs.MemFS, dir string) *vfs.MemFS {
	t.Helper()
	out := vfs.NewMem()
	if err := out.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range segmentsOf(t, live, dir) {
		b, _ := readAll(t, live, p)
		writeFile(t, out, p, b)
	}
	return out
}

// recordOffset is where record lsn starts in the segment b, whose first
// record is first.
func recordOffset(b []byte, first, lsn LSN) int {
	off := segHeaderSize
	for range lsn - first {
		off += recHeaderSize + int(binary.BigEndian.Uint32(b[off:]))
	}
	return off
}

// After a power loss, a full segment whose background sync had not ended
// may be torn, missing, or without its header, with later segments there:
// the log ends there and the later segments go, as long as no record after
// it says it was durable. If one does, it is corruption.
func TestTornFullSegmentEndsTheLog(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, fs *vfs.MemFS, segs []string) // damages the second of three segments
		endsAt  LSN                                              // the first record not replayed
		corrupt bool                                             // with everything synced before the damage
	}{
		{"a bad record", func(t *testing.T, fs *vfs.MemFS, segs []string) {
			b, _ := readAll(t, fs, segs[1])
			b[recordOffset(b, 8, 10)+recHeaderSize+5] ^= 0x40
			writeFile(t, fs, segs[1], b)
		}, 10, true},
		{"a zero header", func(t *testing.T, fs *vfs.MemFS, segs []string) {
			b, _ := readAll(t, fs, segs[1])
			clear(b[:segHeaderSize])
			writeFile(t, fs, segs[1], b)
		}, 8, true},
		{"a segment missing", func(t *testing.T, fs *vfs.MemFS, segs []string) {
			if err := fs.Remove(segs[1]); err != nil {
				t.Fatal(err)
			}
		}, 8, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, synced := range []bool{false, true} {
				// Three segments of 7 records (LSN 1-7, 8-14, 15-21),
				// the syncs held: nothing durable; or the first 20
				// synced by a Flush, then one more.
				g := newGatedFS()
				l := open(t, g, "/log", 4<<20, retireSegment)
				release := g.hold()
				if synced {
					release()
				}
				recs := appendBuffered(t, l, 0, 20)
				if synced {
					if err := l.Flush(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				for lsn, b := range appendBuffered(t, l, 20, 1) {
					recs[lsn] = b
				}
				if err := l.Written(context.Background(), 21); err != nil {
					t.Fatal(err)
				}
				disk := everythingOnDisk(t, g.mem, "/log")
				release()
				l.Close()
				segs := segmentsOf(t, disk, "/log")
				if len(segs) != 3 {
					t.Fatalf("%d segments, want 3", len(segs))
				}
				tc.damage(t, disk, segs)
				got, err := Open(disk, "/log", Options{Capacity: 4 << 20, SegmentSize: retireSegment})
				if synced {
					if !errkind.IsCorrupt(err) {
						t.Fatalf("synced before the damage: open %v, want corruption", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				replayed := replayAll(t, got)
				if len(replayed) != int(tc.endsAt-1) {
					t.Fatalf("%d records replayed, want %d", len(replayed), tc.endsAt-1)
				}
				for lsn, b := range replayed {
					if !bytes.Equal(b, recs[lsn]) {
						t.Fatalf("record %d replayed with other bytes", lsn)
					}
				}
				if got.NextLSN() != tc.endsAt {
					t.Fatalf("NextLSN %d, want %d", got.NextLSN(), tc.endsAt)
				}
				// The log goes on from there, and what it writes next
				// survives a power loss without the segments cut off
				// coming back.
				lsn, err := got.Append(context.Background(), []byte("after the cut"))
				if err != nil || lsn != tc.endsAt {
					t.Fatalf("append after the cut: LSN %d, %v", lsn, err)
				}
				got.Close()
				after := replayAll(t, open(t, disk.Crash(), "/log", 4<<20, retireSegment))
				if len(after) != int(tc.endsAt) || string(after[tc.endsAt]) != "after the cut" {
					t.Fatalf("after a power loss: %d records, the last %q", len(after), after[tc.endsAt])
				}
			}
		})
	}
}
