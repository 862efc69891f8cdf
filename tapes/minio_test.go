package tapes_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/s3"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(killEnvDir); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(killEnvSeed), 10, 64)
		killChild(dir, seed, os.Getenv(killEnvBuffered) != "") // never returns
	}
	os.Exit(miniotest.Main(m))
}

// getCounter counts the store's GETs by kind of tape object.
type getCounter struct {
	mu   sync.Mutex
	segs map[string]int
	idx  int
}

func (c *getCounter) hook(op faulty.Op, key string) error {
	if op != faulty.OpGet {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.Contains(key, "/seg/") {
		c.segs[key]++
	} else {
		c.idx++
	}
	return nil
}

func (c *getCounter) reset() (segs map[string]int, idx int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	segs, idx = c.segs, c.idx
	c.segs, c.idx = map[string]int{}, 0
	return segs, idx
}

// minioStore is the S3 store of bucket on srv, under the prefix gw.
func minioStore(t *testing.T, srv *miniotest.Server, bucket string) *s3.Store {
	t.Helper()
	st, err := s3.Open(ctx, s3.Config{Bucket: bucket, Prefix: "gw", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMinIO runs the library as the daemon would: S3 on a real MinIO,
// badger for meta, the log on disk.
func TestMinIO(t *testing.T) {
	srv := miniotest.Shared(t)
	srv.CreateBucket(t, "tapes")
	dir := t.TempDir()
	st := minioStore(t, srv, "tapes")
	counter := &getCounter{segs: map[string]int{}}
	store := faulty.New(st, faulty.Options{Hook: counter.hook}).Store()
	if _, ok := store.(objstore.StorageClasser); !ok {
		t.Fatal("the decorated S3 store has no storage classes")
	}

	type running struct {
		lib *tapes.Library
		log *uploadbuffer.Log
		md  *metabadger.Store
	}
	start := func() running {
		t.Helper()
		md, err := metabadger.Open(filepath.Join(dir, "meta"), nil)
		if err != nil {
			t.Fatal(err)
		}
		log, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: 256 << 20})
		if err != nil {
			t.Fatal(err)
		}
		lib, err := tapes.New(ctx, tapes.Options{Store: store, Meta: md, Log: log, Key: testKey(),
			Clock: clock.NewFake(time.Unix(1e9, 0)), Slots: 40, Drives: 4,
			SegmentSize: 1 << 20, ReadAhead: 1 << 20, ArchiveClass: "REDUCED_REDUNDANCY"})
		if err != nil {
			t.Fatal(err)
		}
		return running{lib, log, md}
	}
	stop := func(r running) {
		t.Helper()
		if err := r.lib.Close(ctx); err != nil {
			t.Fatal(err)
		}
		r.log.Close()
		r.md.Close()
	}

	r := start()
	bcs, err := r.lib.Create(ctx, 2, "GW", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	bc := bcs[0]
	sh := shelf{r.lib}
	slot0 := tapes.Element{Type: tapes.ElementSlot, Index: 0}
	drive0 := tapes.Element{Type: tapes.ElementDrive, Index: 0}
	if err := sh.Move(ctx, slot0, drive0); err != nil {
		t.Fatal(err)
	}
	med, err := sh.Open(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	tp := med.(*tapes.Tape)
	var m model
	writeMixed(t, tp, &m, 11, 80)
	m.check(t, tp)
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stop(r)

	// Reopen everything: the tape reads back byte for byte.
	r = start()
	sh = shelf{r.lib}
	inv, err := sh.Inventory(ctx)
	if err != nil || inv.Drives[0] != bc {
		t.Fatalf("inventory after restart: %+v %v", inv, err)
	}
	tp = open(t, r.lib, bc)
	m.check(t, tp)
	tp.Close(ctx)
	stop(r)

	// Part of the tape: one record in the middle costs the index root,
	// one page and one range of one segment.
	r = start()
	sh = shelf{r.lib}
	counter.reset()
	tp = open(t, r.lib, bc)
	mid := uint64(len(m.objs) / 2)
	for m.objs[mid].Filemark {
		mid++
	}
	buf := make([]byte, 400000)
	n, err := tp.ReadRecord(ctx, mid, buf)
	if err != nil || string(buf[:n]) != string(m.data[mid]) {
		t.Fatalf("read %d: %d bytes, %v", mid, n, err)
	}
	segs, idx := counter.reset()
	nsegs := 0
	st.List(ctx, "tapes/"+bc+"/seg/", func(objstore.ObjectInfo) error { nsegs++; return nil })
	if len(segs) != 1 || idx != 2 || nsegs < 4 {
		t.Fatalf("one record read %v segments (of %d) and %d index objects", segs, nsegs, idx)
	}
	// Locating a filemark reads the index only.
	if _, _, err := tp.NextFilemark(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tp.PrevFilemark(ctx, tp.EOD()); err != nil {
		t.Fatal(err)
	}
	if segs, _ := counter.reset(); len(segs) != 0 {
		t.Fatalf("filemark search read segments %v", segs)
	}
	tp.Close(ctx)

	// Archive through the I/E element; retrieve; the same bytes, read-only.
	if err := sh.Move(ctx, drive0, tapes.Element{Type: tapes.ElementIE}); err != nil {
		t.Fatal(err)
	}
	err = st.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		if oi.StorageClass != "REDUCED_REDUNDANCY" {
			t.Errorf("archived %s in class %q", oi.Key, oi.StorageClass)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inv, _ := sh.Inventory(ctx); inv.Drives[0] != "" || inv.IE[0] != "" {
		t.Fatalf("inventory after archive %+v", inv)
	}
	stop(r)
	r = start()
	if in, err := r.lib.Info(ctx, bc); err != nil || in.State != tapes.StateArchived {
		t.Fatalf("after restart: %+v %v", in, err)
	}
	if _, err := r.lib.Retrieve(ctx, bc); err != nil {
		t.Fatal(err)
	}
	st.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		if oi.StorageClass != "" {
			t.Errorf("retrieved %s in class %q", oi.Key, oi.StorageClass)
		}
		return nil
	})
	tp = open(t, r.lib, bc)
	m.check(t, tp)
	if err := tp.WriteRecord(ctx, tp.EOD(), []byte("more"), false); !errors.Is(err, tapes.ErrWriteProtected) {
		t.Fatalf("write to a retrieved tape: %v", err)
	}
	tp.Close(ctx)

	// A segment altered in the bucket is a corruption error, not data.
	var seg string
	st.List(ctx, "tapes/"+bc+"/seg/", func(oi objstore.ObjectInfo) error { seg = oi.Key; return nil })
	b, err := objstore.GetAll(ctx, st, seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x80
	if err := objstore.PutBytes(ctx, st, seg, b); err != nil {
		t.Fatal(err)
	}
	stop(r)
	r = start()
	tp = open(t, r.lib, bc)
	var bad error
	for i := range m.objs {
		if _, err := tp.ReadRecord(ctx, uint64(i), buf); err != nil && !m.objs[i].Filemark {
			bad = err
		}
	}
	if !errors.Is(bad, tapes.ErrCorrupt) || errkind.Of(bad) != errkind.Corrupt {
		t.Fatalf("reading the altered segment: %v", bad)
	}
	tp.Close(ctx)
	stop(r)
}

func open(t testing.TB, lib *tapes.Library, bc string) *tapes.Tape {
	t.Helper()
	tp, err := lib.Open(context.Background(), bc)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}
