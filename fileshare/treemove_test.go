package fileshare

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
)

// TestRenameTreeWhileStoreAway: a directory with contents (nested
// directories, files uploaded before the outage, one changed in it, files
// and a directory made in it, a directory with no marker, a file renamed
// into it in the outage) is renamed while the store is away, from what the
// share has listed: the share shows it under its new name at once, keeps
// the inodes, keeps it through a restart, and moves every object in the
// store after the outage, also when the move is cut in the middle by a
// crash. A directory with a part never listed is refused, unchanged.
func TestRenameTreeWhileStoreAway(t *testing.T) {
	var failCopies atomic.Int32 // copies left before they fail; below 0: none fail
	failCopies.Store(-1)
	e, away, fake, under := awayEnv(t, func(op faulty.Op) bool {
		return op == faulty.OpCopy && failCopies.Load() >= 0 && failCopies.Add(-1) < 0
	})
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	write := func(p, content string, mode uint32) {
		t.Helper()
		if _, err := s.Stat(ctx, p); err != nil {
			must[Attr](t)(s.Create(ctx, p, mode, 7, 8, true))
		}
		must[Attr](t)(s.WriteAt(ctx, p, []byte(content), 0))
	}
	for _, d := range []string{"d", "d/t", "d/t/sub", "d/t/sub/deep", "d/u"} {
		must[Attr](t)(s.Mkdir(ctx, d, 0o750, 7, 8))
	}
	want := map[string]string{ // under d/r after the rename
		"f1":          "uploaded, changed in the outage",
		"sub/f2":      "uploaded before the outage",
		"sub/deep/f3": "uploaded, three levels down",
		"imp/f4":      "put by another application",
		"new":         "made in the outage",
		"nd/f5":       "in a directory made in the outage",
		"sub/in":      "renamed into the tree in the outage",
	}
	write("d/t/f1", "uploaded before", 0o640)
	write("d/t/sub/f2", want["sub/f2"], 0o600)
	write("d/t/sub/deep/f3", want["sub/deep/f3"], 0o644)
	write("d/outside", want["sub/in"], 0o604)
	must[Attr](t)(s.Symlink(ctx, "d/t/sub/ln", "f2", 7, 8)) // moves with the tree
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// Objects another application put: a directory with no marker, and
	// one the share lists but never looks into.
	must[error](t)(nil, objstore.PutBytes(ctx, under, "docs/d/t/imp/f4", []byte(want["imp/f4"])))
	must[error](t)(nil, objstore.PutBytes(ctx, under, "docs/d/u/x/y", []byte("never listed")))
	must[error](t)(nil, s.Refresh("", true))
	for _, d := range []string{"", "d", "d/t", "d/t/sub", "d/t/sub/deep", "d/t/imp", "d/u"} {
		must[[]DirEntry](t)(s.ReadDir(ctx, d))
	}
	f2 := must[Attr](t)(s.Stat(ctx, "d/t/sub/f2"))

	fake.Advance(2 * time.Minute)
	away.Store(true)
	write("d/t/f1", want["f1"], 0o640)
	write("d/t/new", want["new"], 0o640)
	must[Attr](t)(s.Mkdir(ctx, "d/t/nd", 0o700, 7, 8))
	write("d/t/nd/f5", want["nd/f5"], 0o640)
	must[error](t)(nil, s.Rename(ctx, "d/outside", "d/t/sub/in"))

	err := s.Rename(ctx, "d/u", "d/u2")
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("rename of a directory not all listed, in the outage: %v", err)
	}
	if _, err := s.Stat(ctx, "d/u"); err != nil {
		t.Fatalf("d/u after its rename was refused: %v", err)
	}
	if _, err := s.Stat(ctx, "d/u2"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("d/u2 after the rename was refused: %v", err)
	}

	if err := s.Rename(ctx, "d/t", "d/r"); err != nil {
		t.Fatalf("rename of a directory with contents in the outage: %v", err)
	}
	names := func(d string) []string {
		t.Helper()
		var out []string
		for _, de := range must[[]DirEntry](t)(s.ReadDir(ctx, d)) {
			out = append(out, de.Name)
		}
		return out
	}
	wantNames := map[string][]string{
		"d":            {"r", "u"},
		"d/r":          {"f1", "imp", "nd", "new", "sub"},
		"d/r/sub":      {"deep", "f2", "in", "ln"},
		"d/r/sub/deep": {"f3"},
		"d/r/imp":      {"f4"},
		"d/r/nd":       {"f5"},
	}
	checkNames := func(when string) {
		t.Helper()
		for d, w := range wantNames {
			if got := names(d); !equalStrings(got, w) {
				t.Fatalf("listing of %s %s: %v, want %v", d, when, got, w)
			}
		}
		for _, p := range []string{"d/t", "d/outside"} { // a lookup of d/t/sub/f2 stops at d/t
			if _, err := s.Stat(ctx, p); !errors.Is(err, ErrNotExist) {
				t.Fatalf("stat of the old name %s %s: %v", p, when, err)
			}
		}
		if a, err := s.Stat(ctx, "d/r/sub/f2"); err != nil || a.Ino != f2.Ino || a.Mode != 0o600 || a.UID != 7 {
			t.Fatalf("stat of d/r/sub/f2 %s: %+v %v, want inode %d", when, a, err, f2.Ino)
		}
		if p, err := s.PathOf(ctx, f2.Ino); err != nil || p != "d/r/sub/f2" {
			t.Fatalf("the inode of d/t/sub/f2 %s: %q %v", when, p, err)
		}
	}
	checkNames("in the outage")
	for p, w := range want {
		if p == "imp/f4" {
			continue // not cached: its data needs the store
		}
		if got := string(readFile(t, s, "d/r/"+p)); got != w {
			t.Fatalf("d/r/%s in the outage: %q", p, got)
		}
	}

	// A restart in the outage: the rename is in the log.
	e.restart()
	s = e.share("docs")
	for _, p := range []string{"new", "nd/f5"} {
		if got := string(readFile(t, s, "d/r/"+p)); got != want[p] {
			t.Fatalf("d/r/%s after a restart in the outage: %q", p, got)
		}
	}

	// The store is back; the move is cut after two objects (a crash),
	// then done after a restart. The objects go in the order of their
	// names: d/outside's own move, the marker of d/t, then d/t/f1 fails:
	// its changes in the outage are replayed with the store back, before
	// the log's rename brings its object to d/r/f1.
	away.Store(false)
	failCopies.Store(2)
	if err := e.m.Flush(ctx, ""); err == nil {
		t.Fatal("the move was done with its copies failing")
	}
	e.restart()
	s = e.share("docs")
	if got := string(readFile(t, s, "d/r/f1")); got != want["f1"] {
		t.Fatalf("d/r/f1 after a restart with the move not done: %q", got)
	}
	checkNames("before the move is done")
	failCopies.Store(-1)
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	var keys []string
	must[error](t)(nil, under.List(ctx, "docs/", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil }))
	wantKeys := []string{"docs/d/", "docs/d/r/", "docs/d/r/sub/", "docs/d/r/sub/deep/", "docs/d/r/nd/", "docs/d/r/sub/ln", "docs/d/u/", "docs/d/u/x/y"}
	for p := range want {
		wantKeys = append(wantKeys, "docs/d/r/"+p)
	}
	sort.Strings(keys)
	sort.Strings(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("objects after the move:\n%v\nwant\n%v", keys, wantKeys)
	}
	for p, w := range want {
		if b, _ := object(t, under, "docs/d/r/"+p); string(b) != w {
			t.Fatalf("object d/r/%s after the move: %q", p, b)
		}
	}
	if _, md := object(t, under, "docs/d/r/sub/f2"); md[metaMode] != "600" || md[metaUID] != "7" {
		t.Fatalf("metadata of d/r/sub/f2 after the move: %v", md)
	}
	if _, md := object(t, under, "docs/d/r/sub/"); md[metaMode] != "750" {
		t.Fatalf("marker of d/r/sub after the move: %v", md)
	}
	if err := s.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	checkNames("from the store after the move")
	if b, md := object(t, under, "docs/d/r/sub/ln"); string(b) != "f2" || md[metaType] != "symlink" {
		t.Fatalf("the symbolic link's object after the move: %q %v", b, md)
	}
	if target, err := s.Readlink(ctx, "d/r/sub/ln"); err != nil || target != "f2" {
		t.Fatalf("the symbolic link moved with the tree: %q %v", target, err)
	}
	if n := e.m.Stats().Pending["docs"]; n != 0 {
		t.Fatalf("changes pending after the move: %d", n)
	}
}

