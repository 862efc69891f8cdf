package fileshare

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/localdir"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/retry"
	"github.com/gatewayd/gatewayd/objstore/s3"
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
// between smbclient's upload and a put into the bucket), nor, when the
// replacing object has the same size, as the share's own bytes.
func TestObjectReplacedAsItIsUploaded(t *testing.T) {
	second := []byte("second version, put over SMB by smbclient, longer\n")
	for _, tc := range []struct {
		name  string
		third []byte
	}{
		{"another size", []byte("third version, put in the bucket\n")},
		{"same size", bytes.ToUpper(second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			third := tc.third
			r := &replacing{Store: mem.New("fs"), key: "docs/f.txt", with: third}
			ev := &notifytest.Recorder{}
			e := &env{t: t, dir: t.TempDir(), store: r, md: metamem.New(), opts: func(o *Options) { o.Events = ev }}
			t.Cleanup(e.close)
			e.start()
			ctx := context.Background()
			must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
			s := e.share("docs")
			must[Attr](t)(s.Create(ctx, "f.txt", 0o644, 0, 0, true))
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
			if n := e.m.Stats().UploadsReplaced; n != 1 {
				t.Errorf("uploads counted as replaced: %d, want 1", n)
			}
			// The event says the share's version went up, with no ETag:
			// the one read back is the other application's.
			var up []notify.Event
			for _, x := range ev.Take() {
				if x.Kind == notify.FileUploaded && x.Key == "docs/f.txt" {
					up = append(up, x)
				}
			}
			if len(up) != 1 || up[0].ETag != "" || up[0].Size == nil || *up[0].Size != int64(len(second)) {
				t.Errorf("upload events of the file: %+v; want one, of %d bytes, without an ETag", up, len(second))
			}
		})
	}
}

// On the stores gatewayd runs with, the share's own uploads are never taken
// for replaced (putByUs reads back the times it put): a new file, one
// rewritten at the same size, a chmod (the object's metadata alone), a
// truncation, a directory and a symbolic link, on a local directory and on
// MinIO.
func TestOwnUploadsNotTakenForReplaced(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) objstore.Store
	}{
		{"localdir", func(t *testing.T) objstore.Store {
			st, err := localdir.Open(filepath.Join(t.TempDir(), "objects"))
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"minio", func(t *testing.T) objstore.Store {
			srv := miniotest.Start(t)
			srv.CreateBucket(t, "own")
			st, err := s3.Open(t.Context(), s3.Config{Bucket: "own", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
				AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return retry.New(st, retry.Options{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvOn(t, tc.open(t))
			ctx := context.Background()
			must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
			s := e.share("docs")
			flush := func(step string) {
				t.Helper()
				if err := e.m.Flush(ctx, ""); err != nil {
					t.Fatalf("%s: %v", step, err)
				}
			}
			first := bytes.Repeat([]byte("first "), 500)
			must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
			must[Attr](t)(s.WriteAt(ctx, "f", first, 0))
			flush("new file")
			second := bytes.ToUpper(first)
			must[Attr](t)(s.WriteAt(ctx, "f", second, 0))
			flush("same size")
			mode := uint32(0o600)
			must[Attr](t)(s.SetAttr(ctx, "f", SetAttr{Mode: &mode}))
			flush("chmod")
			short := int64(1000)
			must[Attr](t)(s.SetAttr(ctx, "f", SetAttr{Size: &short}))
			flush("truncation")
			must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
			must[Attr](t)(s.Symlink(ctx, "d/l", "../f", 0, 0))
			flush("directory and link")
			st := e.m.Stats()
			if st.FilesUploaded < 5 { // the chmod goes to the object at once, not as an upload
				t.Fatalf("%d uploads: the test tests less than it says", st.FilesUploaded)
			}
			if st.UploadsReplaced != 0 {
				t.Errorf("%d of %d uploads taken for replaced by another application", st.UploadsReplaced, st.FilesUploaded)
			}
			if got := readFile(t, s, "f"); !bytes.Equal(got, second[:short]) {
				t.Errorf("f reads %d bytes, not the %d written", len(got), short)
			}
			if b, _ := object(t, e.store, "docs/f"); !bytes.Equal(b, second[:short]) {
				t.Errorf("the object holds %d bytes, not the %d written", len(b), short)
			}
		})
	}
}
