package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// fakeLog is a RecordReader over records in memory; trimmed ones are gone.
type fakeLog struct {
	mu    sync.Mutex
	recs  map[uploadbuffer.LSN][]byte
	next  uploadbuffer.LSN
	reads int
}

func newFakeLog() *fakeLog { return &fakeLog{recs: map[uploadbuffer.LSN][]byte{}, next: 1} }

// log makes a record holding p after a header of hdr bytes and returns
// where p is in it.
func (f *fakeLog) log(hdr int, p []byte) Source {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := append(bytes.Repeat([]byte{'#'}, hdr), p...)
	lsn := f.next
	f.next++
	f.recs[lsn] = rec
	return Source{R: f, LSN: lsn, Off: int64(hdr)}
}

func (f *fakeLog) ReadRecord(lsn uploadbuffer.LSN, p []byte, off int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.recs[lsn]
	if !ok {
		return fmt.Errorf("record %d: %w", lsn, uploadbuffer.ErrNoRecord)
	}
	if off < 0 || off+int64(len(p)) > int64(len(rec)) {
		return fmt.Errorf("read [%d,+%d) of record %d of %d bytes", off, len(p), lsn, len(rec))
	}
	copy(p, rec[off:])
	f.reads++
	return nil
}

// trimAll drops every record: the cache must not need them any more.
func (f *fakeLog) trimAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.recs)
}

func (f *fakeLog) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// countFS counts the bytes written to chunk files.
type countFS struct {
	vfs.FS
	written atomic.Int64
}

type countFile struct {
	vfs.File
	fs *countFS
}

func (c *countFS) wrap(f vfs.File, err error, name string) (vfs.File, error) {
	if err != nil || strings.HasSuffix(name, markerFile) {
		return f, err
	}
	return countFile{f, c}, nil
}

func (c *countFS) Create(name string) (vfs.File, error) {
	f, err := c.FS.Create(name)
	return c.wrap(f, err, name)
}

func (c *countFS) OpenReadWrite(name string) (vfs.File, error) {
	f, err := c.FS.OpenReadWrite(name)
	return c.wrap(f, err, name)
}

func (f countFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.written.Add(int64(len(p)))
	return f.File.WriteAt(p, off)
}

func (f countFile) Write(p []byte) (int, error) {
	f.fs.written.Add(int64(len(p)))
	return f.File.Write(p)
}

