package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/meta"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// env is a gateway data path for tests: real upload buffer and cache on
// disk, an object store and metadata store the test chooses.
type env struct {
	t        testing.TB
	dir      string
	store    objstore.Store
	md       meta.Store
	codec    *snapshots.Codec
	logCap   int64
	cacheCap int64
	opts     func(*Options)
	fs       vfs.FS // default vfs.Default

	log   *uploadbuffer.Log
	cache *cache.Cache
	m     *Manager
}

func testCodec(t testing.TB) *snapshots.Codec {
	var enc, id [32]byte
	for i := range enc {
		enc[i], id[i] = byte(i+1), byte(200-i)
	}
	c, err := snapshots.NewCodec(enc, id, snapshots.CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t testing.TB, logCap, cacheCap int64) *env {
	e := &env{t: t, dir: t.TempDir(), store: mem.New("mem"), md: metamem.New(), codec: testCodec(t), logCap: logCap, cacheCap: cacheCap}
	t.Cleanup(e.close)
	return e
}

// start opens the log, the cache and the manager (replaying the log).
func (e *env) start() {
	e.t.Helper()
	var err error
	if e.fs == nil {
		e.fs = vfs.Default
	}
	e.log, err = uploadbuffer.Open(e.fs, filepath.Join(e.dir, "log"), uploadbuffer.Options{Capacity: e.logCap})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cache, err = cache.Open(e.fs, filepath.Join(e.dir, "cache"), cache.Options{Capacity: e.cacheCap})
	if err != nil {
		e.t.Fatal(err)
	}
	o := Options{
		Meta: e.md, Store: e.store, Codec: e.codec, Log: e.log, Cache: e.cache, FS: e.fs,
		DiskDir: filepath.Join(e.dir, "disks"), UploadInterval: time.Hour, SettleTime: time.Hour,
	}
	if e.opts != nil {
		e.opts(&o)
	}
	e.m, err = New(context.Background(), o)
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.m != nil {
		e.m.Close()
		e.cache.Close()
		e.log.Close()
		e.m = nil
	}
}

func (e *env) restart() {
	e.close()
	e.start()
}

func (e *env) create(name string, kind Kind, size int64, chunk int) *Volume {
	e.t.Helper()
	if _, err := e.m.Create(context.Background(), CreateOptions{Name: name, Kind: kind, Size: size, ChunkSize: chunk}); err != nil {
		e.t.Fatal(err)
	}
	return e.vol(name)
}

func (e *env) vol(name string) *Volume {
	e.t.Helper()
	v, err := e.m.Get(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// pattern is deterministic data for a seed.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		x := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b
}

// readAll reads the whole volume in pieces of step bytes.
func readAll(t testing.TB, v *Volume, step int) []byte {
	t.Helper()
	out := make([]byte, v.Size())
	for off := 0; off < len(out); off += step {
		end := min(off+step, len(out))
		if err := v.ReadAt(context.Background(), out[off:end], int64(off)); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	return out
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: first difference at byte %d (got %#x want %#x); sha256 got %x want %x",
					what, i, got[i], want[i], sha256.Sum256(got), sha256.Sum256(want))
			}
		}
		t.Fatalf("%s: lengths %d and %d", what, len(got), len(want))
	}
}
