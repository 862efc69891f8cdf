package uploadbuffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"path"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/vfs"
)

// readAll reads the whole file p of fs.
func readAll(t *testing.T, fs vfs.FS, p string) ([]byte, bool) {
	t.Helper()
	f, err := fs.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && len(b) > 0 {
		t.Fatal(err)
	}
	return b, true
}

// tornCrash returns what a power loss may leave of the log in dir: each
// segment's synced bytes, then, of what was written after them without a
// sync, any prefix of the file's length with each 512-byte sector either
// there or zeros, in any combination (the disk wrote back some sectors of
// the page cache and not others, in any order). A segment whose directory
// entry was never synced is gone, or (half the time: the filesystem wrote
// the entry back on its own) there, torn the same way from its start.
func tornCrash(t *testing.T, live *vfs.MemFS, dir string, rnd *rand.Rand) *vfs.MemFS {
	t.Helper()
	out := live.Crash()
	names, err := live.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	keep := rnd.Float64() // the share of sectors that reached the disk
	for _, n := range names {
		if !strings.HasSuffix(n, ".seg") {
			continue
		}
		p := path.Join(dir, n)
		cur, _ := readAll(t, live, p)
		kept, ok := readAll(t, out, p)
		if !ok && rnd.IntN(2) == 0 {
			continue // its entry did not reach the disk
		}
		if len(cur) <= len(kept) {
			continue
		}
		end := len(kept) + rnd.IntN(len(cur)-len(kept)+1)
		torn := append(kept[:len(kept):len(kept)], make([]byte, end-len(kept))...)
		const sector = 512
		for s := len(kept) / sector * sector; s < end; s += sector {
			if rnd.Float64() < keep {
				lo, hi := max(s, len(kept)), min(s+sector, end)
				copy(torn[lo:hi], cur[lo:hi])
			}
		}
		writeFile(t, out, p, torn)
	}
	return out
}

// writeFile makes p of fs hold b, durably.
func writeFile(t *testing.T, fs vfs.FS, p string, b []byte) {
	t.Helper()
	f, err := fs.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := fs.SyncDir(path.Dir(p)); err != nil {
		t.Fatal(err)
	}
}

