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
	e, under, arm := cancelAtCall(t, faulty.OpDelete, "docs/f")
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
	arm(cancel)
	err := s.Remove(rctx, "f")
	arm(nil)
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

// cancelAtCall starts a manager whose store, once arm has given it a
// cancel function, calls it as a call op of key starts (faulty names a
// copy by its target): the caller gives up right then. arm(nil) disarms.
func cancelAtCall(t *testing.T, op faulty.Op, key string) (e *env, under objstore.Store, arm func(context.CancelFunc)) {
	var armed atomic.Pointer[context.CancelFunc]
	e, _, under = hookedEnv(t, func(o faulty.Op, k string) error {
		if o == op && k == key {
			if c := armed.Load(); c != nil {
				(*c)()
			}
		}
		return nil
	})
	return e, under, func(c context.CancelFunc) {
		if c == nil {
			armed.Store(nil)
			return
		}
		armed.Store(&c)
	}
}
