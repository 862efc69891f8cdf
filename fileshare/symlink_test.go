package fileshare

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// TestSymlinkWhileStoreAway: symbolic links made while every store call
// fails are shown at once (stat, readlink, listing with their type and
// owner), can be removed and renamed before their upload, survive a
// restart in the outage, and reach the store after it as the same objects
// a symbolic link made with the store up is: the target as content,
// gwd-type=symlink and the attributes as metadata.
func TestSymlinkWhileStoreAway(t *testing.T) {
	e, away, fake, under := awayEnv(t, nil)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Symlink(ctx, "d/up", "made/with/the/store/up", 7, 8))
	goAway(t, e, s, fake, away, "", "d")
	long := strings.Repeat("t", maxTarget)
	links := map[string]string{"d/ln": "../made/in/the/outage", "d/long": long}
	for p, target := range links {
		a, err := s.Symlink(ctx, p, target, 7, 8)
		if err != nil {
			t.Fatalf("symlink %s in the outage: %v", p, err)
		}
		if a.Type != TypeSymlink || a.Size != int64(len(target)) || a.UID != 7 || a.GID != 8 || a.Mode != 0o777 {
			t.Fatalf("symlink %s in the outage: %+v", p, a)
		}
	}
	must[Attr](t)(s.Symlink(ctx, "d/gone", "removed before its upload", 0, 0))
	must[error](t)(nil, s.Remove(ctx, "d/gone"))
	must[Attr](t)(s.Symlink(ctx, "d/tmp", "renamed before its upload", 7, 8))
	must[error](t)(nil, s.Rename(ctx, "d/tmp", "d/moved"))
	links["d/moved"] = "renamed before its upload"
	if _, err := s.Symlink(ctx, "d/ln", "again", 0, 0); !errors.Is(err, ErrExist) {
		t.Fatalf("a second symlink at d/ln in the outage: %v", err)
	}
	if _, err := s.Symlink(ctx, "d/bad", long+"t", 0, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a target over %d bytes: %v", maxTarget, err)
	}

	// A restart forgets the listings: in the outage, it knows the links it
	// made and nothing else.
	check := func(when string, listed bool) {
		t.Helper()
		for p, target := range links {
			if got, err := s.Readlink(ctx, p); err != nil || got != target {
				t.Fatalf("readlink %s %s: %.40q %v", p, when, got, err)
			}
			if a, err := s.Stat(ctx, p); err != nil || a.Type != TypeSymlink || a.Size != int64(len(target)) || a.UID != 7 {
				t.Fatalf("stat %s %s: %+v %v", p, when, a, err)
			}
		}
		if !listed {
			return
		}
		for _, p := range []string{"d/gone", "d/tmp"} {
			if _, err := s.Stat(ctx, p); !errors.Is(err, ErrNotExist) {
				t.Fatalf("stat %s %s: %v", p, when, err)
			}
		}
		got := map[string]Attr{}
		for _, de := range must[[]DirEntry](t)(s.ReadDir(ctx, "d")) {
			got[de.Name] = de.Attr
		}
		if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"ln", "long", "moved", "up"}) {
			t.Fatalf("listing of d %s: %v", when, names)
		}
		for name, a := range got {
			if a.Type != TypeSymlink || a.UID != 7 || a.GID != 8 || a.Mode != 0o777 {
				t.Fatalf("listing of d %s: %s: %+v", when, name, a)
			}
		}
	}
	check("in the outage", true)
	// ln, long and moved wait for the store.
	if n := e.m.Stats().Pending["docs"]; n != 3 {
		t.Fatalf("changes pending in the outage: %d, want 3", n)
	}

	// A restart in the outage replays them from the log (kill -9 is
	// cmd/gatewayd's TestShareWorksThroughOutage).
	e.restart()
	s = e.share("docs")
	check("after a restart in the outage", false)

	away.Store(false)
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	_, upMeta := object(t, under, "docs/d/up")
	links["d/up"] = "made/with/the/store/up"
	for p, target := range links {
		b, md := object(t, under, "docs/"+p)
		if string(b) != target || md[metaType] != "symlink" || md[metaMode] != "777" || md[metaUID] != "7" || md[metaGID] != "8" {
			t.Fatalf("object %s after the outage: %.40q %v", p, b, md)
		}
		if !slices.Equal(slices.Sorted(maps.Keys(md)), slices.Sorted(maps.Keys(upMeta))) {
			t.Fatalf("metadata of %s: %v; of a symlink made with the store up: %v", p, md, upMeta)
		}
	}
	for _, k := range []string{"docs/d/gone", "docs/d/tmp"} {
		if _, err := under.Stat(ctx, k); !objstore.IsNotFound(err) {
			t.Fatalf("%s after the outage: %v", k, err)
		}
	}
	if n := e.m.Stats().Pending["docs"]; n != 0 {
		t.Fatalf("changes pending after the outage: %d", n)
	}
	// Read back from the store alone.
	must[error](t)(nil, s.Refresh("", true))
	check("from the store after the outage", true)
	e.restart()
	s = e.share("docs")
	check("from the store after a restart", true)
	if n := len(e.m.files); n != 0 {
		t.Fatalf("%d files pending after everything was uploaded and a restart", n)
	}
}

// TestSymlinkRecord: the symlink log record carries its target; a record
// cut short or with a target over 4096 bytes is refused as corrupt.
func TestSymlinkRecord(t *testing.T) {
	now := time.Unix(1_700_000_000, 123)
	rec := record{typ: recSymlink, share: "docs", ino: 42, attr: Attr{Mode: 0o777, UID: 7, GID: 8, Mtime: now, Target: "a/b"}}
	b := rec.encode()
	want := []byte{10, 4, 'd', 'o', 'c', 's', 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 1, 0xff, 0, 0, 0, 7, 0, 0, 0, 8}
	if !slices.Equal(b[:len(want)], want) || string(b[len(want)+8:]) != "a/b" || len(b) != len(want)+8+3 {
		t.Fatalf("encoded: %v", b)
	}
	got, err := decodeRecord(b)
	if err != nil || got.typ != recSymlink || got.ino != 42 || got.attr.Target != "a/b" || got.attr.Mode != 0o777 ||
		got.attr.UID != 7 || got.attr.GID != 8 || !got.attr.Mtime.Equal(now) {
		t.Fatalf("decoded: %+v %v", got, err)
	}
	for _, bad := range [][]byte{b[:len(b)-3], append(b[:len(b)-3:len(b)-3], strings.Repeat("x", maxTarget+1)...)} {
		if _, err := decodeRecord(bad); err == nil {
			t.Fatalf("a bad symlink record of %d bytes decoded", len(bad))
		}
	}
}
