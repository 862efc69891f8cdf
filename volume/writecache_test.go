package volume

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/vfs"
)

// The write-back crash test: like TestCrashSIGKILLKeepsAcknowledgedWrites,
// a real writer process on real on-disk state killed with SIGKILL, on a
// volume with its write cache on. A write is acknowledged before it is
// durable; what must survive is every write acknowledged before a Flush
// that returned, and every write made with WriteThrough (FUA) together with
// every write acknowledged before it. The kill comes right after such a
// Flush or WriteThrough returns, while the log's writer is still behind
// the writes acknowledged since: a Flush that does not wait for the log's
// sync loses them.

const wbCrashEnvDir = "GATEWAYD_VOLUME_WBCRASH_DIR"

// The child half: buffered writes at random offsets, every fifth written
// through; every seventh followed by a Flush. It prints "begin", then
// "ack" or "fua" once a write returns, and "flush" and "synced" around
// each Flush.
func init() {
	dir := os.Getenv(wbCrashEnvDir)
	if dir == "" {
		return
	}
	v, seed := crashChildVolume(dir, true)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 11))
	for i := uint64(1); ; i++ {
		n := 1 + r.IntN(32*kib)
		off := r.Int64N(crashVolSize - int64(n))
		id := seed<<32 | i
		fmt.Printf("begin %d %d %d\n", id, off, n)
		write, verb := v.WriteAt, "ack"
		if i%5 == 0 {
			write, verb = v.WriteThrough, "fua"
		}
		childCheck(write(ctx, pattern(id, n), off))
		fmt.Printf("%s %d %d %d\n", verb, id, off, n)
		if i%7 == 0 {
			fmt.Println("flush")
			childCheck(v.Flush(ctx))
			fmt.Println("synced")
		}
	}
}

// wbModel is what a write-back volume must hold after a crash: floor has
// every write that was durable, and each byte may also hold a later write
// (acknowledged but not yet durable, or in flight) that covers it.
type wbModel struct {
	floor   []byte
	later   []*crashWrite // in order; not yet durable
	flushAt int           // writes of later a Flush in progress covers, -1: none
}

// durable moves the first n writes of later into floor.
func (m *wbModel) durable(n int) {
	for _, w := range m.later[:n] {
		copy(m.floor[w.off:], pattern(w.id, w.n))
	}
	m.later = m.later[n:]
}

// check compares the volume's bytes with the model and returns the first
// byte that holds neither the durable value nor a later write's.
func (m *wbModel) check(got []byte) error {
	for i := range got {
		if got[i] == m.floor[i] {
			continue
		}
		ok := false
		for _, w := range m.later {
			if int64(i) >= w.off && int64(i) < w.off+int64(w.n) && pattern(w.id, w.n)[int64(i)-w.off] == got[i] {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("byte %d holds %#x: neither its durable value %#x nor one of the %d writes after it", i, got[i], m.floor[i], len(m.later))
		}
	}
	return nil
}

func TestWriteCacheSIGKILLKeepsSyncedWrites(t *testing.T) {
	cycles := 12
	if testing.Short() {
		cycles = 3
	}
	for _, kind := range []Kind{Cached, Stored} {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			m := &wbModel{floor: make([]byte, crashVolSize)}
			r := rand.New(rand.NewPCG(43, uint64(len(kind))))
			for cycle := 1; cycle <= cycles; cycle++ {
				runWBCrashChild(t, dir, kind, uint64(cycle), 10+r.IntN(100), m)

				st := openCrashState(t, dir)
				v, err := st.m.Get("crash")
				if err != nil {
					t.Fatal(err)
				}
				if !v.Info().WriteCache {
					t.Fatal("the volume's write cache is off after a restart")
				}
				got := readAll(t, v, 64*kib)
				if err := m.check(got); err != nil {
					t.Fatalf("cycle %d: %v", cycle, err)
				}
				// What the volume holds now is durable: the next cycle
				// starts from it.
				copy(m.floor, got)
				m.later = nil
				if err := st.m.Drain(context.Background()); err != nil {
					t.Fatalf("cycle %d: drain after restart: %v", cycle, err)
				}
				st.close()
			}
		})
	}
}

