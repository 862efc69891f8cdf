// Package metatest is the conformance suite every meta.Store must pass.
package metatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
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

		// Order is bytewise, not by UTF-8 or signed bytes.
		set(t, s, "bin/\xff", "ff", "bin/\x00", "00", "bin/\x7f", "7f", "bin/\x80", "80", "bin", "none")
		got = nil
		if err := s.View(ctx, func(tx meta.Txn) error {
			return tx.Iterate([]byte("bin/"), func(k, v []byte) error {
				got = append(got, string(v))
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != "[00 7f 80 ff]" {
			t.Fatalf("bytewise order: %v", got)
		}

		all := 0
		if err := s.View(ctx, func(tx meta.Txn) error {
			return tx.Iterate(nil, func(k, v []byte) error { all++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		if all != 11 {
			t.Fatalf("iterate with no prefix saw %d keys, want 11", all)
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
		set(t, s, "a", "before", "d", "doomed")
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
				var seen []string
				if err := tx.Iterate(nil, func(k, v []byte) error {
					seen = append(seen, string(k)+"="+string(v))
					return nil
				}); err != nil {
					return err
				}
				if fmt.Sprint(seen) != "[a=before d=doomed]" {
					return fmt.Errorf("view iterated %v, want the store at its start", seen)
				}
				return nil
			})
		}()
		<-inView
		// Several commits while the view is open: overwrite, add, delete,
		// delete and re-create.
		set(t, s, "a", "after", "new", "x")
		set(t, s, "a", "later")
		if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Delete([]byte("d")) }); err != nil {
			t.Fatal(err)
		}
		set(t, s, "d", "reborn")
		close(release)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if v, _ := get(t, s, "a"); v != "later" {
			t.Fatalf("after commits a = %q", v)
		}
		if v, _ := get(t, s, "d"); v != "reborn" {
			t.Fatalf("after commits d = %q", v)
		}
	})

	t.Run("SetThenDeleteInOneTxn", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "b", "old")
		if err := s.Update(ctx, func(tx meta.Txn) error {
			if err := tx.Set([]byte("a"), []byte("1")); err != nil {
				return err
			}
			if err := tx.Delete([]byte("a")); err != nil {
				return err
			}
			if err := tx.Delete([]byte("b")); err != nil {
				return err
			}
			return tx.Set([]byte("b"), []byte("new"))
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := get(t, s, "a"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("set then delete: %v", err)
		}
		if v, _ := get(t, s, "b"); v != "new" {
			t.Fatalf("delete then set: %q", v)
		}
	})

	t.Run("SnapshotsStayConsistentUnderConcurrentTransfers", func(t *testing.T) {
		// Writers move units between accounts; every reader's snapshot
		// must show the same total.
		s := newStore(t)
		const accounts, start = 4, 100
		for i := 0; i < accounts; i++ {
			set(t, s, fmt.Sprintf("acct/%d", i), strconv.Itoa(start))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					from, to := fmt.Sprintf("acct/%d", (w+i)%accounts), fmt.Sprintf("acct/%d", (w+i+1)%accounts)
					err := s.Update(ctx, func(tx meta.Txn) error {
						a, err := getInt(tx, from)
						if err != nil {
							return err
						}
						b, err := getInt(tx, to)
						if err != nil {
							return err
						}
						if err := tx.Set([]byte(from), []byte(strconv.Itoa(a-1))); err != nil {
							return err
						}
						return tx.Set([]byte(to), []byte(strconv.Itoa(b+1)))
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					sum := 0
					err := s.View(ctx, func(tx meta.Txn) error {
						return tx.Iterate([]byte("acct/"), func(k, v []byte) error {
							n, err := strconv.Atoi(string(v))
							sum += n
							return err
						})
					})
					if err == nil && sum != accounts*start {
						err = fmt.Errorf("snapshot total %d, want %d", sum, accounts*start)
					}
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

		set(t, s, "it/1", "one", "it/2", "two")
		var keys, vals [][]byte
		_ = s.View(ctx, func(tx meta.Txn) error {
			return tx.Iterate([]byte("it/"), func(k, v []byte) error {
				keys, vals = append(keys, k), append(vals, v)
				return nil
			})
		})
		set(t, s, "it/1", "ONE", "it/2", "TWO")
		if len(keys) != 2 || string(keys[0]) != "it/1" || string(keys[1]) != "it/2" || string(vals[0]) != "one" || string(vals[1]) != "two" {
			t.Fatalf("slices kept from Iterate changed: %q %q", keys, vals)
		}
		keys[0][0], vals[0][0] = 'X', 'X'
		if v, _ := get(t, s, "it/1"); v != "ONE" {
			t.Fatalf("changing an iterated slice changed the store: %q", v)
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

	t.Run("CancelledDuringUpdateWritesNothing", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err := s.Update(cctx, func(tx meta.Txn) error {
			cancel() // e.g. the client went away while fn ran
			return tx.Set([]byte("a"), []byte("b"))
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("update cancelled before commit: %v", err)
		}
		if _, err := get(t, s, "a"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("cancelled update committed: %v", err)
		}
	})

	t.Run("ConflictRunsFnAgainAndKeepsOnlyTheLastRun", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "x", "0")
		runs := 0
		err := s.Update(ctx, func(tx meta.Txn) error {
			runs++
			v, err := tx.Get([]byte("x"))
			if err != nil {
				return err
			}
			if runs == 1 {
				if err := tx.Set([]byte("first-run-only"), []byte("!")); err != nil {
					return err
				}
				// Another writer commits to x after this transaction read it.
				if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte("x"), []byte("1")) }); err != nil {
					return err
				}
			}
			return tx.Set([]byte("y"), append([]byte("saw "), v...))
		})
		if err != nil {
			t.Fatal(err)
		}
		if runs != 2 {
			t.Fatalf("fn ran %d times, want 2", runs)
		}
		if v, _ := get(t, s, "y"); v != "saw 1" {
			t.Fatalf("y = %q: the retry did not read the winner's value", v)
		}
		if _, err := get(t, s, "first-run-only"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("a write of the conflicted run was kept: %v", err)
		}
	})

	t.Run("BlindWritesDoNotConflict", func(t *testing.T) {
		s := newStore(t)
		runs := 0
		err := s.Update(ctx, func(tx meta.Txn) error {
			runs++
			if err := tx.Set([]byte("x"), []byte("outer")); err != nil {
				return err
			}
			if runs == 1 {
				return s.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte("x"), []byte("inner")) })
			}
			return nil
		})
		if err != nil || runs != 1 {
			t.Fatalf("update: runs=%d err=%v", runs, err)
		}
		if v, _ := get(t, s, "x"); v != "outer" {
			t.Fatalf("x = %q; the later commit must win", v)
		}
	})

	t.Run("ConflictGivesUpAfterMaxRetries", func(t *testing.T) {
		s := newStore(t)
		set(t, s, "x", "0")
		runs := 0
		err := s.Update(ctx, func(tx meta.Txn) error {
			runs++
			if _, err := tx.Get([]byte("x")); err != nil {
				return err
			}
			if err := tx.Set([]byte("lost"), []byte("!")); err != nil {
				return err
			}
			return s.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte("x"), []byte(strconv.Itoa(runs))) })
		})
		if !errors.Is(err, meta.ErrConflict) || !errkind.IsRetryable(err) {
			t.Fatalf("update that always conflicts: %v", err)
		}
		if runs != meta.MaxConflictRetries {
			t.Fatalf("fn ran %d times, want %d", runs, meta.MaxConflictRetries)
		}
		if _, err := get(t, s, "lost"); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("a conflicted run's write was kept: %v", err)
		}
	})

	t.Run("SizeLimits", func(t *testing.T) {
		s := newStore(t)
		// Exactly at each limit is accepted.
		if err := s.Update(ctx, func(tx meta.Txn) error {
			for i := 0; i < meta.MaxTxnWrites; i++ {
				if err := tx.Delete([]byte(fmt.Sprintf("w/%06d", i))); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("%d deletes: %v", meta.MaxTxnWrites, err)
		}
		half := meta.MaxTxnBytes / 2
		if err := s.Update(ctx, func(tx meta.Txn) error {
			if err := tx.Set([]byte("b/1"), make([]byte, half-3)); err != nil {
				return err
			}
			return tx.Set([]byte("b/2"), make([]byte, meta.MaxTxnBytes-half-3))
		}); err != nil {
			t.Fatalf("%d bytes: %v", meta.MaxTxnBytes, err)
		}
		if v, err := get(t, s, "b/2"); err != nil || len(v) != meta.MaxTxnBytes-half-3 {
			t.Fatalf("large value read back: %d bytes, %v", len(v), err)
		}
		longKey := bytes.Repeat([]byte("k"), meta.MaxKeyLen)
		if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set(longKey, []byte("v")) }); err != nil {
			t.Fatalf("key of %d bytes: %v", meta.MaxKeyLen, err)
		}
		if err := s.View(ctx, func(tx meta.Txn) error { _, err := tx.Get(longKey); return err }); err != nil {
			t.Fatalf("get long key: %v", err)
		}

		// One more is refused, and the transaction cannot commit even
		// when fn ignores the refusal.
		over := map[string]func(tx meta.Txn) error{
			"writes": func(tx meta.Txn) error {
				var err error
				for i := 0; i <= meta.MaxTxnWrites && err == nil; i++ {
					err = tx.Set([]byte(fmt.Sprintf("w/%06d", i)), nil)
				}
				return err
			},
			"bytes": func(tx meta.Txn) error {
				if err := tx.Set([]byte("w/1"), make([]byte, meta.MaxTxnBytes-3)); err != nil {
					return err
				}
				return tx.Delete([]byte("w/2"))
			},
			"key": func(tx meta.Txn) error {
				if err := tx.Set([]byte("w/1"), nil); err != nil {
					return err
				}
				return tx.Set(append(longKey, 'k'), nil)
			},
		}
		for name, fn := range over {
			err := s.Update(ctx, fn)
			if !errors.Is(err, meta.ErrTooBig) || !errkind.IsPermanent(err) {
				t.Fatalf("%s over the limit: %v", name, err)
			}
			err = s.Update(ctx, func(tx meta.Txn) error {
				_ = fn(tx)
				return nil // ignore the refusal
			})
			if !errors.Is(err, meta.ErrTooBig) {
				t.Fatalf("%s over the limit, refusal ignored by fn: %v", name, err)
			}
			if _, err := get(t, s, "w/000000"); !errors.Is(err, meta.ErrNotFound) {
				t.Fatalf("%s: a refused transaction wrote: %v", name, err)
			}
			if _, err := get(t, s, "w/1"); !errors.Is(err, meta.ErrNotFound) {
				t.Fatalf("%s: a refused transaction wrote: %v", name, err)
			}
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
		if err := s.Update(ctx, func(meta.Txn) error { return nil }); !errors.Is(err, meta.ErrClosed) {
			t.Fatalf("update after close: %v", err)
		}
	})

	t.Run("CloseWaitsForRunningTransactions", func(t *testing.T) {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		set(t, s, "a/1", "1")
		inside, release := make(chan struct{}, 2), make(chan struct{})
		var finished atomic.Int32
		errc := make(chan error, 2)
		go func() {
			errc <- s.View(ctx, func(tx meta.Txn) error {
				inside <- struct{}{}
				<-release
				n := 0
				err := tx.Iterate([]byte("a/"), func(k, v []byte) error { n++; return nil })
				if err == nil && n != 1 {
					err = fmt.Errorf("view iterated %d keys after Close began", n)
				}
				finished.Add(1)
				return err
			})
		}()
		go func() {
			errc <- s.Update(ctx, func(tx meta.Txn) error {
				inside <- struct{}{}
				<-release
				finished.Add(1)
				return tx.Set([]byte("a/2"), []byte("2"))
			})
		}()
		<-inside
		<-inside
		closed := make(chan error, 1)
		go func() {
			err := s.Close()
			if err == nil && finished.Load() != 2 {
				err = errors.New("Close returned while transactions were running")
			}
			closed <- err
		}()
		// Wait until Close has begun: new transactions are refused.
		for s.View(ctx, func(meta.Txn) error { return nil }) == nil {
			runtime.Gosched()
		}
		close(release)
		for i := 0; i < 2; i++ {
			if err := <-errc; err != nil {
				t.Fatalf("transaction running when Close began: %v", err)
			}
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

func getInt(tx meta.Txn, key string) (int, error) {
	v, err := tx.Get([]byte(key))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(v))
}