// A logged write does not touch the chunk file: reads, snapshots and
// merges see its bytes from the record. MarkClean writes them into the
// file once (bytes overwritten meanwhile not at all), after which the
// records are not read again: they may go.
func TestLoggedWriteTouchesNoFileUntilMarkClean(t *testing.T) {
	ctx := context.Background()
	fs := &countFS{FS: vfs.NewMem()}
	c := openCache(t, fs, 10*chunk)
	lg := newFakeLog()
	want := make([]byte, chunk) // key(1): a hole base, written in overlapping pieces
	union := extents{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		off := rng.Int64N(chunk / 2)
		p := bytes.Repeat([]byte{byte('a' + i%26)}, 1+rng.IntN(300))
		if err := c.WriteLogged(ctx, key(1), chunk, p, off, nil, lg.log(1+i%7, p)); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
		union = union.add(off, off+int64(len(p)))
	}
	// key(2): a clean chunk, then written over.
	clean := fill('c')
	if err := c.PutClean(key(2), clean); err != nil {
		t.Fatal(err)
	}
	want2 := bytes.Clone(clean)
	union2 := extents{}
	fs.written.Store(0)
	for i, off := range []int64{10, 20, 4000, 0} {
		p := bytes.Repeat([]byte{byte('A' + i)}, 50+i)
		p = p[:min(len(p), chunk-int(off))]
		if err := c.WriteLogged(ctx, key(2), chunk, p, off, noBase, lg.log(3, p)); err != nil {
			t.Fatal(err)
		}
		copy(want2[off:], p)
		union2 = union2.add(off, off+int64(len(p)))
	}
	// key(3): a whole chunk in one write.
	want3 := fill('w')
	if err := c.WriteLogged(ctx, key(3), chunk, want3, 0, nil, lg.log(0, want3)); err != nil {
		t.Fatal(err)
	}
	if n := fs.written.Load(); n != 0 {
		t.Fatalf("logged writes wrote %d bytes into chunk files", n)
	}

	// Reads, copies and the partial entry's extents see the records.
	x := union[0]
	if got := readOK(t, c, key(1), x.Off, x.End-x.Off); !bytes.Equal(got, want[x.Off:x.End]) {
		t.Fatal("read of logged bytes differs")
	}
	data, written, err := c.SnapshotPartial(key(1))
	if err != nil || !bytes.Equal(data, want) || fmt.Sprint(written) != fmt.Sprint([]Extent(union)) {
		t.Fatalf("partial copy: extents %v want %v, equal %v, err %v", written, union, bytes.Equal(data, want), err)
	}
	if got := readOK(t, c, key(2), 0, chunk); !bytes.Equal(got, want2) {
		t.Fatal("read of a clean chunk written over differs")
	}
	if got := readOK(t, c, key(3), 100, 200); !bytes.Equal(got, want3[100:300]) {
		t.Fatal("read of a whole logged chunk differs")
	}
	if fs.written.Load() != 0 || lg.readCount() == 0 {
		t.Fatalf("reads wrote %d bytes, read %d records", fs.written.Load(), lg.readCount())
	}

	// Merging the base writes only the base, around the logged bytes.
	base := fill('b')
	if ok, err := c.Merge(key(1), base); !ok || err != nil {
		t.Fatalf("merge: %v %v", ok, err)
	}
	for _, g := range union.gaps(chunk) {
		copy(want[g.Off:g.End], base[g.Off:g.End])
	}
	unionBytes := bytesOf(union)
	if n := fs.written.Load(); n != chunk-unionBytes {
		t.Fatalf("merge wrote %d bytes, want the base around the writes: %d", n, chunk-unionBytes)
	}
	fs.written.Store(0)

	// MarkClean writes each chunk's logged bytes once, then the records go.
	wantWritten := unionBytes + bytesOf(union2) + chunk
	for i, w := range map[uint64][]byte{1: want, 2: want2, 3: want3} {
		data, gen, err := c.Snapshot(key(i))
		if err != nil || !bytes.Equal(data, w) {
			t.Fatalf("copy of chunk %d before MarkClean: equal %v, err %v", i, bytes.Equal(data, w), err)
		}
		if !markClean(t, c, key(i), gen) {
			t.Fatalf("chunk %d not marked clean", i)
		}
	}
	if n, m := fs.written.Load(), int64(c.Stats().Materialized); n != m || n != wantWritten {
		t.Fatalf("MarkClean wrote %d bytes (stats %d), want each logged byte once: %d", n, m, wantWritten)
	}
	lg.trimAll()
	reads := lg.readCount()
	for i, w := range map[uint64][]byte{1: want, 2: want2, 3: want3} {
		if got := readOK(t, c, key(i), 0, chunk); !bytes.Equal(got, w) {
			t.Fatalf("chunk %d after MarkClean and trim differs", i)
		}
		if data, _, err := c.Snapshot(key(i)); err != nil || !bytes.Equal(data, w) {
			t.Fatalf("copy of chunk %d after MarkClean and trim: %v", i, err)
		}
	}
	if lg.readCount() != reads {
		t.Fatal("the cache read records after MarkClean")
	}
}

// markClean is MarkClean for tests, which expect no error.
func markClean(t *testing.T, c *Cache, k Key, gen uint64) bool {
	t.Helper()
	ok, err := c.MarkClean(k, gen)
	if err != nil {
		t.Errorf("mark %v clean: %v", k, err)
	}
	return ok
}

func bytesOf(x extents) int64 {
	var n int64
	for _, e := range x {
		n += e.End - e.Off
	}
	return n
}

// MarkClean of a generation a later write replaced still writes the
// overlay into the file (the caller may release the records of the writes
// it uploaded), and the entry stays dirty.
func TestMarkCleanOfAStaleGenerationStillMaterializes(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, vfs.NewMem(), 10*chunk)
	lg := newFakeLog()
	p := []byte("first")
	c.WriteLogged(ctx, key(1), chunk, p, 0, noBase, lg.log(2, p))
	_, gen, err := c.Snapshot(key(1))
	if err != nil {
		t.Fatal(err)
	}
	q := []byte("second")
	c.WriteLogged(ctx, key(1), chunk, q, 100, noBase, lg.log(2, q))
	if markClean(t, c, key(1), gen) {
		t.Fatal("a stale generation marked the chunk clean")
	}
	lg.trimAll()
	if got := readOK(t, c, key(1), 0, 106); string(got[:5]) != "first" || string(got[100:]) != "second" {
		t.Fatalf("after MarkClean of a stale generation: %q", got)
	}
	if st := c.Stats(); st.DirtyChunks != 1 {
		t.Fatalf("stats %+v: want the chunk dirty", st)
	}
}

