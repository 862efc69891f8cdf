package badger

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/meta"
)

// Updates that commit while a sync runs share the next one: n concurrent
// Updates, the first sync held until the others wait, take two syncs.
func TestConcurrentUpdatesShareASync(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 32
	release := make(chan struct{})
	first := true
	s.syncHook = func() { // only the syncer goroutine runs it, one sync at a time
		if first {
			first = false
			<-release
		}
	}
	update := func(i int) error {
		return s.Update(context.Background(), func(tx meta.Txn) error {
			return tx.Set([]byte(fmt.Sprintf("k/%03d", i)), []byte("v"))
		})
	}
	errs := make(chan error, n)
	go func() { errs <- update(0) }()
	// The first Update's sync has begun (and waits) once the syncer runs.
	waitFor(t, "the first sync", func() bool {
		s.syncMu.Lock()
		defer s.syncMu.Unlock()
		return s.syncing && len(s.waiters) == 0
	})
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- update(i) }()
	}
	waitFor(t, "the other Updates to wait for the next sync", func() bool {
		s.syncMu.Lock()
		defer s.syncMu.Unlock()
		return len(s.waiters) == n-1
	})
	close(release)
	wg.Wait()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if syncs, commits := s.syncs.Load(), s.commits.Load(); syncs != 2 || commits != n {
		t.Fatalf("%d Updates: %d syncs for %d commits, want 2", n, syncs, commits)
	}
}

// The write-ahead files badger stops writing (a full memtable) are synced
// by the next sync: badger does not sync them with SyncWrites off.
func TestSyncCoversFilesBadgerLeft(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	value := make([]byte, 256<<10) // in the memtable's write-ahead log, not the value log
	for i := 0; i < 200 && s.oldFiles.Load() == 0; i++ {
		err := s.Update(context.Background(), func(tx meta.Txn) error {
			return tx.Set([]byte(fmt.Sprintf("k/%03d", i)), value)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.oldFiles.Load() == 0 {
		t.Fatal("50 MiB written, and no write-ahead file badger left was synced")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5 minutes for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
