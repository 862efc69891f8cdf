package fileshare

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// TestReplayOfMoreFilesThanTheCacheHolds: a restart whose replay makes
// more files dirty than the cache has blocks ends, the files read back
// whole, and once they are uploaded the cache is back within its
// capacity. Uploaded files whose records the log keeps (a file of
// another share, never uploaded, holds its trim back) are made dirty
// again by the replay, each in a block of its own, and the uploads that
// make room in the cache start only after the replay: a replay that waits
// for room never ends.
func TestReplayOfMoreFilesThanTheCacheHolds(t *testing.T) {
	const blocks, files, batch = 8, 40, 4
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New(), cacheCap: blocks * BlockSize}
	s := e.startHeld()
	ctx := context.Background()
	name := func(i int) string { return fmt.Sprintf("f%03d", i) }
	content := func(i int) []byte { return []byte(fmt.Sprintf("file %d, small", i)) }
	for i := range files + batch {
		must[Attr](t)(s.Create(ctx, name(i), 0o644, 0, 0, true))
		must[Attr](t)(s.WriteAt(ctx, name(i), content(i), 0))
		// Uploaded in batches the cache holds, the last batch not.
		if i%batch == batch-1 && i < files {
			if err := e.m.Flush(ctx, "docs"); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Stopped without uploading, then started: the start fails the test
	// if it has not ended in two minutes.
	e.close()
	start, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	e.ctx = start
	e.start()
	e.ctx = nil
	if st := e.cache.Stats(); st.DirtyChunks <= blocks || st.Used <= st.Capacity {
		t.Fatalf("after the replay %d dirty blocks, %d of %d bytes used: want more than the cache's %d blocks", st.DirtyChunks, st.Used, st.Capacity, blocks)
	}
	s = e.share("docs")
	for i := range files + batch {
		if got := readFile(t, s, name(i)); !bytes.Equal(got, content(i)) {
			t.Fatalf("%s after the restart: %q, want %q", name(i), got, content(i))
		}
	}
	if got := readFile(t, e.share("hold"), "first"); string(got) != "first" {
		t.Fatalf("first after the restart: %q", got)
	}

	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for i := range files + batch {
		if got, _ := object(t, e.store, s.key(name(i))); !bytes.Equal(got, content(i)) {
			t.Fatalf("%s uploaded: %q, want %q", name(i), got, content(i))
		}
	}
	if st := e.cache.Stats(); st.Dirty != 0 || st.Used > st.Capacity {
		t.Fatalf("after the uploads %d bytes dirty, %d of %d used: want none dirty, within capacity", st.Dirty, st.Used, st.Capacity)
	}
}

// startHeld starts e with two shares: hold, with a file "first" never
// uploaded, which keeps the log from being trimmed past the records that
// come after it, and docs, which it returns.
func (e *env) startHeld() *Share {
	t := e.t
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "hold"}))
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	hold := e.share("hold")
	must[Attr](t)(hold.Create(ctx, "first", 0o644, 0, 0, true))
	must[Attr](t)(hold.WriteAt(ctx, "first", []byte("first"), 0))
	return e.share("docs")
}

// TestFullCacheUploadsWithoutWaitingToSettle: with the settle time and the
// upload interval an hour, files written into a cache that holds a third
// of them are uploaded as the cache fills (pressure), so no write waits an
// hour for room. The deadline bounds a hang; it measures nothing.
func TestFullCacheUploadsWithoutWaitingToSettle(t *testing.T) {
	const blocks, files = 8, 24
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New(), cacheCap: blocks * BlockSize}
	t.Cleanup(e.close)
	e.start()
	if _, err := e.m.Create(context.Background(), Config{Name: "docs"}); err != nil {
		t.Fatal(err)
	}
	s := e.share("docs")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	content := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 4096+i) }
	for i := range files {
		name := fmt.Sprintf("f%02d", i)
		if _, err := s.Create(ctx, name, 0o644, 0, 0, true); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if _, err := s.WriteAt(ctx, name, content(i), 0); err != nil {
			t.Fatalf("write %s into a full cache: %v (cache %+v)", name, err, e.cache.Stats())
		}
	}
	if st := e.cache.Stats(); st.Used > st.Capacity {
		t.Fatalf("cache over capacity: %d of %d bytes", st.Used, st.Capacity)
	}
	// Room for each block past the eighth came from a file uploaded (and
	// its block evicted) on pressure, before any settle time.
	uploaded := 0
	for i := range files {
		if got, err := objstore.GetAll(ctx, e.store, s.key(fmt.Sprintf("f%02d", i))); err == nil && bytes.Equal(got, content(i)) {
			uploaded++
		}
	}
	if uploaded < files-blocks {
		t.Fatalf("%d of %d files in the store, want at least %d", uploaded, files, files-blocks)
	}
}