// An entry's overlay stays bounded: past maxSpans it is written into the
// file.
func TestOverlayIsBounded(t *testing.T) {
	ctx := context.Background()
	fs := &countFS{FS: vfs.NewMem()}
	c := openCache(t, fs, 10*chunk)
	lg := newFakeLog()
	want := make([]byte, chunk)
	for i := 0; i < 3*maxSpans; i++ {
		off := int64(i*8) % (chunk - 4) // spans that do not touch
		p := []byte{byte(i), byte(i >> 8), 1, 2}
		c.WriteLogged(ctx, key(1), chunk, p, off, noBase, lg.log(1, p))
		copy(want[off:], p)
	}
	c.mu.Lock()
	e := c.entries[key(1)]
	c.mu.Unlock()
	e.mu.RLock()
	n := len(e.spans)
	e.mu.RUnlock()
	if n > maxSpans || fs.written.Load() == 0 {
		t.Fatalf("%d spans, %d bytes written: the overlay is not bounded", n, fs.written.Load())
	}
	data, _, err := c.SnapshotPartial(key(1))
	if err != nil || !bytes.Equal(data, want) {
		t.Fatalf("copy after the overlay was written out: %v", err)
	}
}

// recordLog is where the model test's logged writes go.
type recordLog interface {
	log(hdr int, p []byte) Source
	trimAll()
}

// realLog is an upload buffer on the operating system's files, which
// MarkClean copies from inside the kernel into a cache on them too.
type realLog struct {
	t      *testing.T
	l      *uploadbuffer.Log
	copies atomic.Int64
}

func (r *realLog) log(hdr int, p []byte) Source {
	ctx := context.Background()
	lsn, err := r.l.AppendBuffered(ctx, append(bytes.Repeat([]byte{'#'}, hdr), p...))
	if err == nil {
		err = r.l.Written(ctx, lsn)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return Source{R: r, LSN: lsn, Off: int64(hdr)}
}

func (r *realLog) trimAll() {
	if err := r.l.Trim(r.l.WrittenLSN()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *realLog) ReadRecord(lsn uploadbuffer.LSN, p []byte, off int64) error {
	return r.l.ReadRecord(lsn, p, off)
}

func (r *realLog) CopyRecord(lsn uploadbuffer.LSN, dst vfs.File, dstOff, off, n int64) (bool, error) {
	ok, err := r.l.CopyRecord(lsn, dst, dstOff, off, n)
	if ok {
		r.copies.Add(1)
	}
	return ok, err
}

// Logged writes, plain writes, merges, marks, drops and reads in random
// order against a model of each chunk's bytes: with the records in memory
// and a cache in memory, and with an upload buffer and a cache on the
// operating system's files, whose overlays MarkClean copies inside the
// kernel.
func TestOverlayAgainstAModel(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		overlayAgainstAModel(t, openCache(t, vfs.NewMem(), 64*chunk), newFakeLog(), 20000)
	})
	t.Run("files", func(t *testing.T) {
		dir := t.TempDir()
		c, err := Open(vfs.Default, filepath.Join(dir, "cache"), Options{Capacity: 64 * chunk})
		if err != nil {
			t.Fatal(err)
		}
		l, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: 256 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		lg := &realLog{t: t, l: l}
		overlayAgainstAModel(t, c, lg, 4000)
		if lg.copies.Load() == 0 {
			t.Fatal("no overlay copied inside the kernel")
		}
	})
}

