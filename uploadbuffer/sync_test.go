package uploadbuffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/vfs"
)

// long bounds every wait in these tests: far beyond any real delay, so a
// test fails only when something never happens.
const long = 2 * time.Minute

// gatedFS is a MemFS whose segment syncs can be held: while held, the
// writer has written its batch (the bytes are in the file, not durable)
// and waits in the sync.
type gatedFS struct {
	vfs.FS
	mem     *vfs.MemFS
	mu      sync.Mutex
	held    bool
	release chan struct{}
	entered chan struct{} // a sync is waiting behind the gate
}

func newGatedFS() *gatedFS { return gatedOn(vfs.NewMem()) }

// gatedOn is a gatedFS on mem.
func gatedOn(mem *vfs.MemFS) *gatedFS {
	g := &gatedFS{mem: mem, entered: make(chan struct{}, 100)}
	g.FS = vfs.NewErrorFS(g.mem, func(op vfs.Op, path string) error {
		if op != vfs.OpSync || !strings.HasSuffix(path, ".seg") {
			return nil
		}
		g.mu.Lock()
		held, release := g.held, g.release
		g.mu.Unlock()
		if held {
			g.entered <- struct{}{}
			<-release
		}
		return nil
	})
	return g
}

// hold makes the next segment syncs wait until the returned func is called.
func (g *gatedFS) hold() (open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held, g.release = true, make(chan struct{})
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.held = false
			close(g.release)
			g.mu.Unlock()
		})
	}
}

func waitFor[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(long):
		t.Fatalf("gave up waiting: %s", what)
		panic("unreachable")
	}
}

// returns runs f in a goroutine and fails the test if it never returns.
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	waitFor(t, what+" returned", done)
}

func (l *Log) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// appendInSync starts a durable Append of rec, which is alone in the log's
// queue, and waits until the writer is in its sync (held by g); it returns
// the record's LSN.
func appendInSync(t *testing.T, g *gatedFS, l *Log, rec []byte) LSN {
	t.Helper()
	l.mu.Lock()
	lsn := l.assigned
	l.mu.Unlock()
	go func() { l.Append(context.Background(), rec) }()
	waitFor(t, "the append in its sync", g.entered)
	return lsn
}

// waitQueued waits until n appends wait in the queue for the writer.
func waitQueued(t *testing.T, l *Log, n int) {
	t.Helper()
	deadline := time.Now().Add(long)
	for l.queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", l.queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// While the writer syncs, Used, NextLSN and Stats answer, and new appends
// queue and share the next group commit.
func TestAppendsQueueWhileSyncRuns(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 8<<20, 1<<20)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Append(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	release := g.hold()
	defer release()
	first := make(chan error, 1)
	go func() { _, err := l.Append(ctx, []byte("first")); first <- err }()
	waitFor(t, "the writer in its sync", g.entered)

	var used int64
	var next LSN
	returns(t, "Used while a sync runs", func() { used = l.Used() })
	returns(t, "NextLSN while a sync runs", func() { next = l.NextLSN() })
	returns(t, "Stats while a sync runs", func() { l.Stats() })
	if next != 2 {
		t.Fatalf("NextLSN %d while LSN 2 is being synced, want 2", next)
	}
	if used <= segHeaderSize {
		t.Fatalf("Used %d", used)
	}
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) { _, err := l.Append(ctx, rec(i)); errs <- err }(i)
	}
	var buffered LSN
	var err error
	returns(t, "AppendBuffered while a sync runs", func() { buffered, err = l.AppendBuffered(ctx, []byte("buffered")) })
	if err != nil {
		t.Fatal(err)
	}
	waitQueued(t, l, n+1) // all of them wait for the writer, none for the lock
	syncsBefore := l.Stats().Syncs
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(ctx, buffered); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Syncs - syncsBefore; got != 2 {
		t.Fatalf("%d syncs for the held one and the %d appends queued behind it, want 2", got, n+1)
	}
	if want := LSN(2 + n + 2); l.NextLSN() != want {
		t.Fatalf("NextLSN %d after all synced, want %d", l.NextLSN(), want)
	}
}

