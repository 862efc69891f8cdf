package volume

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
)

const kib, mib = 1 << 10, 1 << 20

func TestWriteReadUploadRestartBothKinds(t *testing.T) {
	for _, kind := range []Kind{Cached, Stored} {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 64*mib, 64*mib)
			e.start()
			v := e.create("v1", kind, 8*mib, 64*kib)
			shadow := make([]byte, v.Size())
			r := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 200; i++ {
				n := 1 + r.IntN(200*kib)
				off := r.Int64N(v.Size() - int64(n))
				p := pattern(uint64(i), n)
				if err := v.WriteAt(ctx, p, off); err != nil {
					t.Fatal(err)
				}
				copy(shadow[off:], p)
			}
			mustEqual(t, "before upload", readAll(t, v, 37*kib), shadow)

			if err := e.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if st := v.Stats(ctx); st.PendingChunks != 0 || st.DirtyBytes != 0 {
				t.Fatalf("after drain: %+v", st)
			}
			if used := e.log.Used(); used > e.logCap/4 {
				t.Fatalf("log not trimmed after drain: %d bytes used", used)
			}
			mapped := countPrefix(t, e.md, mapPrefix(v.Info().ID))
			if mapped == 0 || mapped > 128 {
				t.Fatalf("chunk map has %d entries", mapped)
			}

			// After a restart the cache is empty: reads come from the store (cached)
			// or the disk (stored), and match.
			e.restart()
			v = e.vol("v1")
			mustEqual(t, "after restart", readAll(t, v, 64*kib), shadow)

			// Unmap a range crossing chunk boundaries: it reads as zeroes, and
			// whole chunks become holes once uploaded.
			if err := v.Unmap(ctx, 100*kib, 1*mib); err != nil {
				t.Fatal(err)
			}
			clear(shadow[100*kib : 100*kib+1*mib])
			mustEqual(t, "after unmap", readAll(t, v, 64*kib), shadow)
			if err := e.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			e.restart()
			v = e.vol("v1")
			mustEqual(t, "after unmap and restart", readAll(t, v, 64*kib), shadow)
			if got := countPrefix(t, e.md, mapPrefix(v.Info().ID)); got > mapped-14 {
				t.Fatalf("unmapping 14 whole chunks left %d of %d map entries", got, mapped)
			}
		})
	}
}

func TestOutOfRangeAndBadCreate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64*mib, 64*mib)
	e.start()
	v := e.create("v", Cached, 1*mib, 64*kib)
	if err := v.WriteAt(ctx, make([]byte, 10), v.Size()-5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write past end: %v", err)
	}
	if err := v.ReadAt(ctx, make([]byte, 10), -1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("read before start: %v", err)
	}
	bad := []CreateOptions{
		{Name: "v", Kind: Cached, Size: 1 * mib},                     // exists
		{Name: "", Kind: Cached, Size: 1 * mib},                      // no name
		{Name: "a/b", Kind: Cached, Size: 1 * mib},                   // bad name
		{Name: "x", Kind: "tape", Size: 1 * mib},                     // bad kind
		{Name: "x", Kind: Cached, Size: 1000},                        // not a multiple of 4096
		{Name: "x", Kind: Cached, Size: 1 * mib, ChunkSize: 3 * kib}, // bad chunk size
		{Name: "x", Kind: Cached, Size: 1 * mib, Disk: "/dev/null"},  // cached with a disk
		{Name: "x", Kind: Stored, Size: 1 * mib, Disk: "/nonexistent/disk"},
	}
	for _, o := range bad {
		if _, err := e.m.Create(ctx, o); err == nil {
			t.Errorf("created %+v", o)
		}
	}
	if err := e.m.Grow(ctx, "v", 512*kib); err == nil {
		t.Fatal("shrink accepted")
	}
	if err := e.m.Grow(ctx, "v", 2*mib); err != nil || v.Size() != 2*mib {
		t.Fatalf("grow: %v, size %d", err, v.Size())
	}
	e.restart()
	if got := e.vol("v").Size(); got != 2*mib {
		t.Fatalf("size after restart %d", got)
	}
}

func TestDeleteReleasesEverything(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64*mib, 64*mib)
	e.start()
	for _, kind := range []Kind{Cached, Stored} {
		v := e.create("d-"+string(kind), kind, 2*mib, 64*kib)
		if err := v.WriteAt(ctx, pattern(9, 300*kib), 10*kib); err != nil {
			t.Fatal(err)
		}
		id := v.Info().ID
		disk := v.Info().Disk
		if err := e.m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if err := v.WriteAt(ctx, pattern(10, 4*kib), 0); err != nil { // pending at delete time
			t.Fatal(err)
		}
		if err := e.m.Delete(ctx, "d-"+string(kind)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Get("d-" + string(kind)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		for _, p := range [][]byte{infoKey(id), mapPrefix(id), dirtyPrefix(id)} {
			if n := countPrefix(t, e.md, p); n != 0 {
				t.Fatalf("%s: %d meta keys left", p, n)
			}
		}
		if kind == Stored {
			if _, err := e.m.opts.FS.Stat(disk); err == nil {
				t.Fatal("disk file left behind")
			}
		}
	}
	e.restart() // replay must skip the deleted volumes' records
	if len(e.m.List()) != 0 {
		t.Fatal("deleted volumes came back")
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if used := e.log.Used(); used > e.logCap/4 {
		t.Fatalf("log not trimmed after deleting its volumes: %d", used)
	}
}

func TestChunksAreEncryptedAndDeduplicated(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64*mib, 64*mib)
	e.start()
	v := e.create("v", Cached, 1*mib, 64*kib)
	plain := bytes.Repeat([]byte("gatewayd plaintext marker "), 64*kib/26+1)[:64*kib]
	for _, off := range []int64{0, 128 * kib, 512 * kib} {
		if err := v.WriteAt(ctx, plain, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := e.store.List(ctx, "chunks/", func(oi objstore.ObjectInfo) error {
		n++
		b, err := objstore.GetAll(ctx, e.store, oi.Key)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("plaintext marker")) {
			t.Errorf("%s holds plaintext", oi.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("three equal chunks stored as %d objects", n)
	}
	if got := countPrefix(t, e.md, mapPrefix(v.Info().ID)); got != 3 {
		t.Fatalf("map entries %d, want 3 (the rest are holes)", got)
	}
}

func TestCorruptChunkIsAnErrorNotData(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64*mib, 64*mib)
	e.start()
	v := e.create("v", Cached, 1*mib, 64*kib)
	if err := v.WriteAt(ctx, pattern(1, 64*kib), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	err := e.store.List(ctx, "chunks/", func(oi objstore.ObjectInfo) error {
		b, err := objstore.GetAll(ctx, e.store, oi.Key)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 1
		return objstore.PutBytes(ctx, e.store, oi.Key, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	err = e.vol("v").ReadAt(ctx, make([]byte, 4*kib), 0)
	if !errkind.IsCorrupt(err) || !strings.Contains(err.Error(), "chunk 0") {
		t.Fatalf("read of a corrupt chunk: %v", err)
	}
}

func countPrefix(t testing.TB, md meta.Store, prefix []byte) int {
	t.Helper()
	n := 0
	err := md.View(context.Background(), func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(_, _ []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
