package uploadbuffer

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// checkRead reads every record of want back whole and in three pieces.
func checkRead(t *testing.T, l *Log, want map[LSN][]byte) {
	t.Helper()
	for lsn, r := range want {
		got := make([]byte, len(r))
		if err := l.ReadRecord(lsn, got, 0); err != nil {
			t.Fatalf("read record %d: %v", lsn, err)
		}
		if !bytes.Equal(got, r) {
			t.Fatalf("record %d read back as %q, want %q", lsn, got, r)
		}
		a, b := len(r)/3, 2*len(r)/3
		for _, piece := range [][2]int{{0, a}, {a, b}, {b, len(r)}} {
			got := make([]byte, piece[1]-piece[0])
			if err := l.ReadRecord(lsn, got, int64(piece[0])); err != nil {
				t.Fatalf("read record %d [%d, %d): %v", lsn, piece[0], piece[1], err)
			}
			if !bytes.Equal(got, r[piece[0]:piece[1]]) {
				t.Fatalf("record %d [%d, %d) read back wrong", lsn, piece[0], piece[1])
			}
		}
	}
}

// checkCopy copies every record of want, whole and in three pieces, into
// a file of the operating system's with CopyRecord and reads it back.
// copies says whether the log's files can be copied from (else each copy
// says it did not).
func checkCopy(t *testing.T, l *Log, want map[LSN][]byte, copies bool) {
	t.Helper()
	f, err := vfs.Default.Create(filepath.Join(t.TempDir(), "copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const at = 4099 // anywhere in the file
	for lsn, r := range want {
		a, b := len(r)/3, 2*len(r)/3
		for _, piece := range [][2]int{{0, len(r)}, {0, a}, {a, b}, {b, len(r)}} {
			n := piece[1] - piece[0]
			ok, err := l.CopyRecord(lsn, f, at, int64(piece[0]), int64(n))
			if err != nil || ok != copies {
				t.Fatalf("copy record %d [%d, %d): %v, %v; want %v", lsn, piece[0], piece[1], ok, err, copies)
			}
			if !copies {
				continue
			}
			got := make([]byte, n)
			if _, err := f.ReadAt(got, at); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, r[piece[0]:piece[1]]) {
				t.Fatalf("record %d [%d, %d) copied wrong", lsn, piece[0], piece[1])
			}
		}
	}
	if _, err := l.CopyRecord(1, f, 0, 0, int64(len(want[1])+1)); err == nil || errors.Is(err, ErrNoRecord) {
		t.Fatalf("copy past the end of a record: %v, want a range error", err)
	}
}

// Records read back as written, across segments (small ones here, so
// group commits roll over in the middle), after a power loss and restart
// (before and after Replay), and a trimmed record or one never appended
// is ErrNoRecord.
func TestReadRecordAcrossSegmentsAndRestart(t *testing.T) {
	for name, fs := range map[string]vfs.FS{"os": vfs.Default, "mem": vfs.NewMem()} {
		t.Run(name, func(t *testing.T) {
			dir := "/log"
			if name == "os" {
				dir = t.TempDir()
			}
			l := open(t, fs, dir, 8<<20, 16<<10)
			acked := appendConcurrently(t, l, 4, 200, rec)
			if n := len(l.segs); n < 5 {
				t.Fatalf("%d segments: the test wants records across many", n)
			}
			checkRead(t, l, acked)
			checkCopy(t, l, acked, name == "os")
			if _, err := l.CopyRecord(LSN(len(acked)+1), mustCreate(t), 0, 0, 1); !errors.Is(err, ErrNoRecord) {
				t.Fatalf("copy of a record never appended: %v, want ErrNoRecord", err)
			}
			if err := l.ReadRecord(LSN(len(acked)+1), make([]byte, 1), 0); !errors.Is(err, ErrNoRecord) {
				t.Fatalf("read of a record never appended: %v, want ErrNoRecord", err)
			}
			if err := l.ReadRecord(1, make([]byte, len(acked[1])+1), 0); err == nil || errors.Is(err, ErrNoRecord) {
				t.Fatalf("read past the end of a record: %v, want a range error", err)
			}

			if mem, ok := fs.(*vfs.MemFS); ok {
				fs = mem.Crash() // the old log is abandoned, as after a power loss
			} else {
				l.Close()
			}
			l2 := open(t, fs, dir, 8<<20, 16<<10)
			defer l2.Close()
			checkRead(t, l2, acked)
			replayAll(t, l2)
			checkRead(t, l2, acked)
			checkCopy(t, l2, acked, name == "os")

			// Trim half: the segments before go, what is left still reads.
			half := LSN(len(acked) / 2)
			if err := l2.Trim(half); err != nil {
				t.Fatal(err)
			}
			left := map[LSN][]byte{}
			for lsn, r := range acked {
				if lsn >= half {
					left[lsn] = r
				} else if err := l2.ReadRecord(lsn, make([]byte, 1), 0); !errors.Is(err, ErrNoRecord) {
					t.Fatalf("read of trimmed record %d: %v, want ErrNoRecord", lsn, err)
				}
			}
			checkRead(t, l2, left)
			// New records after the restart read back too.
			more := appendConcurrently(t, l2, 2, 50, rec)
			checkRead(t, l2, more)
		})
	}
}

// A record not yet synced reads back from memory: buffered records and
// appends waiting for the group commit, queued or in the batch being
// written; once synced, from the segment. After a power loss the buffered
// records never synced are gone: ErrNoRecord, not stale bytes.
func TestReadRecordNotYetSynced(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 8<<20, 1<<20)
	ctx := context.Background()
	if _, err := l.Append(ctx, []byte("synced first")); err != nil {
		t.Fatal(err)
	}
	release := g.hold()
	defer release()
	want := map[LSN][]byte{1: []byte("synced first")}
	inBatch := appendInSync(t, g, l, rec(1))
	want[inBatch] = rec(1)
	// The writer waits in the sync of the batch with inBatch: these queue.
	var queued []LSN
	for i := 2; i < 6; i++ {
		lsn, err := l.AppendBuffered(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		want[lsn] = rec(i)
		queued = append(queued, lsn)
	}
	waited := make(chan LSN, 1)
	go func() {
		lsn, err := l.Append(ctx, rec(6))
		if err != nil {
			t.Error(err)
		}
		waited <- lsn
	}()
	waitQueued(t, l, len(queued)+1)
	if l.NextLSN() > inBatch {
		t.Fatalf("record %d synced while the sync is held", inBatch)
	}
	checkRead(t, l, want)
	// Not written yet: no file to copy from, whatever the log's files.
	for _, lsn := range append(queued, inBatch) {
		if ok, err := l.CopyRecord(lsn, mustCreate(t), 0, 0, 1); ok || err != nil {
			t.Fatalf("copy of record %d, not written yet: %v, %v; want false, no error", lsn, ok, err)
		}
	}
	crashed := g.mem.Crash() // before the held sync: only LSN 1 is durable
	release()
	want[<-waited] = rec(6)
	checkRead(t, l, want) // synced now, read from the segment
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := open(t, crashed, "/log", 8<<20, 1<<20)
	defer l2.Close()
	checkRead(t, l2, map[LSN][]byte{1: want[1]})
	for _, lsn := range append(queued, inBatch) {
		if err := l2.ReadRecord(lsn, make([]byte, 1), 0); !errors.Is(err, ErrNoRecord) {
			t.Fatalf("read of record %d, lost in the crash: %v, want ErrNoRecord", lsn, err)
		}
	}
}

// Reads race with appends and trims that remove segments: a read returns
// the record's bytes, or, only for a record the trim point has passed, an
// error; never other bytes.
func TestReadRecordRacesTrim(t *testing.T) {
	l := open(t, vfs.NewMem(), "/log", 8<<20, 8<<10)
	defer l.Close()
	ctx := context.Background()
	var mu sync.Mutex
	recs := map[LSN][]byte{}
	var last LSN
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // the appender and trimmer
		defer wg.Done()
		defer close(stop)
		for i := 0; i < 3000; i++ {
			r := rec(i)
			lsn, err := l.Append(ctx, r)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			recs[lsn], last = r, lsn
			mu.Unlock()
			if i%7 == 0 && lsn > 40 {
				if err := l.Trim(lsn - 40); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	reads, misses := 0, 0
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				if last == 0 {
					mu.Unlock()
					continue
				}
				lsn := LSN(rng.Int63n(int64(last))) + 1
				want := recs[lsn]
				mu.Unlock()
				got := make([]byte, len(want))
				err := l.ReadRecord(lsn, got, 0)
				l.mu.Lock()
				trimmed := l.trimmed
				l.mu.Unlock()
				mu.Lock()
				if err != nil {
					misses++
					if lsn >= trimmed {
						t.Errorf("read of record %d failed above the trim point %d: %v", lsn, trimmed, err)
					}
				} else {
					reads++
					if !bytes.Equal(got, want) {
						t.Errorf("record %d read back wrong during trims", lsn)
					}
				}
				mu.Unlock()
			}
		}(int64(r))
	}
	wg.Wait()
	if reads == 0 || misses == 0 {
		t.Fatalf("%d reads, %d of trimmed records: the race was not exercised", reads, misses)
	}
	l.mu.Lock()
	segs := len(l.segs)
	l.mu.Unlock()
	if segs > 10 {
		t.Fatalf("%d segments left: trims removed too few for the race to matter", segs)
	}
}

// A buffered record the log will never write (its sync failed: the log is
// fail-stop) is not read back from its caller's buffer, which the caller
// may reuse once told; written records still read.
func TestReadRecordOfAFailedWrite(t *testing.T) {
	var failing sync.Mutex
	fail := false
	fs := vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, path string) error {
		failing.Lock()
		defer failing.Unlock()
		if fail && op == vfs.OpSync {
			return syscall.EIO
		}
		return nil
	})
	l := open(t, fs, "/log", 1<<20, 0)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Append(ctx, []byte("fine")); err != nil {
		t.Fatal(err)
	}
	failing.Lock()
	fail = true
	failing.Unlock()
	lsn, err := l.AppendBuffered(ctx, []byte("lost"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(ctx, lsn); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync on a failing disk: %v", err)
	}
	if err := l.ReadRecord(lsn, make([]byte, 4), 0); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("read of a record the log will not write: %v, want ErrNoRecord", err)
	}
	checkRead(t, l, map[LSN][]byte{1: []byte("fine")})
}

// mustCreate is a new file of the operating system's, closed at the end of
// the test.
func mustCreate(t *testing.T) vfs.File {
	t.Helper()
	f, err := vfs.Default.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
