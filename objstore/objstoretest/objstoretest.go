// Package objstoretest is the conformance suite every objstore.Store
// implementation must pass: the one statement of what a Store does, run
// against mem, localdir and s3 (on a real MinIO server).
package objstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// LargeObjectSize is the size of the object the suite uses to cross a
// multipart threshold: stores under test should be configured with a
// threshold and part size of at most 5 MiB so that it takes three parts.
const LargeObjectSize = 12<<20 + 12345

// ListPageSize is the largest list page size the pagination test is sure
// to exceed; stores with paged listings should be configured at or below it.
const ListPageSize = 10

// Run runs the conformance suite, on a store without Object Lock
// (RunObjectLock checks one with it). newStore returns an empty store; it is
// called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store)
	}{
		{"PutGet", testPutGet},
		{"RangeGet", testRangeGet},
		{"Stat", testStat},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"Overwrite", testOverwrite},
		{"EmptyObject", testEmptyObject},
		{"InvalidKeys", testInvalidKeys},
		{"ListPrefixAndOrder", testListPrefixAndOrder},
		{"ListPagination", testListPagination},
		{"ListStops", testListStops},
		{"NestedKeysAndMarkers", testNestedKeysAndMarkers},
		{"Concurrent", testConcurrent},
		{"LargeObject", testLargeObject},
		{"ContextCancel", testContextCancel},
		{"Copy", testCopy},
		{"StorageClass", testStorageClass},
		{"Metadata", testMetadata},
		{"ListDir", testListDir},
		{"ConditionalPut", testConditionalPut},
		{"ConditionalPutRace", testConditionalPutRace},
		{"Compose", testCompose},
		{"NoObjectLock", testNoObjectLock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s objstore.Store, key string, data []byte) {
	t.Helper()
	if err := objstore.PutBytes(ctxT(t), s, key, data); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func getRange(t *testing.T, s objstore.Store, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Get(ctxT(t), key, off, n)
	if err != nil {
		t.Fatalf("get %s [%d,+%d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s [%d,+%d): %v", key, off, n, err)
	}
	return b
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes %q..., want %d bytes %q...", what, len(got), head(got), len(want), head(want))
	}
}

