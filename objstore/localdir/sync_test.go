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

	"github.com/gatewayd/gatewayd/objstore"
)

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
	syncFile, syncDir := s.syncFile, s.syncDir
	s.syncFile = func(f *os.File) error { events = append(events, "file sync, object "+exists()); return syncFile(f) }
	s.syncDir = func(d string) error { events = append(events, "dir sync, object "+exists()); return syncDir(d) }
	put(t, s, "a/k", "data")
	events = append(events, "returned")
	want := []string{"file sync, object absent", "dir sync, object present", "returned"}
	if !slices.Equal(events, want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// A file whose sync fails fails its own put only, which leaves neither an
// object nor a temp file; the puts beside it succeed.
func TestFailedSyncFailsItsPutOnly(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	syncFile := s.syncFile
	errInjected := errors.New("injected sync failure")
	s.syncFile = func(f *os.File) error {
		b := make([]byte, 3)
		if _, err := f.ReadAt(b, 0); err == nil && string(b) == "bad" {
			return errInjected
		}
		return syncFile(f)
	}
	const n = 7
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		body := "good"
		if i%2 == 1 {
			body = "bad"
		}
		wg.Go(func() { errs[i] = objstore.PutBytes(t.Context(), s, fmt.Sprintf("k%d", i), []byte(body)) })
	}
	wg.Wait()
	for i, err := range errs {
		_, serr := s.Stat(t.Context(), fmt.Sprintf("k%d", i))
		switch {
		case i%2 == 0 && (err != nil || serr != nil):
			t.Errorf("put %d: %v, stat: %v", i, err, serr)
		case i%2 == 1 && (!errors.Is(err, errInjected) || !objstore.IsNotFound(serr)):
			t.Errorf("put %d: %v (want the injected failure), stat: %v (want not found)", i, err, serr)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

// BenchmarkConcurrentPuts: 4 KiB objects put by 4 and by 16 goroutines at
// once into 8 directories, the way a round of file uploads goes at full
// parallelism (go test -bench ConcurrentPuts -benchtime 2000x).
func BenchmarkConcurrentPuts(b *testing.B) {
	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			data := bytes.Repeat([]byte("x"), 4096)
			var next sync.Mutex
			i := 0
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for {
						next.Lock()
						k := i
						i++
						next.Unlock()
						if k >= b.N {
							return
						}
						if err := objstore.PutBytes(b.Context(), s, fmt.Sprintf("d%d/f%d", k%8, k), data); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}
