package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
)

const (
	baseDelay = time.Second
	maxDelay  = 8 * time.Second
)

func TestConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store {
		return New(mem.New(t.Name()), Options{})
	})
}

// fixture is a retrying store over a faulty mem store, on a fake clock.
type fixture struct {
	inner *mem.Store
	f     *faulty.Injector
	clk   *clock.Fake
	s     objstore.Store
}

func newFixture(hook func(op faulty.Op, key string) error) *fixture {
	fx := &fixture{inner: mem.New(""), clk: clock.NewFake(time.Unix(1e9, 0))}
	fx.f = faulty.New(fx.inner, faulty.Options{Hook: hook})
	fx.s = New(fx.f.Store(), Options{MaxAttempts: 4, BaseDelay: baseDelay, MaxDelay: maxDelay, Clock: fx.clk})
	return fx
}

// run runs op while firing every backoff wait on the fake clock, and
// returns op's error and how much fake time passed.
func (fx *fixture) run(op func() error) (error, time.Duration) {
	start := fx.clk.Now()
	done := make(chan error, 1)
	go func() { done <- op() }()
	for {
		select {
		case err := <-done:
			return err, fx.clk.Now().Sub(start)
		default:
		}
		if fx.clk.Waiters() > 0 {
			fx.clk.Advance(maxDelay)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// failTimes fails the first n calls of op on key.
func failTimes(op faulty.Op, key string, n int, kind errkind.Kind) func(faulty.Op, string) error {
	left := n
	return func(o faulty.Op, k string) error {
		if o == op && k == key && left > 0 {
			left--
			return errkind.Mark(kind, fmt.Errorf("transient %s failure", o))
		}
		return nil
	}
}

func TestPutRetriesAndRewinds(t *testing.T) {
	fx := newFixture(failTimes(faulty.OpPut, "k", 3, errkind.Retryable))
	data := []byte(strings.Repeat("gatewayd", 1000))
	// The data starts at offset 5 of the reader: rewinding must go back
	// there, not to 0.
	r := bytes.NewReader(append([]byte("head:"), data...))
	r.Seek(5, io.SeekStart)
	err, waited := fx.run(func() error { return fx.s.Put(t.Context(), "k", r, int64(len(data))) })
	if err != nil {
		t.Fatal(err)
	}
	if fx.f.Calls(faulty.OpPut) != 4 {
		t.Fatalf("%d put attempts, want 4", fx.f.Calls(faulty.OpPut))
	}
	got, err := objstore.GetAll(t.Context(), fx.inner, "k")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want the %d bytes from the reader's start position", len(got), err, len(data))
	}
	// Three backoff waits (ceilings 1s, 2s, 4s), each fired by one advance.
	if waited > 3*maxDelay {
		t.Fatalf("fake time advanced %v; three waits should fire within three advances", waited)
	}
}

func TestOnlyRetryableErrorsAreRetried(t *testing.T) {
	for _, want := range []error{
		errkind.Mark(errkind.Permanent, errors.New("access denied")),
		errkind.Mark(errkind.Corrupt, errors.New("bad data")),
		errors.New("unclassified"),
		objstore.NotFound(mem.New(""), "k"),
	} {
		inner := &failingStat{Store: mem.New(""), err: want}
		fx := &fixture{clk: clock.NewFake(time.Unix(1e9, 0))}
		s := New(inner, Options{Clock: fx.clk})
		err, _ := fx.run(func() error { _, err := s.Stat(t.Context(), "k"); return err })
		if !errors.Is(err, want) || inner.calls != 1 {
			t.Fatalf("%v: got %v after %d attempts, want it as is after one", want, err, inner.calls)
		}
	}
}

// failingStat fails every Stat with err.
type failingStat struct {
	objstore.Store
	err   error
	calls int
}

func (f *failingStat) Stat(context.Context, string) (objstore.ObjectInfo, error) {
	f.calls++
	return objstore.ObjectInfo{}, f.err
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	fx := newFixture(failTimes(faulty.OpGet, "k", 100, errkind.Retryable))
	objstore.PutBytes(t.Context(), fx.inner, "k", []byte("v"))
	err, _ := fx.run(func() error { _, err := fx.s.Get(t.Context(), "k", 0, -1); return err })
	if fx.f.Calls(faulty.OpGet) != 4 {
		t.Fatalf("%d attempts, want MaxAttempts=4", fx.f.Calls(faulty.OpGet))
	}
	// Still retryable: a caller further up (the uploader) may try later.
	if !errkind.IsRetryable(err) || !strings.Contains(err.Error(), "giving up after 4 attempts") {
		t.Fatalf("final error %v (%v)", err, errkind.Of(err))
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	fx := newFixture(failTimes(faulty.OpDelete, "k", 100, errkind.Retryable))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- fx.s.Delete(ctx, "k") }()
	// Full jitter may draw a zero wait; keep firing those until the store
	// is parked on a real one, then cancel instead of advancing.
	for fx.clk.Waiters() == 0 {
		select {
		case err := <-done:
			t.Fatalf("delete returned %v before waiting", err)
		default:
			time.Sleep(50 * time.Microsecond)
		}
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || errkind.IsRetryable(err) {
		t.Fatalf("cancelled while waiting: %v (%v), want context.Canceled, not retryable", err, errkind.Of(err))
	}
}

func TestBackoffCeilings(t *testing.T) {
	s := &store{opts: Options{BaseDelay: baseDelay, MaxDelay: maxDelay}}
	for n, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: maxDelay, 10: maxDelay, 100: maxDelay} {
		var longest time.Duration
		for range 2000 {
			d := s.backoff(n)
			if d < 0 || d >= ceiling {
				t.Fatalf("backoff(%d) = %v, outside [0, %v)", n, d, ceiling)
			}
			longest = max(longest, d)
		}
		// Full jitter spreads over the whole range.
		if longest < ceiling*9/10 {
			t.Fatalf("backoff(%d): longest of 2000 draws %v, ceiling %v", n, longest, ceiling)
		}
	}
}

func TestListResumesWithoutRepeats(t *testing.T) {
	failed := 0
	fx := newFixture(func(op faulty.Op, key string) error {
		if op == faulty.OpListEntry && key == "k3" && failed < 2 {
			failed++
			return errors.New("connection reset")
		}
		return nil
	})
	for i := range 6 {
		objstore.PutBytes(t.Context(), fx.inner, fmt.Sprint("k", i), nil)
	}
	var seen []string
	err, _ := fx.run(func() error {
		return fx.s.List(t.Context(), "", func(oi objstore.ObjectInfo) error { seen = append(seen, oi.Key); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "k0,k1,k2,k3,k4,k5" {
		t.Fatalf("fn saw %q", seen)
	}
}

func TestListCallbackErrorIsNotRetried(t *testing.T) {
	fx := newFixture(nil)
	objstore.PutBytes(t.Context(), fx.inner, "a", nil)
	mine := errkind.Mark(errkind.Retryable, errors.New("fn's own transient error"))
	err := fx.s.List(t.Context(), "", func(objstore.ObjectInfo) error { return mine })
	if err != mine {
		t.Fatalf("list returned %v, want fn's error as is", err)
	}
	if fx.f.Calls(faulty.OpList) != 1 {
		t.Fatalf("list ran %d times", fx.f.Calls(faulty.OpList))
	}
}

func TestCapabilitiesFollowInner(t *testing.T) {
	if _, ok := New(mem.New(""), Options{}).(objstore.StorageClasser); !ok {
		t.Fatal("retry(mem) is not a StorageClasser")
	}
	if _, ok := New(struct{ objstore.Store }{mem.New("")}, Options{}).(objstore.Copier); ok {
		t.Fatal("retry(store without Copy) claims to be a Copier")
	}
}

// A listing that fails more often than MaxAttempts, but gets further each
// time, completes.
func TestLongListingWithProgressCompletes(t *testing.T) {
	failAt := map[string]bool{"k1": true, "k3": true, "k5": true, "k7": true, "k9": true, "k11": true}
	fx := newFixture(func(op faulty.Op, key string) error {
		if op == faulty.OpListEntry && failAt[key] {
			delete(failAt, key)
			return errors.New("connection reset")
		}
		return nil
	})
	for i := range 12 {
		objstore.PutBytes(t.Context(), fx.inner, fmt.Sprintf("k%d", i), nil)
	}
	n := 0
	err, _ := fx.run(func() error {
		return fx.s.List(t.Context(), "", func(objstore.ObjectInfo) error { n++; return nil })
	})
	if err != nil || n != 12 {
		t.Fatalf("listed %d of 12 after 6 failures with MaxAttempts 4: %v", n, err)
	}
	// Without progress the budget still runs out.
	fx = newFixture(failTimes(faulty.OpList, "", 100, errkind.Retryable))
	err, _ = fx.run(func() error { return fx.s.List(t.Context(), "", func(objstore.ObjectInfo) error { return nil }) })
	if !errkind.IsRetryable(err) || fx.f.Calls(faulty.OpList) != 4 {
		t.Fatalf("list without progress: %v after %d attempts, want to give up after 4", err, fx.f.Calls(faulty.OpList))
	}
}

// TestGetAllRereadsABrokenBody: a body that breaks mid-transfer is read
// again from its start, so GetAll returns the whole object (a chunk read
// behind a flaky network used to fail with the first cut body).
func TestGetAllRereadsABrokenBody(t *testing.T) {
	fx := newFixture(failTimes(faulty.OpTruncate, "k", 2, errkind.Retryable))
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := objstore.PutBytes(t.Context(), fx.inner, "k", data); err != nil {
		t.Fatal(err)
	}
	var got []byte
	err, _ := fx.run(func() error {
		var err error
		got, err = objstore.GetAll(t.Context(), fx.s, "k")
		return err
	})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetAll over two broken bodies: %d bytes, %v", len(got), err)
	}
	if fx.f.Calls(faulty.OpGet) != 3 {
		t.Fatalf("%d gets, want 3", fx.f.Calls(faulty.OpGet))
	}

	// A body that keeps breaking gives up after MaxAttempts.
	fx = newFixture(failTimes(faulty.OpTruncate, "k", 100, errkind.Retryable))
	objstore.PutBytes(t.Context(), fx.inner, "k", data)
	err, _ = fx.run(func() error { _, err := objstore.GetAll(t.Context(), fx.s, "k"); return err })
	if err == nil || !strings.Contains(err.Error(), "giving up after 4 attempts") {
		t.Fatalf("GetAll of a body that always breaks: %v", err)
	}
}

// TestListResumesAfterLastKey: a listing of many pages over a link that
// breaks on every third page completes with fewer attempts than pages,
// because a retry resumes after the last key received instead of starting
// over (which meets the same broken page again every time). ListDir too.
func TestListResumesAfterLastKey(t *testing.T) {
	const keys, pageSize, everyNth = 200, 10, 3 // 20 pages, MaxAttempts 4
	for _, dir := range []bool{false, true} {
		listed, pages := 0, 0
		fx := newFixture(func(op faulty.Op, key string) error {
			if op != faulty.OpListEntry {
				return nil
			}
			// Each page's first entry stands for fetching the page.
			if listed%pageSize == 0 {
				pages++
				if pages%everyNth == 0 {
					listed = 0 // the page is fetched again, whole
					return errkind.Mark(errkind.Retryable, errors.New("connection reset"))
				}
			}
			listed++
			return nil
		})
		for i := range keys {
			objstore.PutBytes(t.Context(), fx.inner, fmt.Sprintf("d/k%04d", i), nil)
		}
		s := fx.s
		if dir {
			// Hide the faulty store's ListDir (one call, faulted
			// whole), so ListDir folds its List, page by page.
			s = New(struct{ objstore.Store }{fx.f.Store()}, Options{MaxAttempts: 4, BaseDelay: baseDelay, MaxDelay: maxDelay, Clock: fx.clk})
		}
		var seen []string
		err, _ := fx.run(func() error {
			if dir {
				return s.(objstore.DirLister).ListDir(t.Context(), "d/", func(oi objstore.ObjectInfo, _ bool) error {
					seen = append(seen, oi.Key)
					return nil
				})
			}
			return s.List(t.Context(), "d/", func(oi objstore.ObjectInfo) error { seen = append(seen, oi.Key); return nil })
		})
		if err != nil {
			t.Fatalf("list (dir %v) of %d keys, %d per page, one page in %d failing: %v", dir, keys, pageSize, everyNth, err)
		}
		if len(seen) != keys || seen[0] != "d/k0000" || seen[keys-1] != fmt.Sprintf("d/k%04d", keys-1) {
			t.Fatalf("list (dir %v) delivered %d keys, want %d once each", dir, len(seen), keys)
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] <= seen[i-1] {
				t.Fatalf("list (dir %v) delivered %s after %s", dir, seen[i], seen[i-1])
			}
		}
		if calls := fx.f.Calls(faulty.OpList); calls >= 2*keys/pageSize {
			t.Fatalf("list (dir %v) took %d attempts for %d pages: retries read the listing again", dir, calls, keys/pageSize)
		}
	}
}