func TestBufferedAppendsAndSync(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, "/log", 4<<20, 64<<10)
	ctx := context.Background()
	var lsns []LSN
	for i := 0; i < 500; i++ { // across several segments
		lsn, err := l.AppendBuffered(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && lsn != lsns[i-1]+1 {
			t.Fatalf("buffered LSN %d after %d", lsn, lsns[i-1])
		}
		lsns = append(lsns, lsn)
	}
	if err := l.Sync(ctx, lsns[249]); err != nil {
		t.Fatal(err)
	}
	if l.NextLSN() <= lsns[249] {
		t.Fatalf("NextLSN %d after Sync(%d)", l.NextLSN(), lsns[249])
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if l.NextLSN() != lsns[499]+1 {
		t.Fatalf("NextLSN %d after Flush, want %d", l.NextLSN(), lsns[499]+1)
	}
	if err := l.Sync(ctx, lsns[499]+5); err == nil {
		t.Fatal("Sync of an LSN never appended succeeded")
	}
	mixed, err := l.Append(ctx, []byte("synchronous"))
	if err != nil || mixed != lsns[499]+1 {
		t.Fatalf("append after buffered ones: %d %v", mixed, err)
	}
	// Everything synced survives a power loss, in order.
	l2 := open(t, mem.Crash(), "/log", 4<<20, 64<<10)
	defer l2.Close()
	got := replayAll(t, l2)
	for i, lsn := range lsns {
		if !bytes.Equal(got[lsn], rec(i)) {
			t.Fatalf("synced buffered record %d (LSN %d) lost in a crash", i, lsn)
		}
	}
	if string(got[mixed]) != "synchronous" {
		t.Fatal("synchronous record lost")
	}
	l.Close()
	if err := l.Sync(ctx, mixed); err != nil {
		t.Fatalf("Sync of a durable record after Close: %v", err)
	}
}

// A power loss while buffered records are written but not synced drops
// them (and only records after the last sync); the log reopens cleanly
// and goes on at the LSN after the last durable record.
func TestCrashDropsUnsyncedBufferedRecords(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 8<<20, 1<<20)
	ctx := context.Background()
	durable := map[LSN][]byte{}
	for i := 0; i < 20; i++ {
		lsn, err := l.AppendBuffered(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		durable[lsn] = rec(i)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	release := g.hold()
	var unsynced []LSN
	for i := 20; i < 40; i++ {
		lsn, err := l.AppendBuffered(ctx, rec(i))
		if err != nil {
			t.Fatal(err)
		}
		unsynced = append(unsynced, lsn)
	}
	// Written without a sync of their own.
	if err := l.Written(ctx, unsynced[len(unsynced)-1]); err != nil {
		t.Fatal(err)
	}
	if l.NextLSN() != unsynced[0] {
		t.Fatalf("NextLSN %d once buffered records are written, want %d: they were synced", l.NextLSN(), unsynced[0])
	}
	// Sync has the writer sync them; the machine loses power before the
	// sync completes.
	syncErr := make(chan error, 1)
	sctx, cancel := context.WithCancel(ctx)
	go func() { syncErr <- l.Sync(sctx, unsynced[len(unsynced)-1]) }()
	waitFor(t, "the writer in its sync", g.entered)
	crashed := g.mem.Crash()
	cancel()
	if err := <-syncErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync of records held in a sync, cancelled: %v", err)
	}
	release()
	defer l.Close()

	l2 := open(t, crashed, "/log", 8<<20, 1<<20)
	defer l2.Close()
	got := replayAll(t, l2)
	if len(got) != len(durable) {
		t.Fatalf("after the crash %d records, want the %d synced ones", len(got), len(durable))
	}
	for lsn, r := range durable {
		if !bytes.Equal(got[lsn], r) {
			t.Fatalf("synced record %d lost", lsn)
		}
	}
	if l2.NextLSN() != unsynced[0] {
		t.Fatalf("NextLSN %d after the crash, want %d (the first unsynced LSN again)", l2.NextLSN(), unsynced[0])
	}
	lsn, err := l2.Append(ctx, []byte("after the crash"))
	if err != nil || lsn != unsynced[0] {
		t.Fatalf("append after the crash: %d %v", lsn, err)
	}
}

// Concurrent appends of both kinds, syncs, trims and the lock-free
// readers, then a power loss: every record whose Append returned or whose
// Sync returned nil is there, and the log holds a gapless run of LSNs.
func TestCrashKeepsEverySyncedRecordUnderConcurrency(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, "/log", 16<<20, 256<<10)
	ctx := context.Background()
	var mu sync.Mutex
	durable := map[LSN][]byte{}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buffered := w%2 == 1 // odd writers buffer and sync every 10 records
			mine := map[LSN][]byte{}
			for i := 0; i < 200; i++ {
				r := rec(w*1000 + i)
				add := l.Append
				if buffered {
					add = l.AppendBuffered
				}
				lsn, err := add(ctx, r)
				if err != nil {
					t.Error(err)
					return
				}
				mine[lsn] = r
				if buffered && i%10 != 9 {
					continue
				}
				if buffered {
					if err := l.Sync(ctx, lsn); err != nil {
						t.Error(err)
						return
					}
				}
				mu.Lock()
				for k, v := range mine {
					durable[k] = v
				}
				mu.Unlock()
				clear(mine)
			}
		}(w)
	}
	wg.Add(1)
	go func() { // readers and trims beside the appends
		defer wg.Done()
		var last LSN
		for i := 0; i < 200; i++ {
			if l.Used() <= 0 {
				t.Error("Used <= 0")
			}
			if next := l.NextLSN(); next < last {
				t.Errorf("NextLSN went back from %d to %d", last, next)
			} else {
				last = next
			}
			if i%20 == 0 {
				if err := l.Trim(l.NextLSN() / 4); err != nil {
					t.Error(err)
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	crashed := mem.Crash()
	l.Close()
	l2 := open(t, crashed, "/log", 16<<20, 256<<10)
	defer l2.Close()
	var trimmed LSN
	l2.mu.Lock()
	trimmed = l2.trimmed
	l2.mu.Unlock()
	got := replayAll(t, l2) // replayAll checks the LSNs follow each other
	for lsn, r := range durable {
		if lsn < trimmed {
			continue
		}
		if !bytes.Equal(got[lsn], r) {
			t.Fatalf("record %d lost or changed: its append or sync had returned", lsn)
		}
	}
}

// On a full filesystem, a cancelled Append frees its LSN for the records
// queued after it; one queued before a buffered record keeps its LSN and
// is written, its caller told so. Nothing leaves a gap.
func TestCancelledAppendOnFullDiskKeepsLSNsGapless(t *testing.T) {
	for _, withBuffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", withBuffered), func(t *testing.T) {
			var mu sync.Mutex
			full := false
			mem := vfs.NewMem()
			fs := vfs.NewErrorFS(mem, func(op vfs.Op, path string) error {
				mu.Lock()
				defer mu.Unlock()
				if full && op == vfs.OpWrite && strings.HasSuffix(path, ".seg") {
					return syscall.ENOSPC
				}
				return nil
			})
			l := open(t, fs, "/log", 4<<20, 1<<20)
			defer l.Close()
			ctx := context.Background()
			if _, err := l.Append(ctx, []byte("zero")); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			full = true
			mu.Unlock()
			// The first Append meets the full disk; the rest queue behind it.
			cctx, cancel := context.WithCancel(ctx)
			cancelled := make(chan error, 1)
			go func() { _, err := l.Append(cctx, []byte("cancelled")); cancelled <- err }()
			deadline := time.Now().Add(long)
			for {
				l.mu.Lock()
				blocked := l.noSpace != nil
				l.mu.Unlock()
				if blocked {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the writer never met the full disk")
				}
				time.Sleep(time.Millisecond)
			}
			// Queue one more while blocked, bypassing the admission wait
			// as an append that arrived just before the disk filled would.
			l.mu.Lock()
			later := &request{ctx: ctx, rec: []byte("later"), need: recHeaderSize + 5 + segHeaderSize, lsn: l.assigned, buffered: withBuffered, answered: withBuffered, done: make(chan error, 1)}
			l.assigned++
			l.reserved += later.need
			l.queue = append(l.queue, later)
			l.mu.Unlock()
			cancel()
			err := <-cancelled
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled append: %v", err)
			}
			if withBuffered != strings.Contains(err.Error(), "may still be written") {
				t.Fatalf("cancelled append's error %q (buffered record after it: %v)", err, withBuffered)
			}
			mu.Lock()
			full = false
			mu.Unlock()
			l.kickRetry()
			if !withBuffered {
				waitFor(t, "the later append", chanOf(later.done))
			}
			if err := l.Sync(ctx, later.lsn); err != nil {
				t.Fatal(err)
			}
			want := map[LSN]string{1: "zero", 2: "later"}
			if withBuffered {
				want = map[LSN]string{1: "zero", 2: "cancelled", 3: "later"}
			}
			if later.lsn != LSN(len(want)) {
				t.Fatalf("later record has LSN %d, want %d", later.lsn, len(want))
			}
			got := replayAll(t, open(t, mem.Crash(), "/log", 4<<20, 1<<20))
			if len(got) != len(want) {
				t.Fatalf("after a crash: %d records, want %d", len(got), len(want))
			}
			for lsn, s := range want {
				if string(got[lsn]) != s {
					t.Fatalf("LSN %d is %q, want %q", lsn, got[lsn], s)
				}
			}
		})
	}
}