// TestRenameCutByCrash: a crash after a rename's log record and before its
// inode table change (the rename not answered yet) loses none of the
// changes made before it to the files it moves: the next start completes
// the table's change, so those changes stay with their files, under the
// new names, and reach the store there.
func TestRenameCutByCrash(t *testing.T) {
	e, away, fake, under := awayEnv(t, nil)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	for _, d := range []string{"d", "d/t", "d/t/sub"} {
		must[Attr](t)(s.Mkdir(ctx, d, 0o750, 7, 8))
	}
	for _, p := range []string{"d/t/f1", "d/t/sub/f2", "d/x"} {
		must[Attr](t)(s.Create(ctx, p, 0o640, 7, 8, true))
		must[Attr](t)(s.WriteAt(ctx, p, []byte("before"), 0))
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "d", "d/t", "d/t/sub"} {
		must[[]DirEntry](t)(s.ReadDir(ctx, d))
	}
	inos := map[string]uint64{}
	for _, p := range []string{"d/t/f1", "d/t/sub/f2", "d/x"} {
		inos[p] = must[Attr](t)(s.Stat(ctx, p)).Ino
	}

	fake.Advance(2 * time.Minute)
	away.Store(true)
	want := map[string]string{"d/r/f1": "changed in the outage", "d/r/sub/f2": "before", "d/x2": "changed in the outage too"}
	must[Attr](t)(s.WriteAt(ctx, "d/t/f1", []byte(want["d/r/f1"]), 0))
	must[Attr](t)(s.WriteAt(ctx, "d/x", []byte(want["d/x2"]), 0))
	crash := errors.New("crash")
	renameCutHook = func() error { return crash }
	t.Cleanup(func() { renameCutHook = nil })
	if err := s.Rename(ctx, "d/t", "d/r"); !errors.Is(err, crash) {
		t.Fatalf("rename cut by the hook: %v", err)
	}
	if err := s.Rename(ctx, "d/x", "d/x2"); !errors.Is(err, crash) {
		t.Fatalf("rename cut by the hook: %v", err)
	}
	renameCutHook = nil

	away.Store(false)
	e.restart()
	s = e.share("docs")
	check := func(when string) {
		t.Helper()
		for p, w := range want {
			if got := string(readFile(t, s, p)); got != w {
				t.Fatalf("%s %s: %q, want %q", p, when, got, w)
			}
		}
		for p, ino := range map[string]uint64{"d/r/f1": inos["d/t/f1"], "d/r/sub/f2": inos["d/t/sub/f2"], "d/x2": inos["d/x"]} {
			if a, err := s.Stat(ctx, p); err != nil || a.Ino != ino {
				t.Fatalf("%s %s: %+v %v, want inode %d", p, when, a, err, ino)
			}
		}
		for _, p := range []string{"d/t", "d/x"} {
			if _, err := s.Stat(ctx, p); !errors.Is(err, ErrNotExist) {
				t.Fatalf("%s %s: %v", p, when, err)
			}
		}
	}
	check("after the restart")
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	check("after the uploads")
	var keys []string
	must[error](t)(nil, under.List(ctx, "docs/", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil }))
	wantKeys := []string{"docs/d/", "docs/d/r/", "docs/d/r/f1", "docs/d/r/sub/", "docs/d/r/sub/f2", "docs/d/x2"}
	if !equalStrings(keys, wantKeys) {
		t.Fatalf("objects after the uploads: %v, want %v", keys, wantKeys)
	}
	for p, w := range want {
		if b, _ := object(t, under, "docs/"+p); string(b) != w {
			t.Fatalf("object %s: %q", p, b)
		}
	}
	n := 0
	must[error](t)(nil, e.md.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate(intentPrefix("docs"), func(_, _ []byte) error { n++; return nil })
	}))
	if n != 0 {
		t.Fatalf("%d rename intents left in the inode table", n)
	}
}
