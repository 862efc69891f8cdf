package fileshare

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
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

// TestReadDirNamesKeptInOrder: the name order a listing keeps from one
// ReadDirNames to the next follows every create, mkdir, remove and
// rename (in the directory, into it and out of it), uploads that end
// and listings read again: after each step the names are those of a
// model, in name order, each with the inode number Stat gives.
func TestReadDirNamesKeptInOrder(t *testing.T) {
	e, _, fake := countedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Mkdir(ctx, "other", 0o755, 0, 0))
	rng := rand.New(rand.NewPCG(7, 11))
	model := map[string]FileType{}
	pick := func() string {
		names := slices.Sorted(maps.Keys(model))
		return names[rng.IntN(len(names))]
	}
	for step := range 400 {
		var what string
		switch op := rng.IntN(10); {
		case op < 4 || len(model) < 3:
			name := fmt.Sprintf("n%04d", rng.IntN(1000))
			if _, ok := model[name]; ok {
				continue
			}
			what = "create " + name
			if rng.IntN(5) == 0 {
				must[Attr](t)(s.Mkdir(ctx, "d/"+name, 0o755, 0, 0))
				model[name] = TypeDir
			} else {
				must[Attr](t)(s.Create(ctx, "d/"+name, 0o644, 0, 0, true))
				model[name] = TypeFile
			}
		case op < 6:
			name := pick()
			what = "remove " + name
			if err := s.Remove(ctx, "d/"+name); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
			delete(model, name)
		case op == 6:
			from, to := pick(), fmt.Sprintf("r%04d", rng.IntN(1000))
			if _, ok := model[to]; ok {
				continue
			}
			what = "rename " + from + " to " + to
			if err := s.Rename(ctx, "d/"+from, "d/"+to); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
			model[to] = model[from]
			delete(model, from)
		case op == 7:
			name := pick()
			if model[name] == TypeDir {
				continue
			}
			what = "rename " + name + " out"
			if err := s.Rename(ctx, "d/"+name, fmt.Sprintf("other/%s-%d", name, step)); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
			delete(model, name)
		case op == 8:
			what = "upload"
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
		default:
			what = "listing too old"
			fake.Advance(2 * time.Minute)
		}
		names := must[[]Name](t)(s.ReadDirNames(ctx, "d"))
		got := make([]string, len(names))
		for i, n := range names {
			got[i] = n.Name
		}
		if want := slices.Sorted(maps.Keys(model)); !slices.Equal(got, want) {
			t.Fatalf("step %d, after %s: names\n%v\nwant\n%v", step, what, got, want)
		}
		for _, n := range names {
			a := must[Attr](t)(s.Stat(ctx, "d/"+n.Name))
			if n.Ino != a.Ino || n.Type != 0 && n.Type != a.Type || a.Type != model[n.Name] {
				t.Fatalf("step %d, after %s: %s listed as inode %d type %d; Stat says %d type %d, model type %d", step, what, n.Name, n.Ino, n.Type, a.Ino, a.Type, model[n.Name])
			}
		}
	}
}
