package fileshare

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// heldPut is a store whose next put of key, once armed, reads its body,
// says so on reached, and waits for release before the object changes.
type heldPut struct {
	*mem.Store
	key              string
	armed            atomic.Bool // the next put of key is held
	reached, release chan struct{}
}

func (h *heldPut) hold(key string, rd io.ReadSeeker) (io.ReadSeeker, error) {
	if key != h.key || !h.armed.CompareAndSwap(true, false) {
		return rd, nil
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	close(h.reached)
	<-h.release
	return bytes.NewReader(b), nil
}

func (h *heldPut) Put(ctx context.Context, key string, rd io.ReadSeeker, size int64) error {
	rd, err := h.hold(key, rd)
	if err != nil {
		return err
	}
	return h.Store.Put(ctx, key, rd, size)
}

func (h *heldPut) PutMeta(ctx context.Context, key string, rd io.ReadSeeker, size int64, meta map[string]string) error {
	rd, err := h.hold(key, rd)
	if err != nil {
		return err
	}
	return h.Store.PutMeta(ctx, key, rd, size, meta)
}

// heldGet releases the held put when the share next reads key, and lets
// the read go on once that put is done: the read meets the object the
// upload put, not the one the file's base names.
type heldGet struct {
	*heldPut
	put chan error
}

func (h *heldGet) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	select {
	case <-h.reached:
		if key == h.key {
			select {
			case <-h.release:
			default:
				close(h.release)
				select {
				case err := <-h.put:
					h.put <- err
				case <-time.After(time.Minute):
					panic("the held upload did not end")
				}
			}
		}
	default:
	}
	return h.heldPut.Get(ctx, key, off, length)
}

// A truncation whose last block is not cached reads that block from the
// file's object. The file's upload, started as the truncation began,
// replaces the object during that read, before the file's base names the
// new, shorter object: the read takes the block from the object there up
// to its end, where it failed with "range outside object" for the base's
// length (the randomized test caught it under load).
func TestTruncateReadsBaseAsUploadReplacesIt(t *testing.T) {
	hp := &heldPut{Store: mem.New("fs"), key: "docs/f", reached: make(chan struct{}), release: make(chan struct{})}
	h := &heldGet{heldPut: hp, put: make(chan error, 1)}
	e := newEnvOn(t, h)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	data := testrand.Bytes(1, 5*BlockSize/2)
	if err := hp.Store.Put(ctx, "docs/f", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	s := e.share("docs")
	if err := s.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	const size = BlockSize/2 + 12345
	truncateHook = func() {
		truncateHook = nil
		hp.armed.Store(true)
		go func() { h.put <- e.m.Flush(ctx, "") }()
		select {
		case <-hp.reached:
		case err := <-h.put:
			t.Errorf("the upload ended without its put held: %v", err)
		case <-time.After(time.Minute):
			t.Error("the upload did not reach its put")
		}
	}
	t.Cleanup(func() { truncateHook = nil })
	sz := int64(size)
	if _, err := s.SetAttr(ctx, "f", SetAttr{Size: &sz}); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	if err := <-h.put; err != nil {
		t.Fatalf("upload: %v", err)
	}
	if got := readFile(t, s, "f"); !bytes.Equal(got, data[:size]) {
		t.Fatalf("the file has %d bytes, first difference at %d; want %d", len(got), firstDiff(got, data[:size]), size)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if b, _ := object(t, hp.Store, "docs/f"); !bytes.Equal(b, data[:size]) {
		t.Fatalf("the object has %d bytes, want %d", len(b), size)
	}
}

// heldStat is a store whose next stat of key, once armed, reads the
// object, says so on reached and answers what it read once released.
type heldStat struct {
	*mem.Store
	key              string
	armed            atomic.Bool
	reached, release chan struct{}
}

func (h *heldStat) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	oi, err := h.Store.Stat(ctx, key)
	if key == h.key && h.armed.CompareAndSwap(true, false) {
		close(h.reached)
		<-h.release
	}
	return oi, err
}

// A stat that reads a file's object as the file's upload ends reads the
// object before that upload; the upload retires the file's pending state
// and caches the object it put. The stat must then neither cache what it
// read over that nor answer it: the file would read as its old size
// (a change started from it read past the new object's end). A listing's
// look at the file is the same (the randomized test's check after a
// restart listed a file with its old size).
func TestStatAsUploadEnds(t *testing.T) {
	for _, how := range []string{"stat", "readdir"} {
		t.Run(how, func(t *testing.T) {
			h := &heldStat{Store: mem.New("fs"), key: "docs/f", reached: make(chan struct{}), release: make(chan struct{})}
			e := newEnvOn(t, h)
			ctx := context.Background()
			must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
			old := testrand.Bytes(1, 1000)
			if err := h.Store.Put(ctx, "docs/f", bytes.NewReader(old), int64(len(old))); err != nil {
				t.Fatal(err)
			}
			s := e.share("docs")
			if err := s.Refresh("", true); err != nil {
				t.Fatal(err)
			}
			more := testrand.Bytes(2, 3000)
			must[Attr](t)(s.WriteAt(ctx, "f", more, int64(len(old))))
			if err := s.Refresh("", true); err != nil {
				t.Fatal(err)
			}
			h.armed.Store(true)
			type result struct {
				a   Attr
				err error
			}
			stat := make(chan result, 1)
			go func() {
				if how == "stat" {
					a, err := s.Stat(ctx, "f")
					stat <- result{a, err}
					return
				}
				des, err := s.ReadDir(ctx, "")
				if err == nil && len(des) != 1 {
					t.Errorf("listed %d entries, want 1", len(des))
				}
				if len(des) == 0 {
					stat <- result{err: err}
					return
				}
				stat <- result{des[0].Attr, err}
			}()
			select {
			case <-h.reached:
			case r := <-stat:
				t.Fatalf("the %s did not read the store: %+v, %v", how, r.a, r.err)
			case <-time.After(time.Minute):
				t.Fatalf("the %s did not read the store", how)
			}
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
			close(h.release)
			want := int64(len(old) + len(more))
			r := <-stat
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.a.Size != want {
				t.Errorf("the %s racing the upload: %d bytes, want %d", how, r.a.Size, want)
			}
			if a := must[Attr](t)(s.Stat(ctx, "f")); a.Size != want {
				t.Errorf("the next stat: %d bytes, want %d", a.Size, want)
			}
		})
	}
}
