package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// unit is one byte of a composed object, named by where it comes from.
type unit struct {
	src string // "" for data
	at  int64  // offset in the source, or position in the reader
	r   io.ReadSeeker
}

func units(segs []segment) []unit {
	var out []unit
	for _, g := range segs {
		for i := range g.n {
			if g.isCopy() {
				out = append(out, unit{src: g.src, at: g.off + i})
			} else {
				out = append(out, unit{r: g.r, at: g.pos + i})
			}
		}
	}
	return out
}

// checkPlan checks a plan against S3's rules and against the segments it
// lays out, and returns the bytes it sends.
func checkPlan(t *testing.T, segs []segment, plan []plannedPart, minPart, sendSize, maxCopy int64) (sent int64) {
	t.Helper()
	total := int64(0)
	for _, g := range segs {
		total += g.n
	}
	if limit := (total + minPart - 1) / minPart; int64(len(plan)) > max(limit, 1) {
		t.Fatalf("%d parts for %d bytes, more than %d", len(plan), total, limit)
	}
	for i, p := range plan {
		n := int64(0)
		for _, g := range p.segs {
			n += g.n
		}
		switch {
		case n != p.n || n <= 0:
			t.Fatalf("part %d: %d bytes, segments of %d", i+1, p.n, n)
		case i < len(plan)-1 && n < minPart:
			t.Fatalf("part %d of %d: %d bytes, under the minimum %d", i+1, len(plan), n, minPart)
		case p.copy && (len(p.segs) != 1 || !p.segs[0].isCopy() || n > maxCopy):
			t.Fatalf("copy part %d: %d segments, %d bytes", i+1, len(p.segs), n)
		case !p.copy && n > max(sendSize, 2*minPart):
			t.Fatalf("sent part %d: %d bytes, over %d", i+1, n, max(sendSize, 2*minPart))
		case n > maxPutSize:
			t.Fatalf("part %d: %d bytes, over S3's 5 GiB", i+1, n)
		}
		if !p.copy {
			sent += n
		}
	}
	return sent
}

func TestPlanComposeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	readers := []io.ReadSeeker{strings.NewReader("a"), strings.NewReader("b")}
	for round := range 3000 {
		minPart := int64(1 + rng.IntN(8))
		sendSize := minPart + int64(rng.IntN(8))
		maxCopy := 2*minPart + int64(rng.IntN(8))
		var segs []segment
		for range rng.IntN(8) {
			n := int64(1 + rng.IntN(30))
			if rng.IntN(2) == 0 {
				segs = append(segs, segment{src: fmt.Sprint("src", rng.IntN(2)), off: int64(rng.IntN(100)), n: n})
			} else {
				segs = append(segs, segment{r: readers[rng.IntN(2)], pos: int64(rng.IntN(100)), n: n})
			}
		}
		plan := planCompose(segs, minPart, sendSize, maxCopy)
		checkPlan(t, segs, plan, minPart, sendSize, maxCopy)
		var laid []segment
		for _, p := range plan {
			laid = append(laid, p.segs...)
		}
		want, got := units(segs), units(laid)
		if len(want) != len(got) {
			t.Fatalf("round %d: plan lays out %d bytes of %d", round, len(got), len(want))
		}
		for i := range want {
			if want[i] != got[i] {
				t.Fatalf("round %d: byte %d comes from %+v, want %+v", round, i, got[i], want[i])
			}
		}
	}
}

