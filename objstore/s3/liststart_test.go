package s3

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/objstore"
)

// TestListStartAfter: a listing whose context carries a start key (a retry
// resuming where it broke off) begins after that key and lists everything
// after it, across pages (4 keys each here), in List and in ListDir.
func TestListStartAfter(t *testing.T) {
	s, _ := newStore(t)
	flat := make([]string, 10)
	for i := range flat {
		flat[i] = fmt.Sprintf("d/k%d", i)
	}
	// Nested keys and markers: MinIO answers the page after "n/d/e/f/g/h"
	// with four keys and no sign that a fifth follows.
	nested := []string{"n/%2F", "n/.hidden", "n/d%", "n/d-x", "n/d/", "n/d/e/", "n/d/e/f/g/h", "n/d/e/f/g/h/", "n/d/f", "n/sp ace/~t", "n/tmp", "n/x/y/z/"}
	for _, k := range append(flat, nested...) {
		if err := objstore.PutBytes(t.Context(), s, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		prefix, after string
		want          []string
	}{
		{"d/", "d/k3", flat[4:]},
		{"n/", "n/d/e/f/g/h", nested[7:]},
		{"n/", "n/d-x", nested[4:]},
	} {
		ctx := objstore.WithListStart(t.Context(), c.after)
		var keys []string
		if err := s.List(ctx, c.prefix, func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(keys, ","), strings.Join(c.want, ","); got != want {
			t.Fatalf("List after %s:\n got %s\nwant %s", c.after, got, want)
		}
	}
	ctx := objstore.WithListStart(t.Context(), "d/k3")
	var dir []string
	if err := s.ListDir(ctx, "d/", func(oi objstore.ObjectInfo, _ bool) error { dir = append(dir, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(dir, ","), strings.Join(flat[4:], ","); got != want {
		t.Fatalf("ListDir after d/k3: %s, want %s", got, want)
	}
	ctx = objstore.WithListStart(t.Context(), "n/d-x")
	dir = nil
	if err := s.ListDir(ctx, "n/", func(oi objstore.ObjectInfo, _ bool) error { dir = append(dir, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(dir, ","), "n/d/,n/sp ace/,n/tmp,n/x/"; got != want {
		t.Fatalf("ListDir after n/d-x: %s, want %s", got, want)
	}
}