func overlayAgainstAModel(t *testing.T, c *Cache, lg recordLog, steps int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	type model struct {
		data    []byte
		written []bool // partial: the bytes written
	}
	chunks := map[uint64]*model{}
	bases := map[uint64][]byte{0: nil, 1: fill('1'), 2: fill('2'), 3: nil}
	holds := func(m *model, off, end int64) bool {
		if m.written == nil {
			return true
		}
		for i := off; i < end; i++ {
			if !m.written[i] {
				return false
			}
		}
		return true
	}
	for step := 0; step < steps; step++ {
		k := uint64(rng.IntN(4))
		m := chunks[k]
		off := rng.Int64N(chunk)
		n := 1 + rng.Int64N(min(chunk-off, 1+rng.Int64N(chunk)))
		switch op := rng.IntN(10); {
		case op < 5: // a write, logged or not, with or without a base
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			var base func() ([]byte, error)
			if rng.IntN(2) == 0 {
				base = func() ([]byte, error) { return bytes.Clone(bases[k]), nil }
			}
			var err error
			if rng.IntN(4) > 0 {
				err = c.WriteLogged(ctx, key(k), chunk, p, off, base, lg.log(rng.IntN(20), p))
			} else {
				err = c.WriteAt(ctx, key(k), chunk, p, off, base)
			}
			if err != nil {
				t.Fatal(err)
			}
			if m == nil {
				m = &model{data: make([]byte, chunk)}
				if base != nil || n == chunk {
					copy(m.data, bases[k])
				} else {
					m.written = make([]bool, chunk)
				}
				chunks[k] = m
			}
			copy(m.data[off:], p)
			if m.written != nil {
				for i := off; i < off+n; i++ {
					m.written[i] = true
				}
				if holds(m, 0, chunk) {
					m.written = nil
				}
			}
		case op < 7: // a read
			got := make([]byte, n)
			ok, err := c.ReadAt(key(k), got, off)
			if err != nil {
				t.Fatalf("step %d: read: %v", step, err)
			}
			if want := m != nil && holds(m, off, off+n); ok != want {
				t.Fatalf("step %d: read [%d,+%d) of chunk %d: hit %v, want %v", step, off, n, k, ok, want)
			}
			if ok && !bytes.Equal(got, m.data[off:off+n]) {
				t.Fatalf("step %d: read [%d,+%d) of chunk %d differs", step, off, n, k)
			}
		case op < 8: // a merge, as a read miss or an upload does
			if m == nil {
				continue
			}
			if ok, err := c.Merge(key(k), bases[k]); err != nil || ok != (m.written != nil) {
				t.Fatalf("step %d: merge: %v %v", step, ok, err)
			}
			if m.written != nil {
				for i, w := range m.written {
					if !w {
						m.data[i] = 0
						if bases[k] != nil {
							m.data[i] = bases[k][i]
						}
					}
				}
				m.written = nil
			}
		case op < 9: // an upload's copy and mark; then the log is trimmed of every record no dirty entry needs
			if m == nil || m.written != nil {
				continue
			}
			data, gen, err := c.Snapshot(key(k))
			if err != nil || !bytes.Equal(data, m.data) {
				t.Fatalf("step %d: copy of chunk %d: equal %v, err %v", step, k, bytes.Equal(data, m.data), err)
			}
			if !markClean(t, c, key(k), gen) {
				t.Fatalf("step %d: chunk %d not marked clean", step, k)
			}
			if len(c.Dirty()) == 0 {
				lg.trimAll()
			}
		default: // a drop
			c.Drop(key(k))
			delete(chunks, k)
			if len(c.Dirty()) == 0 {
				lg.trimAll()
			}
		}
	}
}

// A failed write of the overlay into the file is MarkClean's error: an
// entry at the generation uploaded is dropped (the store has it; a later
// read fetches it), a newer one keeps its overlay and stays dirty.
func TestMarkCleanWriteFailure(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	fs := vfs.NewErrorFS(vfs.NewMem(), func(op vfs.Op, path string) error {
		if failing.Load() && op == vfs.OpWrite {
			return errors.New("injected I/O error")
		}
		return nil
	})
	c := openCache(t, fs, 10*chunk)
	lg := newFakeLog()
	p := []byte("uploaded")
	c.WriteLogged(ctx, key(1), chunk, p, 0, noBase, lg.log(1, p))
	c.WriteLogged(ctx, key(2), chunk, p, 0, noBase, lg.log(1, p))
	_, gen1, _ := c.Snapshot(key(1))
	_, gen2, _ := c.Snapshot(key(2))
	q := []byte("newer")
	c.WriteLogged(ctx, key(2), chunk, q, 100, noBase, lg.log(1, q))
	failing.Store(true)
	if ok, err := c.MarkClean(key(1), gen1); ok || err == nil {
		t.Fatalf("MarkClean on a failing disk: %v %v", ok, err)
	}
	if ok, err := c.MarkClean(key(2), gen2); ok || err == nil {
		t.Fatalf("MarkClean of a stale generation on a failing disk: %v %v", ok, err)
	}
	if ok, _ := c.ReadAt(key(1), make([]byte, 1), 0); ok {
		t.Fatal("the chunk whose overlay could not be written is still cached")
	}
	failing.Store(false)
	if got := readOK(t, c, key(2), 100, 5); string(got) != "newer" {
		t.Fatalf("the newer chunk reads %q", got)
	}
	_, gen2, _ = c.Snapshot(key(2))
	if !markClean(t, c, key(2), gen2) {
		t.Fatal("not marked clean once the disk works")
	}
}
