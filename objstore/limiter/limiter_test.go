package limiter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
)

func TestConformance(t *testing.T) {
	t.Run("slots", func(t *testing.T) {
		objstoretest.Run(t, func(t *testing.T) objstore.Store {
			return New(mem.New(t.Name()), Options{MaxInFlight: 3}).Store()
		})
	})
	// Limits high enough not to slow the suite, so that every byte still
	// goes through the charging readers.
	t.Run("bandwidth", func(t *testing.T) {
		objstoretest.Run(t, func(t *testing.T) objstore.Store {
			return New(mem.New(t.Name()), Options{UploadBytesPerSec: 10 << 30, DownloadBytesPerSec: 10 << 30}).Store()
		})
	})
}

// gated blocks Stat until released and records the peak concurrency.
type gated struct {
	objstore.Store
	gate      chan struct{}
	now, peak atomic.Int64
	entered   atomic.Int64
}

func (g *gated) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	g.entered.Add(1)
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	<-g.gate
	g.now.Add(-1)
	return objstore.ObjectInfo{Key: key}, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %s", what)
		default:
			time.Sleep(100 * time.Microsecond)
		}
	}
}

func TestMaxInFlight(t *testing.T) {
	g := &gated{Store: mem.New(""), gate: make(chan struct{})}
	l := New(g, Options{MaxInFlight: 2})
	s := l.Store()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { s.Stat(t.Context(), "k") })
	}
	waitFor(t, "2 in flight and 3 waiting", func() bool { return g.entered.Load() == 2 && l.Waiting() == 3 })
	if l.InFlight() != 2 {
		t.Fatalf("in flight: %d", l.InFlight())
	}
	close(g.gate)
	wg.Wait()
	if g.peak.Load() != 2 || g.entered.Load() != 5 {
		t.Fatalf("peak concurrency %d over %d calls, want 2 over 5", g.peak.Load(), g.entered.Load())
	}
	if l.InFlight() != 0 {
		t.Fatalf("slots not returned: %d in flight", l.InFlight())
	}
}

func TestGetHoldsSlotUntilClose(t *testing.T) {
	inner := mem.New("")
	objstore.PutBytes(t.Context(), inner, "k", []byte("data"))
	l := New(inner, Options{MaxInFlight: 1})
	s := l.Store()
	rc, err := s.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Stat(t.Context(), "k"); done <- err }()
	waitFor(t, "the stat to wait for the slot", func() bool { return l.Waiting() == 1 })
	select {
	case err := <-done:
		t.Fatalf("stat ran while the Get's body was open: %v", err)
	default:
	}
	io.ReadAll(rc)
	rc.Close()
	rc.Close() // a second Close must not free a second slot
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l.InFlight() != 0 {
		t.Fatalf("%d slots held after everything finished", l.InFlight())
	}
	// A failed Get gives its slot back at once.
	if _, err := s.Get(t.Context(), "missing", 0, -1); !objstore.IsNotFound(err) {
		t.Fatal(err)
	}
	if l.InFlight() != 0 {
		t.Fatal("failed Get kept its slot")
	}
}

func TestListCallbackMayUseTheStore(t *testing.T) {
	inner := mem.New("")
	for _, k := range []string{"a", "b", "c"} {
		objstore.PutBytes(t.Context(), inner, k, []byte(k))
	}
	s := New(inner, Options{MaxInFlight: 1}).Store()
	var got []byte
	err := s.List(t.Context(), "", func(oi objstore.ObjectInfo) error {
		b, err := objstore.GetAll(t.Context(), s, oi.Key)
		got = append(got, b...)
		return err
	})
	if err != nil || string(got) != "abc" {
		t.Fatalf("list with nested gets: %q, %v", got, err)
	}
}

