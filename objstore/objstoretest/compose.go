package objstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// piece describes one part of a composed object in a test: a range of an
// object (src set) or new bytes.
type piece struct {
	src  string
	off  int64
	n    int64
	etag string
	data []byte
}

func cp(src string, off, n int64) piece { return piece{src: src, off: off, n: n} }
func nd(seed uint64, n int) piece       { return piece{data: randBytes(seed, n)} }

// parts turns pieces into Compose parts; each data part's reader starts
// partway into its buffer, since Compose reads from the current position.
func parts(t *testing.T, pieces []piece) []objstore.Part {
	t.Helper()
	out := make([]objstore.Part, len(pieces))
	for i, p := range pieces {
		if p.src != "" {
			out[i] = objstore.CopyPart(p.src, p.off, p.n, p.etag)
			continue
		}
		r := bytes.NewReader(append([]byte("skip"), p.data...))
		if _, err := r.Seek(4, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		out[i] = objstore.DataPart(r, int64(len(p.data)))
	}
	return out
}

// expected is what the pieces compose to, given the objects' contents.
func expected(objects map[string][]byte, pieces []piece) []byte {
	var b []byte
	for _, p := range pieces {
		if p.src != "" {
			b = append(b, objects[p.src][p.off:p.off+p.n]...)
		} else {
			b = append(b, p.data...)
		}
	}
	return b
}

func mustSameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) || sha256.Sum256(got) != sha256.Sum256(want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("%s: %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
			}
		}
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
}

// failingReader fails, for good, once it has delivered limit bytes.
type failingReader struct {
	*bytes.Reader
	limit int64
}

var errReaderBroke = errors.New("data reader broke")

func (f *failingReader) Read(p []byte) (int, error) {
	pos := f.Size() - int64(f.Len())
	if pos >= f.limit {
		return 0, errkind.Mark(errkind.Permanent, errReaderBroke)
	}
	if int64(len(p)) > f.limit-pos {
		p = p[:f.limit-pos]
	}
	return f.Reader.Read(p)
}

