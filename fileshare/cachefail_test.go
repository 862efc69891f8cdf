package fileshare

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/health"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/vfs"
)

// A file's written blocks stay in the log's records until the upload; the
// cache then writes them into its block files. If that write fails, the
// file is in the store all the same, but the failing disk is logged,
// counted and shown in the shares' health, and stays shown after uploads
// that go well.
func TestFailedCacheWriteAfterUploadDegradesHealth(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New()}
	cacheDir := filepath.Join(e.dir, "cache")
	e.cacheFS = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) error {
		if failing.Load() && op == vfs.OpWrite && strings.HasPrefix(path, cacheDir) {
			return errors.New("injected I/O error")
		}
		return nil
	})
	reg := health.New(nil)
	e.opts = func(o *Options) { o.Health = reg.Register("shares") }
	t.Cleanup(e.close)
	e.start()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	want := bytes.Repeat([]byte("kept in the log until the upload\n"), 3000)
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "f", want, 0))
	failing.Store(true)
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatalf("upload with the cache's disk failing: %v", err)
	}
	failing.Store(false)
	states, lvl := reg.Snapshot()
	if lvl != health.Warning || !strings.Contains(states[0].Message, "local disk write failed") {
		t.Fatalf("health after a failed write of the cache's files: %v %+v", lvl, states)
	}
	if n := e.m.Stats().LocalWriteErrors; n == 0 {
		t.Fatal("no local write error counted")
	}
	if got := readFile(t, s, "f"); !bytes.Equal(got, want) {
		t.Fatalf("read of the file whose blocks the cache failed to keep: %d bytes, want %d", len(got), len(want))
	}
	if got, _ := object(t, e.store, s.key("f")); !bytes.Equal(got, want) {
		t.Fatal("the uploaded object differs from what was written")
	}
	must[Attr](t)(s.WriteAt(ctx, "f", []byte("more"), 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if states, lvl := reg.Snapshot(); lvl != health.Warning || !strings.Contains(states[0].Message, "local disk write failed") {
		t.Fatalf("health after a good upload: %v %+v", lvl, states)
	}
}
