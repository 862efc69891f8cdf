package uploadbuffer

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/vfs"
)

// Reading records back (ReadRecord) lets a service keep the bytes of a
// write where they already are, in the log, until it uploads them, instead
// of writing them a second time elsewhere (the chunk cache's overlay).
//
// A record the writer has not written yet (not below Log.written) is read
// from the request that queued it (its caller does not change it before
// it is written; the copy is made under the log's lock, since the caller
// may reuse it as soon as it is). A written record, synced or not, is
// found by a per-segment index of where each record starts, filled as the
// writer writes and when Open scans the segments, so records replayed
// after a restart are readable too; a segment is read through a handle
// opened on the first read and closed when Trim removes the segment.

// maxSegmentSize bounds Options.SegmentSize so that every record of a
// segment the log writes starts at an offset a uint32 holds.
const maxSegmentSize = math.MaxUint32

// ErrNoRecord means ReadRecord was asked for a record the log does not
// hold: trimmed, never appended, or dropped before it was written.
var ErrNoRecord = errkind.Mark(errkind.NotFound, errors.New("uploadbuffer: no such record"))

// segIndex is where a segment's records start (by LSN - first) and a read
// handle on it.
type segIndex struct {
	offs []uint32 // under Log.mu
	wide []int64  // instead of offs once an offset does not fit (a segment of an older, larger SegmentSize)

	refs   atomic.Int64 // reads under way; taken under Log.mu
	doomed atomic.Bool  // set under Log.mu: the segment is gone, close the handle after the last read

	fmu sync.Mutex
	f   vfs.File // opened by the first read
}

// add notes that the next record starts at off. Called with Log.mu held,
// or before the log is shared.
func (x *segIndex) add(off int64) {
	if x.wide == nil && off <= math.MaxUint32 {
		x.offs = append(x.offs, uint32(off))
		return
	}
	if x.wide == nil {
		x.wide = make([]int64, len(x.offs), len(x.offs)+1)
		for i, o := range x.offs {
			x.wide[i] = int64(o)
		}
		x.offs = nil
	}
	x.wide = append(x.wide, off)
}

func (x *segIndex) len() int { return len(x.offs) + len(x.wide) }

func (x *segIndex) at(i int) int64 {
	if x.wide != nil {
		return x.wide[i]
	}
	return int64(x.offs[i])
}

// file returns the read handle, opening it on first use.
func (x *segIndex) file(fs vfs.FS, path string) (vfs.File, error) {
	x.fmu.Lock()
	defer x.fmu.Unlock()
	if x.f == nil {
		f, err := fs.Open(path)
		if err != nil {
			return nil, err
		}
		x.f = f
	}
	return x.f, nil
}

func (x *segIndex) closeFile() {
	x.fmu.Lock()
	defer x.fmu.Unlock()
	if x.f != nil {
		x.f.Close()
		x.f = nil
	}
}

// release ends a read.
func (x *segIndex) release() {
	if x.refs.Add(-1) == 0 && x.doomed.Load() {
		x.closeFile()
	}
}

// retire marks the segment gone: its handle closes after the last read.
// Called with Log.mu held.
func (x *segIndex) retire() {
	x.doomed.Store(true)
	if x.refs.Load() == 0 {
		x.closeFile()
	}
}

// ReadRecord copies bytes [off, off+len(p)) of the payload of record lsn
// into p. The record may be synced or not yet (an AppendBuffered record,
// or an Append still waiting for its group commit), and may come from
// before a restart. A record trimmed, never appended or dropped (a
// cancelled append) is ErrNoRecord, and a range outside the payload an
// error: never other bytes.
//
// A caller that reads a record back keeps it from being trimmed (a pin, or
// what its Needer reports) for as long as it may read it.
func (l *Log) ReadRecord(lsn LSN, p []byte, off int64) error {
	f, pos, x, err := l.locate(lsn, off, int64(len(p)), func(rec []byte) { copy(p, rec[off:]) })
	if err != nil || f == nil {
		return err
	}
	defer x.release()
	if _, err := f.ReadAt(p, pos); err != nil {
		return fmt.Errorf("uploadbuffer: read record %d: %w", lsn, err)
	}
	return nil
}

