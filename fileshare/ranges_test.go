package fileshare

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// counted is a store that counts the bytes sent to it: whole puts, and the
// data parts of the composes that succeed (their copies stay in the store).
type counted struct {
	*mem.Store
	sent, composes atomic.Int64
}

func (c *counted) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	c.sent.Add(size)
	return c.Store.Put(ctx, key, r, size)
}

func (c *counted) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	c.sent.Add(size)
	return c.Store.PutMeta(ctx, key, r, size, meta)
}

func (c *counted) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	c.composes.Add(1)
	err := c.Store.Compose(ctx, key, parts, meta)
	for _, p := range parts {
		if p.Data != nil && err == nil {
			c.sent.Add(p.Size)
		}
	}
	return err
}

func newCountedEnv(t *testing.T) (*env, *counted) {
	c := &counted{Store: mem.New("fs")}
	return newEnvOn(t, c), c
}

// An upload of a file changed in a few blocks sends those blocks and has
// the store copy the rest; the object is what a whole upload would make.
func TestUploadSendsOnlyChangedBlocks(t *testing.T) {
	e, c := newCountedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Create(ctx, "big", 0o640, 1000, 100, true))
	// 16 blocks: enough that every upload below copies at least
	// composeMinCopy; no more, as each MiB costs seconds under -race.
	const blocks = 16
	want := testrand.Bytes(3, blocks*BlockSize+123)
	for off := 0; off < len(want); off += BlockSize {
		must[Attr](t)(s.WriteAt(ctx, "big", want[off:min(off+BlockSize, len(want))], int64(off)))
	}
	// upload flushes and checks that it sent sent bytes in composes
	// compositions, and that the object and the file read want.
	upload := func(what string, sent, composes int64) {
		t.Helper()
		sent0, composes0 := c.sent.Load(), c.composes.Load()
		if err := e.m.Flush(ctx, ""); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got, n := c.sent.Load()-sent0, c.composes.Load()-composes0; got != sent || n != composes {
			t.Errorf("%s: sent %d bytes in %d composes, want %d in %d", what, got, n, sent, composes)
		}
		b, md := object(t, e.store, "docs/big")
		if !bytes.Equal(b, want) {
			t.Fatalf("%s: the object (%d bytes) is not the file (%d bytes)", what, len(b), len(want))
		}
		a := must[Attr](t)(s.Stat(ctx, "big"))
		if a.Size != int64(len(want)) || md[metaMode] != "640" || md[metaUID] != "1000" || md[metaMtime] != a.metadata()[metaMtime] {
			t.Fatalf("%s: attributes %+v, object metadata %v", what, a, md)
		}
		if got := readFile(t, s, "big"); !bytes.Equal(got, want) {
			t.Fatalf("%s: the file reads otherwise", what)
		}
	}
	write := func(p []byte, off int64) {
		t.Helper()
		must[Attr](t)(s.WriteAt(ctx, "big", p, off))
		if end := off + int64(len(p)); end > int64(len(want)) {
			want = append(want, make([]byte, end-int64(len(want)))...)
		}
		copy(want[off:], p)
	}
	upload("the first upload", int64(len(want)), 0)

	write(testrand.Bytes(4, 4096), 6*BlockSize+100)
	upload("4 KiB changed in the middle", BlockSize, 1)

	// Two changes, one across a block boundary.
	write(testrand.Bytes(5, 10), 3*BlockSize-5)
	write(testrand.Bytes(6, 1), 13*BlockSize)
	upload("two changes", 3*BlockSize, 1)

	// Appended from inside the last block.
	write(testrand.Bytes(7, 3*BlockSize), int64(len(want))-100)
	upload("appended", int64(len(want))-blocks*BlockSize, 1)

	// Cut short and extended again: past the cut the file holds zeroes,
	// which the old object does not.
	size := int64(10*BlockSize + 5)
	must[Attr](t)(s.SetAttr(ctx, "big", SetAttr{Size: &size}))
	long := int64(len(want))
	must[Attr](t)(s.SetAttr(ctx, "big", SetAttr{Size: &long}))
	clear(want[size:])
	upload("cut and extended", long-10*BlockSize, 1)

	// Written, then the gateway stops before the upload: the replayed
	// write is what goes up.
	write(testrand.Bytes(8, 4096), 5*BlockSize)
	e.restart()
	s = e.share("docs")
	upload("after a restart", BlockSize, 1)

	// A chmod of the composed object changes its metadata alone.
	sent := c.sent.Load()
	mode := uint32(0o600)
	must[Attr](t)(s.SetAttr(ctx, "big", SetAttr{Mode: &mode}))
	if b, md := object(t, e.store, "docs/big"); md[metaMode] != "600" || !bytes.Equal(b, want) || c.sent.Load() != sent {
		t.Fatalf("after chmod: metadata %v, %d bytes sent", md, c.sent.Load()-sent)
	}
}

// A file whose object another application replaced since the share read
// it goes up whole, as without compose: the copies would come from an
// object the file's writes were not made on.
func TestUploadOfAFileReplacedBesideTheShareSendsItWhole(t *testing.T) {
	e, c := newCountedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	size := 20*BlockSize + 7
	if err := objstore.PutBytes(ctx, c.Store, "docs/big", testrand.Bytes(9, size)); err != nil {
		t.Fatal(err)
	}
	change := testrand.Bytes(10, 4096)
	must[Attr](t)(s.WriteAt(ctx, "big", change, 10*BlockSize))
	other := testrand.Bytes(11, size)
	if err := objstore.PutBytes(ctx, c.Store, "docs/big", other); err != nil {
		t.Fatal(err)
	}
	sent0 := c.sent.Load()
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if c.composes.Load() != 1 || c.sent.Load()-sent0 != int64(size) {
		t.Fatalf("%d composes, %d bytes sent; want the compose refused and the file sent whole (%d bytes)", c.composes.Load(), c.sent.Load()-sent0, size)
	}
	b, _ := object(t, e.store, "docs/big")
	if !bytes.Equal(b[10*BlockSize:10*BlockSize+4096], change) {
		t.Fatal("the write is not in the object")
	}
	// Outside the written block, what the share read of the object.
	if !bytes.Equal(b[:10*BlockSize], other[:10*BlockSize]) || !bytes.Equal(b[11*BlockSize:], other[11*BlockSize:]) {
		t.Fatal("the object differs from the replaced one outside the written block")
	}
	if got := readFile(t, s, "big"); !bytes.Equal(got, b) {
		t.Fatal("the file reads otherwise than its object")
	}
}
