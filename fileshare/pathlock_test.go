package fileshare

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testrand"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// waitFor polls cond until it holds, failing the test after a generous
// deadline; it synchronises on state, never on elapsed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (l *pathLocks) held() (changes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.changes)
}

func TestPathLocksUnrelatedPathsDoNotWait(t *testing.T) {
	l := newPathLocks()
	up := l.upload("big/file.iso") // a slow upload in flight
	done := make(chan struct{})
	go func() {
		unlock := l.change("docs/a.txt", "docs/b.txt")
		unlock()
		unlock = l.change("big/other")
		unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("a rename elsewhere waited behind an unrelated upload")
	}
	up()
}

func TestPathLocksChangeWaitsForUploadsBelow(t *testing.T) {
	for _, tc := range []struct{ upload, change string }{
		{"dir/f", "dir"},
		{"dir/sub/f", "dir"},
		{"f", "f"},
		{"dir/f", ""}, // the root
	} {
		l := newPathLocks()
		up := l.upload(tc.upload)
		done := make(chan struct{})
		go func() {
			unlock := l.change(tc.change)
			close(done)
			unlock()
		}()
		// The change is registered (and so keeps new uploads out), but
		// does not go on while the upload below it runs.
		waitFor(t, "change registered", func() bool { return l.held() == 1 })
		select {
		case <-done:
			t.Fatalf("change of %q went on during an upload of %q", tc.change, tc.upload)
		default:
		}
		// A new upload below the waiting change waits too.
		upDone := make(chan struct{})
		go func() {
			unlock := l.upload(tc.upload)
			close(upDone)
			unlock()
		}()
		up()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("change of %q did not go on after the upload ended", tc.change)
		}
		select {
		case <-upDone:
		case <-time.After(time.Minute):
			t.Fatal("upload did not go on after the change ended")
		}
	}
}

func TestPathLocksOverlappingChangesTakeTurns(t *testing.T) {
	l := newPathLocks()
	first := l.change("a")
	done := make(chan struct{})
	go func() {
		unlock := l.change("a/b", "c")
		close(done)
		unlock()
	}()
	select {
	case <-done:
		t.Fatal("a change below a held change went on")
	default:
	}
	first()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("second change did not go on after the first ended")
	}
	if n := l.held(); n != 0 {
		t.Fatalf("%d changes still held", n)
	}
}

// TestRenameDoesNotWaitForUnrelatedUpload: a rename or remove of one file
// goes on while a slow upload of another file of the share is in flight
// (a RENAME used to wait behind every upload of its share).
func TestRenameDoesNotWaitForUnrelatedUpload(t *testing.T) {
	inner := mem.New("fs")
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := faulty.New(inner, faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpPut && key == "docs/big.bin" {
			once.Do(func() { close(entered) })
			<-release // a slow PUT
		}
		return nil
	}})
	e := &env{t: t, dir: t.TempDir(), md: metamem.New(), store: f.Store()}
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	for _, p := range []string{"a.txt", "c.txt"} {
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
		must[Attr](t)(s.WriteAt(ctx, p, []byte(p), 0))
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	must[Attr](t)(s.Create(ctx, "big.bin", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "big.bin", testrand.Bytes(7, BlockSize+1), 0))
	flushed := make(chan error, 1)
	go func() { flushed <- e.m.Flush(ctx, "") }()
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("the upload of big.bin did not start")
	}
	changed := make(chan error, 1)
	go func() {
		if err := s.Rename(ctx, "a.txt", "b.txt"); err != nil {
			changed <- err
			return
		}
		changed <- s.Remove(ctx, "c.txt")
	}()
	select {
	case err := <-changed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		close(release)
		t.Fatal("rename and remove of other files waited behind the upload of big.bin")
	}
	close(release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if got, _ := object(t, inner, "docs/b.txt"); string(got) != "a.txt" {
		t.Fatalf("renamed object holds %q", got)
	}
	for _, k := range []string{"docs/a.txt", "docs/c.txt"} {
		if _, err := inner.Stat(ctx, k); !objstore.IsNotFound(err) {
			t.Fatalf("%s after rename/remove: %v", k, err)
		}
	}
}