// The figures that matter: a 4 KiB change costs a part's worth, not the
// object; huge objects with changes everywhere stay within 10,000 parts.
func TestPlanComposeCost(t *testing.T) {
	const gib = 1 << 30
	data := strings.NewReader("")
	for _, tc := range []struct {
		name      string
		segs      []segment
		sent      int64
		wantParts int
	}{
		{"4 KiB in the middle of 1 GiB", []segment{{src: "f", n: gib / 2}, {r: data, n: 4096}, {src: "f", off: gib/2 + 4096, n: gib/2 - 4096}}, MinPartSize, 3},
		{"4 KiB at the start of 1 GiB", []segment{{r: data, n: 4096}, {src: "f", off: 4096, n: gib - 4096}}, MinPartSize, 3},
		{"4 KiB at the end of 1 GiB", []segment{{src: "f", n: gib - 4096}, {r: data, n: 4096}}, 4096, 3},
		{"1 MiB appended to 1 GiB", []segment{{src: "f", n: gib}, {r: data, n: 1 << 20}}, 1 << 20, 3},
	} {
		minPart, _ := partLayout(gib, MinPartSize)
		plan := planCompose(tc.segs, minPart, DefaultPartSize, copyPartSize)
		sent := checkPlan(t, tc.segs, plan, minPart, DefaultPartSize, copyPartSize)
		if sent != tc.sent || len(plan) != tc.wantParts {
			t.Errorf("%s: %d parts sending %d bytes, want %d parts sending %d", tc.name, len(plan), sent, tc.wantParts, tc.sent)
		}
	}
	// 5 TiB with a 4 KiB change every 100 MiB.
	const total = 5 << 40
	var segs []segment
	for off := int64(0); off < total; off += 100 << 20 {
		segs = append(segs, segment{src: "huge", off: off, n: 100<<20 - 4096}, segment{r: data, n: 4096})
	}
	minPart, _ := partLayout(total, MinPartSize)
	maxCopy := max(int64(copyPartSize), 2*minPart)
	plan := planCompose(segs, minPart, max(DefaultPartSize, minPart), maxCopy)
	sent := checkPlan(t, segs, plan, minPart, max(DefaultPartSize, minPart), maxCopy)
	if len(plan) > maxParts {
		t.Fatalf("%d parts", len(plan))
	}
	t.Logf("5 TiB, 4 KiB changed every 100 MiB: %d parts, %d GiB sent", len(plan), sent>>30)
}

// replaceOnRead overwrites an object the first time it is read, as a
// writer beside the gateway would.
type replaceOnRead struct {
	*bytes.Reader
	once func()
}

func (r *replaceOnRead) Read(p []byte) (int, error) {
	if r.once != nil {
		r.once()
		r.once = nil
	}
	return r.Reader.Read(p)
}

// A compose that fails after parts went up aborts its upload: MinIO
// holds no multipart upload afterwards, and the object is unchanged.
func TestComposeFailureLeavesNoUpload(t *testing.T) {
	s, srv := newStore(t)
	ctx := t.Context()
	const mib = 1 << 20
	src := bytes.Repeat([]byte("0123456789abcdef"), 20*mib/16)
	if err := objstore.PutBytes(ctx, s, "src", src); err != nil {
		t.Fatal(err)
	}
	old := []byte("old")
	if err := objstore.PutBytes(ctx, s, "dst", old); err != nil {
		t.Fatal(err)
	}
	oi, err := s.Stat(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	copyPart := objstore.CopyPart("src", 0, 6*mib, oi.ETag)
	unchanged := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: compose succeeded", what)
		}
		got, gerr := objstore.GetAll(ctx, s, "dst")
		if gerr != nil || !bytes.Equal(got, old) {
			t.Fatalf("%s: the object after a failed compose is %d bytes (%v)", what, len(got), gerr)
		}
		out, lerr := srv.Client().ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.Bucket)})
		if lerr != nil {
			t.Fatal(lerr)
		}
		if len(out.Uploads) != 0 {
			t.Fatalf("%s: %d multipart uploads left behind", what, len(out.Uploads))
		}
	}

	// A data reader that ends short, after copies went up.
	short := objstore.DataPart(bytes.NewReader(make([]byte, 7*mib)), 8*mib)
	err = s.Compose(ctx, "dst", []objstore.Part{copyPart, copyPart, short, copyPart}, nil)
	unchanged("a short data reader", err)
	if !errkind.IsPermanent(err) {
		t.Errorf("a short data reader: %v (%v), want permanent", err, errkind.Of(err))
	}

	// Cancelled while a data part is read.
	cctx, cancel := context.WithCancel(ctx)
	cancelling := &replaceOnRead{Reader: bytes.NewReader(make([]byte, 6*mib)), once: cancel}
	err = s.Compose(cctx, "dst", []objstore.Part{copyPart, copyPart, objstore.DataPart(cancelling, 6*mib), copyPart}, nil)
	cancel()
	unchanged("cancelled", err)

	// The source replaced after the first parts: its ETag no longer
	// matches, for the bytes read and for the copies.
	replacing := &replaceOnRead{Reader: bytes.NewReader(make([]byte, 6*mib)), once: func() {
		if err := objstore.PutBytes(ctx, s, "src", []byte("replaced")); err != nil {
			t.Error(err)
		}
	}}
	err = s.Compose(ctx, "dst", []objstore.Part{copyPart, objstore.DataPart(replacing, 6*mib), copyPart, copyPart}, nil)
	unchanged("the source replaced", err)
	if !objstore.IsPreconditionFailed(err) {
		t.Errorf("the source replaced midway: %v, want a precondition failure", err)
	}
}