func head(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func listKeys(t *testing.T, s objstore.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(ctxT(t), prefix, func(oi objstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return keys
}

func mustNotFound(t *testing.T, s objstore.Store, key string) {
	t.Helper()
	_, err := s.Stat(ctxT(t), key)
	if !objstore.IsNotFound(err) {
		t.Fatalf("stat %s: got %v, want not-found", key, err)
	}
}

func testPutGet(t *testing.T, s objstore.Store) {
	data := randBytes(1, 100_000)
	put(t, s, "dir/obj", data)
	got, err := objstore.GetAll(ctxT(t), s, "dir/obj")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "get", got, data)

	// Put reads from the reader's current position, not from its start.
	r := bytes.NewReader(append([]byte("skipped"), data[:1000]...))
	if _, err := r.Seek(7, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctxT(t), "dir/offset", r, 1000); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "put from offset", getRange(t, s, "dir/offset", 0, -1), data[:1000])

	// A reader shorter than size is an error and stores nothing.
	if err := s.Put(ctxT(t), "dir/short", bytes.NewReader(data[:10]), 20); err == nil {
		t.Fatal("put with a short reader succeeded")
	}
	mustNotFound(t, s, "dir/short")
}

func testRangeGet(t *testing.T, s objstore.Store) {
	data := randBytes(2, 1000)
	put(t, s, "r", data)
	for _, tc := range []struct{ off, n int64 }{
		{0, 10}, {0, -1}, {500, 100}, {990, 10}, {990, -1}, {999, 1}, {0, 1000}, {123, 0}, {1000, 0}, {1000, -1},
	} {
		want := data[tc.off:]
		if tc.n >= 0 {
			want = data[tc.off : tc.off+tc.n]
		}
		mustEqual(t, fmt.Sprintf("range [%d,+%d)", tc.off, tc.n), getRange(t, s, "r", tc.off, tc.n), want)
	}
	for _, tc := range []struct{ off, n int64 }{{1001, -1}, {1001, 0}, {995, 10}, {0, 1001}, {5000, 1}, {-1, 5}} {
		rc, err := s.Get(ctxT(t), "r", tc.off, tc.n)
		if err == nil {
			b, rerr := io.ReadAll(rc)
			rc.Close()
			t.Fatalf("range [%d,+%d) of 1000 bytes: got %d bytes (read error %v), want an error", tc.off, tc.n, len(b), rerr)
		}
		if !errors.Is(err, objstore.ErrInvalidRange) {
			t.Errorf("range [%d,+%d) of 1000 bytes: error %v does not wrap ErrInvalidRange", tc.off, tc.n, err)
		}
		if objstore.IsNotFound(err) {
			t.Errorf("range [%d,+%d): error %v reads as not-found", tc.off, tc.n, err)
		}
	}
}

func testStat(t *testing.T, s objstore.Store) {
	before := time.Now()
	put(t, s, "stat/me", randBytes(3, 4321))
	after := time.Now()
	oi, err := s.Stat(ctxT(t), "stat/me")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Key != "stat/me" || oi.Size != 4321 {
		t.Fatalf("stat: got key %q size %d, want stat/me 4321", oi.Key, oi.Size)
	}
	// Servers keep whole seconds and their clock is not ours; an hour's
	// slack still catches a zero or garbage time.
	if oi.ModTime.Before(before.Add(-time.Hour)) || oi.ModTime.After(after.Add(time.Hour)) {
		t.Fatalf("stat: mod time %v is not near %v", oi.ModTime, before)
	}
	var listed []objstore.ObjectInfo
	if err := s.List(ctxT(t), "stat/", func(oi objstore.ObjectInfo) error { listed = append(listed, oi); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Key != "stat/me" || listed[0].Size != 4321 || listed[0].ModTime.IsZero() {
		t.Fatalf("list: got %+v, want stat/me with size 4321 and a mod time", listed)
	}
}

func testNotFound(t *testing.T, s objstore.Store) {
	put(t, s, "present", []byte("x"))
	for _, key := range []string{"absent", "present/child", "presen", "absent/"} {
		if _, err := s.Get(ctxT(t), key, 0, -1); !objstore.IsNotFound(err) {
			t.Errorf("get %s: got %v, want not-found", key, err)
		}
		if _, err := s.Get(ctxT(t), key, 1, 5); !objstore.IsNotFound(err) {
			t.Errorf("get range of %s: got %v, want not-found", key, err)
		}
		mustNotFound(t, s, key)
	}
	if keys := listKeys(t, s, "absent"); len(keys) != 0 {
		t.Errorf("list of a prefix with no objects: got %q", keys)
	}
}

func testDelete(t *testing.T, s objstore.Store) {
	put(t, s, "del/a", []byte("a"))
	put(t, s, "del/b/c", []byte("c"))
	if err := s.Delete(ctxT(t), "del/a"); err != nil {
		t.Fatal(err)
	}
	mustNotFound(t, s, "del/a")
	if err := s.Delete(ctxT(t), "del/a"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if err := s.Delete(ctxT(t), "never/there"); err != nil {
		t.Fatalf("deleting a key that never existed: %v", err)
	}
	if err := s.Delete(ctxT(t), "del/b/c"); err != nil {
		t.Fatal(err)
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("after deleting everything, list gives %q", keys)
	}
	// The key is usable again after a delete.
	put(t, s, "del/b/c", []byte("again"))
	mustEqual(t, "get after re-put", getRange(t, s, "del/b/c", 0, -1), []byte("again"))
}

func testOverwrite(t *testing.T, s objstore.Store) {
	put(t, s, "ow", randBytes(4, 5000))
	second := randBytes(5, 300)
	put(t, s, "ow", second)
	mustEqual(t, "get after overwrite", getRange(t, s, "ow", 0, -1), second)
	oi, err := s.Stat(ctxT(t), "ow")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Size != 300 {
		t.Fatalf("size after overwrite: %d, want 300", oi.Size)
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"ow"}) {
		t.Fatalf("list after overwrite: %q", keys)
	}
}

func testEmptyObject(t *testing.T, s objstore.Store) {
	put(t, s, "empty", nil)
	oi, err := s.Stat(ctxT(t), "empty")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Size != 0 {
		t.Fatalf("size %d, want 0", oi.Size)
	}
	mustEqual(t, "get", getRange(t, s, "empty", 0, -1), nil)
	mustEqual(t, "get [0,+0)", getRange(t, s, "empty", 0, 0), nil)
	if _, err := s.Get(ctxT(t), "empty", 0, 1); !errors.Is(err, objstore.ErrInvalidRange) {
		t.Fatalf("get 1 byte of an empty object: got %v, want ErrInvalidRange", err)
	}
}

func testInvalidKeys(t *testing.T, s objstore.Store) {
	for _, key := range []string{"", "/abs", "a//b", "a/./b", "../up", "a/..", "."} {
		if err := objstore.PutBytes(ctxT(t), s, key, []byte("x")); err == nil {
			t.Errorf("put of invalid key %q succeeded", key)
		}
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("invalid puts left objects: %q", keys)
	}
}

func testListPrefixAndOrder(t *testing.T, s objstore.Store) {
	// Byte order of full keys, which is not the order a directory walk
	// gives: '-' (0x2d) < '.' < '/' (0x2f) < '0' (0x30).
	keys := []string{"a-b", "a.txt", "a/b-c", "a/b/c/d", "a/b/c/e", "a/b/x", "a/b0", "a0", "ab", "A", "b-", "b/a", "~", "é"}
	for i, k := range keys {
		put(t, s, k, []byte(k+fmt.Sprint(i)))
	}
	sorted := slices.Clone(keys)
	sort.Strings(sorted)
	for _, prefix := range []string{"", "a", "a/", "a/b", "a/b/", "b", "z", "a-", "a/b/c/", "a/b/c/d", "a/b/c/d/", "é"} {
		var want []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		if got := listKeys(t, s, prefix); !slices.Equal(got, want) {
			t.Errorf("list %q:\n got %q\nwant %q", prefix, got, want)
		}
	}
}

func testListPagination(t *testing.T, s objstore.Store) {
	const n = 3*ListPageSize + 7
	var want []string
	for i := range n {
		k := fmt.Sprintf("page/%03d", i)
		want = append(want, k)
		put(t, s, k, []byte{byte(i)})
	}
	put(t, s, "pagf", []byte("outside the prefix"))
	put(t, s, "pag", []byte("outside the prefix"))
	var sizes []int64
	var got []string
	err := s.List(ctxT(t), "page/", func(oi objstore.ObjectInfo) error {
		got = append(got, oi.Key)
		sizes = append(sizes, oi.Size)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("list page/:\n got %q\nwant %q", got, want)
	}
	for i, sz := range sizes {
		if sz != 1 {
			t.Fatalf("%s: size %d, want 1", got[i], sz)
		}
	}
}

func testListStops(t *testing.T, s objstore.Store) {
	for i := range 2*ListPageSize + 3 {
		put(t, s, fmt.Sprintf("stop/%02d", i), []byte("x"))
	}
	stop := errors.New("enough")
	var seen []string
	err := s.List(ctxT(t), "stop/", func(oi objstore.ObjectInfo) error {
		seen = append(seen, oi.Key)
		if len(seen) == ListPageSize+2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("list returned %v, want the callback's error", err)
	}
	if len(seen) != ListPageSize+2 {
		t.Fatalf("callback ran %d times after returning an error at %d", len(seen), ListPageSize+2)
	}
}

func testNestedKeysAndMarkers(t *testing.T, s objstore.Store) {
	// Directory markers ("d/") coexist with the keys below them and with
	// an object of the same name ("h" and "h/"). (An object "d" beside
	// keys below "d/" is not part of the contract: see package objstore.)
	objs := map[string][]byte{
		"share/d/":         nil,
		"share/d/f":        []byte("file in d"),
		"share/d/e/":       []byte("marker with content"),
		"share/d/e/f/g/h":  []byte("deep"),
		"share/d/e/f/g/h/": nil,
		"share/d-x":        []byte("sibling"),
		"share/.hidden":    []byte("dot file"),
		"share/%2F":        []byte("percent"),
		"share/d%":         []byte("trailing percent"),
		"share/sp ace/~t":  []byte("space"),
		"share/x/y/z/":     nil,
		"share/tmp":        []byte("tmp"),
	}
	for k, v := range objs {
		put(t, s, k, v)
	}
	var want []string
	for k := range objs {
		want = append(want, k)
	}
	sort.Strings(want)
	if got := listKeys(t, s, "share/"); !slices.Equal(got, want) {
		t.Fatalf("list:\n got %q\nwant %q", got, want)
	}
	for k, v := range objs {
		mustEqual(t, "get "+k, getRange(t, s, k, 0, -1), v)
	}
	if got := listKeys(t, s, "share/d/"); !slices.Equal(got, []string{"share/d/", "share/d/e/", "share/d/e/f/g/h", "share/d/e/f/g/h/", "share/d/f"}) {
		t.Fatalf("list share/d/: %q", got)
	}
	// Deleting a marker leaves the objects below it, and the reverse.
	if err := s.Delete(ctxT(t), "share/d/"); err != nil {
		t.Fatal(err)
	}
	mustNotFound(t, s, "share/d/")
	mustEqual(t, "get share/d/f after deleting the marker", getRange(t, s, "share/d/f", 0, -1), objs["share/d/f"])
	for _, k := range []string{"share/d/e/f/g/h", "share/d/f", "share/d/e/"} {
		if err := s.Delete(ctxT(t), k); err != nil {
			t.Fatal(err)
		}
	}
	mustEqual(t, "get share/d/e/f/g/h/ after deleting the objects above and beside it", getRange(t, s, "share/d/e/f/g/h/", 0, -1), nil)
	if got := listKeys(t, s, "share/d"); !slices.Equal(got, []string{"share/d%", "share/d-x", "share/d/e/f/g/h/"}) {
		t.Fatalf("list share/d after deletes: %q", got)
	}
}

func testConcurrent(t *testing.T, s objstore.Store) {
	const workers, rounds = 8, 20
	// Versions of the shared key: a reader must always see one of them
	// whole, never a mix or a prefix.
	versions := make([][]byte, workers)
	sums := map[[32]byte]bool{}
	for i := range versions {
		versions[i] = randBytes(uint64(100+i), 64<<10+i)
		sums[sha256.Sum256(versions[i])] = true
	}
	put(t, s, "shared", versions[0])
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			ctx := ctxT(t)
			own := fmt.Sprintf("own/%d/", w)
			for i := range rounds {
				key := fmt.Sprintf("%s%02d", own, i)
				data := randBytes(uint64(w*1000+i), 1000+i)
				if err := objstore.PutBytes(ctx, s, key, data); err != nil {
					errs <- err
					return
				}
				if got, err := objstore.GetAll(ctx, s, key); err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("get %s: %d bytes, %v", key, len(got), err)
					return
				}
				if i%3 == 0 {
					if err := objstore.PutBytes(ctx, s, "shared", versions[w]); err != nil {
						errs <- err
						return
					}
				}
				got, err := objstore.GetAll(ctx, s, "shared")
				if err != nil {
					errs <- fmt.Errorf("get shared: %w", err)
					return
				}
				if !sums[sha256.Sum256(got)] {
					errs <- fmt.Errorf("get shared: %d bytes that match no version", len(got))
					return
				}
				n := 0
				if err := s.List(ctx, own, func(objstore.ObjectInfo) error { n++; return nil }); err != nil {
					errs <- err
					return
				}
				if n != i+1-i/2 {
					errs <- fmt.Errorf("list %s: %d objects, want %d", own, n, i+1-i/2)
					return
				}
				if i%2 == 1 {
					if err := s.Delete(ctx, fmt.Sprintf("%s%02d", own, i/2)); err != nil {
						errs <- err
						return
					}
				}
				if err := s.List(ctx, "", func(objstore.ObjectInfo) error { return nil }); err != nil {
					errs <- fmt.Errorf("list everything: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testLargeObject(t *testing.T, s objstore.Store) {
	data := randBytes(6, LargeObjectSize)
	want := sha256.Sum256(data)
	put(t, s, "large/obj", data)
	oi, err := s.Stat(ctxT(t), "large/obj")
	if err != nil {
		t.Fatal(err)
	}
	if oi.Size != LargeObjectSize {
		t.Fatalf("size %d, want %d", oi.Size, LargeObjectSize)
	}
	rc, err := s.Get(ctxT(t), "large/obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n != LargeObjectSize || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read back %d bytes with a different checksum", n)
	}
	// A range across the 5 MiB part boundary.
	off := int64(5<<20 - 1000)
	mustEqual(t, "range across a part boundary", getRange(t, s, "large/obj", off, 3000), data[off:off+3000])
	tail := int64(LargeObjectSize - 777)
	mustEqual(t, "tail", getRange(t, s, "large/obj", tail, -1), data[tail:])
}

// cancelAfter is a reader that cancels a context once it has been read
// past a given offset, as a caller abandoning an upload halfway would.
// Stores may read it with Read or, in parallel, with ReadAt.
type cancelAfter struct {
	*bytes.Reader
	limit  int64
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	if c.Reader.Size()-int64(c.Reader.Len()) > c.limit {
		c.once.Do(c.cancel)
	}
	return n, err
}

func (c *cancelAfter) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.Reader.ReadAt(p, off)
	if off+int64(n) > c.limit {
		c.once.Do(c.cancel)
	}
	return n, err
}

func testContextCancel(t *testing.T, s objstore.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if err := objstore.PutBytes(ctx, s, "cancel/pre", []byte("data")); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	mustNotFound(t, s, "cancel/pre")
	put(t, s, "cancel/exists", []byte("data"))
	if rc, err := s.Get(ctx, "cancel/exists", 0, -1); err == nil {
		// A store may hand out the reader before it notices; reading
		// must then fail.
		_, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr == nil {
			t.Fatal("get with a cancelled context succeeded")
		}
	}
	if err := s.List(ctx, "", func(objstore.ObjectInfo) error { return nil }); err == nil {
		t.Fatal("list with a cancelled context succeeded")
	}

	// Cancelled halfway through the upload, small and large: the old
	// object stays, whole.
	for _, size := range []int{200 << 10, LargeObjectSize} {
		key := fmt.Sprintf("cancel/mid-%d", size)
		old := []byte("old version")
		put(t, s, key, old)
		ctx, cancel := context.WithCancel(ctxT(t))
		r := &cancelAfter{Reader: bytes.NewReader(randBytes(7, size)), limit: int64(size / 2), cancel: cancel}
		err := s.Put(ctx, key, r, int64(size))
		cancel()
		if err == nil {
			t.Fatalf("put of %d bytes cancelled halfway succeeded", size)
		}
		mustEqual(t, "object after a cancelled overwrite", getRange(t, s, key, 0, -1), old)
		if err := s.Delete(ctxT(t), key); err != nil {
			t.Fatal(err)
		}
		mustNotFound(t, s, key)
	}
	if keys := listKeys(t, s, "cancel/"); !slices.Equal(keys, []string{"cancel/exists"}) {
		t.Fatalf("after cancelled puts, list gives %q", keys)
	}
}

func testCopy(t *testing.T, s objstore.Store) {
	c, ok := s.(objstore.Copier)
	if !ok {
		t.Logf("%s does not implement objstore.Copier", s)
		return
	}
	data := randBytes(8, 3000)
	put(t, s, "copy/src", data)
	if err := c.Copy(ctxT(t), "copy/src", "copy/dst/x"); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "copy", getRange(t, s, "copy/dst/x", 0, -1), data)
	// Overwrite an existing destination; the source is untouched.
	put(t, s, "copy/other", []byte("other"))
	if err := c.Copy(ctxT(t), "copy/other", "copy/dst/x"); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "copy over an object", getRange(t, s, "copy/dst/x", 0, -1), []byte("other"))
	mustEqual(t, "copy source", getRange(t, s, "copy/src", 0, -1), data)
	// Changing the source later does not change the copy.
	put(t, s, "copy/other", []byte("changed"))
	mustEqual(t, "copy after its source changed", getRange(t, s, "copy/dst/x", 0, -1), []byte("other"))

	if err := c.Copy(ctxT(t), "copy/missing", "copy/dst/y"); !objstore.IsNotFound(err) {
		t.Fatalf("copy of a missing key: got %v, want not-found", err)
	}
	mustNotFound(t, s, "copy/dst/y")

	large := randBytes(9, LargeObjectSize)
	put(t, s, "copy/large", large)
	if err := c.Copy(ctxT(t), "copy/large", "copy/large2"); err != nil {
		t.Fatal(err)
	}
	got := getRange(t, s, "copy/large2", 0, -1)
	if sha256.Sum256(got) != sha256.Sum256(large) {
		t.Fatalf("large copy: %d bytes with a different checksum", len(got))
	}
}

func testStorageClass(t *testing.T, s objstore.Store) {
	sc, ok := s.(objstore.StorageClasser)
	if !ok {
		t.Logf("%s does not implement objstore.StorageClasser", s)
		return
	}
	data := randBytes(10, 2000)
	put(t, s, "class/obj", data)
	// REDUCED_REDUNDANCY is the one class besides STANDARD that every
	// S3-compatible server knows.
	const class = "REDUCED_REDUNDANCY"
	if err := sc.SetStorageClass(ctxT(t), "class/obj", class); err != nil {
		t.Fatal(err)
	}
	oi, err := s.Stat(ctxT(t), "class/obj")
	if err != nil {
		t.Fatal(err)
	}
	if oi.StorageClass != class {
		t.Fatalf("stat after SetStorageClass: class %q, want %q", oi.StorageClass, class)
	}
	mustEqual(t, "data after SetStorageClass", getRange(t, s, "class/obj", 0, -1), data)
	var listed string
	if err := s.List(ctxT(t), "class/", func(oi objstore.ObjectInfo) error { listed = oi.StorageClass; return nil }); err != nil {
		t.Fatal(err)
	}
	if listed != class {
		t.Fatalf("list after SetStorageClass: class %q, want %q", listed, class)
	}
	if err := sc.SetStorageClass(ctxT(t), "class/obj", "STANDARD"); err != nil {
		t.Fatal(err)
	}
	if oi, err := s.Stat(ctxT(t), "class/obj"); err != nil || oi.StorageClass != "" {
		t.Fatalf("stat after moving back to STANDARD: class %q (%v), want the default \"\"", oi.StorageClass, err)
	}
	if err := sc.SetStorageClass(ctxT(t), "class/missing", class); !objstore.IsNotFound(err) {
		t.Fatalf("SetStorageClass of a missing key: got %v, want not-found", err)
	}
}

func testMetadata(t *testing.T, s objstore.Store) {
	mp, ok := s.(objstore.MetadataPutter)
	if !ok {
		t.Logf("%s does not implement objstore.MetadataPutter", s)
		if err := objstore.PutWith(ctxT(t), s, "meta/x", bytes.NewReader(nil), 0, map[string]string{"a": "b"}); err == nil {
			t.Fatal("PutWith metadata on a store without metadata succeeded")
		}
		return
	}
	meta := map[string]string{"mode": "100644", "uid": "1000", "mtime": "1763958000.123456789", "x-y": "a b=c/d"}
	data := randBytes(11, 1500)
	if err := mp.PutMeta(ctxT(t), "meta/file", bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatal(err)
	}
	oi, err := s.Stat(ctxT(t), "meta/file")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(oi.Metadata, meta) {
		t.Fatalf("stat metadata %v, want %v", oi.Metadata, meta)
	}
	mustEqual(t, "data put with metadata", getRange(t, s, "meta/file", 0, -1), data)
	// A plain Put over it drops the metadata: an object's metadata is
	// replaced with the object.
	put(t, s, "meta/file", []byte("plain"))
	if oi, err := s.Stat(ctxT(t), "meta/file"); err != nil || len(oi.Metadata) != 0 {
		t.Fatalf("metadata after a plain put: %v (%v)", oi.Metadata, err)
	}
	// Copy keeps it, for small and large objects.
	large := randBytes(12, LargeObjectSize)
	for _, d := range [][]byte{data, large} {
		if err := mp.PutMeta(ctxT(t), "meta/src", bytes.NewReader(d), int64(len(d)), meta); err != nil {
			t.Fatal(err)
		}
		if c, ok := s.(objstore.Copier); ok {
			if err := c.Copy(ctxT(t), "meta/src", "meta/dst"); err != nil {
				t.Fatal(err)
			}
			if oi, err := s.Stat(ctxT(t), "meta/dst"); err != nil || !maps.Equal(oi.Metadata, meta) {
				t.Fatalf("metadata after copying %d bytes: %v (%v)", len(d), oi.Metadata, err)
			}
		}
	}
	// SetMeta replaces the metadata and keeps the data.
	newMeta := map[string]string{"mode": "100600"}
	if err := mp.SetMeta(ctxT(t), "meta/src", newMeta); err != nil {
		t.Fatal(err)
	}
	if oi, err := s.Stat(ctxT(t), "meta/src"); err != nil || !maps.Equal(oi.Metadata, newMeta) {
		t.Fatalf("metadata after SetMeta: %v (%v)", oi.Metadata, err)
	}
	if got := getRange(t, s, "meta/src", 0, -1); sha256.Sum256(got) != sha256.Sum256(large) {
		t.Fatal("SetMeta changed the data")
	}
	if err := mp.SetMeta(ctxT(t), "meta/missing", newMeta); !objstore.IsNotFound(err) {
		t.Fatalf("SetMeta of a missing key: %v", err)
	}
	for _, bad := range []map[string]string{{"Upper": "x"}, {"a_b": "x"}, {"a": "caf\u00e9"}, {"a": "line\nbreak"}, {"big": strings.Repeat("x", objstore.MaxMetadataBytes)}} {
		if err := mp.PutMeta(ctxT(t), "meta/bad", bytes.NewReader(nil), 0, bad); err == nil {
			t.Fatalf("metadata %q accepted", bad)
		}
	}
	mustNotFound(t, s, "meta/bad")
}

// noDirLister hides a store's DirLister, so objstore.ListDir folds a full
// listing: the reference the store's own ListDir must agree with.
type noDirLister struct{ objstore.Store }

func testListDir(t *testing.T, s objstore.Store) {
	// No object shares its name with a prefix ("x" and "x/y"): MinIO does
	// not list the prefix then, and a file share never makes both.
	for _, k := range []string{"ld/", "ld/a", "ld/b/", "ld/b/c", "ld/b/d/e", "ld/c", "ld/d/x", "ld/e-", "ld/e.", "ld/e0/f", "ld0", "le/z"} {
		put(t, s, k, []byte(k))
	}
	list := func(st objstore.Store, prefix string) []string {
		var out []string
		err := objstore.ListDir(ctxT(t), st, prefix, func(oi objstore.ObjectInfo, isPrefix bool) error {
			if isPrefix {
				out = append(out, "P:"+oi.Key)
			} else {
				if oi.Size != int64(len(oi.Key)) {
					t.Errorf("list dir %q: %s has size %d", prefix, oi.Key, oi.Size)
				}
				out = append(out, oi.Key)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := []string{"ld/", "ld/a", "P:ld/b/", "ld/c", "P:ld/d/", "ld/e-", "ld/e.", "P:ld/e0/"}
	for _, st := range []objstore.Store{s, noDirLister{s}} {
		if got := list(st, "ld/"); !slices.Equal(got, want) {
			t.Fatalf("list dir ld/ (%T): %q, want %q", st, got, want)
		}
		if got := list(st, "ld/b/"); !slices.Equal(got, []string{"ld/b/", "ld/b/c", "P:ld/b/d/"}) {
			t.Fatalf("list dir ld/b/ (%T): %q", st, got)
		}
		if got := list(st, "nothing/"); len(got) != 0 {
			t.Fatalf("list dir of an empty prefix: %q", got)
		}
	}
	root := list(s, "")
	for _, w := range []string{"P:ld/", "ld0", "P:le/"} {
		if !slices.Contains(root, w) {
			t.Fatalf("list dir of the root lacks %q: %q", w, root)
		}
	}
	if err := objstore.ListDir(ctxT(t), s, "ld", func(objstore.ObjectInfo, bool) error { return nil }); err == nil {
		t.Fatal("list dir of a prefix without a trailing / succeeded")
	}
}

func conditional(t *testing.T, s objstore.Store) objstore.ConditionalPutter {
	t.Helper()
	cp, ok := s.(objstore.ConditionalPutter)
	if !ok {
		t.Fatalf("%s does not implement objstore.ConditionalPutter", s)
	}
	return cp
}

func mustPreconditionFailed(t *testing.T, what string, err error) {
	t.Helper()
	if !objstore.IsPreconditionFailed(err) || !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("%s: got %v, want a precondition failure", what, err)
	}
	if errkind.IsRetryable(err) {
		t.Fatalf("%s: a precondition failure is marked retryable: %v", what, err)
	}
}

func statETag(t *testing.T, s objstore.Store, key string) string {
	t.Helper()
	oi, err := s.Stat(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if oi.ETag == "" {
		t.Fatalf("stat %s: empty ETag on a store with conditional puts", key)
	}
	return oi.ETag
}

func testConditionalPut(t *testing.T, s objstore.Store) {
	cp := conditional(t, s)
	ctx := ctxT(t)
	putIfAbsent := func(key string, b []byte) (string, error) {
		return cp.PutIfAbsent(ctx, key, bytes.NewReader(b), int64(len(b)))
	}
	putIfMatch := func(key string, b []byte, etag string) (string, error) {
		return cp.PutIfMatch(ctx, key, bytes.NewReader(b), int64(len(b)), etag)
	}

	// Create when absent; the ETag returned is the one Stat reports.
	first := []byte(`{"holder":"a"}`)
	etag1, err := putIfAbsent("cond/lease", first)
	if err != nil {
		t.Fatal(err)
	}
	if etag1 == "" || etag1 != statETag(t, s, "cond/lease") {
		t.Fatalf("put if absent returned ETag %q, stat says %q", etag1, statETag(t, s, "cond/lease"))
	}
	mustEqual(t, "created", getRange(t, s, "cond/lease", 0, -1), first)

	// A second create fails and leaves the object alone.
	_, err = putIfAbsent("cond/lease", []byte("second"))
	mustPreconditionFailed(t, "put if absent over an object", err)
	mustEqual(t, "after a refused create", getRange(t, s, "cond/lease", 0, -1), first)

	// Replace with the current ETag.
	second := []byte(`{"holder":"a","renewed":1}`)
	etag2, err := putIfMatch("cond/lease", second, etag1)
	if err != nil {
		t.Fatal(err)
	}
	if etag2 == "" || etag2 == etag1 || etag2 != statETag(t, s, "cond/lease") {
		t.Fatalf("put if match returned ETag %q (before %q), stat says %q", etag2, etag1, statETag(t, s, "cond/lease"))
	}
	mustEqual(t, "replaced", getRange(t, s, "cond/lease", 0, -1), second)

	// A stale ETag loses.
	_, err = putIfMatch("cond/lease", []byte("stale"), etag1)
	mustPreconditionFailed(t, "put if match with a stale ETag", err)
	mustEqual(t, "after a refused replace", getRange(t, s, "cond/lease", 0, -1), second)

	// A plain Put in between changes the ETag the next If-Match needs.
	third := []byte(`{"holder":"b"}`)
	put(t, s, "cond/lease", third)
	_, err = putIfMatch("cond/lease", []byte("after a put"), etag2)
	mustPreconditionFailed(t, "put if match after a plain put", err)
	etag3, err := putIfMatch("cond/lease", []byte(`{"holder":"a"}`), statETag(t, s, "cond/lease"))
	if err != nil {
		t.Fatalf("put if match with the ETag stat gave: %v", err)
	}
	// The same bytes again still need the current ETag.
	if _, err := putIfMatch("cond/lease", []byte(`{"holder":"a"}`), etag3); err != nil {
		t.Fatalf("put if match of the same bytes: %v", err)
	}

	// If-Match on a missing key fails and creates nothing.
	_, err = putIfMatch("cond/missing", []byte("x"), etag1)
	mustPreconditionFailed(t, "put if match of a missing key", err)
	mustNotFound(t, s, "cond/missing")

	// After a delete the key can be created again.
	if err := s.Delete(ctx, "cond/lease"); err != nil {
		t.Fatal(err)
	}
	if _, err := putIfAbsent("cond/lease", first); err != nil {
		t.Fatalf("put if absent after delete: %v", err)
	}
	mustEqual(t, "recreated", getRange(t, s, "cond/lease", 0, -1), first)

	if _, err := putIfAbsent("cond/../x", first); err == nil {
		t.Fatal("put if absent of an invalid key succeeded")
	}
}

// Of writers racing on one key with the same condition, at most one wins,
// and what the key holds is the winner's. (At most: through a retrying
// decorator, a winner whose answer was lost retries and then loses.)
func testConditionalPutRace(t *testing.T, s objstore.Store) {
	cp := conditional(t, s)
	ctx := ctxT(t)
	const writers = 8
	race := func(what string, write func(i int, b []byte) error) {
		t.Helper()
		var mu sync.Mutex
		winners := []int{}
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Payloads differ between rounds: an ETag may be the
				// bytes' hash, and the same bytes again would match.
				err := write(i, []byte(fmt.Sprintf("%s: writer %d", what, i)))
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, i)
					mu.Unlock()
				case !objstore.IsPreconditionFailed(err):
					t.Errorf("%s: writer %d: %v", what, i, err)
				}
			}()
		}
		wg.Wait()
		if len(winners) > 1 {
			t.Fatalf("%s: writers %v all won", what, winners)
		}
		got := string(getRange(t, s, "race/lease", 0, -1))
		if len(winners) == 1 && got != fmt.Sprintf("%s: writer %d", what, winners[0]) {
			t.Fatalf("%s: writer %d won, the object holds %q", what, winners[0], got)
		}
		if !strings.HasPrefix(got, what+": writer ") {
			t.Fatalf("%s: the object holds %q", what, got)
		}
	}
	race("put if absent", func(i int, b []byte) error {
		_, err := cp.PutIfAbsent(ctx, "race/lease", bytes.NewReader(b), int64(len(b)))
		return err
	})
	etag := statETag(t, s, "race/lease")
	race("put if match", func(i int, b []byte) error {
		_, err := cp.PutIfMatch(ctx, "race/lease", bytes.NewReader(b), int64(len(b)), etag)
		return err
	})
}
