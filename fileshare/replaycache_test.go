package fileshare

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
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
