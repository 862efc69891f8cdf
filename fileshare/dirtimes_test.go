package fileshare

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/stacks"
	"github.com/gatewayd/gatewayd/objstore/faulty"
)

// dirTimes returns directory p's times as Stat gives them, after checking
// that its parent's listing gives the same.
func dirTimes(t *testing.T, s *Share, p string) (mtime, ctime time.Time) {
	t.Helper()
	ctx := context.Background()
	a := must[Attr](t)(s.Stat(ctx, p))
	if a.Type != TypeDir {
		t.Fatalf("%s: type %d, want a directory", p, a.Type)
	}
	if p != "" {
		found := false
		for _, e := range must[[]DirEntry](t)(s.ReadDir(ctx, parentOf(p))) {
			if e.Name == baseName(p) {
				found = true
				if !e.Attr.Mtime.Equal(a.Mtime) || !e.Attr.Ctime.Equal(a.Ctime) {
					t.Fatalf("%s: the listing gives mtime %v ctime %v, Stat %v %v", p, e.Attr.Mtime, e.Attr.Ctime, a.Mtime, a.Ctime)
				}
			}
		}
		if !found {
			t.Fatalf("%s: not in its parent's listing", p)
		}
	}
	return a.Mtime, a.Ctime
}

// flushAll flushes every share: Flush uploads every file and then, as an
// upload round does after its uploads, the directories' times.
func flushAll(t *testing.T, e *env) {
	t.Helper()
	if err := e.m.Flush(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
}

// wantMoved checks that directories dirs have both times at now.
func wantMoved(t *testing.T, s *Share, now time.Time, what string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		mt, ct := dirTimes(t, s, d)
		if !mt.Equal(now) || !ct.Equal(now) {
			t.Errorf("after %s: %q has mtime %v ctime %v, want both %v", what, d, mt, ct, now)
		}
	}
}

// TestDirectoryTimesMove: a directory's mtime and ctime become the time
// of each entry added, removed or renamed in or out of it; Stat and the
// parent's listing give the same; they reach the marker's metadata with
// the uploads and survive a restart before and after; a time set on the
// directory wins over the ones before it.
func TestDirectoryTimesMove(t *testing.T) {
	e, _, fake := countedEnv(t)
	st := e.store
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Mkdir(ctx, "e", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "d/old", 0o644, 0, 0, true))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	step := func() time.Time {
		fake.Advance(time.Second)
		return fake.Now()
	}

	now := step()
	must[Attr](t)(s.Create(ctx, "d/f", 0o644, 0, 0, true))
	wantMoved(t, s, now, "a create", "d")
	if mt, _ := dirTimes(t, s, "e"); mt.Equal(now) {
		t.Errorf("a create in d moved e's mtime")
	}
	now = step()
	must[Attr](t)(s.Mkdir(ctx, "d/sub", 0o755, 0, 0))
	wantMoved(t, s, now, "a mkdir", "d")
	now = step()
	must[Attr](t)(s.Symlink(ctx, "d/link", "f", 0, 0))
	wantMoved(t, s, now, "a symlink", "d")
	now = step()
	if err := s.Rename(ctx, "d/f", "d/g"); err != nil {
		t.Fatal(err)
	}
	wantMoved(t, s, now, "a rename within d", "d")
	now = step()
	if err := s.Rename(ctx, "d/g", "e/g"); err != nil {
		t.Fatal(err)
	}
	wantMoved(t, s, now, "a rename from d to e", "d", "e")
	now = step()
	if err := s.Remove(ctx, "d/old"); err != nil { // uploaded: a delete in the store
		t.Fatal(err)
	}
	wantMoved(t, s, now, "a remove", "d")
	now = step()
	must[Attr](t)(s.Create(ctx, "top", 0o644, 0, 0, true))
	wantMoved(t, s, now, "a create in the root", "")

	// A restart before the upload keeps them.
	e.restart()
	s = e.share("docs")
	wantMoved(t, s, now, "a restart before the upload", "")
	if mt, _ := dirTimes(t, s, "d"); !mt.Equal(now.Add(-time.Second)) {
		t.Errorf("after a restart, d's mtime is %v, want %v", mt, now.Add(-time.Second))
	}

	// An upload round puts them in the markers; the root has none, and
	// does not get one.
	flushAll(t, e)
	if _, err := st.Stat(ctx, "docs/"); err == nil {
		t.Errorf("the root got a marker")
	}
	for p, want := range map[string]time.Time{"docs/d/": now.Add(-time.Second), "docs/e/": now.Add(-2 * time.Second)} {
		_, md := object(t, st, p)
		if md[metaMtime] != strconv.FormatInt(want.UnixNano(), 10) || md[metaCtime] != md[metaMtime] {
			t.Errorf("marker %s: metadata %v, want mtime and ctime %d", p, md, want.UnixNano())
		}
	}
	fake.Advance(2 * time.Minute) // what the share cached is old now: the store says
	e.restart()
	s = e.share("docs")
	wantMoved(t, s, now.Add(-2*time.Second), "an upload and a restart", "e")
	wantMoved(t, s, now, "an upload and a restart", "")

	// A time set on the directory wins; a chmod keeps the mtime entries gave.
	now = step()
	must[Attr](t)(s.Create(ctx, "e/h", 0o644, 0, 0, true))
	set := time.Unix(1_500_000_000, 0)
	a := must[Attr](t)(s.SetAttr(ctx, "e", SetAttr{Mtime: &set}))
	if !a.Mtime.Equal(set) {
		t.Errorf("SetAttr gave mtime %v, want %v", a.Mtime, set)
	}
	if mt, _ := dirTimes(t, s, "e"); !mt.Equal(set) {
		t.Errorf("after a set mtime, e's mtime is %v, want %v", mt, set)
	}
	now = step()
	must[Attr](t)(s.Create(ctx, "e/i", 0o644, 0, 0, true))
	mode := uint32(0o700)
	step()
	a = must[Attr](t)(s.SetAttr(ctx, "e", SetAttr{Mode: &mode}))
	if mt, _ := dirTimes(t, s, "e"); !mt.Equal(now) || !a.Mtime.Equal(now) {
		t.Errorf("after a chmod, e's mtime is %v (SetAttr gave %v), want %v", mt, a.Mtime, now)
	}
	// The same in a new directory, not uploaded yet (its change goes
	// through the log with its marker).
	now = step()
	must[Attr](t)(s.Mkdir(ctx, "n", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "n/x", 0o644, 0, 0, true))
	step()
	a = must[Attr](t)(s.SetAttr(ctx, "n", SetAttr{Mode: &mode}))
	if mt, _ := dirTimes(t, s, "n"); !mt.Equal(now) || !a.Mtime.Equal(now) || a.Mode != mode {
		t.Errorf("after a chmod of a new directory, its mtime is %v (SetAttr gave %v, mode %o), want %v", mt, a.Mtime, a.Mode, now)
	}
	flushAll(t, e)
	fake.Advance(2 * time.Minute)
	e.restart()
	s = e.share("docs")
	if mt, _ := dirTimes(t, s, "n"); !mt.Equal(now) {
		t.Errorf("after the upload of a new directory and a restart, its mtime is %v, want %v", mt, now)
	}
}

