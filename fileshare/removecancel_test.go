package fileshare

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
)

// TestRemoveCancelledMidway: a caller that gives up while a remove deletes
// the object (an interrupted FUSE unlink) never leaves the file half
// removed: either the remove ends (no file, no object) or the file keeps
// its acknowledged content, not the object uploaded before it.
func TestRemoveCancelledMidway(t *testing.T) {
	var cancelOnDelete atomic.Pointer[context.CancelFunc]
	e, _, under := hookedEnv(t, func(op faulty.Op, key string) error {
		if op == faulty.OpDelete && key == "docs/f" {
			if c := cancelOnDelete.Load(); c != nil {
				(*c)() // the caller gives up as the delete starts
			}
		}
		return nil
	})
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "f", []byte("uploaded"), 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	newer := []byte("acknowledged, not uploaded")
	must[Attr](t)(s.WriteAt(ctx, "f", newer, 0))

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cancelOnDelete.Store(&cancel)
	err := s.Remove(rctx, "f")
	cancelOnDelete.Store(nil)
	if err == nil {
		if _, err := s.Stat(ctx, "f"); !errors.Is(err, ErrNotExist) {
			t.Fatalf("removed, yet Stat says %v", err)
		}
		if _, err := under.Stat(ctx, "docs/f"); !objstore.IsNotFound(err) {
			t.Fatalf("removed, yet the object is there (%v)", err)
		}
		return
	}
	buf := make([]byte, len(newer))
	n, rerr := s.ReadAt(ctx, "f", buf, 0)
	if rerr != nil || !bytes.Equal(buf[:n], newer) {
		t.Fatalf("the remove failed (%v), and f now reads %q (%v), not its acknowledged %q", err, buf[:n], rerr, newer)
	}
}
