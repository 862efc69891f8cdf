package tapes_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/vfs"
)

// logCount is a vfs.FS that counts the bytes written into the upload
// buffer's segment files.
type logCount struct {
	vfs.FS
	n *atomic.Int64
}

type logCountFile struct {
	vfs.File
	n *atomic.Int64
}

func (f logCountFile) WriteAt(p []byte, off int64) (int, error) {
	f.n.Add(int64(len(p)))
	return f.File.WriteAt(p, off)
}

func (f logCountFile) Write(p []byte) (int, error) {
	f.n.Add(int64(len(p)))
	return f.File.Write(p)
}

func (c logCount) wrap(f vfs.File, err error, name string) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".seg") { // not the trim point's file
		return f, err
	}
	return logCountFile{f, c.n}, nil
}

func (c logCount) Create(name string) (vfs.File, error) {
	f, err := c.FS.Create(name)
	return c.wrap(f, err, name)
}

func (c logCount) OpenReadWrite(name string) (vfs.File, error) {
	f, err := c.FS.OpenReadWrite(name)
	return c.wrap(f, err, name)
}

// putCount is a store that counts the bytes put into it: with the
// embedded default (a local-directory store) they are written to the
// local disk too.
type putCount struct {
	objstore.Store
	n atomic.Int64
}

func (s *putCount) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	err := s.Store.Put(ctx, key, r, size)
	if err == nil {
		s.n.Add(size)
	}
	return err
}

// A buffered stream of records, as a backup server writes a tape (a
// filemark after each file, which makes the file durable), writes each
// byte to local disk about once: into the store's segments (the local
// disk, with the embedded local-directory store), and into the upload
// buffer only what no stored index holds yet when a filemark makes it
// durable. Before, every record went into the upload buffer as well as
// into its segment (2 bytes per byte). After a power loss at the last
// filemark every file is on the tape. The test logs the bytes written
// per byte acknowledged (BENCHMARKS.md).
func TestBufferedStreamWritesOnceLocally(t *testing.T) {
	var logBytes atomic.Int64
	e := newEnv(t)
	store := &putCount{Store: mem.New("mem")}
	e.store = store
	e.wrap = func(fs vfs.FS) vfs.FS { return logCount{fs, &logBytes} }
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	tp.SetBuffered(true)
	var m model
	acked := int64(0)
	const files, perFile, recSize = 3, 40, 100000 // 4 MB a file: 16 segments of 256 KiB
	log0, store0 := logBytes.Load(), store.n.Load()
	for f := range files {
		for i := range perFile {
			d := record(uint64(f*1000+i)*2+1, recSize) // incompressible
			at := tp.EOD()
			if err := tp.WriteRecord(ctx, at, d, true); err != nil {
				t.Fatal(err)
			}
			m.write(at, d)
			acked += int64(len(d))
		}
		at := tp.EOD()
		if err := tp.WriteFilemarks(ctx, at, 1); err != nil {
			t.Fatal(err)
		}
		m.filemarks(at, 1)
		if err := tp.Sync(ctx); err != nil { // a non-immediate filemark
			t.Fatal(err)
		}
	}
	m.check(t, tp)
	atSync := e.fs.Crash()
	logN, storeN := logBytes.Load()-log0, store.n.Load()-store0
	t.Logf("%d bytes acknowledged in %d files of %d records of %d bytes; written locally by the last filemark: %.3f per byte (upload buffer %.3f, store %.3f)",
		acked, files, perFile, recSize, float64(logN+storeN)/float64(acked), float64(logN)/float64(acked), float64(storeN)/float64(acked))
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	logN, storeN = logBytes.Load()-log0, store.n.Load()-store0
	t.Logf("after the tape's close: %.3f per byte (upload buffer %.3f, store %.3f)",
		float64(logN+storeN)/float64(acked), float64(logN)/float64(acked), float64(storeN)/float64(acked))
	// What goes up at each filemark (the segments waiting, the open one)
	// may go to the upload buffer too: at most 5 of the 16 segments a
	// file fills.
	if got := float64(logN+storeN) / float64(acked); got > 1.35 {
		t.Fatalf("%.3f bytes written locally per byte acknowledged (upload buffer %d, store %d, acknowledged %d): the records were written twice", got, logN, storeN, acked)
	}

	e.crashTo(atSync)
	tp = e.open(bc)
	m.check(t, tp)
	tp.Close(ctx)
}

// When a segment fills with buffered writes the log does not hold, the
// index of the tape as it was then goes up behind the segment: after a
// power loss with no sync since, the tape is exactly what it held when
// its last segment filled, page boundaries and filemarks included, and
// writes go on from there.
func TestBufferedIndexOfFilledSegment(t *testing.T) {
	e := newEnv(t)
	e.opts = func(o *tapes.Options) { o.SegmentSize = 64 << 10 }
	e.start()
	bc := e.create(1, 1<<30)[0]
	tp := e.open(bc)
	tp.SetBuffered(true)
	var m model
	fms := map[int]bool{100: true, tapes.PageObjects - 1: true, tapes.PageObjects: true, 2*tapes.PageObjects - 1: true, 8250: true}
	// Where each segment fills: the records' sealed blocks (record, 40
	// bytes of sealing) fill 64 KiB.
	var marks []int
	filled := 0
	for i := 0; i < 9000; i++ {
		at := uint64(len(m.objs))
		if fms[len(m.objs)] {
			if err := tp.WriteFilemarks(ctx, at, 1); err != nil {
				t.Fatal(err)
			}
			m.filemarks(at, 1)
			continue
		}
		d := record(uint64(i)*2+1, 1+i%9)
		if err := tp.WriteRecord(ctx, at, d, false); err != nil {
			t.Fatal(err)
		}
		m.write(at, d)
		if filled += len(d) + 40; filled >= 64<<10 {
			marks, filled = append(marks, len(m.objs)), 0
		}
	}
	last := marks[len(marks)-1]
	if len(marks) < 5 || last <= 2*tapes.PageObjects {
		t.Fatalf("segments filled at %v", marks)
	}
	// The index of the last filled segment is recorded (meta records the EOD
	// of each stored index).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var in tapes.Info
		err := e.md.View(ctx, func(tx meta.Txn) error {
			b, err := tx.Get([]byte("tapes/tape/" + bc))
			if err == nil {
				err = json.Unmarshal(b, &in)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if in.EOD == uint64(last) {
			break
		}
		if in.EOD > uint64(last) || time.Now().After(deadline) {
			t.Fatalf("stored index at EOD %d, want %d (segments filled at %v)", in.EOD, last, marks)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.crash()
	tp = e.open(bc)
	m.objs, m.data = m.objs[:last], m.data[:last]
	m.check(t, tp)
	tp.SetBuffered(true)
	d := record(77, 5000)
	m.write(tp.EOD(), d)
	if err := tp.WriteRecord(ctx, tp.EOD(), d, true); err != nil {
		t.Fatal(err)
	}
	if err := tp.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	e.crash()
	tp = e.open(bc)
	m.check(t, tp)
	checkNoOrphans(t, e, bc)
	tp.Close(ctx)
}
