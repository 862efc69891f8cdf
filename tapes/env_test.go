package tapes_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/keys"
	"github.com/gatewayd/gatewayd/meta"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// The library's handles are frontends/vtl's Medium; the library is its
// Shelf through the one-method adapter the wiring uses (Shelf.Open returns
// vtl.Medium, a type package tapes cannot name).
var (
	_ vtl.Medium = (*tapes.Tape)(nil)
	_ vtl.Shelf  = shelf{}
)

type shelf struct{ *tapes.Library }

func (s shelf) Open(ctx context.Context, barcode string) (vtl.Medium, error) {
	return s.Library.Open(ctx, barcode)
}

func testKey() keys.DataKey {
	dk := keys.DataKey{ID: "k1"}
	for i := range dk.Encryption {
		dk.Encryption[i], dk.ChunkID[i] = byte(i+1), byte(200-i)
	}
	return dk
}

// env is a library over a store and meta the test chooses, with its log
// on an in-memory filesystem that can crash.
type env struct {
	t     testing.TB
	store objstore.Store
	md    meta.Store
	fs    *vfs.MemFS
	clk   *clock.Fake
	opts  func(*tapes.Options)
	// wrap, when set, is the log's filesystem over fs (to hold its syncs).
	wrap func(vfs.FS) vfs.FS

	cut *faulty.Injector // the running library's view of the store
	log *uploadbuffer.Log
	lib *tapes.Library
}

func newEnv(t testing.TB) *env {
	e := &env{t: t, store: mem.New("mem"), md: metamem.New(), fs: vfs.NewMem(), clk: clock.NewFake(time.Unix(1e9, 0))}
	t.Cleanup(e.close)
	return e
}

var errDead = errors.New("process is dead")

func (e *env) start() {
	e.t.Helper()
	var err error
	var fsys vfs.FS = e.fs
	if e.wrap != nil {
		fsys = e.wrap(e.fs)
	}
	e.log, err = uploadbuffer.Open(fsys, "/log", uploadbuffer.Options{Capacity: 80 << 20, SegmentSize: 128 << 10})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cut = faulty.New(e.store, faulty.Options{Kind: errkind.Permanent})
	o := tapes.Options{Store: e.cut.Store(), Meta: e.md, Log: e.log, Key: testKey(), Clock: e.clk,
		Slots: 20, Drives: 2, EarlyWarning: 64 << 10, SegmentSize: 256 << 10, ReadAhead: 512 << 10}
	if e.opts != nil {
		e.opts(&o)
	}
	e.lib, err = tapes.New(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.lib != nil {
		if err := e.lib.Close(context.Background()); err != nil {
			e.t.Error(err)
		}
		e.log.Close()
		e.lib = nil
	}
}

func (e *env) restart() {
	e.close()
	e.start()
}

// crash drops the process: the old library loses the store, its log
// keeps only what was synced, and a new library starts on what survived.
func (e *env) crash() { e.crashTo(e.fs.Crash()) }

// crashTo is crash with the log's filesystem as a power loss left it
// earlier (a MemFS.Crash taken then).
func (e *env) crashTo(survived *vfs.MemFS) {
	e.cut.SetHook(func(faulty.Op, string) error { return errDead })
	e.fs = survived
	e.lib, e.log = nil, nil
	e.start()
}

func (e *env) create(n int, size int64) []string {
	e.t.Helper()
	bcs, err := e.lib.Create(ctx, n, "GW", size)
	if err != nil {
		e.t.Fatal(err)
	}
	return bcs
}

func (e *env) open(bc string) *tapes.Tape {
	e.t.Helper()
	m, err := e.lib.Open(ctx, bc)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

var ctx = context.Background()

// model is what a tape must hold.
type model struct {
	objs []tapes.Object
	data [][]byte
}

func (m *model) clone() model {
	return model{objs: append([]tapes.Object(nil), m.objs...), data: append([][]byte(nil), m.data...)}
}

func (m *model) write(at uint64, d []byte) {
	m.objs = append(m.objs[:at], tapes.Object{Size: len(d)})
	m.data = append(m.data[:at], d)
}

func (m *model) filemarks(at uint64, n int) {
	m.objs, m.data = m.objs[:at], m.data[:at]
	for range n {
		m.objs = append(m.objs, tapes.Object{Filemark: true})
		m.data = append(m.data, nil)
	}
}

// check reads every object of tp and compares it with the model, and the
// filemark searches from every position.
func (m *model) check(t testing.TB, tp *tapes.Tape) {
	t.Helper()
	if got := tp.EOD(); got != uint64(len(m.objs)) {
		t.Fatalf("EOD %d, want %d", got, len(m.objs))
	}
	buf := make([]byte, 400000)
	for i, o := range m.objs {
		st, err := tp.Stat(ctx, uint64(i))
		if err != nil || st != o {
			t.Fatalf("object %d: %+v %v, want %+v", i, st, err, o)
		}
		if o.Filemark {
			if _, err := tp.ReadRecord(ctx, uint64(i), buf); err == nil {
				t.Fatalf("object %d: reading a filemark succeeded", i)
			}
			continue
		}
		n, err := tp.ReadRecord(ctx, uint64(i), buf)
		if err != nil || n != o.Size || !bytes.Equal(buf[:n], m.data[i]) {
			t.Fatalf("object %d: read %d bytes (%v), want %d bytes, equal=%v", i, n, err, o.Size, err == nil && bytes.Equal(buf[:n], m.data[i]))
		}
	}
	for from := 0; from <= len(m.objs); from++ {
		if len(m.objs) > 600 && from%97 != 0 && from%tapes.PageObjects > 2 && from%tapes.PageObjects < tapes.PageObjects-2 && from < len(m.objs)-2 {
			continue // long tapes: a sample, and around every page boundary
		}
		want, wok := -1, false
		for j := from; j < len(m.objs); j++ {
			if m.objs[j].Filemark {
				want, wok = j, true
				break
			}
		}
		got, ok, err := tp.NextFilemark(ctx, uint64(from))
		if err != nil || ok != wok || ok && int(got) != want {
			t.Fatalf("NextFilemark(%d) = %d %v %v, want %d %v", from, got, ok, err, want, wok)
		}
		want, wok = -1, false
		for j := from - 1; j >= 0; j-- {
			if m.objs[j].Filemark {
				want, wok = j, true
				break
			}
		}
		got, ok, err = tp.PrevFilemark(ctx, uint64(from))
		if err != nil || ok != wok || ok && int(got) != want {
			t.Fatalf("PrevFilemark(%d) = %d %v %v, want %d %v", from, got, ok, err, want, wok)
		}
	}
}

// record returns test data: compressible when seed is even.
func record(seed uint64, n int) []byte {
	b := testrand.Bytes(seed, n)
	if seed%2 == 0 {
		for i := range b {
			if i%16 != 0 {
				b[i] = byte(i / 512)
			}
		}
	}
	return b
}