// chanOf turns an append's answer into a channel that closes on success.
func chanOf(done chan error) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		if err := <-done; err == nil {
			close(c)
		}
	}()
	return c
}

func TestSyncReportsFailureAndClose(t *testing.T) {
	var mu sync.Mutex
	fail := false
	fs := vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, path string) error {
		mu.Lock()
		defer mu.Unlock()
		if fail && op == vfs.OpSync {
			return syscall.EIO
		}
		return nil
	})
	l, err := Open(fs, "/log", Options{Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mu.Lock()
	fail = true
	mu.Unlock()
	lsn, err := l.AppendBuffered(ctx, []byte("lost disk"))
	if err != nil {
		t.Fatal(err) // queued: the failure comes with the sync
	}
	if err := l.Sync(ctx, lsn); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync of a record whose sync failed: %v", err)
	}
	if _, err := l.AppendBuffered(ctx, []byte("after")); err == nil {
		t.Fatal("a failed log accepted a buffered append")
	}
	l.Close()

	// Close while records wait for space: Sync says they will not land.
	var full sync.Mutex
	isFull := false
	fs = vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, path string) error {
		full.Lock()
		defer full.Unlock()
		if isFull && op == vfs.OpWrite && strings.HasSuffix(path, ".seg") {
			return syscall.ENOSPC
		}
		return nil
	})
	l, err = Open(fs, "/log", Options{Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	full.Lock()
	isFull = true
	full.Unlock()
	lsn, err = l.AppendBuffered(ctx, []byte("no room"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	if err := l.Sync(sctx, lsn); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync on a full disk with a short deadline: %v", err)
	}
	cancel()
	syncErr := make(chan error, 1)
	go func() { syncErr <- l.Sync(ctx, lsn) }()
	l.Close()
	if err := <-syncErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync of a record dropped by Close: %v", err)
	}
}

// Yield lets the appends waiting when it is called go first: it returns
// once they are durable, after max, or at once when none waits or the log
// is more than half full.
func TestYieldWaitsForWaitingAppends(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 1<<20, 64<<10)
	defer l.Close()
	ctx := context.Background()
	if err := l.Yield(ctx, long); err != nil || l.Stats().Yields != 0 {
		t.Fatalf("Yield with no append waiting: %v, %d yields", err, l.Stats().Yields)
	}
	release := g.hold()
	defer release()
	lsn := appendInSync(t, g, l, []byte("foreground"))
	// max passes while the sync is held: Yield gives up waiting, no error.
	if err := l.Yield(ctx, time.Millisecond); err != nil || l.NextLSN() > lsn {
		t.Fatalf("Yield bounded by max: %v, NextLSN %d", err, l.NextLSN())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Yield(cctx, long); !errors.Is(err, context.Canceled) {
		t.Fatalf("Yield with its context ended: %v", err)
	}
	after := make(chan LSN, 1)
	go func() {
		if err := l.Yield(ctx, long); err != nil {
			t.Error(err)
		}
		after <- l.NextLSN()
	}()
	deadline := time.Now().Add(long)
	for l.Stats().Yields < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Yield never waited")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	select {
	case next := <-after:
		if next <= lsn {
			t.Fatalf("Yield returned before the waiting append was durable (NextLSN %d, append %d)", next, lsn)
		}
	case <-time.After(long):
		t.Fatal("Yield never returned")
	}

	// More than half full: uploads must not wait, they free the space.
	for l.Used() <= l.Capacity()/2 {
		if _, err := l.Append(ctx, make([]byte, 16<<10)); err != nil {
			t.Fatal(err)
		}
	}
	release = g.hold()
	defer release()
	appendInSync(t, g, l, []byte("foreground"))
	yields := l.Stats().Yields
	if err := l.Yield(ctx, long); err != nil || l.Stats().Yields != yields {
		t.Fatalf("Yield on a log more than half full waited: %v", err)
	}
}

