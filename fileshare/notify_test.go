package fileshare

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// copyDir copies the files of dir (the log's segments) to a new one.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// An upload publishes one event with the object's key, size and ETag; an
// upload done again from the log after a crash (before the log was
// trimmed) publishes the same id; a remove publishes a delete; failed
// uploads publish their attempt; a full queue holds uploads back.
func TestUploadEvents(t *testing.T) {
	ev := &notifytest.Recorder{}
	var failPuts atomic.Bool
	f := faulty.New(mem.New("fs"), faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpPut && failPuts.Load() {
			return errors.New("put refused")
		}
		return nil
	}})
	e := &env{t: t, dir: t.TempDir(), store: f.Store(), md: metamem.New(), opts: func(o *Options) { o.Events = ev }}
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "a", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "a", []byte("hello"), 0))
	must[Attr](t)(s.Create(ctx, "b", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "b", []byte("world!"), 0))
	logCopy := copyDir(t, filepath.Join(e.dir, "log")) // the log before the uploads
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	got := ev.Take()
	if len(got) != 2 {
		t.Fatalf("events %+v", got)
	}
	ids := map[string]string{}
	for _, x := range got {
		oi, err := e.store.Stat(ctx, "share"+x.Path)
		if err != nil {
			t.Fatal(err)
		}
		if x.Kind != notify.FileUploaded || x.Share != "s" || x.Key != "share"+x.Path || x.Type != "file" ||
			x.Size == nil || *x.Size != oi.Size || x.ETag != oi.ETag || x.ID == "" {
			t.Fatalf("event %+v (object %+v)", x, oi)
		}
		ids[x.Path] = x.ID
	}
	if ids["/a"] == ids["/b"] {
		t.Fatal("two uploads, one id")
	}
	// Nothing pending: no event.
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := ev.Take(); len(got) != 0 {
		t.Fatalf("events of nothing: %+v", got)
	}

	// A crash after the uploads, before the log let their records go:
	// the replay uploads again, with the same ids.
	e.close()
	if err := os.RemoveAll(filepath.Join(e.dir, "log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logCopy, filepath.Join(e.dir, "log")); err != nil {
		t.Fatal(err)
	}
	e.start()
	s = e.share("s")
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	again := ev.Take()
	if len(again) != 2 {
		t.Fatalf("after the replay: events %+v", again)
	}
	for _, x := range again {
		if x.Kind != notify.FileUploaded || ids[x.Path] != x.ID {
			t.Fatalf("after the replay: %+v, ids before %v", x, ids)
		}
	}

	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := ev.Take(); len(got) != 1 || got[0].Kind != notify.FileDeleted || got[0].Path != "/a" || got[0].Key != "share/a" {
		t.Fatalf("remove: %+v", got)
	}

	// A full queue: the upload waits, the file stays pending.
	ev.SetFull(true)
	must[Attr](t)(s.WriteAt(ctx, "b", []byte("again"), 0))
	if err := e.m.Flush(ctx, ""); !errors.Is(err, notify.ErrFull) {
		t.Fatalf("flush with the queue full: %v", err)
	}
	if got := ev.Take(); len(got) != 0 {
		t.Fatalf("events with the queue full: %+v", got)
	}
	ev.SetFull(false)

	// The store refuses: attempts 1, 2 and 4 are published.
	failPuts.Store(true)
	for range 4 {
		_ = e.m.Flush(ctx, "")
	}
	failPuts.Store(false)
	var attempts []int
	for _, x := range ev.Take() {
		if x.Kind != notify.FileUploadFailed || x.Path != "/b" || x.Error == "" {
			t.Fatalf("failed upload: %+v", x)
		}
		attempts = append(attempts, x.Attempt)
	}
	if len(attempts) != 3 || attempts[0] != 1 || attempts[1] != 2 || attempts[2] != 4 {
		t.Fatalf("failed attempts published: %v", attempts)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := ev.Take(); len(got) != 1 || got[0].Kind != notify.FileUploaded || got[0].ID == ids["/b"] {
		t.Fatalf("upload after the failures: %+v", got)
	}
}

// A rename publishes file.renamed for each object moved in the store,
// with the key and path before and after: a file, a directory's objects
// (its marker and the files below it), and a file renamed while the store
// is away, reported when the uploader moves it, with a stable id. A new
// file not uploaded yet reports only its upload, at the new path.
func TestRenameEvents(t *testing.T) {
	ev := &notifytest.Recorder{}
	e, away, fake, under := awayEnv(t, nil)
	e.close()
	e.opts = func(o *Options) { o.Clock, o.AttrTTL, o.Events = fake, time.Minute, ev }
	e.start()
	ctx := context.Background()
	s := e.uploadedTree()
	ev.Take()
	renamed := func(want ...string) []notify.Event {
		t.Helper()
		var got []string
		evs := ev.Take()
		for _, x := range evs {
			if x.Kind != notify.FileRenamed || x.Share != "s" || strings.TrimSuffix(x.Key, "/") != "share"+x.Path || strings.TrimSuffix(x.OldKey, "/") != "share"+x.OldPath {
				t.Fatalf("event %+v", x)
			}
			got = append(got, x.OldPath+">"+x.Path+":"+x.Type)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("renames %v, want %v", got, want)
		}
		return evs
	}
	if err := s.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	renamed("/a>/b:file")
	if err := s.Rename(ctx, "d", "e"); err != nil {
		t.Fatal(err)
	}
	renamed("/d>/e:directory", "/d/x>/e/x:file")

	// A new file: its upload at the new path is its only event.
	must[Attr](t)(s.Create(ctx, "n", 0o644, 0, 0, true))
	if err := s.Rename(ctx, "n", "m"); err != nil {
		t.Fatal(err)
	}
	renamed()
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := ev.Take(); len(got) != 1 || got[0].Kind != notify.FileUploaded || got[0].Path != "/m" {
		t.Fatalf("a new file renamed, then uploaded: %+v", got)
	}

	// The store away: the rename waits in the log, and so does its event.
	goAway(t, e, s, fake, away, "")
	if err := s.Rename(ctx, "b", "c"); err != nil {
		t.Fatal(err)
	}
	renamed()
	away.Store(false)
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	got := renamed("/b>/c:file")
	if got[0].ID == "" {
		t.Fatalf("a logged rename's event has no stable id: %+v", got[0])
	}
	if _, err := under.Stat(ctx, "share/c"); err != nil {
		t.Fatalf("the renamed object: %v", err)
	}
	if _, err := under.Stat(ctx, "share/b"); err == nil {
		t.Fatal("the old key is still there")
	}
}
