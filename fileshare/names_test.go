package fileshare

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestReadDirNamesAsksNoStorePerEntry: a directory's names, inode numbers
// and known types come from the share's listing: no store call while the
// listing may be used, and once it is too old one listing and the
// directory's own attributes, never a stat per entry (ReadDir's
// attributes). Files not yet uploaded are there, with their type.
func TestReadDirNamesAsksNoStorePerEntry(t *testing.T) {
	const M = 50
	e, inj, fake := countedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	for i := range M {
		must[Attr](t)(s.Create(ctx, fmt.Sprintf("d/f%03d", i), 0o644, 0, 0, true))
	}
	must[Attr](t)(s.Mkdir(ctx, "d/sub", 0o755, 0, 0))
	must[Attr](t)(s.Symlink(ctx, "d/link", "f000", 0, 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	must[Attr](t)(s.Create(ctx, "d/unborn", 0o644, 0, 0, true)) // not uploaded
	check := func(what string, names []Name) {
		t.Helper()
		if len(names) != M+3 {
			t.Fatalf("%s: %d names, want %d", what, len(names), M+3)
		}
		for i, n := range names {
			if i > 0 && names[i-1].Name >= n.Name {
				t.Fatalf("%s: %q after %q: not in name order", what, n.Name, names[i-1].Name)
			}
			a := must[Attr](t)(s.Stat(ctx, "d/"+n.Name))
			if n.Ino != a.Ino {
				t.Fatalf("%s: %s has inode %d, Stat says %d", what, n.Name, n.Ino, a.Ino)
			}
			if n.Type != 0 && n.Type != a.Type {
				t.Fatalf("%s: %s listed as type %d, Stat says %d", what, n.Name, n.Type, a.Type)
			}
			if (n.Name == "sub" || n.Name == "unborn") && n.Type != a.Type {
				t.Fatalf("%s: %s listed as type %d, want %d", what, n.Name, n.Type, a.Type)
			}
		}
	}
	check("first listing", must[[]Name](t)(s.ReadDirNames(ctx, "d")))

	lists0, heads0 := storeCalls(inj)
	names := must[[]Name](t)(s.ReadDirNames(ctx, "d"))
	if lists, heads := storeCalls(inj); lists != lists0 || heads != heads0 {
		t.Fatalf("names of a listed directory: %d listings and %d stats of the store, want none", lists-lists0, heads-heads0)
	}
	check("listing kept", names)

	fake.Advance(2 * time.Minute) // past AttrTTL: listing and attributes too old
	lists0, heads0 = storeCalls(inj)
	names = must[[]Name](t)(s.ReadDirNames(ctx, "d"))
	if lists, heads := storeCalls(inj); lists-lists0 > 1 || heads-heads0 > 2 {
		t.Fatalf("names of a directory listed too long ago: %d listings and %d stats of the store for %d entries, want one listing and the directory's own stats", lists-lists0, heads-heads0, len(names))
	}
	check("listing read again", names)

	if _, err := s.ReadDirNames(ctx, "d/f000"); !errorsIs(err, ErrNotDir) {
		t.Fatalf("names of a file: %v, want ErrNotDir", err)
	}
	if _, err := s.ReadDirNames(ctx, "nowhere"); !isNotExist(err) {
		t.Fatalf("names of a missing directory: %v, want ErrNotExist", err)
	}
}