func TestWaitForSlotHonoursContext(t *testing.T) {
	g := &gated{Store: mem.New(""), gate: make(chan struct{})}
	defer close(g.gate)
	l := New(g, Options{MaxInFlight: 1})
	go l.Store().Stat(t.Context(), "k")
	waitFor(t, "the first stat to hold the slot", func() bool { return g.entered.Load() == 1 })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Store().Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// drive runs op, advancing the fake clock in steps while op waits on it,
// and returns op's error and the fake time that passed.
func drive(clk *clock.Fake, step time.Duration, op func() error) (error, time.Duration) {
	start := clk.Now()
	done := make(chan error, 1)
	go func() { done <- op() }()
	for {
		select {
		case err := <-done:
			return err, clk.Now().Sub(start)
		default:
		}
		if clk.Waiters() > 0 {
			clk.Advance(step)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func TestUploadBandwidth(t *testing.T) {
	for _, name := range []string{"Read", "ReadAt"} {
		t.Run(name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1e9, 0))
			inner := &readAtStore{Store: mem.New(""), useReadAt: name == "ReadAt"}
			const bps = 1 << 20
			s := New(inner, Options{UploadBytesPerSec: bps, Clock: clk}).Store()
			data := bytes.Repeat([]byte("u"), 2<<20)
			err, took := drive(clk, 10*time.Millisecond, func() error { return objstore.PutBytes(t.Context(), s, "k", data) })
			if err != nil {
				t.Fatal(err)
			}
			// 2 MiB at 1 MiB/s; the bucket starts empty.
			want := 2 * time.Second
			if took < want-10*time.Millisecond || took > want+20*time.Millisecond {
				t.Fatalf("upload took %v of fake time, want about %v", took, want)
			}
			got, _ := objstore.GetAll(t.Context(), inner, "k")
			if !bytes.Equal(got, data) {
				t.Fatal("data changed on the way")
			}
		})
	}
}

// readAtStore reads Put bodies with ReadAt when asked, as the S3 store's
// parallel multipart upload does.
type readAtStore struct {
	objstore.Store
	useReadAt bool
}

func (s *readAtStore) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	if !s.useReadAt {
		return s.Store.Put(ctx, key, r, size)
	}
	ra, ok := r.(io.ReaderAt)
	if !ok {
		return errors.New("limiter hid the reader's ReadAt")
	}
	buf := make([]byte, size)
	if _, err := ra.ReadAt(buf, 0); err != nil && err != io.EOF {
		return err
	}
	return objstore.PutBytes(ctx, s.Store, key, buf)
}

func TestDownloadLimitChangesMidTransfer(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	inner := mem.New("")
	data := bytes.Repeat([]byte("d"), 1<<20)
	objstore.PutBytes(t.Context(), inner, "k", data)
	const bps = 100 << 10
	l := New(inner, Options{DownloadBytesPerSec: bps, Clock: clk})
	rc, err := l.Store().Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var read atomic.Int64
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			read.Add(int64(n))
			if err == io.EOF {
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	// One second of fake time at 100 KiB/s: 100 KiB, give or take a chunk.
	for elapsed := time.Duration(0); elapsed < time.Second; {
		if clk.Waiters() > 0 {
			clk.Advance(10 * time.Millisecond)
			elapsed += 10 * time.Millisecond
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
	waitFor(t, "the reader to wait again", func() bool { return clk.Waiters() > 0 })
	if n := read.Load(); n < bps || n > bps+2*int64(burstFor(bps)) {
		t.Fatalf("read %d bytes in one fake second at %d bytes/s", n, bps)
	}
	l.SetDownloadLimit(0)
	// The wait already under way ends; after it nothing waits.
	advances := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if read.Load() != int64(len(data)) || advances > 1 {
				t.Fatalf("read %d bytes with %d more clock advances after lifting the limit", read.Load(), advances)
			}
			return
		default:
		}
		if clk.Waiters() > 0 {
			clk.Advance(time.Second)
			advances++
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func TestCancelDuringBandwidthWait(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	inner := mem.New("")
	s := New(inner, Options{UploadBytesPerSec: 4 << 10, Clock: clk}).Store()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- objstore.PutBytes(ctx, s, "k", make([]byte, 1<<20)) }()
	waitFor(t, "the upload to wait for bandwidth", func() bool { return clk.Waiters() > 0 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled upload succeeded")
	}
	if _, err := inner.Stat(t.Context(), "k"); !objstore.IsNotFound(err) {
		t.Fatalf("cancelled upload left an object: %v", err)
	}
}

func TestCapabilitiesFollowInner(t *testing.T) {
	if _, ok := New(mem.New(""), Options{}).Store().(objstore.Copier); !ok {
		t.Fatal("limiter(mem) is not a Copier")
	}
	if _, ok := New(struct{ objstore.Store }{mem.New("")}, Options{}).Store().(objstore.StorageClasser); ok {
		t.Fatal("limiter(store without classes) claims to be a StorageClasser")
	}
}
