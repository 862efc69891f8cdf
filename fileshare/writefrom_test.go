package fileshare

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/vfs"
)

// released is a WriteFrom release func that says when it was called.
type released struct {
	n  atomic.Int32
	ch chan struct{}
}

func newReleased() *released { return &released{ch: make(chan struct{}, 1)} }

func (r *released) release() {
	if r.n.Add(1) == 1 {
		r.ch <- struct{}{}
	}
}

func (r *released) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(5 * time.Minute):
		t.Fatal("release not called")
	}
	if n := r.n.Load(); n != 1 {
		t.Fatalf("release called %d times", n)
	}
}

// A buffered WriteFrom takes its record from the caller's buffer, header
// included (no copy): the buffer is not handed back until the log has
// written the record, and what the log holds is the data as written, even
// if the caller changes the buffer once it is handed back.
func TestWriteFromKeepsBufferUntilLogged(t *testing.T) {
	var armed atomic.Bool
	open := make(chan struct{})
	dir := t.TempDir()
	gate := func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && armed.Load() && strings.HasPrefix(path, filepath.Join(dir, "log")) {
			<-open // the log's writer waits here
		}
		return nil
	}
	e := &env{t: t, dir: dir, store: mem.New("fs"), md: metamem.New(), logFS: vfs.NewErrorFS(vfs.Default, gate)}
	t.Cleanup(e.close)
	e.start()
	var opened atomic.Bool
	unblock := func() {
		if !opened.Swap(true) {
			close(open)
		}
	}
	t.Cleanup(unblock) // before e.close, which waits for the writer
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))

	const head = 64
	data := bytes.Repeat([]byte("0123456789abcdef"), BlockSize/16)
	buf := append(bytes.Repeat([]byte{0xaa}, head), data...)
	r := newReleased()
	armed.Store(true)
	pre, post, err := s.WriteFrom(ctx, "f", buf, head, BlockSize, Buffered, r.release)
	if err != nil {
		t.Fatal(err)
	}
	if pre.Type != TypeFile || pre.Size != 0 || post.Size != 2*BlockSize {
		t.Fatalf("pre %+v post %+v: want a file of 0 bytes before, %d after", pre, post, 2*BlockSize)
	}
	// The log's writer is held before it writes: the buffer is the
	// log's until it has.
	if r.n.Load() != 0 {
		t.Fatal("buffer handed back before the log wrote its record")
	}
	// The record's header went into the room before the data.
	n := int(writeDataOffset("s"))
	want := writeHead(record{typ: recWrite, share: "s", ino: pre.Ino, offset: BlockSize})
	if !bytes.Equal(buf[head-n:head], want) || !bytes.Equal(buf[:head-n], bytes.Repeat([]byte{0xaa}, head-n)) {
		t.Fatalf("room before the data: %x, want %x after %d bytes of aa", buf[:head], want, head-n)
	}
	got := make([]byte, BlockSize)
	if _, err := s.ReadAt(ctx, "f", got, BlockSize); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read before the log wrote it: %v, equal %v", err, bytes.Equal(got, data))
	}
	unblock()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	// The caller reuses its buffer; the log keeps what was written.
	for i := range buf {
		buf[i] = 0xee
	}
	e.restart()
	s = e.share("s")
	if _, err := s.ReadAt(ctx, "f", got, BlockSize); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after a restart (replayed from the log): %v, equal %v", err, bytes.Equal(got, data))
	}
}

// writeHead is the header of a write record as encode writes it.
func writeHead(r record) []byte { return r.encode()[:writeDataOffset(r.share)] }

// Without room for the header, WriteFrom copies (the room is left alone);
// a durable WriteFrom hands the buffer back before it returns; a write to
// a directory fails, with the directory's attributes.
func TestWriteFromWithoutRoomDurableAndNotAFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))

	buf := []byte("xyhello")
	r := newReleased()
	if _, _, err := s.WriteFrom(ctx, "f", buf, 2, 0, Buffered, r.release); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	if string(buf) != "xyhello" {
		t.Fatalf("buffer changed: %q", buf)
	}

	buf = append(make([]byte, 100), "world"...)
	r = newReleased()
	pre, post, err := s.WriteFrom(ctx, "f", buf, 100, 5, Durable, r.release)
	if err != nil {
		t.Fatal(err)
	}
	if r.n.Load() != 1 {
		t.Fatalf("durable write: release called %d times when it returned, want 1", r.n.Load())
	}
	if pre.Size != 5 || post.Size != 10 {
		t.Fatalf("sizes before and after: %d, %d; want 5, 10", pre.Size, post.Size)
	}
	e.restart()
	s = e.share("s")
	got := make([]byte, 10)
	if n, err := s.ReadAt(ctx, "f", got, 0); n != 10 || string(got) != "helloworld" {
		t.Fatalf("after a restart: %q, %v", got[:n], err)
	}

	r = newReleased()
	pre, _, err = s.WriteFrom(ctx, "d", append(make([]byte, 64), "x"...), 64, 0, Buffered, r.release)
	if !errors.Is(err, ErrIsDir) || pre.Type != TypeDir {
		t.Fatalf("write to a directory: %v, type %v; want ErrIsDir with the directory's attributes", err, pre.Type)
	}
	r.wait(t)
}
