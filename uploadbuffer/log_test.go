package uploadbuffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/vfs"
)

func rec(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("record %06d;", i)), 1+i%50) }

func open(t *testing.T, fs vfs.FS, dir string, capacity, segment int64) *Log {
	t.Helper()
	l, err := Open(fs, dir, Options{Capacity: capacity, SegmentSize: segment})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func replayAll(t *testing.T, l *Log) map[LSN][]byte {
	t.Helper()
	got := map[LSN][]byte{}
	var last LSN
	err := l.Replay(func(lsn LSN, b []byte) error {
		if last != 0 && lsn != last+1 {
			return fmt.Errorf("LSN %d after %d", lsn, last)
		}
		last = lsn
		got[lsn] = append([]byte(nil), b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestAppendReplayTrimAcrossSegments(t *testing.T) {
	for name, fs := range map[string]vfs.FS{"os": vfs.Default, "mem": vfs.NewMem()} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "log")
			ctx := context.Background()
			l := open(t, fs, dir, 4<<20, 64<<10)
			lsns := map[LSN]int{}
			for i := 0; i < 2000; i++ {
				lsn, err := l.Append(ctx, rec(i))
				if err != nil {
					t.Fatal(err)
				}
				lsns[lsn] = i
			}
			segs, _ := fs.List(dir)
			if len(segs) < 5 {
				t.Fatalf("only %d files for ~1 MiB of records in 64 KiB segments", len(segs))
			}
			l.Close()

			l = open(t, fs, dir, 4<<20, 64<<10)
			got := replayAll(t, l)
			if len(got) != 2000 {
				t.Fatalf("replayed %d of 2000", len(got))
			}
			for lsn, i := range lsns {
				if !bytes.Equal(got[lsn], rec(i)) {
					t.Fatalf("record %d differs after reopen", i)
				}
			}
			used := l.Used()
			if err := l.Trim(1500); err != nil {
				t.Fatal(err)
			}
			if l.Used() >= used {
				t.Fatalf("trim freed nothing: %d -> %d", used, l.Used())
			}
			next, err := l.Append(ctx, []byte("after trim"))
			if err != nil || next != 2001 {
				t.Fatalf("append after trim: %d %v", next, err)
			}
			l.Close()
			l = open(t, fs, dir, 4<<20, 64<<10)
			defer l.Close()
			got = replayAll(t, l)
			if _, ok := got[1499]; ok {
				t.Fatal("a trimmed record was replayed")
			}
			for lsn := LSN(1500); lsn <= 2000; lsn++ {
				if !bytes.Equal(got[lsn], rec(lsns[lsn])) {
					t.Fatalf("untrimmed record %d lost", lsn)
				}
			}
			if string(got[2001]) != "after trim" || l.NextLSN() != 2002 {
				t.Fatalf("tail after reopen: %q next %d", got[2001], l.NextLSN())
			}
		})
	}
}

func TestGroupCommitSharesSyncs(t *testing.T) {
	l := open(t, vfs.Default, t.TempDir(), 64<<20, 0)
	defer l.Close()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := l.Append(context.Background(), rec(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := l.Stats()
	if st.Appends != 800 || st.Syncs >= st.Appends {
		t.Fatalf("stats %+v: 16 concurrent writers must share syncs", st)
	}
}

// Every acknowledged record survives a power loss; nothing else is promised.
func TestCrashKeepsAcknowledgedRecords(t *testing.T) {
	mem := vfs.NewMem()
	l := open(t, mem, "/log", 8<<20, 128<<10)
	acked := appendConcurrently(t, l, 4, 300, rec)
	crashed := mem.Crash() // the old log is abandoned, as after a power loss
	l2 := open(t, crashed, "/log", 8<<20, 128<<10)
	defer l2.Close()
	got := replayAll(t, l2)
	for lsn, r := range acked {
		if !bytes.Equal(got[lsn], r) {
			t.Fatalf("acknowledged record %d lost or changed in the crash", lsn)
		}
	}
}

// appendConcurrently appends n records from each of writers goroutines,
// record i of writer w being mk(w*1000+i), and returns those acknowledged.
func appendConcurrently(t *testing.T, l *Log, writers, n int, mk func(int) []byte) map[LSN][]byte {
	t.Helper()
	var mu sync.Mutex
	acked := map[LSN][]byte{}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				r := mk(w*1000 + i)
				lsn, err := l.Append(context.Background(), r)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[lsn] = r
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	return acked
}

func lastSegment(t *testing.T, fs vfs.FS, dir string) string {
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for _, n := range names {
		if filepath.Ext(n) == ".seg" {
			last = n
		}
	}
	return filepath.Join(dir, last)
}

func TestTornTailIsCutCorruptMiddleIsAnError(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := open(t, vfs.Default, dir, 4<<20, 64<<10)
	for i := 0; i < 500; i++ {
		if _, err := l.Append(ctx, rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()

	// A torn write: half a record of garbage after the last good one.
	seg := lastSegment(t, vfs.Default, dir)
	f, _ := vfs.Default.OpenReadWrite(seg)
	fi, _ := f.Stat()
	torn := make([]byte, 40)
	copy(torn, []byte{0, 0, 1, 0, 0xde, 0xad})
	f.WriteAt(torn, fi.Size())
	f.Close()
	l = open(t, vfs.Default, dir, 4<<20, 64<<10)
	if got := replayAll(t, l); len(got) != 500 {
		t.Fatalf("after a torn tail: %d records", len(got))
	}
	if lsn, err := l.Append(ctx, []byte("next")); err != nil || lsn != 501 {
		t.Fatalf("append after cutting the tail: %d %v", lsn, err)
	}
	l.Close()

	// A flipped byte inside an early segment is corruption, not a tail.
	names, _ := vfs.Default.List(dir)
	first := filepath.Join(dir, names[0])
	f, _ = vfs.Default.OpenReadWrite(first)
	b := make([]byte, 1)
	f.ReadAt(b, 100)
	b[0] ^= 0xff
	f.WriteAt(b, 100)
	f.Close()
	_, err := Open(vfs.Default, dir, Options{Capacity: 4 << 20, SegmentSize: 64 << 10})
	if !errkind.IsCorrupt(err) {
		t.Fatalf("corrupt early segment: %v", err)
	}
	b[0] ^= 0xff
	f, _ = vfs.Default.OpenReadWrite(first)
	f.WriteAt(b, 100)
	f.Close()

	// The same inside the last segment, with good records after it.
	seg = lastSegment(t, vfs.Default, dir)
	f, _ = vfs.Default.OpenReadWrite(seg)
	f.ReadAt(b, 40)
	b[0] ^= 0xff
	f.WriteAt(b, 40)
	f.Close()
	_, err = Open(vfs.Default, dir, Options{Capacity: 4 << 20, SegmentSize: 64 << 10})
	if !errkind.IsCorrupt(err) {
		t.Fatalf("corrupt record followed by good ones: %v", err)
	}
}

func TestFullLogMakesAppendsWait(t *testing.T) {
	reg := health.New(nil)
	rep := reg.Register("uploadbuffer")
	l, err := Open(vfs.NewMem(), "/log", Options{Capacity: 256 << 10, SegmentSize: 32 << 10, Health: rep})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	payload := make([]byte, 8<<10)
	var last LSN
	for l.Used()+int64(len(payload))+2*recHeaderSize+segHeaderSize <= l.Capacity() {
		if last, err = l.Append(ctx, payload); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := l.Append(ctx, payload); done <- err }()
	for l.Stats().Waits == 0 {
		runtime.Gosched()
		select {
		case err := <-done:
			t.Fatalf("append into a full log returned: %v", err)
		default:
		}
	}
	if _, lvl := reg.Snapshot(); lvl != health.Warning {
		t.Fatalf("health while full: %v", lvl)
	}
	// A cancelled waiter gives up cleanly.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { _, err := l.Append(cctx, payload); cancelled <- err }()
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("append returned before any trim: %v", err)
	default:
	}
	if err := l.Trim(last); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, lvl := reg.Snapshot(); lvl != health.OK {
		t.Fatalf("health after trim: %v", lvl)
	}
	if _, err := l.Append(ctx, make([]byte, l.Capacity())); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
}

func TestSyncFailureIsFailStop(t *testing.T) {
	var failing sync.Mutex
	fail := false
	fs := vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, path string) error {
		failing.Lock()
		defer failing.Unlock()
		if fail && (op == vfs.OpSync || op == vfs.OpWrite) {
			return syscall.EIO
		}
		return nil
	})
	l, err := Open(fs, "/log", Options{Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(context.Background(), []byte("fine")); err != nil {
		t.Fatal(err)
	}
	failing.Lock()
	fail = true
	failing.Unlock()
	if _, err := l.Append(context.Background(), []byte("lost disk")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append on a failing disk: %v", err)
	}
	failing.Lock()
	fail = false
	failing.Unlock()
	if _, err := l.Append(context.Background(), []byte("after")); err == nil || !bytes.Contains([]byte(err.Error()), []byte("restarts")) {
		t.Fatalf("the log must refuse writes after a failed sync: %v", err)
	}
}
