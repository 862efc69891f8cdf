package fileshare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// tree makes files and directories whose modes, owners and times all
// differ from each other and from the share's defaults, and uploads them.
func tree(t *testing.T, e *env, s *Share) []string {
	t.Helper()
	ctx := context.Background()
	var paths []string
	for i, d := range []string{"d1", "d1/d2", "d3"} {
		must[Attr](t)(s.Mkdir(ctx, d, 0o700+uint32(i)*0o10, 2000+uint32(i), 3000+uint32(i)))
		paths = append(paths, d)
	}
	for i, f := range []string{"f0", "d1/f1", "d1/f2", "d1/d2/f3", "d3/f4"} {
		must[Attr](t)(s.Create(ctx, f, 0o600+uint32(i)*0o10, 1000+uint32(i), 100+uint32(i), true))
		must[Attr](t)(s.WriteAt(ctx, f, bytes.Repeat([]byte{byte(i)}, 10+i), 0))
		paths = append(paths, f)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		mtime := time.Unix(1_500_000_000+int64(i)*1000, int64(i)*1000)
		must[Attr](t)(s.SetAttr(ctx, p, SetAttr{Mtime: &mtime}))
	}
	return paths
}

// sameAttrs checks that every path lists with the attributes Stat gives,
// and that those are the ones stored.
func sameAttrs(t *testing.T, s *Share, paths []string, want map[string]Attr, when string) {
	t.Helper()
	ctx := context.Background()
	listed := map[string]Attr{}
	for _, dir := range []string{"", "d1", "d1/d2", "d3"} {
		for _, e := range must[[]DirEntry](t)(s.ReadDir(ctx, dir)) {
			listed[joinPath(dir, e.Name)] = e.Attr
		}
	}
	for _, p := range paths {
		st := must[Attr](t)(s.Stat(ctx, p))
		l, ok := listed[p]
		if !ok {
			t.Fatalf("%s: %s not listed", when, p)
		}
		for _, a := range []struct {
			how string
			a   Attr
		}{{"stat", st}, {"listing", l}} {
			w := want[p]
			if a.a.Mode != w.Mode || a.a.UID != w.UID || a.a.GID != w.GID || !a.a.Mtime.Equal(w.Mtime) || a.a.Type != w.Type || a.a.Ino != w.Ino {
				t.Errorf("%s: %s of %s: mode %o uid %d gid %d mtime %v type %d ino %d; stored mode %o uid %d gid %d mtime %v type %d ino %d",
					when, a.how, p, a.a.Mode, a.a.UID, a.a.GID, a.a.Mtime, a.a.Type, a.a.Ino, w.Mode, w.UID, w.GID, w.Mtime, w.Type, w.Ino)
			}
		}
		if !st.Ctime.Equal(l.Ctime) || st.Size != l.Size {
			t.Errorf("%s: %s: stat ctime %v size %d, listing ctime %v size %d", when, p, st.Ctime, st.Size, l.Ctime, l.Size)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestListingsCarryStoredAttributes: a listing gives every entry the
// attributes stored with it, the same Stat gives, also when they come
// from the store: after a restart, a refresh and the attribute TTL.
func TestListingsCarryStoredAttributes(t *testing.T) {
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New()}
	e.opts = func(o *Options) { o.Clock, o.AttrTTL = fake, time.Minute }
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	paths := tree(t, e, s)
	want := map[string]Attr{}
	for _, p := range paths {
		want[p] = must[Attr](t)(s.Stat(ctx, p))
		if want[p].Mode == s.cfg.FileMode || want[p].Mode == s.cfg.DirMode {
			t.Fatalf("%s has a default mode", p)
		}
	}
	sameAttrs(t, s, paths, want, "as written")

	e.restart()
	s = e.share("docs")
	sameAttrs(t, s, paths, want, "after a restart")

	if err := s.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	sameAttrs(t, s, paths, want, "after a refresh")
	for _, dir := range []string{"", "d1"} {
		if err := s.Refresh(dir, false); err != nil {
			t.Fatal(err)
		}
	}
	sameAttrs(t, s, paths, want, "after a refresh of one directory")

	fake.Advance(2 * time.Minute)
	sameAttrs(t, s, paths, want, "after the attribute TTL")
}

// TestRemoveCountsFilesNotUploaded: a directory holding a file or
// directory that is not uploaded yet is not empty, for rmdir and for a
// rename over it.
func TestRemoveCountsFilesNotUploaded(t *testing.T) {
	e := newEnv(t) // settle time of an hour: nothing goes up unless flushed
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "full", 0o755, 0, 0))
	must[Attr](t)(s.Mkdir(ctx, "empty", 0o755, 0, 0))
	must[Attr](t)(s.Mkdir(ctx, "nested", 0o755, 0, 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	must[Attr](t)(s.Create(ctx, "full/f", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "full/f", []byte("not uploaded yet"), 0))
	must[Attr](t)(s.Mkdir(ctx, "nested/sub", 0o755, 0, 0))
	for _, dir := range []string{"full", "nested"} {
		if err := s.Remove(ctx, dir); !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("rmdir of %s holding what is not uploaded: %v", dir, err)
		}
		if err := s.Rename(ctx, "empty", dir); !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("rename over %s holding what is not uploaded: %v", dir, err)
		}
	}
	if got := readFile(t, s, "full/f"); string(got) != "not uploaded yet" {
		t.Fatalf("file after the refused rmdir: %q", got)
	}
	// Emptied, the directories go.
	must[error](t)(nil, s.Remove(ctx, "full/f"))
	must[error](t)(nil, s.Remove(ctx, "nested/sub"))
	for _, dir := range []string{"full", "nested"} {
		if err := s.Remove(ctx, dir); err != nil {
			t.Fatalf("rmdir of emptied %s: %v", dir, err)
		}
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	var keys []string
	_ = e.store.List(ctx, "docs/", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if !equalStrings(keys, []string{"docs/empty/"}) {
		t.Fatalf("objects left: %v", keys)
	}
}

// TestWorksWhileStoreAway: creates, writes, mkdir, renames, removes and
// chmod in directories the share knows succeed while every store call
// fails; a restart in the outage loses nothing; the changes reach the
// store after it.
// awayEnv is an env whose store is away while away is set, or when fail
// (if not nil) says so; under is the store behind the faults.
func awayEnv(t *testing.T, fail func(op faulty.Op) bool) (e *env, away *atomic.Bool, fake *clock.Fake, under objstore.Store) {
	away = new(atomic.Bool)
	e, fake, under = hookedEnv(t, func(op faulty.Op, key string) error {
		if away.Load() || fail != nil && fail(op) {
			return errkind.Mark(errkind.Retryable, fmt.Errorf("store away"))
		}
		return nil
	})
	return e, away, fake, under
}

// hookedEnv starts a share manager on a fake clock (AttrTTL a minute)
// whose store calls hook before each operation; under is the store
// behind the hook.
func hookedEnv(t *testing.T, hook func(op faulty.Op, key string) error) (e *env, fake *clock.Fake, under objstore.Store) {
	under = mem.New("fs")
	inj := faulty.New(under, faulty.Options{Hook: hook})
	fake = clock.NewFake(time.Unix(1_700_000_000, 0))
	e = &env{t: t, dir: t.TempDir(), store: inj.Store(), md: metamem.New()}
	e.opts = func(o *Options) { o.Clock, o.AttrTTL = fake, time.Minute }
	t.Cleanup(e.close)
	e.start()
	return e, fake, under
}

// goAway uploads everything, lists dirs, then sends the store away once
// what the share knows is old: the first call finds it away, and from then
// on the share answers from it.
func goAway(t *testing.T, e *env, s *Share, fake *clock.Fake, away *atomic.Bool, dirs ...string) {
	t.Helper()
	ctx := context.Background()
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		must[[]DirEntry](t)(s.ReadDir(ctx, d))
	}
	fake.Advance(2 * time.Minute)
	away.Store(true)
}

func TestWorksWhileStoreAway(t *testing.T) {
	e, away, fake, _ := awayEnv(t, nil)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "d/old", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "d/old", []byte("before"), 0))
	must[Attr](t)(s.Create(ctx, "d/again", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "d/again", []byte("before"), 0))
	// Uploaded before the outage, renamed and changed in it.
	must[Attr](t)(s.Create(ctx, "d/keep", 0o640, 7, 8, true))
	must[Attr](t)(s.WriteAt(ctx, "d/keep", []byte("renamed after its upload"), 0))
	must[Attr](t)(s.Create(ctx, "d/chm", 0o644, 7, 8, true))
	must[Attr](t)(s.WriteAt(ctx, "d/chm", []byte("chmod after its upload"), 0))
	must[Attr](t)(s.Mkdir(ctx, "d/edir", 0o750, 7, 8))
	goAway(t, e, s, fake, away, "", "d")
	must[Attr](t)(s.Create(ctx, "d/new", 0o640, 7, 8, true))
	must[Attr](t)(s.WriteAt(ctx, "d/new", []byte("written in the outage"), 0))
	must[Attr](t)(s.Create(ctx, "d/tmp", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "d/tmp", []byte("renamed in the outage"), 0))
	must[error](t)(nil, s.Rename(ctx, "d/tmp", "d/moved"))
	must[Attr](t)(s.Create(ctx, "d/gone", 0o644, 0, 0, true))
	must[error](t)(nil, s.Remove(ctx, "d/gone"))
	must[Attr](t)(s.Mkdir(ctx, "d/sub", 0o710, 7, 8))
	must[Attr](t)(s.Create(ctx, "d/sub/deep", 0o600, 7, 8, true))
	must[Attr](t)(s.WriteAt(ctx, "d/sub/deep", []byte("deep"), 0))
	mode := uint32(0o604)
	must[Attr](t)(s.SetAttr(ctx, "d/new", SetAttr{Mode: &mode}))
	must[Attr](t)(s.Mkdir(ctx, "d/rmd", 0o755, 0, 0))
	must[error](t)(nil, s.Remove(ctx, "d/rmd"))
	// Objects uploaded before the outage: one removed, one removed and
	// made again.
	must[error](t)(nil, s.Remove(ctx, "d/old"))
	must[error](t)(nil, s.Remove(ctx, "d/again"))
	if err := s.Rename(ctx, "d/keep", "d/kept"); err != nil {
		t.Fatalf("rename of an uploaded file in the outage: %v", err)
	}
	if err := s.Rename(ctx, "d/edir", "d/edir2"); err != nil {
		t.Fatalf("rename of an uploaded empty directory in the outage: %v", err)
	}
	chm := uint32(0o600)
	if _, err := s.SetAttr(ctx, "d/chm", SetAttr{Mode: &chm}); err != nil {
		t.Fatalf("chmod of an uploaded file in the outage: %v", err)
	}
	if a, err := s.Stat(ctx, "d/kept"); err != nil || a.Mode != 0o640 || a.UID != 7 || a.Size != int64(len("renamed after its upload")) {
		t.Fatalf("stat of a file renamed in the outage: %+v %v", a, err)
	}
	if a, err := s.Stat(ctx, "d/chm"); err != nil || a.Mode != 0o600 {
		t.Fatalf("stat of a file changed in the outage: %+v %v", a, err)
	}
	for _, p := range []string{"d/keep", "d/edir"} {
		if _, err := s.Stat(ctx, p); !errors.Is(err, ErrNotExist) {
			t.Fatalf("stat of the old name %s in the outage: %v", p, err)
		}
	}
	if got := string(readFile(t, s, "d/kept")); got != "renamed after its upload" {
		t.Fatalf("d/kept in the outage (its data is cached): %q", got)
	}
	must[Attr](t)(s.Create(ctx, "d/again", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "d/again", []byte("made again in the outage"), 0))
	if _, err := s.Stat(ctx, "d/old"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat of a file removed in the outage: %v", err)
	}
	if _, err := s.Stat(ctx, "d/nothing"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat of a name the share does not know, in the outage: %v", err)
	}
	names := func() []string {
		var out []string
		for _, e := range must[[]DirEntry](t)(s.ReadDir(ctx, "d")) {
			out = append(out, e.Name)
		}
		return out
	}
	wantNames := []string{"again", "chm", "edir2", "kept", "moved", "new", "sub"}
	for _, e := range must[[]DirEntry](t)(s.ReadDir(ctx, "d")) {
		if e.Name == "kept" && (e.Attr.Mode != 0o640 || e.Attr.UID != 7) || e.Name == "chm" && e.Attr.Mode != 0o600 {
			t.Fatalf("listing in the outage: %s: %+v", e.Name, e.Attr)
		}
	}
	if got := names(); !equalStrings(got, wantNames) {
		t.Fatalf("listing in the outage: %v", got)
	}
	// new, moved, sub, sub/deep, again, chm; the removes of old and
	// again; the renames of keep and edir.
	if n := e.m.Stats().Pending["docs"]; n != 10 {
		t.Fatalf("changes pending in the outage: %d, want 10", n)
	}

	// A restart in the outage replays the log without the store (kill -9
	// is cmd/gatewayd's TestShareWorksThroughOutage).
	e.restart()
	s = e.share("docs")
	want := map[string]string{"d/new": "written in the outage", "d/moved": "renamed in the outage", "d/sub/deep": "deep",
		"d/again": "made again in the outage"}
	uploaded := map[string]string{"d/kept": "renamed after its upload", "d/chm": "chmod after its upload"}
	for p, w := range want {
		if got := readFile(t, s, p); string(got) != w {
			t.Fatalf("%s after a restart in the outage: %q", p, got)
		}
	}
	if a := must[Attr](t)(s.Stat(ctx, "d/new")); a.Mode != 0o604 || a.UID != 7 || a.GID != 8 {
		t.Fatalf("d/new after a restart in the outage: %+v", a)
	}

	away.Store(false)
	// The deletes go first, then (here) one upload, then a restart while
	// the log still holds every record: the replay must not undo either.
	if err := e.m.round(ctx, true, func(_ fileKey, p string) bool { return p == "d/again" }); err != nil {
		t.Fatal(err)
	}
	if b, _ := object(t, e.store, "docs/d/again"); string(b) != want["d/again"] {
		t.Fatalf("d/again after its upload: %q", b)
	}
	e.restart()
	s = e.share("docs")
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if b, _ := object(t, e.store, "docs/"+p); string(b) != w {
			t.Fatalf("object %s after the outage: %q", p, b)
		}
	}
	for p, w := range uploaded {
		if got := string(readFile(t, s, p)); got != w {
			t.Fatalf("%s after the outage: %q", p, got)
		}
		if b, _ := object(t, e.store, "docs/"+p); string(b) != w {
			t.Fatalf("object %s after the outage: %q", p, b)
		}
	}
	if _, md := object(t, e.store, "docs/d/kept"); md[metaMode] != "640" || md[metaUID] != "7" {
		t.Fatalf("metadata of d/kept: %v", md)
	}
	if _, md := object(t, e.store, "docs/d/chm"); md[metaMode] != "600" || md[metaUID] != "7" {
		t.Fatalf("metadata of d/chm: %v", md)
	}
	if _, md := object(t, e.store, "docs/d/edir2/"); md[metaMode] != "750" {
		t.Fatalf("marker of d/edir2: %v", md)
	}
	if _, md := object(t, e.store, "docs/d/new"); md[metaMode] != "604" || md[metaUID] != "7" {
		t.Fatalf("metadata of d/new: %v", md)
	}
	if _, md := object(t, e.store, "docs/d/sub/"); md[metaMode] != "710" {
		t.Fatalf("marker of d/sub: %v", md)
	}
	for _, k := range []string{"docs/d/tmp", "docs/d/gone", "docs/d/rmd/", "docs/d/old", "docs/d/keep", "docs/d/edir/"} {
		if _, err := e.store.Stat(ctx, k); !objstore.IsNotFound(err) {
			t.Fatalf("%s after the outage: %v", k, err)
		}
	}
	if err := s.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	if got := names(); !equalStrings(got, wantNames) {
		t.Fatalf("listing from the store after the outage: %v", got)
	}
	if n := e.m.Stats().Pending["docs"]; n != 0 {
		t.Fatalf("changes pending after the outage: %d", n)
	}
}

