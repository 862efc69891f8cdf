package fileshare

import (
	"bytes"
	"context"
	"testing"

	"github.com/gatewayd/gatewayd/internal/testrand"
)

// A share's writes stay in the log until the file is uploaded: the cache
// reads them from there and writes them into its block files once, after
// the upload, bytes overwritten meanwhile not at all.
func TestShareWritesStayInTheLogUntilUpload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	want := testrand.Bytes(5, 2*BlockSize+4321)
	for off := 0; off < len(want); off += 65536 {
		must[Attr](t)(s.WriteAt(ctx, "f", want[off:min(off+65536, len(want))], int64(off)))
	}
	over := testrand.Bytes(6, 10000)
	copy(want[BlockSize-5000:], over) // across two blocks
	must[Attr](t)(s.WriteAt(ctx, "f", over, BlockSize-5000))
	if m := e.cache.Stats().Materialized; m != 0 {
		t.Fatalf("%d bytes written into cache files before the upload", m)
	}
	if got := readFile(t, s, "f"); !bytes.Equal(got, want) {
		t.Fatal("read before the upload differs")
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if m := e.cache.Stats().Materialized; m != uint64(len(want)) {
		t.Fatalf("%d bytes written into cache files after the upload, want each byte of the file once: %d", m, len(want))
	}
	if b, _ := object(t, e.store, "share/f"); !bytes.Equal(b, want) {
		t.Fatal("object differs")
	}
	if got := readFile(t, s, "f"); !bytes.Equal(got, want) {
		t.Fatal("read after the upload differs")
	}
}