func testCompose(t *testing.T, s objstore.Store) {
	c, ok := s.(objstore.Composer)
	if !ok {
		t.Logf("%s does not implement objstore.Composer", s)
		if err := objstore.Compose(ctxT(t), s, "compose/x", nil, nil); !errors.Is(err, objstore.ErrNoCompose) {
			t.Fatalf("objstore.Compose on a store without it: %v", err)
		}
		return
	}
	ctx := ctxT(t)
	const mib = 1 << 20
	objects := map[string][]byte{
		"compose/src":   randBytes(30, LargeObjectSize),
		"compose/other": randBytes(31, 7*mib+5),
		"compose/small": randBytes(32, 100),
	}
	for k, v := range objects {
		put(t, s, k, v)
	}
	const size = LargeObjectSize
	var meta map[string]string
	if _, ok := s.(objstore.MetadataPutter); ok {
		meta = map[string]string{"mode": "100644", "mtime": "1763958000.5"}
	}
	for _, tc := range []struct {
		name   string
		pieces []piece
	}{
		{"a change in the middle", []piece{cp("compose/src", 0, 6*mib), nd(1, 4096), cp("compose/src", 6*mib+4096, size-6*mib-4096)}},
		{"a change at the start", []piece{nd(2, 4096), cp("compose/src", 4096, size-4096)}},
		{"a change at the end", []piece{cp("compose/src", 0, size-4096), nd(3, 4096)}},
		{"appended", []piece{cp("compose/src", 0, size), nd(4, mib+3)}},
		{"shortened", []piece{cp("compose/src", 0, 5*mib+1)}},
		{"changes with short copies between them", []piece{
			nd(5, 100), cp("compose/src", 100, mib), nd(6, 3000), cp("compose/src", 2*mib, 7*mib), nd(7, 1), cp("compose/src", 9*mib+1, size-9*mib-1)}},
		{"short copies only", []piece{cp("compose/src", 3*mib, 2*mib), cp("compose/other", 0, 10), cp("compose/src", 0, 3*mib), cp("compose/small", 5, 90)}},
		{"two sources", []piece{cp("compose/src", 0, 6*mib), cp("compose/other", mib, 6*mib), nd(8, 777), cp("compose/src", 6*mib, size-6*mib)}},
		{"data only", []piece{nd(9, 5*mib+mib/2), nd(10, 17)}},
		{"a small object", []piece{cp("compose/small", 10, 10), nd(11, 5), cp("compose/small", 0, 1)}},
		{"empty parts among others", []piece{nd(12, 0), cp("compose/src", 0, 0), cp("compose/src", 0, 6*mib), nd(13, 0), cp("compose/small", 100, 0)}},
		{"no parts", nil},
	} {
		key := "compose/dst"
		if err := c.Compose(ctx, key, parts(t, tc.pieces), meta); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := expected(objects, tc.pieces)
		mustSameBytes(t, tc.name, getRange(t, s, key, 0, -1), want)
		oi, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if oi.Size != int64(len(want)) || !maps.Equal(oi.Metadata, meta) {
			t.Fatalf("%s: stat says %d bytes, metadata %v; want %d bytes, metadata %v", tc.name, oi.Size, oi.Metadata, len(want), meta)
		}
		if len(want) > 3000 {
			off := int64(len(want) - 3000)
			mustEqual(t, tc.name+": a range at the end", getRange(t, s, key, off, 2000), want[off:off+2000])
		}
	}

	// In place, with the source's ETag: the source is its own version
	// before the compose.
	etag := statETag(t, s, "compose/src")
	inPlace := []piece{
		{src: "compose/src", off: 0, n: 5 * mib, etag: etag}, nd(14, 4096),
		{src: "compose/src", off: 5*mib + 4096, n: size - 5*mib - 4096, etag: etag}, nd(15, 10)}
	want := expected(objects, inPlace)
	if err := c.Compose(ctx, "compose/src", parts(t, inPlace), nil); err != nil {
		t.Fatalf("compose in place: %v", err)
	}
	mustSameBytes(t, "composed in place", getRange(t, s, "compose/src", 0, -1), want)
	if oi, err := s.Stat(ctx, "compose/src"); err != nil || len(oi.Metadata) != 0 {
		t.Fatalf("metadata of an object composed without any: %v (%v)", oi.Metadata, err)
	}
	objects["compose/src"] = want
	// The old ETag no longer matches: nothing changes.
	err := c.Compose(ctx, "compose/src", parts(t, inPlace), nil)
	mustPreconditionFailed(t, "compose from a source with another ETag", err)
	mustSameBytes(t, "after a compose refused for the ETag", getRange(t, s, "compose/src", 0, -1), want)

	// Failures leave the destination as it was.
	old := []byte("the old version")
	put(t, s, "compose/dst", old)
	unchanged := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: compose succeeded", what)
		}
		mustEqual(t, what+": the object after a failed compose", getRange(t, s, "compose/dst", 0, -1), old)
	}
	big := cp("compose/src", 0, 6*mib)
	err = c.Compose(ctx, "compose/dst", parts(t, []piece{big, cp("compose/missing", 0, 1)}), nil)
	unchanged("a missing source", err)
	if !objstore.IsNotFound(err) {
		t.Errorf("a missing source: %v, want not-found", err)
	}
	for _, p := range []piece{cp("compose/small", 50, 51), cp("compose/small", 101, 0), cp("compose/small", -1, 5)} {
		err = c.Compose(ctx, "compose/dst", parts(t, []piece{big, nd(16, 10), p}), nil)
		unchanged(fmt.Sprintf("range [%d,+%d) of a 100-byte source", p.off, p.n), err)
		if !errors.Is(err, objstore.ErrInvalidRange) || objstore.IsNotFound(err) {
			t.Errorf("range [%d,+%d) of a 100-byte source: %v, want ErrInvalidRange", p.off, p.n, err)
		}
	}
	err = c.Compose(ctx, "compose/dst", parts(t, []piece{big, {src: "compose/other", n: 10, etag: "not-its-etag"}}), nil)
	unchanged("a source with another ETag", err)
	mustPreconditionFailed(t, "a source with another ETag", err)
	for what, p := range map[string]objstore.Part{
		"a part with data and a source": {SrcKey: "compose/small", Data: bytes.NewReader(nil)},
		"a part with neither":           {Size: 1},
		"a negative size":               {SrcKey: "compose/small", Size: -1},
		"a short data reader":           objstore.DataPart(bytes.NewReader(make([]byte, 10)), 11),
		"an invalid source key":         objstore.CopyPart("compose/../small", 0, 1, ""),
	} {
		unchanged(what, c.Compose(ctx, "compose/dst", append(parts(t, []piece{big}), p), nil))
	}
	unchanged("an invalid key", c.Compose(ctx, "compose//dst", parts(t, []piece{nd(17, 1)}), nil))
	if meta != nil {
		unchanged("bad metadata", c.Compose(ctx, "compose/dst", parts(t, []piece{nd(18, 1)}), map[string]string{"Bad": "x"}))
	}

	// Halfway: after large copies, a data reader breaks, or the caller
	// gives up.
	broken := parts(t, []piece{big, nd(19, 6*mib), big, big})
	broken[1].Data = &failingReader{Reader: bytes.NewReader(randBytes(19, 6*mib)), limit: 3 * mib}
	err = c.Compose(ctx, "compose/dst", broken, nil)
	unchanged("a data reader that breaks", err)
	if !errors.Is(err, errReaderBroke) && !errkind.IsPermanent(err) {
		t.Errorf("a data reader that breaks: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	halfway := parts(t, []piece{big, nd(20, 6*mib), big, nd(21, 6*mib), big})
	halfway[3].Data = &cancelAfter{Reader: bytes.NewReader(randBytes(21, 6*mib)), limit: 3 * mib, cancel: cancel}
	err = c.Compose(cctx, "compose/dst", halfway, nil)
	cancel()
	unchanged("cancelled halfway", err)

	// Nothing else was made.
	if keys := listKeys(t, s, "compose/"); !slices.Equal(keys, []string{"compose/dst", "compose/other", "compose/small", "compose/src"}) {
		t.Fatalf("after the composes, list gives %q", keys)
	}
}
