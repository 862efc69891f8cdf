package uploadbuffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/vfs"
)

// quotaFS is a filesystem of quota bytes (the files under dir and filler
// count): a write past it writes what fits and fails with ENOSPC, as a
// full disk does.
type quotaFS struct {
	*vfs.MemFS
	dir, filler string
	quota       int64
	mu          sync.Mutex
}

func (q *quotaFS) used() int64 {
	var n int64
	names, _ := q.MemFS.List(q.dir)
	for _, name := range names {
		if fi, err := q.MemFS.Stat(q.dir + "/" + name); err == nil {
			n += fi.Size()
		}
	}
	if fi, err := q.MemFS.Stat(q.filler); err == nil {
		n += fi.Size()
	}
	return n
}

func (q *quotaFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &quotaFile{File: f, q: q}, nil
}

func (q *quotaFS) Create(name string) (vfs.File, error) { return q.wrap(q.MemFS.Create(name)) }
func (q *quotaFS) OpenReadWrite(name string) (vfs.File, error) {
	return q.wrap(q.MemFS.OpenReadWrite(name))
}

type quotaFile struct {
	vfs.File
	q   *quotaFS
	off int64
}

func (f *quotaFile) WriteAt(p []byte, off int64) (int, error) {
	f.q.mu.Lock()
	defer f.q.mu.Unlock()
	fi, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	room := f.q.quota - f.q.used() + fi.Size() - off // bytes that fit from off
	if int64(len(p)) <= room {
		return f.File.WriteAt(p, off)
	}
	n := 0
	if room > 0 {
		n, _ = f.File.WriteAt(p[:room], off)
	}
	return n, &os.PathError{Op: "write", Path: "quota", Err: syscall.ENOSPC}
}

func (f *quotaFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.off)
	f.off += int64(n)
	return n, err
}

// waitHealth waits until the reporter's state satisfies ok.
func waitHealth(t *testing.T, reg *health.Registry, what string, ok func(health.State) bool) health.State {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		states, _ := reg.Snapshot()
		if ok(states[0]) {
			return states[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never showed %s: %+v", what, states[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func diskFull(s health.State) bool {
	return s.Level == health.Warning && strings.Contains(s.Message, "filesystem full") && strings.Contains(s.Message, "no space left")
}

// fillUntilBlocked appends records until one is held back by the full
// filesystem, and returns the LSNs acknowledged, with their records, and
// the channel the held-back append reports on.
func fillUntilBlocked(t *testing.T, l *Log, reg *health.Registry) (map[LSN][]byte, []byte, chan error) {
	t.Helper()
	acked := map[LSN][]byte{}
	for i := 0; ; i++ {
		r := rec(i)
		done := make(chan error, 1)
		var lsn LSN
		go func() {
			var err error
			lsn, err = l.Append(context.Background(), r)
			done <- err
		}()
		deadline := time.After(2 * time.Minute)
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("append %d on a filling disk was refused: %v", i, err)
				}
				acked[lsn] = r
			case <-deadline:
				t.Fatalf("append %d neither returned nor waited for space", i)
			case <-time.After(10 * time.Millisecond):
				states, _ := reg.Snapshot()
				if !diskFull(states[0]) {
					continue
				}
				return acked, r, done
			}
			break
		}
	}
}

// TestFullFilesystemWaitsThenResumes: on a full filesystem an append waits
// (it is not refused), health says why, later appends wait too, and once
// the operator frees space (a filler file goes) every waiting append lands
// without a restart; a reopened log replays exactly what was acknowledged.
func TestFullFilesystemWaitsThenResumes(t *testing.T) {
	mem := vfs.NewMem()
	q := &quotaFS{MemFS: mem, dir: "/log", filler: "/filler", quota: 96 << 10}
	f, _ := mem.Create("/filler")
	f.Write(make([]byte, 32<<10))
	reg := health.New(nil)
	l, err := Open(q, "/log", Options{Capacity: 4 << 20, SegmentSize: 1 << 20, Health: reg.Register("uploadbuffer")})
	if err != nil {
		t.Fatal(err)
	}
	acked, held, done := fillUntilBlocked(t, l, reg)
	// A later append waits as well, behind the held one.
	later := make(chan error, 1)
	var laterLSN LSN
	go func() {
		var err error
		laterLSN, err = l.Append(context.Background(), []byte("later"))
		later <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("held-back append returned before space came back: %v", err)
	case err := <-later:
		t.Fatalf("later append returned before space came back: %v", err)
	default:
	}
	if err := mem.Remove("/filler"); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan error{done, later} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("append after space returned: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("appends still wait two minutes after space returned")
		}
	}
	waitHealth(t, reg, "ok", func(s health.State) bool { return s.Level == health.OK })
	next := l.NextLSN()
	acked[next-2] = held
	acked[laterLSN] = []byte("later")
	if laterLSN != next-1 {
		t.Fatalf("later append got LSN %d, next is %d", laterLSN, next)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkReplay(t, mem.Crash(), acked)
}