// TestMoveReplay: a rename made while the store is away is done once the
// store is back, whatever crash comes between: a replay after the copy
// (the old key still there) copies again, then deletes; a replay after
// the delete (the old key gone, the move not recorded done) leaves the new
// key alone. Renames in a chain are done in order, and until they are the
// share shows each file at its last name, from the store.
func TestMoveReplay(t *testing.T) {
	var failDelete atomic.Bool
	e, away, fake, under := awayEnv(t, func(op faulty.Op) bool { return failDelete.Load() && op == faulty.OpDelete })
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	content := map[string]string{"a": "first file", "b": "second file"}
	for p, c := range content {
		must[Attr](t)(s.Create(ctx, p, 0o640, 7, 8, true))
		must[Attr](t)(s.WriteAt(ctx, p, []byte(c), 0))
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	must[[]DirEntry](t)(s.ReadDir(ctx, ""))

	fake.Advance(2 * time.Minute)
	away.Store(true)
	must[error](t)(nil, s.Rename(ctx, "a", "a2"))
	must[error](t)(nil, s.Rename(ctx, "a2", "a3"))
	must[error](t)(nil, s.Rename(ctx, "b", "b2"))
	away.Store(false)
	// The first copy is done, the delete of its old key fails: a crash.
	failDelete.Store(true)
	if err := e.m.Flush(ctx, ""); err == nil {
		t.Fatal("the moves were done with every delete failing")
	}
	if _, err := under.Stat(ctx, "docs/a2"); err != nil {
		t.Fatalf("the first copy: %v", err)
	}
	e.restart()
	failDelete.Store(false)
	// b's move is done in the store, as if the gateway crashed after it
	// and before recording it.
	must[error](t)(nil, under.(objstore.Copier).Copy(ctx, "docs/b", "docs/b2"))
	must[error](t)(nil, under.Delete(ctx, "docs/b"))
	s = e.share("docs")
	var names []string
	for _, de := range must[[]DirEntry](t)(s.ReadDir(ctx, "")) {
		names = append(names, de.Name)
		if de.Attr.Mode != 0o640 || de.Attr.UID != 7 {
			t.Fatalf("listing before the moves are done: %s: %+v", de.Name, de.Attr)
		}
	}
	if !equalStrings(names, []string{"a3", "b2"}) {
		t.Fatalf("listing before the moves are done: %v", names)
	}
	if got := string(readFile(t, s, "a3")); got != content["a"] {
		t.Fatalf("a3 before its move is done: %q", got)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for k, c := range map[string]string{"docs/a3": content["a"], "docs/b2": content["b"]} {
		if b, md := object(t, under, k); string(b) != c || md[metaMode] != "640" {
			t.Fatalf("%s after the moves: %q %v", k, b, md)
		}
	}
	for _, k := range []string{"docs/a", "docs/a2", "docs/b"} {
		if _, err := under.Stat(ctx, k); !objstore.IsNotFound(err) {
			t.Fatalf("%s after the moves: %v", k, err)
		}
	}
	if n := e.m.Stats().Pending["docs"]; n != 0 {
		t.Fatalf("changes pending after the moves: %d", n)
	}
}