// tornRec is a record of a size from 1 byte to 90 KiB (large ones are
// written from the caller's buffer), its bytes derived from seed.
func tornRec(rnd *rand.Rand) []byte {
	n := 1 + rnd.IntN(2000)
	if rnd.IntN(20) == 0 {
		n = 60<<10 + rnd.IntN(30<<10)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// Power losses at any moment of a mix of buffered and durable appends,
// syncs and trims, with the unsynced part of the last segment torn in any
// way: every record acknowledged durable (its Append returned, or a Sync
// or Flush covering it did) survives with its bytes, the log always
// opens, and what it replays past them is records as they were appended,
// in a gapless run, each also read back by ReadRecord. The log then goes
// on, and loses power again.
func TestTornCrashKeepsDurableRecords(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	var cut, lost atomic.Int64          // crashes that lost written records; records lost
	var stalled, cutBefore atomic.Int64 // crashes with full segments unsynced; logs cut before their last segment
	for seed := range seeds {
		rnd := rand.New(rand.NewPCG(uint64(seed), 11))
		mem := vfs.NewMem()
		content := map[LSN][]byte{}
		durable := LSN(1) // every record below it was acknowledged durable
		for life := range 5 {
			what := fmt.Sprintf("seed %d, life %d", seed, life)
			g := gatedOn(mem)
			var opened strings.Builder
			l, err := Open(g, "/log", Options{Capacity: 16 << 20, SegmentSize: 192 << 10, Logger: slog.New(slog.NewTextHandler(&opened, nil))})
			if err != nil {
				t.Fatalf("%s: open after a power loss: %v", what, err)
			}
			if strings.Contains(opened.String(), "written after the end of the log") {
				cutBefore.Add(1)
			}
			got := replayAll(t, l)
			for lsn := max(l.trimmed, 1); lsn < durable; lsn++ {
				if !bytes.Equal(got[lsn], content[lsn]) {
					t.Fatalf("%s: durable record %d lost or changed (%d bytes, want %d; NextLSN %d, trim %d)", what, lsn, len(got[lsn]), len(content[lsn]), l.NextLSN(), l.trimmed)
				}
			}
			for lsn, b := range got {
				if !bytes.Equal(b, content[lsn]) {
					t.Fatalf("%s: record %d replayed with other bytes", what, lsn)
				}
			}
			checkRead(t, l, got) // through the offset index Open rebuilt
			if l.NextLSN() < durable {
				t.Fatalf("%s: NextLSN %d below the durable %d", what, l.NextLSN(), durable)
			}
			for lsn := range content {
				if lsn >= l.NextLSN() {
					delete(content, lsn)
					lost.Add(1)
				}
			}
			if l.NextLSN() < l.assigned {
				t.Fatalf("%s: NextLSN %d, assigned %d after Open", what, l.NextLSN(), l.assigned)
			}
			ctx := context.Background()
			var last LSN
			for range 50 + rnd.IntN(250) {
				switch op := rnd.IntN(100); {
				case op < 60:
					b := tornRec(rnd)
					lsn, err := l.AppendBuffered(ctx, b)
					if err != nil {
						t.Fatal(err)
					}
					content[lsn], last = b, lsn
				case op < 72:
					b := tornRec(rnd)
					lsn, err := l.Append(ctx, b)
					if err != nil {
						t.Fatal(err)
					}
					content[lsn], last = b, lsn
					durable = max(durable, lsn+1)
				case op < 80 && last > 0:
					k := LSN(rnd.IntN(5))
					if k >= last {
						continue
					}
					lsn := last - k
					if lsn < durable {
						continue
					}
					if err := l.Sync(ctx, lsn); err != nil {
						t.Fatal(err)
					}
					durable = max(durable, lsn+1)
				case op < 85:
					if err := l.Trim(l.NextLSN() - LSN(rnd.IntN(10))); err != nil {
						t.Fatal(err)
					}
				case op < 95 && last > 0:
					if err := l.Written(ctx, last); err != nil {
						t.Fatal(err)
					}
				}
			}
			release := func() {}
			if rnd.IntN(2) == 0 {
				// The power goes while full segments wait for their
				// background sync: with every sync held, small
				// buffered records fill one or two segments (more
				// would make the writer wait for the syncs).
				if err := l.awaitRetired(0); err != nil {
					t.Fatal(err)
				}
				release = g.hold()
				for n := 0; n < 250<<10; {
					b := tornRec(rnd)
					b = b[:min(len(b), 2000)]
					if n += recHeaderSize + len(b); n > 330<<10 {
						break
					}
					lsn, err := l.AppendBuffered(ctx, b)
					if err != nil {
						t.Fatal(err)
					}
					content[lsn], last = b, lsn
				}
				if err := l.Written(ctx, last); err != nil {
					t.Fatal(err)
				}
				l.mu.Lock()
				if len(l.retired) > 0 {
					stalled.Add(1)
				}
				l.mu.Unlock()
			}
			before := l.Stats()
			mem = tornCrash(t, mem, "/log", rnd)
			release()
			l.Close() // the old machine's log: what it does now is not on the crashed disk
			if before.Unsynced > 0 && LSN(l.written.Load()) > durable {
				cut.Add(1)
			}
		}
	}
	t.Logf("%d power losses with records written without a sync, %d of them with full segments not yet synced; %d records lost; %d logs cut before their last segment", cut.Load(), stalled.Load(), lost.Load(), cutBefore.Load())
	if cut.Load() == 0 || lost.Load() == 0 || stalled.Load() == 0 || cutBefore.Load() == 0 {
		t.Fatal("no power loss hit records written without a sync, or full segments not yet synced: the test tests nothing")
	}
}

// A bad record is still corruption when a later record says it was
// durable: here, buffered records made durable by Sync, then more records
// written after it.
func TestCorruptSyncedBufferedRecordIsAnError(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, "/log", 8<<20, 4<<20)
	ctx := context.Background()
	var lsns []LSN
	for i := range 20 {
		lsn, err := l.AppendBuffered(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		lsns = append(lsns, lsn)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 25; i++ {
		if _, err := l.AppendBuffered(ctx, rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()
	clean := mem.Crash()
	if got := replayAll(t, open(t, clean, "/log", 8<<20, 4<<20)); len(got) != 25 {
		t.Fatalf("%d records replayed, want 25", len(got))
	}

	// A flipped byte in record 5's payload: records 21 to 25 were written
	// once it was durable.
	seg := path.Join("/log", segName(1))
	b, _ := readAll(t, mem, seg)
	off := int64(segHeaderSize)
	for range lsns[4] - 1 {
		off += recHeaderSize + int64(binary.BigEndian.Uint32(b[off:]))
	}
	b[off+recHeaderSize+3] ^= 0x40
	broken := vfs.NewMem()
	if err := broken.MkdirAll("/log", 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, broken, seg, b)
	if _, err := Open(broken, "/log", Options{Capacity: 8 << 20, SegmentSize: 4 << 20}); !errkind.IsCorrupt(err) {
		t.Fatalf("open with a synced record corrupt, later records marking it durable: %v, want corruption", err)
	}
}

// writeV1Segment writes a version 1 segment (16-byte record headers) with
// recs from LSN first.
func writeV1Segment(t *testing.T, fs vfs.FS, dir string, first LSN, recs [][]byte) {
	t.Helper()
	b := segmentHeader(first)
	b[4] = segVersionV1
	for i, r := range recs {
		var h [recHeaderSizeV1]byte
		binary.BigEndian.PutUint32(h[0:], uint32(len(r)))
		binary.BigEndian.PutUint64(h[8:], uint64(first)+uint64(i))
		binary.BigEndian.PutUint32(h[4:], crc32.Update(crc32.Checksum(h[8:16], castagnoli), castagnoli, r))
		b = append(append(b, h[:]...), r...)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fs, path.Join(dir, segName(first)), b)
}

// A log of version 1 segments opens: its records replay and read back,
// appends go to a new version 2 segment, and both read after a restart. A
// bad record followed by a valid one in a version 1 segment is corruption.
func TestVersion1SegmentsStillRead(t *testing.T) {
	mem := vfs.NewMem()
	old := [][]byte{rec(1), rec(2), rec(3), rec(4), rec(5)}
	writeV1Segment(t, mem, "/log", 7, old)
	l := open(t, mem, "/log", 8<<20, 1<<20)
	got := replayAll(t, l)
	for i, r := range old {
		if !bytes.Equal(got[LSN(7+i)], r) {
			t.Fatalf("version 1 record %d: %q", 7+i, got[LSN(7+i)])
		}
	}
	lsn, err := l.Append(context.Background(), []byte("version 2"))
	if err != nil || lsn != 12 {
		t.Fatalf("append after version 1 records: %d %v", lsn, err)
	}
	if _, ok := readAll(t, mem, path.Join("/log", segName(12))); !ok {
		t.Fatal("the append did not start a new segment")
	}
	want := map[LSN][]byte{9: old[2], 11: old[4], 12: []byte("version 2")}
	checkRead(t, l, want)
	l.Close()
	l = open(t, mem.Crash(), "/log", 8<<20, 1<<20)
	defer l.Close()
	if got := replayAll(t, l); len(got) != 6 || !bytes.Equal(got[12], want[12]) {
		t.Fatalf("after a restart: %d records", len(got))
	}
	checkRead(t, l, want)

	// Record 2 of 5 damaged, the rest valid.
	broken := vfs.NewMem()
	writeV1Segment(t, broken, "/log", 1, old)
	b, _ := readAll(t, broken, path.Join("/log", segName(1)))
	b[segHeaderSize+recHeaderSizeV1+len(old[0])+recHeaderSizeV1+1] ^= 1
	writeFile(t, broken, path.Join("/log", segName(1)), b)
	if _, err := Open(broken, "/log", Options{Capacity: 8 << 20}); !errkind.IsCorrupt(err) {
		t.Fatalf("version 1 segment with a bad record before valid ones: %v, want corruption", err)
	}
	// An empty version 1 segment becomes a version 2 one.
	empty := vfs.NewMem()
	writeV1Segment(t, empty, "/log", 3, nil)
	l2 := open(t, empty, "/log", 8<<20, 1<<20)
	if lsn, err := l2.Append(context.Background(), []byte("x")); err != nil || lsn != 3 {
		t.Fatalf("append to an empty version 1 log: %d %v", lsn, err)
	}
	l2.Close()
	b, _ = readAll(t, empty, path.Join("/log", segName(3)))
	if b[4] != segVersion {
		t.Fatalf("empty version 1 segment kept version %d", b[4])
	}
}

// Groups of buffered records only are written without a sync: Written
// returns, the records read back from the segment, and Stats counts no
// sync until Flush, which syncs them all at once.
func TestBufferedGroupsTakeNoSync(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, "/log", 16<<20, 4<<20)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Append(ctx, []byte("durable")); err != nil {
		t.Fatal(err)
	}
	before := l.Stats()
	want := map[LSN][]byte{}
	var last LSN
	for i := range 300 {
		lsn, err := l.AppendBuffered(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		want[lsn], last = rec(i), lsn
		if i%50 == 49 {
			if err := l.Written(ctx, lsn); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Written(ctx, last); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Syncs != before.Syncs || st.Unsynced == before.Unsynced {
		t.Fatalf("buffered records only: %d syncs, %d groups written without one", st.Syncs-before.Syncs, st.Unsynced-before.Unsynced)
	}
	if l.NextLSN() != 2 || l.WrittenLSN() != last+1 {
		t.Fatalf("NextLSN %d, WrittenLSN %d; want 2 and %d", l.NextLSN(), l.WrittenLSN(), last+1)
	}
	checkRead(t, l, want) // from the segment, not synced
	if got := replayAll(t, open(t, mem.Crash(), "/log", 16<<20, 4<<20)); len(got) != 1 {
		t.Fatalf("%d records survive a power loss before any sync, want the 1 durable", len(got))
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Syncs != before.Syncs+1 || st.SyncRecords[SyncBuckets-1] == 0 {
		t.Fatalf("Flush: %d syncs, want 1 for all 300 records (%v)", st.Syncs-before.Syncs, st.SyncRecords)
	}
	if got := replayAll(t, open(t, mem.Crash(), "/log", 16<<20, 4<<20)); len(got) != 301 {
		t.Fatalf("%d records survive a power loss after Flush, want 301", len(got))
	}
}

// A sync that fails for lack of space while records written earlier
// without one are not yet durable stops the log: their bytes are no longer
// in memory to be written again. Sync and later appends say so.
func TestNoSpaceOnSyncOfWrittenRecordsIsFailStop(t *testing.T) {
	var full atomic.Bool
	fs := vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, p string) error {
		if full.Load() && op == vfs.OpSync && strings.HasSuffix(p, ".seg") {
			return fmt.Errorf("sync: %w", vfs.ErrNoSpace)
		}
		return nil
	})
	l := open(t, fs, "/log", 8<<20, 1<<20)
	defer l.Close()
	ctx := context.Background()
	lsn, err := l.AppendBuffered(ctx, []byte("written, not synced"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Written(ctx, lsn); err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	if err := l.Sync(ctx, lsn); err == nil || !strings.Contains(err.Error(), "refuses writes") {
		t.Fatalf("Sync whose sync found no space: %v, want the log failed", err)
	}
	if _, err := l.Append(ctx, []byte("after")); err == nil {
		t.Fatal("append after the failed sync succeeded")
	}
	if !errors.Is(l.Sync(ctx, lsn), vfs.ErrNoSpace) {
		t.Fatal("the failure does not say why")
	}
}