// bigRec is a record of a size from 10 bytes to 300 KiB: large ones are
// written from the caller's buffer, not copied.
func bigRec(i int) []byte {
	n := []int{10, 70 << 10, 300, 300 << 10, 64 << 10, 64<<10 - 1}[i%6]
	return bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, n/3+1)[:n]
}

// Large and small records, from concurrent writers, across segments: all
// of them come back after a power loss.
func TestLargeRecordsMixedWithSmallOnes(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, "/log", 64<<20, 1<<20)
	defer l.Close()
	acked := appendConcurrently(t, l, 4, 30, bigRec)
	checkReplay(t, mem.Crash(), acked) // opening reads any log, whatever its size
}

// A large record cut short by a full filesystem leaves no trace: after a
// crash the log holds what was acknowledged, and once space returns the
// held record lands whole.
func TestLargeRecordCutByFullDisk(t *testing.T) {
	mem := vfs.NewMem()
	q := &quotaFS{MemFS: mem, dir: "/log", filler: "/filler", quota: 1 << 20}
	f, _ := mem.Create("/filler")
	f.Write(make([]byte, 256<<10))
	f.Sync()
	reg := health.New(nil)
	l, err := Open(q, "/log", Options{Capacity: 16 << 20, SegmentSize: 4 << 20, Health: reg.Register("uploadbuffer")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acked := map[LSN][]byte{}
	var held []byte
	var done chan error
	for i := 0; held == nil; i++ {
		r := bytes.Repeat([]byte{byte(i)}, 200<<10)
		ch := make(chan error, 1)
		lsnCh := make(chan LSN, 1)
		go func() {
			lsn, err := l.Append(context.Background(), r)
			lsnCh <- lsn
			ch <- err
		}()
		deadline := time.Now().Add(long)
		for held == nil {
			select {
			case lsn := <-lsnCh:
				if err := <-ch; err != nil {
					t.Fatal(err)
				}
				acked[lsn] = r
			default:
				if states, _ := reg.Snapshot(); diskFull(states[0]) {
					held, done = r, ch
					continue
				}
				if time.Now().After(deadline) {
					t.Fatal("append neither returned nor met the full disk")
				}
				time.Sleep(time.Millisecond)
				continue
			}
			break
		}
	}
	if len(acked) < 2 {
		t.Fatalf("only %d records fit before the disk filled", len(acked))
	}
	checkReplay(t, mem.Crash(), acked)
	if err := mem.Remove("/filler"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(long):
		t.Fatal("the held append never landed after space returned")
	}
	acked[l.NextLSN()-1] = held
	checkReplay(t, mem.Crash(), acked)
}

// OnWritten calls its callback once the record and every one before it
// are written, not before (here the writer is held in the sync of a
// durable append ahead of the record), exactly once; at once for a record
// already written or never appended.
func TestOnWritten(t *testing.T) {
	g := newGatedFS()
	l := open(t, g, "/log", 8<<20, 1<<20)
	defer l.Close()
	ctx := context.Background()
	release := g.hold()
	defer release()
	durable := appendInSync(t, g, l, rec(0))
	buffered, err := l.AppendBuffered(ctx, rec(1))
	if err != nil {
		t.Fatal(err)
	}
	var calls sync.Map // LSN -> *atomic.Int32
	called := make(chan LSN, 8)
	on := func(lsn LSN) {
		n, _ := calls.LoadOrStore(lsn, new(atomic.Int32))
		l.OnWritten(lsn, func() {
			n.(*atomic.Int32).Add(1)
			if w := LSN(l.written.Load()); w <= lsn && lsn <= buffered {
				t.Errorf("callback of LSN %d called with the log written up to %d", lsn, w)
			}
			called <- lsn
		})
	}
	on(durable)
	on(buffered)
	if len(called) != 0 {
		t.Fatalf("callback of LSN %d called while the record before it is held in its sync", <-called)
	}
	release()
	got := map[LSN]bool{waitFor(t, "a callback", called): true, waitFor(t, "the other callback", called): true}
	if !got[durable] || !got[buffered] {
		t.Fatalf("callbacks of %v, want %d and %d", got, durable, buffered)
	}
	on(buffered) // written already
	on(buffered + 100)
	if len(called) != 2 {
		t.Fatalf("%d callbacks called at once for a written record and one never appended, want 2", len(called))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	calls.Range(func(k, v any) bool {
		want := int32(1)
		if k.(LSN) == buffered {
			want = 2 // registered twice
		}
		if n := v.(*atomic.Int32).Load(); n != want {
			t.Errorf("callback of LSN %d called %d times, want %d", k, n, want)
		}
		return true
	})
}
