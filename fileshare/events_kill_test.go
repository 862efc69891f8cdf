package fileshare

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/internal/crashpoint"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore/localdir"
)

// A kill -9 at each point of a remove's or a rename's way between the
// store and the log (before the event is queued, after it, after the old
// key is deleted): after the restart and the replay, every object the
// operation deleted or moved has exactly one event in the queue, and the
// store holds what the operation asked. A rename repeated by the replay
// queues its event with the id it had, so the queue takes it once.
func TestRemoveRenameEventsAcrossKill(t *testing.T) {
	type op struct {
		name string
		do   func(ctx context.Context, s *Share) error
		gone []string // keys deleted or moved away
		in   []string // keys moved in
	}
	remove := op{"remove", func(ctx context.Context, s *Share) error { return s.Remove(ctx, "a") }, []string{"share/a"}, nil}
	renameFile := op{"rename", func(ctx context.Context, s *Share) error { return s.Rename(ctx, "a", "b") }, []string{"share/a"}, []string{"share/b"}}
	renameDir := op{"renamedir", func(ctx context.Context, s *Share) error { return s.Rename(ctx, "d", "e") },
		[]string{"share/d/", "share/d/x"}, []string{"share/e/", "share/e/x"}}
	cases := []struct {
		point string
		op    op
	}{
		{"file.deleted:store", remove},
		{"file.deleted:queued", remove},
		{"file.renamed:copied", renameFile},
		{"file.renamed:queued", renameFile},
		{"file.renamed:store", renameFile},
		{"file.renamed:copied", renameDir},
		{"file.renamed:queued", renameDir},
		{"file.renamed:store", renameDir},
	}
	for _, c := range cases {
		t.Run(c.op.name+"-"+strings.ReplaceAll(c.point, ":", "-"), func(t *testing.T) {
			if point, dir, ok := crashpoint.Child(t); ok {
				e := eventsEnvOnDisk(t, dir)
				ctx := context.Background()
				s := e.uploadedTree()
				crashHook = func(p string) {
					if p == point {
						crashpoint.Kill()
					}
				}
				if err := c.op.do(ctx, s); err != nil {
					t.Fatal(err)
				}
				t.Fatalf("not killed at %s", point)
			}
			dir := t.TempDir()
			crashpoint.Run(t, c.point, dir)
			e := eventsEnvOnDisk(t, dir)
			ctx := context.Background()
			if err := e.m.Flush(ctx, ""); err != nil { // what the replay left pending
				t.Fatal(err)
			}
			evs, err := e.m.opts.Events.(*notify.Queue).Events(ctx)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, x := range evs {
				switch x.Kind {
				case notify.FileDeleted:
					count[x.Key]++
				case notify.FileRenamed:
					count[x.OldKey+">"+x.Key]++
				}
			}
			want := map[string]int{}
			for i, k := range c.op.gone {
				if c.op.in == nil {
					want[k] = 1
				} else {
					want[k+">"+c.op.in[i]] = 1
				}
			}
			if fmt.Sprint(count) != fmt.Sprint(want) {
				t.Fatalf("events after the kill at %s: %v, want %v (queue %+v)", c.point, count, want, evs)
			}
			for _, k := range c.op.gone {
				if _, err := e.store.Stat(ctx, k); err == nil {
					t.Fatalf("%s still in the store", k)
				}
			}
			for _, k := range c.op.in {
				if _, err := e.store.Stat(ctx, k); err != nil {
					t.Fatalf("%s: %v", k, err)
				}
			}
		})
	}
}

// eventsEnvOnDisk is an env whose store, metadata (with an event queue
// in it) and log are in dir, as a daemon's are.
func eventsEnvOnDisk(t *testing.T, dir string) *env {
	t.Helper()
	md, err := metabadger.Open(filepath.Join(dir, "meta"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := localdir.Open(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := notify.Open(context.Background(), md, notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, store: st, md: md, opts: func(o *Options) { o.Events = q }}
	t.Cleanup(func() {
		e.close()
		q.Close()
		md.Close()
	})
	e.start()
	return e
}

// uploadedTree makes share s (prefix share/) holding file a and directory
// d with file d/x, all uploaded.
func (e *env) uploadedTree() *Share {
	t, ctx := e.t, context.Background()
	t.Helper()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "a", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "a", []byte("hello"), 0))
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "d/x", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "d/x", []byte("below"), 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return s
}