// checkReplay reopens the log on fs and compares its records with want.
func checkReplay(t *testing.T, fs vfs.FS, want map[LSN][]byte) {
	t.Helper()
	l, err := Open(fs, "/log", Options{Capacity: 4 << 20, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := replayAll(t, l)
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, %d acknowledged", len(got), len(want))
	}
	for lsn, r := range want {
		if !bytes.Equal(got[lsn], r) {
			t.Fatalf("record %d: replayed %q, acknowledged %q", lsn, got[lsn], r)
		}
	}
}

// TestTrimFreesAFullFilesystem: the log's one segment fills the disk;
// once uploads trim every record, the segment is emptied, the held-back
// append lands, and after a crash the log holds just it, at the next LSN.
func TestTrimFreesAFullFilesystem(t *testing.T) {
	mem := vfs.NewMem()
	q := &quotaFS{MemFS: mem, dir: "/log", filler: "/filler", quota: 64 << 10}
	reg := health.New(nil)
	l, err := Open(q, "/log", Options{Capacity: 4 << 20, SegmentSize: 1 << 20, Health: reg.Register("uploadbuffer")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, held, done := fillUntilBlocked(t, l, reg)
	next := l.NextLSN()
	// A partial trim frees nothing: the append still waits.
	if err := l.Trim(next - 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("append returned after a trim that freed nothing: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := l.Trim(next); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("append after trim freed the disk: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("append still waits two minutes after trim freed the disk")
	}
	waitHealth(t, reg, "ok", func(s health.State) bool { return s.Level == health.OK })
	if l.NextLSN() != next+1 {
		t.Fatalf("next LSN %d after the held append, want %d", l.NextLSN(), next+1)
	}
	if used := l.Used(); used > 4<<10 {
		t.Fatalf("log uses %d bytes after everything before one record was trimmed", used)
	}
	crashed := mem.Crash()
	checkReplay(t, crashed, map[LSN][]byte{next: held})
	// Appends go on from there after the reopen.
	l2, err := Open(crashed, "/log", Options{Capacity: 4 << 20, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if lsn, err := l2.Append(context.Background(), []byte("after")); err != nil || lsn != next+1 {
		t.Fatalf("append after reopen: LSN %d, %v; want %d", lsn, err, next+1)
	}
}

// TestNoSpaceOnWriteOrSyncIsCutAndRetried: ENOSPC from a write or from a
// sync (delayed allocation) holds the append back; bytes of the failed
// attempt are cut off, so an append whose caller gives up meanwhile never
// appears in the log, even when a shorter record later takes its place
// (without the cut, the records behind it would be replayed).
func TestNoSpaceOnWriteOrSyncIsCutAndRetried(t *testing.T) {
	for _, op := range []vfs.Op{vfs.OpWrite, vfs.OpSync} {
		t.Run(string(op), func(t *testing.T) {
			mem := vfs.NewMem()
			var mu sync.Mutex
			full := false
			fs := vfs.NewErrorFS(mem, func(o vfs.Op, path string) error {
				mu.Lock()
				defer mu.Unlock()
				if full && o == op && strings.HasSuffix(path, ".seg") {
					return fmt.Errorf("%s: %w", o, vfs.ErrNoSpace)
				}
				return nil
			})
			setFull := func(v bool) { mu.Lock(); full = v; mu.Unlock() }
			reg := health.New(nil)
			l, err := Open(fs, "/log", Options{Capacity: 4 << 20, SegmentSize: 1 << 20, Health: reg.Register("uploadbuffer")})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			acked := map[LSN][]byte{}
			for i := range 3 {
				lsn, err := l.Append(context.Background(), rec(i))
				if err != nil {
					t.Fatal(err)
				}
				acked[lsn] = rec(i)
			}
			// The filesystem fills; the caller of the append held back
			// gives up. Its record (LSN 4) carries, where the record
			// after a 5-byte one would start, a valid record with LSN
			// 5: if its bytes stayed in the file, a later short record
			// would be followed by that ghost on replay.
			setFull(true)
			ghost := appendRecord(make([]byte, 5), 5, 4, []byte("ghost, never acknowledged"))
			ctx, cancel := context.WithCancel(context.Background())
			errs := make(chan error, 1)
			go func() { _, err := l.Append(ctx, ghost); errs <- err }()
			waitHealth(t, reg, "disk full", diskFull)
			select {
			case err := <-errs:
				t.Fatalf("append on a full filesystem returned: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			cancel()
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Fatalf("append given up on a full filesystem: %v", err)
			}
			setFull(false)
			lsn, err := l.Append(context.Background(), []byte("short"))
			if err != nil {
				t.Fatalf("append after space returned: %v", err)
			}
			acked[lsn] = []byte("short")
			checkReplay(t, mem.Crash(), acked) // no ghost after it
			waitHealth(t, reg, "ok", func(s health.State) bool { return s.Level == health.OK })
			// Held back, then resumed, in one go.
			setFull(true)
			held := make(chan error, 1)
			go func() {
				lsn, err := l.Append(context.Background(), []byte("held"))
				mu.Lock()
				acked[lsn] = []byte("held")
				mu.Unlock()
				held <- err
			}()
			waitHealth(t, reg, "disk full", diskFull)
			setFull(false)
			if err := <-held; err != nil {
				t.Fatalf("held-back append after space returned: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			checkReplay(t, mem, acked)
		})
	}
}
