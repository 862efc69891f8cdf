package fileshare

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

func listNames(t *testing.T, s *Share, p string) []string {
	t.Helper()
	var out []string
	for _, e := range must[[]DirEntry](t)(s.ReadDir(context.Background(), p)) {
		out = append(out, e.Name)
	}
	return out
}

// TestObjectChangesFromTheBucket: changes of objects reported by the
// bucket's events are seen at once, with the TTL never expiring: created
// (with its parent directories), overwritten (not the cached blocks of the
// old object), removed; a path with local changes keeps them. The TTL is
// an hour, as a share relying on events would have it: with the default
// 10 s, a step that took longer on a busy machine relisted the bucket and
// saw the changes before their events.
func TestObjectChangesFromTheBucket(t *testing.T) {
	e := newEnvWith(t, func(o *Options) { o.AttrTTL = time.Hour })
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s"}))
	s := e.share("s")
	var changed []string
	s.OnChange(func(p string) { changed = append(changed, p) })
	if got := listNames(t, s, ""); len(got) != 0 {
		t.Fatalf("new share lists %v", got)
	}
	put := func(key string, b []byte) string {
		t.Helper()
		if err := objstore.PutBytes(ctx, e.store, key, b); err != nil {
			t.Fatal(err)
		}
		oi, err := e.store.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return oi.ETag
	}
	apply := func(ch ObjectChange, want ChangeOutcome) {
		t.Helper()
		if got := e.m.ApplyObjectChange(ch); got != want {
			t.Fatalf("%+v: %v, want %v", ch, got, want)
		}
	}

	one := bytes.Repeat([]byte("1"), 2*BlockSize+5)
	tag := put("s/a/b/c.txt", one)
	if got := listNames(t, s, ""); len(got) != 0 {
		t.Fatalf("the object is seen before its event (the listing is trusted for the TTL): %v", got)
	}
	apply(ObjectChange{Key: "a/b/c.txt", ETag: tag}, ChangeNoShare)
	apply(ObjectChange{Key: "s/a/b/c.txt", ETag: tag}, ChangeApplied)
	if got := listNames(t, s, ""); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("root after the event: %v", got)
	}
	if got := listNames(t, s, "a/b"); !slices.Equal(got, []string{"c.txt"}) {
		t.Fatalf("a/b after the event: %v", got)
	}
	if !bytes.Equal(readFile(t, s, "a/b/c.txt"), one) {
		t.Fatal("object put in the bucket reads back wrong")
	}
	// The share's own upload, or an event seen twice: nothing to forget.
	apply(ObjectChange{Key: "s/a/b/c.txt", ETag: tag}, ChangeOwn)

	two := bytes.Repeat([]byte("2"), 2*BlockSize+5)
	tag2 := put("s/a/b/c.txt", two)
	if !bytes.Equal(readFile(t, s, "a/b/c.txt"), one) {
		t.Fatal("overwrite seen before its event")
	}
	apply(ObjectChange{Key: "s/a/b/c.txt", ETag: tag2}, ChangeApplied)
	if !bytes.Equal(readFile(t, s, "a/b/c.txt"), two) {
		t.Fatal("after the overwrite's event the old bytes are read")
	}

	if err := e.store.Delete(ctx, "s/a/b/c.txt"); err != nil {
		t.Fatal(err)
	}
	apply(ObjectChange{Key: "s/a/b/c.txt", Removed: true}, ChangeApplied)
	if _, err := s.Stat(ctx, "a/b/c.txt"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat after the delete's event: %v", err)
	}
	if got := listNames(t, s, "a/b"); len(got) != 0 {
		t.Fatalf("a/b after the delete's event: %v", got)
	}

	// A directory marker.
	put("s/m/", nil)
	apply(ObjectChange{Key: "s/m/"}, ChangeApplied)
	if a := must[Attr](t)(s.Stat(ctx, "m")); a.Type != TypeDir {
		t.Fatalf("directory marker's event: %+v", a)
	}
	if got := listNames(t, s, ""); !slices.Equal(got, []string{"a", "m"}) {
		t.Fatalf("root after the marker's event: %v", got)
	}

	// Local changes win.
	must[Attr](t)(s.Create(ctx, "local.txt", 0o644, 0, 0, false))
	must[Attr](t)(s.Write(ctx, "local.txt", []byte("mine"), 0, Durable))
	put("s/local.txt", []byte("theirs, longer"))
	apply(ObjectChange{Key: "s/local.txt"}, ChangeLocalWins)
	apply(ObjectChange{Key: "s/local.txt", Removed: true}, ChangeLocalWins)
	if got := readFile(t, s, "local.txt"); string(got) != "mine" {
		t.Fatalf("a bucket change discarded local changes: %q", got)
	}

	apply(ObjectChange{Key: "s/x//y"}, ChangeBadKey)
	apply(ObjectChange{Key: "s/../y"}, ChangeBadKey)
	if want := []string{"a/b/c.txt", "a/b/c.txt", "a/b/c.txt", "m"}; !slices.Equal(changed, want) {
		t.Fatalf("change hook calls %v, want %v", changed, want)
	}
}
