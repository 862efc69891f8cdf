// Package metatest is the conformance suite every meta.Store must pass.
package metatest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
)

// Run runs the suite; open returns a new, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) meta.Store) {
	ctx := context.Background()
	newStore := func(t *testing.T) meta.Store {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		return s
	}
	set := func(t *testing.T, s meta.Store, kv ...string) {
		t.Helper()
		err := s.Update(ctx, func(tx meta.Txn) error {
			for i := 0; i < len(kv); i += 2 {
				if err := tx.Set([]byte(kv[i]), []byte(kv[i+1])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	get := func(t *testing.T, s meta.Store, key string) (string, error) {
		t.Helper()
		var v []byte
		err := s.View(ctx, func(tx meta.Txn) error {
			var err error
			v, err = tx.Get([]byte(key))
			return err
		})
		return string(v), err
	}

	t.Run("SetGetDelete", func(t *testing.T) {
		s := newStore(t)
		if _, err := get(t, s, "a"); !errors.Is(err, meta.ErrNotFound) || !errkind.IsNotFound(err) {
			t.Fatalf("missing key: %v", err)
		}
		set(t, s, "a", "1", "b", "")
		if v, err := get(t, s, "a"); err != nil || v != "1" {
			t.Fatalf("get a = %q, %v", v, err)
		}
		if v, err := get(t, s, "b"); err != nil || v != "" {
			t.Fatalf("empty value = %q, %v", v, err)
		}
		set(t, s, "a", "2")
		if v, _ := get(t, s, "a"); v != "2" {
			t.Fatalf("overwrite: %q", v)
		}
		if err := s.Update(ctx, func(tx meta.Txn) error {
			if err := tx.Delete([]byte("a")); err != nil {
				return err
			}
			return tx.Delete([]byte("never-there"))
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := get(t, s, "a"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("deleted key: %v", err)
		}
		if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set(nil, []byte("x")) }); err == nil {
			t.Fatal("empty key accepted")
		}
	})

	t.Run("IterateOrderAndPrefix", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "vol/b", "2", "vol/a", "1", "vom", "x", "vol/c/d", "3", "vo", "y", "vol/", "0")
		var got []string
		err := s.View(ctx, func(tx meta.Txn) error {
			return tx.Iterate([]byte("vol/"), func(k, v []byte) error {
				got = append(got, string(k)+"="+string(v))
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint([]string{"vol/=0", "vol/a=1", "vol/b=2", "vol/c/d=3"})
		if fmt.Sprint(got) != want {
			t.Fatalf("iterate = %v, want %v", got, want)
		}
		stop := errors.New("stop")
		n := 0
		err = s.View(ctx, func(tx meta.Txn) error {
			return tx.Iterate(nil, func(k, v []byte) error {
				n++
				if n == 2 {
					return stop
				}
				return nil
			})
		})
		if !errors.Is(err, stop) || n != 2 {
			t.Fatalf("early stop: n=%d err=%v", n, err)
		}
	})

	t.Run("ReadYourWritesAndIterateSeesThem", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "k/1", "old", "k/2", "gone")
		err := s.Update(ctx, func(tx meta.Txn) error {
			if err := tx.Set([]byte("k/1"), []byte("new")); err != nil {
				return err
			}
			if err := tx.Set([]byte("k/3"), []byte("added")); err != nil {
				return err
			}
			if err := tx.Delete([]byte("k/2")); err != nil {
				return err
			}
			if v, err := tx.Get([]byte("k/1")); err != nil || string(v) != "new" {
				return fmt.Errorf("read own write: %q %v", v, err)
			}
			if _, err := tx.Get([]byte("k/2")); !errors.Is(err, meta.ErrNotFound) {
				return fmt.Errorf("own delete still visible: %v", err)
			}
			var keys []string
			if err := tx.Iterate([]byte("k/"), func(k, v []byte) error {
				keys = append(keys, string(k)+"="+string(v))
				return nil
			}); err != nil {
				return err
			}
			if fmt.Sprint(keys) != "[k/1=new k/3=added]" {
				return fmt.Errorf("iterate in txn = %v", keys)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("FailedUpdateRollsBack", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "a", "1")
		boom := errors.New("boom")
		err := s.Update(ctx, func(tx meta.Txn) error {
			_ = tx.Set([]byte("a"), []byte("changed"))
			_ = tx.Set([]byte("b"), []byte("new"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update returned %v", err)
		}
		if v, _ := get(t, s, "a"); v != "1" {
			t.Fatalf("a = %q after rollback", v)
		}
		if _, err := get(t, s, "b"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("b after rollback: %v", err)
		}
	})

	t.Run("SnapshotIsolation", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "a", "before")
		inView, release := make(chan struct{}), make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- s.View(ctx, func(tx meta.Txn) error {
				close(inView)
				<-release
				v, err := tx.Get([]byte("a"))
				if err != nil || string(v) != "before" {
					return fmt.Errorf("view saw %q, %v; want the value at its start", v, err)
				}
				if _, err := tx.Get([]byte("new")); !errors.Is(err, meta.ErrNotFound) {
					return fmt.Errorf("view saw a key committed after it began: %v", err)
				}
				return nil
			})
		}()
		<-inView
		set(t, s, "a", "after", "new", "x")
		close(release)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if v, _ := get(t, s, "a"); v != "after" {
			t.Fatalf("after commit a = %q", v)
		}
	})

	t.Run("ValuesBelongToCaller", func(t *testing.T) {
		s := newStore(t)
		val := []byte("original")
		key := []byte("k")
		if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set(key, val) }); err != nil {
			t.Fatal(err)
		}
		copy(val, "XXXXXXXX") // the caller reuses its buffers
		key[0] = 'z'
		var kept []byte
		_ = s.View(ctx, func(tx meta.Txn) error {
			kept, _ = tx.Get([]byte("k"))
			return nil
		})
		set(t, s, "k", "overwritten")
		if string(kept) != "original" {
			t.Fatalf("value kept after txn = %q", kept)
		}
		kept[0] = 'Q'
		if v, _ := get(t, s, "k"); v != "overwritten" {
			t.Fatalf("changing a returned slice changed the store: %q", v)
		}
	})

	t.Run("WriteInViewRefused", func(t *testing.T) {
		s := newStore(t)
		err := s.View(ctx, func(tx meta.Txn) error { return tx.Set([]byte("a"), []byte("b")) })
		if !errors.Is(err, meta.ErrReadOnly) {
			t.Fatalf("set in view: %v", err)
		}
		err = s.View(ctx, func(tx meta.Txn) error { return tx.Delete([]byte("a")) })
		if !errors.Is(err, meta.ErrReadOnly) {
			t.Fatalf("delete in view: %v", err)
		}
	})

	t.Run("ConcurrentIncrementsAreExact", func(t *testing.T) {
		s := newStore(t)
		const workers, each = 8, 50
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					err := s.Update(ctx, func(tx meta.Txn) error {
						n := 0
						v, err := tx.Get([]byte("counter"))
						if err == nil {
							n, _ = strconv.Atoi(string(v))
						} else if !errors.Is(err, meta.ErrNotFound) {
							return err
						}
						return tx.Set([]byte("counter"), []byte(strconv.Itoa(n+1)))
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if v, _ := get(t, s, "counter"); v != strconv.Itoa(workers*each) {
			t.Fatalf("counter = %s, want %d: lost updates", v, workers*each)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ran := false
		if err := s.Update(cctx, func(tx meta.Txn) error { ran = true; return tx.Set([]byte("a"), []byte("b")) }); !errors.Is(err, context.Canceled) {
			t.Fatalf("update with cancelled ctx: %v", err)
		}
		if err := s.View(cctx, func(meta.Txn) error { ran = true; return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("view with cancelled ctx: %v", err)
		}
		if ran {
			t.Fatal("fn ran under a cancelled context")
		}
	})

	t.Run("Closed", func(t *testing.T) {
		s := open(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := s.View(ctx, func(meta.Txn) error { return nil }); !errors.Is(err, meta.ErrClosed) {
			t.Fatalf("view after close: %v", err)
		}
	})
}
