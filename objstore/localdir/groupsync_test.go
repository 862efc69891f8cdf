package localdir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// waitDeadline bounds every wait of these tests; the machine may be slow.
const waitDeadline = 5 * time.Minute

// counter counts hand-overs to a sync group and lets a test wait for a count.
type counter struct {
	mu   sync.Mutex
	n    int
	kick chan struct{}
}

func newCounter() *counter { return &counter{kick: make(chan struct{}, 1)} }

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *counter) wait(n int) error {
	deadline := time.After(waitDeadline)
	for {
		c.mu.Lock()
		got := c.n
		c.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-c.kick:
		case <-deadline:
			return fmt.Errorf("%d of %d syncs handed over", got, n)
		}
	}
}

// Concurrent puts into one directory share their syncs: each batch's
// leader is held until the puts that must reach it have handed over their
// syncs, so the grouping is the same however the goroutines are scheduled.
// Unshared, the puts would make 2n syncs in 2n batches.
func TestConcurrentPutsShareSyncs(t *testing.T) {
	s := open(t, t.TempDir())
	put(t, s, "d/first", "makes the directory")
	g := s.group
	handed := newCounter()
	entered := make(chan struct{})
	release := make(chan struct{})
	g.mu.Lock()
	g.stats = struct{ batches, files, dirs, maxFiles int }{}
	g.handedOver = handed.add
	g.beforeBatch = func() { entered <- struct{}{}; <-release }
	g.mu.Unlock()

	const n = 8
	// The leaders, one batch each: the first holds put 0's file until
	// every put's file is handed over; the second (the other files) until
	// put 0's directory is too; the later ones until every directory is.
	done := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		var first error // after a failed wait, the leaders go unheld
		for batches := 1; ; batches++ {
			select {
			case <-entered:
			case <-done:
				served <- first
				return
			}
			want := 2 * n
			switch batches {
			case 1:
				want = n
			case 2:
				want = n + 1
			}
			if first == nil {
				first = handed.wait(want)
			}
			release <- struct{}{}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, n)
	data := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 4096) }
	for i := range n {
		wg.Go(func() { errs[i] = objstore.PutBytes(t.Context(), s, fmt.Sprintf("d/%d", i), data(i)) })
		if i == 0 {
			// Put 0 leads the first batch.
			if err := handed.wait(1); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	close(done)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		got, err := objstore.GetAll(t.Context(), s, fmt.Sprintf("d/%d", i))
		if err != nil || !bytes.Equal(got, data(i)) {
			t.Fatalf("get %d: %d bytes, %v", i, len(got), err)
		}
	}
	g.mu.Lock()
	st := g.stats
	g.mu.Unlock()
	if st.files != n || st.maxFiles != n-1 {
		t.Errorf("files synced %d, most in one batch %d; want %d and %d", st.files, st.maxFiles, n, n-1)
	}
	if st.dirs > 3 || st.batches > 4 {
		t.Errorf("%d puts into one directory: %d directory syncs in %d batches; want at most 3 in at most 4", n, st.dirs, st.batches)
	}
	t.Logf("%d puts: %d batches, %d file syncs, %d directory syncs", n, st.batches, st.files, st.dirs)
}

// A put's file is synced before it is renamed into place, and the rename's
// directory synced before the put returns.
func TestPutSyncsBeforeRenameAndReturn(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "a/x", "makes the directory")
	target := filepath.Join(dir, "a%", "k")
	var events []string
	exists := func() string {
		if _, err := os.Stat(target); err == nil {
			return "present"
		}
		return "absent"
	}
	g := s.group
	syncFile, syncDir := g.syncFile, g.syncDir
	g.syncFile = func(f *os.File) error { events = append(events, "file sync, object "+exists()); return syncFile(f) }
	g.syncDir = func(d string) error { events = append(events, "dir sync, object "+exists()); return syncDir(d) }
	put(t, s, "a/k", "data")
	events = append(events, "returned")
	want := []string{"file sync, object absent", "dir sync, object present", "returned"}
	if !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// A file whose sync fails fails its own put only, which leaves neither an
// object nor a temp file; the puts it was grouped with succeed. The first
// put's batch is held until every put has handed its file over, so the
// others share the second batch, failing ones among them.
func TestFailedSyncFailsItsPutOnly(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	g := s.group
	syncFile := g.syncFile
	errInjected := errors.New("injected sync failure")
	g.syncFile = func(f *os.File) error {
		b := make([]byte, 3)
		if _, err := f.ReadAt(b, 0); err == nil && string(b) == "bad" {
			return errInjected
		}
		return syncFile(f)
	}
	const n = 7
	handed := newCounter()
	var held error
	var once sync.Once
	g.handedOver = handed.add
	g.beforeBatch = func() { once.Do(func() { held = handed.wait(n) }) }
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		body := "good"
		if i%2 == 1 {
			body = "bad"
		}
		wg.Go(func() { errs[i] = objstore.PutBytes(t.Context(), s, fmt.Sprintf("k%d", i), []byte(body)) })
		if i == 0 {
			if err := handed.wait(1); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if held != nil {
		t.Fatal(held)
	}
	for i, err := range errs {
		_, serr := s.Stat(t.Context(), fmt.Sprintf("k%d", i))
		switch {
		case i%2 == 0 && (err != nil || serr != nil):
			t.Errorf("put %d: %v, stat: %v", i, err, serr)
		case i%2 == 1 && (!errors.Is(err, errInjected) || !objstore.IsNotFound(serr)):
			t.Errorf("put %d: %v (want the injected failure), stat: %v (want not found)", i, err, serr)
		}
	}
	if g.stats.maxFiles != n-1 {
		t.Errorf("most files in one batch %d, want %d", g.stats.maxFiles, n-1)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}
