package localdir

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
)

func TestConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store { return open(t, t.TempDir()) })
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t *testing.T, s objstore.Store, key, data string) {
	t.Helper()
	if err := objstore.PutBytes(t.Context(), s, key, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, s objstore.Store, prefix string) []string {
	t.Helper()
	var ks []string
	if err := s.List(t.Context(), prefix, func(oi objstore.ObjectInfo) error { ks = append(ks, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return ks
}

// tree lists every file and directory below root, as relative paths.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root {
			rel, _ := filepath.Rel(root, path)
			if d.IsDir() {
				rel += "/"
			}
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "share/docs/report.txt", "r")
	put(t, s, "share/docs/", "")
	put(t, s, "share/docs", "file named like the directory")
	put(t, s, "share/.profile", "p")
	put(t, s, "share/100%", "c")
	want := []string{
		".tmp/",
		"share%/",
		"share%/%2Eprofile",
		"share%/100%25",
		"share%/docs",
		"share%/docs%/",
		"share%/docs%/report.txt",
		"share%/docs%2F",
	}
	if got := tree(t, dir); !slices.Equal(got, want) {
		t.Fatalf("layout:\n got %q\nwant %q", got, want)
	}
	// Reopening finds everything.
	if got := keys(t, open(t, dir), ""); !slices.Equal(got, []string{"share/.profile", "share/100%", "share/docs", "share/docs/", "share/docs/report.txt"}) {
		t.Fatalf("after reopen: %q", got)
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab.%/2F\x00 -~\xff")
	for range 5000 {
		b := make([]byte, 1+r.IntN(8))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		seg := string(b)
		if bytes.ContainsRune(b, '/') || seg == "." || seg == ".." {
			continue
		}
		name := esc(seg)
		if got, ok := unesc(name); !ok || got != seg {
			t.Fatalf("unesc(esc(%q)) = %q, %v", seg, got, ok)
		}
		if name[0] == '.' || name[len(name)-1] == '%' || bytes.Contains([]byte(name), []byte("%2F")) || bytes.ContainsRune([]byte(name), 0) {
			t.Fatalf("esc(%q) = %q clashes with a reserved form", seg, name)
		}
	}
	for _, name := range []string{"%41", "%2e", "%", "ab%2", "%zz", ".x", "", "%2E", "%2E%2E"} {
		if seg, ok := unesc(name); ok {
			t.Errorf("unesc(%q) accepted a name esc never makes (%q)", name, seg)
		}
	}
}

func TestForeignAndTempFilesAreIgnored(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "a/b", "b")
	for _, p := range []string{".tmp/put-123", "a%/%41", "a%/.dotfile", "plain-dir/x", "a%/sub/y"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("b", filepath.Join(dir, "a%", "link")); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, s, ""); !slices.Equal(got, []string{"a/b"}) {
		t.Fatalf("list: %q", got)
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	stale, fresh := filepath.Join(dir, ".tmp", "put-stale"), filepath.Join(dir, ".tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTempAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temp file survived Open: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh temp file (maybe another writer's) removed: %v", err)
	}
}

func TestDeleteRemovesEmptyDirectories(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "x/y/z/obj", "1")
	put(t, s, "x/keep", "2")
	put(t, s, "x/y/", "")
	if err := s.Delete(t.Context(), "x/y/z/obj"); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dir); !slices.Equal(got, []string{".tmp/", "x%/", "x%/keep", "x%/y%2F"}) {
		t.Fatalf("after first delete: %q", got)
	}
	for _, k := range []string{"x/keep", "x/y/"} {
		if err := s.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	if got := tree(t, dir); !slices.Equal(got, []string{".tmp/"}) {
		t.Fatalf("after deleting everything: %q", got)
	}
}

// Puts and deletes racing on keys that share directories: a delete's
// cleanup of an empty directory must never make a put fail or lose it.
func TestPutDeleteRaceOnSharedDirectories(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := t.Context()
	const workers, rounds = 6, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("p/q/r/%d", w)
			for i := range rounds {
				data := []byte(fmt.Sprintf("%d-%d", w, i))
				if err := objstore.PutBytes(ctx, s, key, data); err != nil {
					errs <- err
					return
				}
				got, err := objstore.GetAll(ctx, s, key)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("get %s after put: %q, %v", key, got, err)
					return
				}
				if err := s.Delete(ctx, key); err != nil {
					errs <- err
					return
				}
			}
			if err := objstore.PutBytes(ctx, s, key, []byte("final")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var want []string
	for w := range workers {
		want = append(want, fmt.Sprintf("p/q/r/%d", w))
	}
	sort.Strings(want)
	if got := keys(t, s, ""); !slices.Equal(got, want) {
		t.Fatalf("list: %q, want %q", got, want)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

// A failed or cancelled put leaves no temp file behind.
func TestFailedPutLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Put(t.Context(), "k", bytes.NewReader([]byte("short")), 100); err == nil {
		t.Fatal("short put succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := objstore.PutBytes(ctx, s, "k", []byte("data")); err == nil {
		t.Fatal("cancelled put succeeded")
	}
	if got := tree(t, dir); !slices.Equal(got, []string{".tmp/"}) {
		t.Fatalf("after failed puts: %q", got)
	}
}

// countingReader counts the reads a copy makes of it.
type countingReader struct {
	r     *bytes.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }
func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	return c.r.Seek(off, whence)
}

// A put copies from a reader that is not a file in 1 MiB pieces, not in
// io.Copy's 32 KiB ones.
func TestPutCopiesInLargePieces(t *testing.T) {
	s := open(t, t.TempDir())
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	r := &countingReader{r: bytes.NewReader(data)}
	if err := s.Put(t.Context(), "big", r, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, err := objstore.GetAll(t.Context(), s, "big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %d bytes, %v", len(got), err)
	}
	if r.reads > 8 {
		t.Fatalf("%d reads for 4 MiB, want at most 8 (1 MiB pieces)", r.reads)
	}
}
