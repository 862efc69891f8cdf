package fileshare

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// replacing is a store where another application overwrites key with
// other bytes right after the share's next put of it: between the put and
// the share's stat of the object.
type replacing struct {
	*mem.Store
	key   string
	with  []byte
	armed atomic.Bool
}

func (r *replacing) replace(ctx context.Context, key string) error {
	if key != r.key || !r.armed.CompareAndSwap(true, false) {
		return nil
	}
	return r.Store.Put(ctx, key, bytes.NewReader(r.with), int64(len(r.with)))
}

func (r *replacing) Put(ctx context.Context, key string, rd io.ReadSeeker, size int64) error {
	if err := r.Store.Put(ctx, key, rd, size); err != nil {
		return err
	}
	return r.replace(ctx, key)
}

func (r *replacing) PutMeta(ctx context.Context, key string, rd io.ReadSeeker, size int64, meta map[string]string) error {
	if err := r.Store.PutMeta(ctx, key, rd, size, meta); err != nil {
		return err
	}
	return r.replace(ctx, key)
}

// A file whose object another application replaces as the share uploads
// it reads as the replacing object afterwards, not as the share's cached
// blocks cut to the new object's size (an NFSv4.1 test caught that race
// between smbclient's upload and a put into the bucket).
func TestObjectReplacedAsItIsUploaded(t *testing.T) {
	third := []byte("third version, put in the bucket\n")
	r := &replacing{Store: mem.New("fs"), key: "docs/f.txt", with: third}
	e := &env{t: t, dir: t.TempDir(), store: r, md: metamem.New()}
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Create(ctx, "f.txt", 0o644, 0, 0, true))
	second := []byte("second version, put over SMB by smbclient, longer\n")
	must[Attr](t)(s.WriteAt(ctx, "f.txt", second, 0))
	if got := readFile(t, s, "f.txt"); !bytes.Equal(got, second) {
		t.Fatalf("before the upload: %q", got)
	}
	r.armed.Store(true)
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if r.armed.Load() {
		t.Fatal("the upload did not put the object: the test tests nothing")
	}
	if b, _ := object(t, e.store, "docs/f.txt"); !bytes.Equal(b, third) {
		t.Fatalf("the bucket holds %q", b)
	}
	a := must[Attr](t)(s.Stat(ctx, "f.txt"))
	if got := readFile(t, s, "f.txt"); a.Size != int64(len(third)) || !bytes.Equal(got, third) {
		t.Fatalf("after the object was replaced: size %d, reads %q; want %q", a.Size, got, third)
	}
}