// TestDirectoryTimesWhileStoreAway: entry changes made while the store is
// away move their directories' times at once; a restart in the outage
// keeps them; once the store is back, an upload round puts them in the
// markers.
func TestDirectoryTimesWhileStoreAway(t *testing.T) {
	e, away, fake, under := awayEnv(t, nil)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "d/old", 0o644, 0, 0, true))
	goAway(t, e, s, fake, away, "", "d")
	fake.Advance(time.Second)
	now := fake.Now()
	must[Attr](t)(s.Create(ctx, "d/new", 0o644, 0, 0, true))
	if err := s.Remove(ctx, "d/old"); err != nil { // through the log
		t.Fatal(err)
	}
	wantMoved(t, s, now, "changes in the outage", "d")
	if err := e.m.uploadDirTimes(ctx, ""); err != nil {
		t.Fatalf("an upload round of directory times in the outage: %v", err)
	}
	e.restart()
	s = e.share("docs")
	// The share's attributes of d are not kept across restarts: it asks
	// the store, so d's times are looked at once the store is back.
	away.Store(false)
	fake.Advance(2 * time.Minute)
	wantMoved(t, s, now, "a restart in the outage", "d")
	flushAll(t, e)
	_, md := object(t, under, "docs/d/")
	if md[metaMtime] != strconv.FormatInt(now.UnixNano(), 10) || md[metaCtime] != md[metaMtime] {
		t.Errorf("marker after the outage: metadata %v, want mtime and ctime %d", md, now.UnixNano())
	}
}

// TestDirectoryTimesSetDuringRound: a SetAttr of a directory's times that
// comes while an upload round is writing the times its entry changes gave
// it ends in the marker, not the round's older times (seen on a loaded
// machine: after a restart the directory showed its last create's time).
func TestDirectoryTimesSetDuringRound(t *testing.T) {
	var hook atomic.Pointer[func(faulty.Op, string)]
	e, fake, _ := hookedEnv(t, func(op faulty.Op, key string) error {
		if h := hook.Load(); h != nil {
			(*h)(op, key)
		}
		return nil
	})
	var blocked atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "d/old", 0o644, 0, 0, true))
	flushAll(t, e)
	fake.Advance(time.Second)
	must[Attr](t)(s.Create(ctx, "d/new", 0o644, 0, 0, true))
	block := func(op faulty.Op, key string) {
		if op == faulty.OpPut && key == "docs/d/" && blocked.CompareAndSwap(false, true) {
			close(entered) // the round's SetMeta of d's marker
			<-release
		}
	}
	hook.Store(&block)
	defer close(release)
	round := make(chan error, 1)
	go func() { round <- e.m.uploadDirTimes(ctx, "") }()
	select {
	case <-entered:
	case err := <-round:
		t.Fatalf("the round ended (%v) without writing d's times", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("the round did not write d's times in 5 minutes")
	}
	set := time.Date(2017, 7, 14, 2, 40, 0, 0, time.UTC)
	setDone := make(chan error, 1)
	go func() {
		_, err := s.SetAttr(ctx, "d", SetAttr{Mtime: &set})
		setDone <- err
	}()
	// Let the round go on once the SetAttr has either finished or waits
	// for it.
	deadline := time.Now().Add(5 * time.Minute)
	for done := false; !done; {
		select {
		case err := <-setDone:
			if err != nil {
				t.Fatal(err)
			}
			setDone <- nil
			done = true
		case <-time.After(10 * time.Millisecond):
			done = stacks.Has("(*Share).SetAttr(", "sync.(*Mutex).Lock")
		}
		if time.Now().After(deadline) {
			t.Fatal("the SetAttr neither ended nor waited")
		}
	}
	release <- struct{}{} // unblocks the round's write (close at the end is for a failed test)
	if err := <-round; err != nil {
		t.Fatal(err)
	}
	if err := <-setDone; err != nil {
		t.Fatal(err)
	}
	flushAll(t, e)
	e.restart()
	s = e.share("docs")
	fake.Advance(2 * time.Minute) // what the share cached is old: the marker says
	if mt, _ := dirTimes(t, s, "d"); !mt.Equal(set) {
		t.Errorf("after a restart: d's mtime is %v, want the %v set during the round", mt, set)
	}
}
