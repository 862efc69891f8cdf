package uploadbuffer

import (
	"bytes"
	"context"
	"path"
	"strings"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/vfs"
)

// files counts the segment files and the free (kept) files in dir.
func files(t *testing.T, fs vfs.FS, dir string) (segs, free int) {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".seg"):
			segs++
		case strings.HasSuffix(n, freeSuffix):
			free++
		}
	}
	return segs, free
}

// Trimmed segment files are kept and written over by the next segments,
// and what the log holds stays exact through that: replayed after a
// crash (the old segments' bytes behind the new records never read as
// records), after a clean restart (no old bytes left past the records),
// and read back by ReadRecord.
func TestTrimmedSegmentsAreReused(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	const dir = "/log"
	l := open(t, fs, dir, 1<<20, 16<<10)
	want := map[LSN][]byte{}
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			lsn, err := l.Append(ctx, rec(i))
			if err != nil {
				t.Fatal(err)
			}
			want[lsn] = rec(i)
		}
	}
	appendN(0, 300)
	segsBefore, _ := files(t, fs, dir)
	if segsBefore < 6 {
		t.Fatalf("only %d segments", segsBefore)
	}
	trimAt := l.NextLSN() - 3
	if err := l.Trim(trimAt); err != nil {
		t.Fatal(err)
	}
	for lsn := range want {
		if lsn < trimAt {
			delete(want, lsn)
		}
	}
	segs, free := files(t, fs, dir)
	if free == 0 || segs+free != segsBefore {
		t.Fatalf("after the trim: %d segments and %d kept files, from %d segments", segs, free, segsBefore)
	}
	// Records of other sizes, so that each reused file's old records end
	// elsewhere than the new ones.
	for i := 1000; i < 1000+300; i++ {
		r := rec(i)
		r = r[:1+i%len(r)]
		lsn, err := l.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want[lsn] = r
	}
	if _, left := files(t, fs, dir); left >= free {
		t.Fatalf("no kept file was reused: %d kept before the appends, %d after", free, left)
	}
	check := func(what string, l *Log) {
		t.Helper()
		got := replayAll(t, l)
		if len(got) != len(want) {
			t.Fatalf("%s: replayed %d records, want %d", what, len(got), len(want))
		}
		for lsn, b := range want {
			if !bytes.Equal(got[lsn], b) {
				t.Fatalf("%s: record %d differs", what, lsn)
			}
			p := make([]byte, len(b))
			if err := l.ReadRecord(lsn, p, 0); err != nil || !bytes.Equal(p, b) {
				t.Fatalf("%s: ReadRecord(%d): %v", what, lsn, err)
			}
		}
	}
	check("live", l)

	// A power loss now: every record was acknowledged durable.
	crashed := open(t, fs.Crash(), dir, 1<<20, 16<<10)
	check("after a crash", crashed)
	crashed.Close()

	// A clean stop cuts the last segment's old bytes; the full ones were
	// cut as they filled.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, fs, dir, 1<<20, 16<<10)
	defer l.Close()
	check("after a restart", l)
	if _, free := files(t, fs, dir); free != 0 {
		t.Fatalf("%d kept files after a restart, want them removed", free)
	}
	l.mu.Lock()
	segList := append([]segment(nil), l.segs...)
	l.mu.Unlock()
	for _, seg := range segList {
		fi, err := fs.Stat(seg.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != seg.size {
			t.Fatalf("segment %s: file of %d bytes, records end at %d", path.Base(seg.path), fi.Size(), seg.size)
		}
	}
}

// BenchmarkAppendBuffered1MiB writes 1 GiB of 1 MiB buffered records (an
// NFS write-1m's UNSTABLE WRITEs) into a new log ("new": every segment a
// new file) and into a log whose trimmed segments are kept ("reused":
// written over), each after a sync(2). Run with -benchtime=1x.
func BenchmarkAppendBuffered1MiB(b *testing.B) {
	const total = 1 << 30
	rec := bytes.Repeat([]byte{0xa5}, 1<<20)
	fill := func(b *testing.B, l *Log) {
		ctx := context.Background()
		var last LSN
		for n := 0; n < total; n += len(rec) {
			lsn, err := l.AppendBuffered(ctx, rec)
			if err != nil {
				b.Fatal(err)
			}
			last = lsn
		}
		if err := l.Written(ctx, last); err != nil {
			b.Fatal(err)
		}
	}
	opts := Options{Capacity: 4 << 30, SegmentSize: 64 << 20}
	for _, reuse := range []bool{false, true} {
		name := map[bool]string{false: "new", true: "reused"}[reuse]
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				l, err := Open(vfs.Default, b.TempDir(), opts)
				if err != nil {
					b.Fatal(err)
				}
				if reuse {
					fill(b, l)
					if err := l.Flush(context.Background()); err != nil {
						b.Fatal(err)
					}
					if err := l.Trim(l.NextLSN()); err != nil {
						b.Fatal(err)
					}
				}
				syscall.Sync() // no dirty pages of the fill or of other runs
				b.SetBytes(total)
				b.StartTimer()
				fill(b, l)
				b.StopTimer()
				l.Close()
			}
		})
	}
}