// runWBCrashChild starts a write-back writer and kills it right after a
// Flush or a write through once it has made `after` writes, keeping m up
// to date with what it acknowledged.
func runWBCrashChild(t *testing.T, dir string, kind Kind, seed uint64, after int, m *wbModel) {
	cmd, sc := startCrashChild(t, wbCrashEnvDir+"="+dir, crashEnvKind+"="+string(kind), crashEnvSeed+"="+strconv.FormatUint(seed, 10))
	defer cmd.Wait()
	acks, killed := 0, false
	var cur *crashWrite
	m.flushAt = -1
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && (f[0] == "begin" || f[0] == "ack" || f[0] == "fua"):
			id, _ := strconv.ParseUint(f[1], 10, 64)
			off, _ := strconv.ParseInt(f[2], 10, 64)
			n, _ := strconv.Atoi(f[3])
			if f[0] == "begin" {
				// In flight: it may have landed, in part or whole.
				cur = &crashWrite{id: id, off: off, n: n}
				m.later = append(m.later, cur)
				continue
			}
			cur.settled = true
			cur = nil
			acks++
			if f[0] == "fua" {
				// Durable, with everything acknowledged before it.
				m.durable(len(m.later))
				if acks >= after && !killed {
					_ = cmd.Process.Kill()
					killed = true
				}
			}
		case len(f) == 1 && f[0] == "flush":
			m.flushAt = len(m.later)
		case len(f) == 1 && f[0] == "synced":
			m.durable(m.flushAt)
			m.flushAt = -1
			if acks >= after && !killed {
				_ = cmd.Process.Kill()
				killed = true
			}
		case len(f) > 0 && f[0] == "ready":
		default:
			_ = cmd.Process.Kill()
			t.Fatalf("child: %s", sc.Text())
		}
	}
	if !killed {
		t.Fatalf("child stopped after %d acks, before the kill", acks)
	}
}

// Turning the write cache off returns only once every buffered write in
// flight is acknowledged and durable: a write that found the cache on and
// is still being applied when the cache is turned off must not be
// acknowledged after the flush that SetWriteCache makes. The write is held
// in its apply (the stored volume's disk write); SetWriteCache must wait
// for it.
func TestWriteCacheOffWaitsForBufferedWritesInFlight(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 16*mib, 16*mib)
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	disks := filepath.Join(e.dir, "disks")
	e.fs = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && strings.HasPrefix(path, disks) && armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return nil
	})
	e.start()
	v := e.create("v", Stored, 4*mib, 64*kib)
	if _, err := e.m.SetWriteCache(ctx, "v", true); err != nil {
		t.Fatal(err)
	}
	// Written through: the chunk has a pending write, so the buffered
	// write below changes the disk without a sync of its own.
	if err := v.WriteThrough(ctx, pattern(1, 4096), 0); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	var acked atomic.Bool
	writeDone := make(chan error, 1)
	go func() {
		err := v.WriteAt(ctx, pattern(2, 4096), 4096)
		acked.Store(true)
		writeDone <- err
	}()
	receive(t, "the buffered write to reach the disk", entered)
	type setResult struct {
		err        error
		writeAcked bool
	}
	setDone := make(chan setResult, 1)
	go func() {
		_, err := e.m.SetWriteCache(ctx, "v", false)
		setDone <- setResult{err, acked.Load()}
	}()
	// Without the wait for writes in flight SetWriteCache returns now,
	// with the write still held. With it, it cannot return until the
	// write is released: the bound only decides when to release it, so
	// the test never fails because of it.
	var res setResult
	returned := false
	select {
	case res = <-setDone:
		returned = true
	case <-time.After(3 * time.Second):
	}
	close(release)
	if err := receive(t, "the buffered write", writeDone); err != nil {
		t.Fatal(err)
	}
	if !returned {
		res = receive(t, "SetWriteCache", setDone)
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !res.writeAcked {
		t.Fatal("SetWriteCache(false) returned before a buffered write in flight was acknowledged: that write was not covered by its flush")
	}
}

// receive waits, with a generous deadline, for a value on c.
func receive[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case x := <-c:
		return x
	case <-time.After(2 * time.Minute):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
