package volume

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// outageEnv is an env whose object store fails every call while down is set.
func outageEnv(t *testing.T, logCap, cacheCap int64) (*env, *atomic.Bool, *faulty.Injector) {
	e := newEnv(t, logCap, cacheCap)
	down := &atomic.Bool{}
	inj := faulty.New(mem.New("mem"), faulty.Options{Hook: func(op faulty.Op, key string) error {
		if down.Load() {
			return errors.New("store unreachable")
		}
		return nil
	}})
	e.store = inj.Store()
	e.opts = func(o *Options) { o.UploadInterval = 5 * time.Millisecond; o.SettleTime = time.Millisecond }
	return e, down, inj
}

// waitFor polls cond; the bound only stops a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStoreOutageFillsBufferThenWritesWait(t *testing.T) {
	ctx := context.Background()
	e, down, inj := outageEnv(t, 4*mib, 64*mib)
	e.start()
	v := e.create("v", Cached, 16*mib, 64*kib)
	down.Store(true)

	shadow := make([]byte, v.Size())
	piece := int64(256 * kib)
	acked := atomic.Int64{}
	done := make(chan error, 1)
	go func() {
		for off := int64(0); off < v.Size(); off += piece {
			p := pattern(uint64(off), int(piece))
			if err := v.WriteAt(ctx, p, off); err != nil {
				done <- err
				return
			}
			copy(shadow[off:], p)
			acked.Store(off + piece)
		}
		done <- nil
	}()

	// The writer fills the 4 MiB buffer, then waits: backpressure, not an error.
	waitFor(t, "the log to make writers wait", func() bool { return e.log.Stats().Waits > 0 })
	select {
	case err := <-done:
		t.Fatalf("16 MiB of writes finished into a 4 MiB buffer during an outage: %v", err)
	default:
	}
	if inj.Injected(faulty.OpPut) == 0 {
		t.Fatal("the uploader never tried the store")
	}
	// What was acknowledged reads back while the store is down.
	n := acked.Load()
	got := make([]byte, n)
	if err := v.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "during outage", got, shadow[:n])

	down.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	e.restart()
	mustEqual(t, "after outage and restart", readAll(t, e.vol("v"), 64*kib), shadow)
}

func TestCacheFullOfDirtyDataWritesWaitReadsWork(t *testing.T) {
	ctx := context.Background()
	e, down, _ := outageEnv(t, 64*mib, 1*mib) // the cache holds 16 chunks of 64 KiB
	e.start()
	v := e.create("v", Cached, 4*mib, 64*kib)
	down.Store(true)
	for i := int64(0); i < 16; i++ {
		if err := v.WriteAt(ctx, pattern(uint64(i), 64*kib), i*64*kib); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- v.WriteAt(ctx, pattern(99, 64*kib), 20*64*kib) }()
	waitFor(t, "the writer to wait for cache room", func() bool { return e.cache.Stats().Waits > 0 })
	select {
	case err := <-done:
		t.Fatalf("a 17th dirty chunk fit in a cache of 16: %v", err)
	default:
	}
	got := make([]byte, 64*kib)
	if err := v.ReadAt(ctx, got, 3*64*kib); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "read while the cache is full", got, pattern(3, 64*kib))

	down.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := v.ReadAt(ctx, got, 20*64*kib); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "the waiting write", got, pattern(99, 64*kib))
}

func TestCachedVolumeLargerThanCache(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64*mib, 1*mib)
	e.opts = func(o *Options) { o.UploadInterval = 2 * time.Millisecond; o.SettleTime = time.Millisecond }
	e.start()
	v := e.create("big", Cached, 8*mib, 64*kib) // 8x the cache
	shadow := make([]byte, v.Size())
	for off := int64(0); off < v.Size(); off += 96 * kib { // unaligned to chunks
		n := min(96*kib, v.Size()-off)
		p := pattern(uint64(off), int(n))
		if err := v.WriteAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
		copy(shadow[off:], p)
	}
	mustEqual(t, "read back while evicting", readAll(t, v, 80*kib), shadow)
	st := e.cache.Stats()
	if st.Evictions == 0 || st.Used > 1*mib {
		t.Fatalf("cache stats %+v: expected evictions within 1 MiB", st)
	}
}

func TestConcurrentMissesFetchOnce(t *testing.T) {
	ctx := context.Background()
	e, _, inj := outageEnv(t, 64*mib, 64*mib)
	e.start()
	v := e.create("v", Cached, 1*mib, 64*kib)
	want := pattern(7, 64*kib)
	if err := v.WriteAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	e.restart() // empty cache
	v = e.vol("v")
	before := inj.Calls(faulty.OpGet)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			got := make([]byte, 4*kib)
			err := v.ReadAt(ctx, got, 8*kib)
			if err == nil && string(got) != string(want[8*kib:12*kib]) {
				err = errors.New("wrong data")
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := inj.Calls(faulty.OpGet) - before; n != 1 {
		t.Fatalf("8 concurrent misses of one chunk fetched it %d times", n)
	}
}