// CopyRecord is ReadRecord into a file: it copies bytes [off, off+n) of
// the payload of record lsn to dst at dstOff inside the kernel
// (copy_file_range), with no pass through the process's memory. ok false
// with no error says it could not (the record is not written yet, a file
// is not the operating system's, or the kernel cannot copy between them):
// the caller reads the bytes with ReadRecord and writes them itself.
func (l *Log) CopyRecord(lsn LSN, dst vfs.File, dstOff, off, n int64) (ok bool, err error) {
	if n == 0 {
		return true, nil
	}
	df, isOS := dst.(interface{ Fd() uintptr })
	if !isOS {
		return false, nil
	}
	f, pos, x, err := l.locate(lsn, off, n, nil)
	if err != nil || f == nil {
		return false, err
	}
	defer x.release()
	sf, isOS := f.(interface{ Fd() uintptr })
	if !isOS {
		return false, nil
	}
	ok, err = copyFileRange(sf.Fd(), pos, df.Fd(), dstOff, n)
	runtime.KeepAlive(f)
	runtime.KeepAlive(dst)
	if err != nil {
		return false, fmt.Errorf("uploadbuffer: copy record %d: %w", lsn, err)
	}
	return ok, nil
}

// locate finds bytes [off, off+n) of the payload of record lsn: in the
// segment file f at pos, which x keeps open until x.release(); or, for a
// record not written yet, in memory, where inMemory copies them from
// (with the log's lock held, since the record's owner may reuse it once
// written), and then f is nil; with inMemory nil such a record is left
// where it is (f nil, no error).
func (l *Log) locate(lsn LSN, off, n int64, inMemory func(rec []byte)) (f vfs.File, pos int64, x *segIndex, err error) {
	if off < 0 {
		return nil, 0, nil, fmt.Errorf("uploadbuffer: read of record %d at negative offset %d", lsn, off)
	}
	l.mu.Lock()
	if lsn == 0 || lsn < l.trimmed {
		trimmed := l.trimmed
		l.mu.Unlock()
		return nil, 0, nil, fmt.Errorf("%w: LSN %d is trimmed (trim point %d)", ErrNoRecord, lsn, trimmed)
	}
	if lsn >= LSN(l.written.Load()) {
		// Copied under the lock: once the record is written (written
		// moves, under the lock) its caller may reuse rec.
		defer l.mu.Unlock()
		if l.failed != nil || l.stopped {
			// It will never be written, and its caller may have been
			// told so and reused rec.
			return nil, 0, nil, fmt.Errorf("%w: LSN %d will not be written: the log failed or was closed", ErrNoRecord, lsn)
		}
		rec, ok := l.unwritten(lsn)
		if !ok {
			return nil, 0, nil, fmt.Errorf("%w: LSN %d was never appended, or was dropped", ErrNoRecord, lsn)
		}
		if off+n > int64(len(rec)) {
			return nil, 0, nil, recordRange(lsn, off, n, int64(len(rec)))
		}
		if inMemory != nil {
			inMemory(rec)
		}
		return nil, 0, nil, nil
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > lsn }) - 1
	if i < 0 {
		l.mu.Unlock()
		return nil, 0, nil, fmt.Errorf("%w: LSN %d is before the log's first segment", ErrNoRecord, lsn)
	}
	seg := l.segs[i]
	x = seg.idx
	k := int(lsn - seg.first)
	if k >= x.len() || x.doomed.Load() {
		l.mu.Unlock()
		return nil, 0, nil, fmt.Errorf("%w: LSN %d is not indexed in segment %s", ErrNoRecord, lsn, seg.path)
	}
	start := x.at(k)
	end := seg.size // the end of the segment's last record written
	if k+1 < x.len() {
		end = x.at(k + 1)
	}
	x.refs.Add(1)
	l.mu.Unlock()
	size := end - start - seg.recHdr
	if off+n > size {
		x.release()
		return nil, 0, nil, recordRange(lsn, off, n, size)
	}
	f, err = x.file(l.fs, seg.path)
	if err != nil {
		x.release()
		return nil, 0, nil, fmt.Errorf("uploadbuffer: read record %d: %w", lsn, err)
	}
	return f, start + seg.recHdr + off, x, nil
}

func recordRange(lsn LSN, off, n, size int64) error {
	return fmt.Errorf("uploadbuffer: read [%d, %d) of record %d, which has %d bytes", off, off+n, lsn, size)
}

// unwritten returns the record of lsn while it is queued or in the
// writer's batch, not yet written. Called with l.mu held.
func (l *Log) unwritten(lsn LSN) ([]byte, bool) {
	for _, q := range [2][]*request{l.inflight, l.queue} {
		if len(q) == 0 || lsn < q[0].lsn {
			continue
		}
		// LSNs follow each other in the writer's batch and in the queue.
		if i := lsn - q[0].lsn; i < LSN(len(q)) && q[i].lsn == lsn && q[i].rec != nil {
			return q[i].rec, true
		}
	}
	return nil, false
}
