package fileshare

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
)

// TestRenameCancelledMidway: a caller that gives up while a rename over
// a file copies or deletes objects (an interrupted FUSE rename) never
// leaves the rename half done: either it ends (the source's content at the
// new name, nothing at the old one, in the share and in the store) or both
// files keep their acknowledged content, the replaced one too, not the
// object uploaded before its last write.
func TestRenameCancelledMidway(t *testing.T) {
	for _, at := range []struct {
		name string
		op   faulty.Op
		key  string
	}{
		{"copy", faulty.OpCopy, "docs/b"},     // the copy onto the new name
		{"delete", faulty.OpDelete, "docs/a"}, // the delete of the old name, once copied
	} {
		t.Run(at.name, func(t *testing.T) {
			e, under, arm := cancelAtCall(t, at.op, at.key)
			ctx := context.Background()
			must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
			s := e.share("docs")
			for _, p := range []string{"a", "b"} {
				must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
				must[Attr](t)(s.WriteAt(ctx, p, []byte("uploaded "+p), 0))
			}
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
			newA, newB := []byte("acknowledged a, not uploaded"), []byte("acknowledged b, not uploaded")
			must[Attr](t)(s.WriteAt(ctx, "a", newA, 0))
			must[Attr](t)(s.WriteAt(ctx, "b", newB, 0))

			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			arm(cancel)
			err := s.Rename(rctx, "a", "b")
			arm(nil)
			reads := func(p string, want []byte) {
				t.Helper()
				buf := make([]byte, len(want)+10)
				n, rerr := s.ReadAt(ctx, p, buf, 0)
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("the rename returned %v, and %s reads %q (%v), want %q", err, p, buf[:n], rerr, want)
				}
			}
			if err != nil {
				reads("a", newA)
				reads("b", newB)
				return
			}
			if _, err := s.Stat(ctx, "a"); !errors.Is(err, ErrNotExist) {
				t.Fatalf("renamed, yet Stat of the old name says %v", err)
			}
			reads("b", newA)
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := under.Stat(ctx, "docs/a"); !objstore.IsNotFound(err) {
				t.Fatalf("renamed, yet the object is still at the old name (%v)", err)
			}
			if b, _ := object(t, under, "docs/b"); !bytes.Equal(b, newA) {
				t.Fatalf("renamed, and the object at the new name holds %q, want %q", b, newA)
			}
		})
	}
}
