package uploadbuffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatewayd/gatewayd/internal/backpressure"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/vfs"
)

// LSN is a record's log sequence number: 1, 2, 3, ...
type LSN uint64

const (
	segHeaderSize = 16
	recHeaderSize = 24 // version 2; version 1's is recHeaderSizeV1
	segMagic      = "GWUB"
	segVersion    = 2
	trimFile      = "trim"

	// Version 1 segments (read, never written): records without the
	// durable mark, every group commit synced.
	segVersionV1    = 1
	recHeaderSizeV1 = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a Log.
type Options struct {
	// Capacity is how many bytes of log may be on disk.
	Capacity int64
	// SegmentSize is the size at which a new segment file starts (default
	// 64 MiB, at most Capacity/4).
	SegmentSize int64
	Logger      *slog.Logger
	// Health, when set, warns while appends wait for space.
	Health *health.Reporter
}

// Stats are the log's counters.
type Stats struct {
	Appends, Bytes, Syncs, Waits uint64
	Yields                       uint64 // calls of Yield that waited for appends
	// Syncs counts the syncs of segments that made records durable (the
	// writer's, and the background syncs of full segments); Unsynced the
	// groups of records written without a sync of their own (buffered
	// records, and the records that filled a segment: a later sync
	// covers them). SyncedBytes is the bytes the
	// syncs made durable (records with their headers). SyncBytes and
	// SyncRecords count the syncs by what they made durable: bucket i
	// holds those of at most SyncBytesBound(i) bytes and
	// SyncRecordsBound(i) records, the last one the rest.
	Unsynced    uint64
	SyncedBytes uint64
	SyncBytes   [SyncBuckets]uint64
	SyncRecords [SyncBuckets]uint64
	// Trims counts the trims that moved the trim point; TrimmedRecords
	// the records they released. Replayed counts the records handed to
	// Replay's function.
	Trims, TrimmedRecords, Replayed uint64
}

// SyncBuckets is the number of buckets of Stats.SyncBytes and SyncRecords.
const SyncBuckets = 9

// SyncBytesBound is the upper bound of bucket i of Stats.SyncBytes: 4 KiB
// times a power of 4, up to 256 MiB.
func SyncBytesBound(i int) int64 { return 4 << 10 << (2 * i) }

// SyncRecordsBound is the upper bound of bucket i of Stats.SyncRecords: a
// power of 2 from 1 to 256.
func SyncRecordsBound(i int) int64 { return 1 << i }

// syncBucket is the bucket of Stats.SyncBytes or SyncRecords for n.
func syncBucket(n int64, bound func(int) int64) int {
	i := 0
	for i < SyncBuckets-1 && n > bound(i) {
		i++
	}
	return i
}

type segment struct {
	first  LSN
	size   int64 // the end of its last record written (the last segment's may not be synced yet)
	path   string
	recHdr int64     // its records' header size: recHeaderSize, or recHeaderSizeV1 in a version 1 segment
	idx    *segIndex // where its records are, and a handle to read them (read.go)
	// reused: the file is a trimmed segment's, written over, so it may
	// hold the old segment's bytes past size until it is cut to size
	// (retireSegment, Close).
	reused bool
}

type request struct {
	ctx      context.Context
	rec      []byte
	need     int64  // bytes reserved for it
	lsn      LSN    // given when queued
	buffered bool   // AppendBuffered: its caller does not wait for the sync
	crc      uint32 // the CRC-32C of rec, when hasCRC (dataCRC)
	hasCRC   bool
	answered bool // its caller has had its answer
	done     chan error
}

// Log is the upload buffer. It is safe for concurrent use.
//
// Locks: mu guards the log's state and is held only for short updates,
// never across a write or a sync, so appends queue while the writer
// syncs and join its next group commit. The writer holds wmu across its
// writes and syncs; Trim takes it (before mu) only to empty a segment on
// a full filesystem. trimMu orders Trims.
type Log struct {
	fs   vfs.FS
	dir  string
	opts Options
	log  *slog.Logger

	// used (bytes of segment files), next (every record below it is
	// synced) and written (every record below it is written to its
	// segment, perhaps not synced: next <= written) change under mu and
	// are read without it.
	used    atomic.Int64
	next    atomic.Uint64
	written atomic.Uint64
	yields  atomic.Uint64 // calls of Yield that waited

	mu       sync.Mutex
	space    *backpressure.Waiters
	segs     []segment // oldest first; the last is being appended to
	reserved int64     // bytes promised to queued appends
	assigned LSN       // the LSN the next queued record gets
	trimmed  LSN       // trim point: records below it are not needed
	queue    []*request
	inflight []*request // the writer's batch: records of it not yet synced are read from here
	failed   error      // set after a write or sync error: the log is fail-stop
	noSpace  error      // set while the writer waits for its filesystem to have room
	closed   bool
	stopped  bool          // the writer is gone: nothing queued will be written
	synced   chan struct{} // closed and replaced when next or written moves, the log fails or the writer stops
	syncWant LSN           // the highest LSN Sync waits for: the writer syncs until next is past it
	stats    Stats
	// writtenWaiters are the callers of Written waiting and the
	// callbacks of OnWritten, by LSN (woken or called by progress once
	// their records are written).
	writtenWaiters []writtenWaiter
	// retired are the full segments handed to the syncer, oldest first,
	// until it has synced them.
	retired []retired

	wmu  sync.Mutex
	cur  vfs.File // the last segment, open for appending (wmu)
	torn bool     // the last segment may hold bytes past its size: cut them before writing (wmu)
	wbuf []byte   // the writer's buffer, kept between batches (wmu)
	// unsyncedBytes and unsyncedRecs are the bytes and records written
	// to the last segment since its last sync (wmu).
	unsyncedBytes, unsyncedRecs int64
	// newEntries: a segment was made since the directory's last sync
	// (wmu); the next sync point syncs it.
	newEntries bool

	trimMu sync.Mutex
	// free are trimmed segment files kept to be written over by the next
	// segments (recycle.go), with their bytes on disk (under mu).
	free      []freeFile
	freeBytes int64
	freeSeq   uint64 // names free files (trimMu)

	wake  chan struct{}
	retry chan struct{} // space may have returned: the writer tries again
	stop  chan struct{} // closed by Close
	done  chan struct{}

	retire     chan struct{} // wakes the syncer; closed when the writer stops
	syncerDone chan struct{}
}

// retired is a full segment the writer has handed to the syncer: it
// syncs the file and closes it.
type retired struct {
	f     vfs.File
	bytes int64 // bytes written to it since its last sync
	recs  int64 // records written to it since its last sync
	cut   bool  // its file was cut to size (a reused file): synced even without bytes
}

// maxRetired bounds the full segments waiting for their background sync:
// the writer waits for the oldest before it starts another segment, so a
// disk slower than the writes holds the writes back instead of letting
// a sync point's wait grow with the log.
const maxRetired = 2

// maxKeptBuffer bounds the writer's buffer kept from one batch to the
// next; records of directWrite bytes or more are written from their own
// buffer, not copied into it (a 1 MiB write's copy was a quarter of the
// daemon's CPU time under sequential writes).
const (
	maxKeptBuffer = 32 << 20
	directWrite   = 64 << 10
)

// Bounds of the writer's wait between attempts while its filesystem is
// full: Trim wakes it at once, space an operator frees is found within
// maxSpaceRetry.
const (
	minSpaceRetry = 100 * time.Millisecond
	maxSpaceRetry = 2 * time.Second
)

// ErrTooLarge means a record does not fit in a quarter of the log.
var ErrTooLarge = errkind.Mark(errkind.Permanent, errors.New("uploadbuffer: record too large for the log"))

// ErrClosed means the log was closed.
var ErrClosed = errkind.Mark(errkind.Permanent, errors.New("uploadbuffer: closed"))

// Open opens the log in dir, creating it if needed, and finds its end.
func Open(fs vfs.FS, dir string, opts Options) (*Log, error) {
	if opts.Capacity < 4*(segHeaderSize+recHeaderSize+1) {
		return nil, fmt.Errorf("uploadbuffer: capacity %d is too small", opts.Capacity)
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	opts.SegmentSize = min(opts.SegmentSize, opts.Capacity/4, maxSegmentSize)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uploadbuffer: %w", err)
	}
	l := &Log{fs: fs, dir: dir, opts: opts, log: opts.Logger, synced: make(chan struct{}),
		wake: make(chan struct{}, 1), retry: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		retire: make(chan struct{}, 1), syncerDone: make(chan struct{})}
	l.next.Store(1)
	l.space = backpressure.New(&l.mu, opts.Health, "upload buffer full: writes wait for uploads")
	if err := l.recover(); err != nil {
		return nil, err
	}
	l.assigned = LSN(l.next.Load())
	go l.writer()
	go l.syncer()
	return l, nil
}

func segName(first LSN) string { return fmt.Sprintf("%016x.seg", uint64(first)) }

// recover scans the segments, cuts a torn tail, makes what is left of the
// last segment durable and opens it for appending (after a version 1
// segment, a new one).
func (l *Log) recover() error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("uploadbuffer: %w", err)
	}
	l.trimmed = l.readTrim()
	for _, n := range names {
		if strings.HasSuffix(n, freeSuffix) {
			// A trimmed segment kept for reuse: its header may not be
			// zeroed yet, so it is not reused after a restart.
			if err := l.fs.Remove(filepath.Join(l.dir, n)); err != nil {
				return fmt.Errorf("uploadbuffer: %w", err)
			}
			continue
		}
		if !strings.HasSuffix(n, ".seg") {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(n, ".seg"), 16, 64)
		if err != nil || first == 0 {
			return errkind.Mark(errkind.Corrupt, fmt.Errorf("uploadbuffer: unexpected file %s in %s", n, l.dir))
		}
		l.segs = append(l.segs, segment{first: LSN(first), path: filepath.Join(l.dir, n), idx: &segIndex{}})
	}
	sort.Slice(l.segs, func(i, j int) bool { return l.segs[i].first < l.segs[j].first })
	next, err := l.findEnd()
	if err != nil {
		return err
	}
	for _, seg := range l.segs {
		l.used.Add(seg.size)
	}
	l.next.Store(uint64(next))
	if len(l.segs) > 0 && next < l.trimmed {
		// The log was emptied after its trim point was saved (a full
		// disk made Trim restart the last segment): every record left
		// is below the trim point, so none is needed.
		for _, seg := range l.segs {
			if err := l.fs.Remove(seg.path); err != nil {
				return fmt.Errorf("uploadbuffer: %w", err)
			}
		}
		l.segs = nil
		l.used.Store(0)
	}
	if len(l.segs) == 0 {
		l.next.Store(uint64(max(l.trimmed, 1)))
		l.written.Store(l.next.Load())
		return l.newSegment(LSN(l.next.Load()))
	}
	l.written.Store(uint64(next))
	lastSeg := &l.segs[len(l.segs)-1]
	f, err := l.fs.OpenReadWrite(lastSeg.path)
	if err != nil {
		return fmt.Errorf("uploadbuffer: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != lastSeg.size {
		l.log.Warn("cutting a torn write off the upload buffer", "segment", lastSeg.path, "bytes", fi.Size()-lastSeg.size)
		err = f.Truncate(lastSeg.size)
	}
	if err == nil {
		// What was found may not be on the disk yet (the process that
		// wrote it was killed before a sync): the records appended from
		// now on say every record below next is durable, so make it so.
		err = f.Sync()
	}
	if err == nil && lastSeg.recHdr == recHeaderSizeV1 && lastSeg.size == segHeaderSize {
		// A version 1 segment without records: it becomes a version 2 one.
		_, err = f.WriteAt(segmentHeader(lastSeg.first), 0)
		if err == nil {
			err = f.Sync()
		}
		lastSeg.recHdr = recHeaderSize
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("uploadbuffer: %w", err)
	}
	l.cur = f
	if lastSeg.recHdr != recHeaderSize {
		// Records of two versions never share a segment: appends go to
		// a new one.
		return l.newSegment(next)
	}
	return nil
}

// findEnd scans the segments (l.segs, sorted) and finds the end of the
// log: the first bad record, a segment header that never reached the disk,
// or a segment missing between two others. A segment full of records is
// synced in the background while the writer goes on in the next one, and
// records written without a sync of their own may persist in any order
// and in part after a power loss, so a bad record may be followed by valid
// ones, in its segment and in later ones. What follows the end was never
// durable unless a valid record after it (at any offset, in any later
// segment) has a durable mark past it: then it had been synced, and the
// log is corrupt. In a version 1 segment (every group commit synced, every
// segment synced whole before the next was made) a bad record is
// corruption unless it is in the last segment and no valid record follows
// it there. The end found, it cuts the log there: the segments after it
// are removed, the one it is in is cut when Open opens it for appending
// (a segment whose header never reached the disk gets it again), and what
// is kept is made durable before anything is appended (every segment
// synced, and the directory), so the durable marks of new records hold.
// It sets each segment's size and returns the next LSN.
func (l *Log) findEnd() (LSN, error) {
	if len(l.segs) == 0 {
		return 1, nil
	}
	next := l.segs[0].first
	for i := range l.segs {
		seg := &l.segs[i]
		if seg.first < next {
			return 0, errkind.Mark(errkind.Corrupt, fmt.Errorf("uploadbuffer: segment %s starts at LSN %d, before %d", seg.path, seg.first, next))
		}
		if seg.first > next {
			// Made after a segment whose records stop short of it: the
			// segments from here on came after the end.
			if err := l.cutAt(i, "", 0, next); err != nil {
				return 0, err
			}
			break
		}
		end, n, torn, err := l.scan(seg, i == len(l.segs)-1, 0, seg.idx, nil)
		if err != nil {
			return 0, err
		}
		seg.size, next = end, n
		if torn {
			path := seg.path
			if seg.recHdr == recHeaderSizeV1 {
				path = "" // scan has looked: nothing valid follows
			}
			if err := l.cutAt(i+1, path, end, next); err != nil {
				return 0, err
			}
			if end == 0 { // its header never reached the disk
				if err := l.rewriteHeader(seg); err != nil {
					return 0, err
				}
			}
			break
		}
	}
	// Segments before the last may hold records never synced (the
	// process was killed before their background sync), as may the
	// directory's entries: the last segment is synced as Open opens it.
	for _, seg := range l.segs[:len(l.segs)-1] {
		f, err := l.fs.Open(seg.path)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			return 0, fmt.Errorf("uploadbuffer: %w", err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return 0, fmt.Errorf("uploadbuffer: %w", err)
	}
	return next, nil
}

// cutAt ends the log at LSN end: at offset off of the segment at path
// (0: in its header), or, with path empty, at the end of the segment
// before segments[from]. Unless a valid record after that point, in that
// segment or in segments[from:], has a durable mark past end (then it is
// corruption), it removes segments[from:].
func (l *Log) cutAt(from int, path string, off int64, end LSN) error {
	var durable LSN
	after := func(path string, off int64, want LSN) error {
		f, err := l.fs.Open(path)
		if err != nil {
			return fmt.Errorf("uploadbuffer: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("uploadbuffer: %w", err)
		}
		_, d := validRecordsAfter(f, off, fi.Size(), want, recHeaderSize)
		durable = max(durable, d)
		return nil
	}
	if path != "" {
		if err := after(path, off+1, end); err != nil {
			return err
		}
	}
	for _, seg := range l.segs[from:] {
		if err := after(seg.path, 0, seg.first); err != nil {
			return err
		}
	}
	if durable > end {
		return errkind.Mark(errkind.Corrupt, fmt.Errorf("uploadbuffer: %s: the log ends at LSN %d (a bad record, or a segment missing), followed by valid records written after it was durable", l.dir, end))
	}
	for _, seg := range l.segs[from:] {
		l.log.Warn("removing an upload buffer segment written after the end of the log (a torn write)", "segment", seg.path)
		if err := l.fs.Remove(seg.path); err != nil {
			return fmt.Errorf("uploadbuffer: %w", err)
		}
	}
	l.segs = l.segs[:from]
	return nil
}

// scan reads a segment's records, calling fn for each (if not nil) and
// noting where each starts in idx (if not nil), and sets seg.recHdr from
// its header. It returns the offset after the last good record, the next
// LSN, and whether a bad record ended the records before the end of the
// file (torn; an offset of 0: the header is missing, short or zero).
//
// A bad record (short, of another LSN, or failing its CRC) is corruption
// in a version 1 segment but the last, and one followed by a valid record
// in a version 1 segment: those were synced whole before another was
// written. Otherwise it may be a torn write, and findEnd decides.
func (l *Log) scan(seg *segment, last bool, from LSN, idx *segIndex, fn func(LSN, []byte) error) (int64, LSN, bool, error) {
	f, err := l.fs.Open(seg.path)
	if err != nil {
		return 0, 0, false, fmt.Errorf("uploadbuffer: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, false, fmt.Errorf("uploadbuffer: %w", err)
	}
	size := fi.Size()
	corrupt := func(format string, args ...any) error {
		return errkind.Mark(errkind.Corrupt, fmt.Errorf("uploadbuffer: %s: "+format, append([]any{seg.path}, args...)...))
	}
	var hdr [segHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		if size < segHeaderSize {
			return 0, seg.first, true, nil
		}
		return 0, 0, false, corrupt("short segment header")
	}
	seg.recHdr = 0
	switch {
	case string(hdr[:4]) != segMagic || LSN(binary.BigEndian.Uint64(hdr[8:])) != seg.first:
	case hdr[4] == segVersion:
		seg.recHdr = recHeaderSize
	case hdr[4] == segVersionV1:
		seg.recHdr = recHeaderSizeV1
	}
	if seg.recHdr == 0 {
		if isZero(hdr[:]) {
			return 0, seg.first, true, nil
		}
		return 0, 0, false, corrupt("bad segment header")
	}
	off, next := int64(segHeaderSize), seg.first
	buf := make([]byte, 0, 1<<20)
	for off < size {
		payload, _, ok := readRecord(f, off, size, next, seg.recHdr, &buf)
		if !ok {
			if seg.recHdr == recHeaderSizeV1 {
				if found, _ := validRecordsAfter(f, off+1, size, next, seg.recHdr); !last || found {
					return 0, 0, false, corrupt("bad record at offset %d (LSN %d) in a version 1 segment", off, next)
				}
			}
			return off, next, true, nil
		}
		if fn != nil && next >= from {
			if err := fn(next, payload); err != nil {
				return 0, 0, false, err
			}
		}
		if idx != nil {
			idx.add(off)
		}
		off += seg.recHdr + int64(len(payload))
		next++
	}
	return off, next, false, nil
}

// rewriteHeader writes the header of a last segment whose header never
// reached the disk, and syncs it.
func (l *Log) rewriteHeader(seg *segment) error {
	f, err := l.fs.Create(seg.path)
	if err != nil {
		return fmt.Errorf("uploadbuffer: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(segmentHeader(seg.first)); err != nil {
		return fmt.Errorf("uploadbuffer: %w", err)
	}
	seg.recHdr, seg.size = recHeaderSize, segHeaderSize
	if err := f.Sync(); err != nil {
		return fmt.Errorf("uploadbuffer: %w", err)
	}
	return nil
}

// readRecord reads the record at off, with headers of hdrSize bytes, if it
// is whole, has LSN want and passes its CRC. It returns the payload and
// the record's durable mark (0 in a version 1 segment).
func readRecord(f vfs.File, off, size int64, want LSN, hdrSize int64, buf *[]byte) ([]byte, LSN, bool) {
	var hb [recHeaderSize]byte
	h := hb[:hdrSize]
	if off+hdrSize > size {
		return nil, 0, false
	}
	if _, err := f.ReadAt(h, off); err != nil {
		return nil, 0, false
	}
	n := int64(binary.BigEndian.Uint32(h[0:]))
	if LSN(binary.BigEndian.Uint64(h[8:])) != want || off+hdrSize+n > size {
		return nil, 0, false
	}
	if int64(cap(*buf)) < n {
		*buf = make([]byte, n)
	}
	p := (*buf)[:n]
	if _, err := f.ReadAt(p, off+hdrSize); err != nil && !(errors.Is(err, io.EOF) && int64(len(p)) == 0) {
		return nil, 0, false
	}
	crc := crc32.Update(crc32.Checksum(h[8:], castagnoli), castagnoli, p)
	if crc != binary.BigEndian.Uint32(h[4:]) {
		return nil, 0, false
	}
	var durable LSN
	if hdrSize == recHeaderSize {
		durable = LSN(binary.BigEndian.Uint64(h[16:]))
	}
	return p, durable, true
}

// validRecordsAfter looks for valid records with an LSN at or past want
// beyond off, at any offset: whether there is one, and the highest
// durable mark among them. It reads the segment a window at a time (after
// a power loss the unsynced part of a segment may be long: up to the
// segment) and follows a valid record to the one after it.
func validRecordsAfter(f vfs.File, off, size int64, want LSN, hdrSize int64) (found bool, durable LSN) {
	const window = 1 << 20
	var buf, win []byte
	winOff := int64(0)
	for off+hdrSize <= size {
		if off < winOff || off+hdrSize > winOff+int64(len(win)) {
			n := min(window, size-off)
			if cap(win) < int(n) {
				win = make([]byte, n)
			}
			win = win[:n]
			if _, err := f.ReadAt(win, off); err != nil && !errors.Is(err, io.EOF) {
				return found, durable
			}
			winOff = off
		}
		h := win[off-winOff:]
		lsn := LSN(binary.BigEndian.Uint64(h[8:]))
		if lsn < want || lsn > want+LSN(size/hdrSize) {
			off++
			continue
		}
		p, d, ok := readRecord(f, off, size, lsn, hdrSize, &buf)
		if !ok {
			off++
			continue
		}
		found, durable = true, max(durable, d)
		off += hdrSize + int64(len(p))
	}
	return found, durable
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func segmentHeader(first LSN) []byte {
	h := make([]byte, segHeaderSize)
	copy(h, segMagic)
	h[4] = segVersion
	binary.BigEndian.PutUint64(h[8:], uint64(first))
	return h
}

// newSegment starts a segment at first, synced with its directory entry.
// Called by Open, before the writer runs.
func (l *Log) newSegment(first LSN) error {
	seg, f, err := l.createSegment(first)
	if err != nil {
		return err
	}
	err = f.Sync()
	if err == nil {
		err = l.fs.SyncDir(l.dir)
	}
	if err != nil {
		f.Close()
		// Give back what the file took; if it stays, it is a last
		// segment without records, which Open accepts.
		l.fs.Remove(seg.path)
		return fmt.Errorf("uploadbuffer: new segment: %w", err)
	}
	if l.cur != nil {
		l.cur.Close()
	}
	l.cur = f
	l.segs = append(l.segs, seg)
	l.used.Add(segHeaderSize)
	return nil
}

// createSegment creates the segment file of first with its header, not
// synced.
func (l *Log) createSegment(first LSN) (segment, vfs.File, error) {
	seg := segment{first: first, size: segHeaderSize, path: filepath.Join(l.dir, segName(first)), recHdr: recHeaderSize, idx: &segIndex{}}
	if f := l.reuseSegment(seg.path, first); f != nil {
		seg.reused = true
		return seg, f, nil
	}
	f, err := l.fs.Create(seg.path)
	if err != nil {
		return seg, nil, fmt.Errorf("uploadbuffer: new segment: %w", err)
	}
	if _, err := f.Write(segmentHeader(first)); err != nil {
		f.Close()
		l.fs.Remove(seg.path) // give back what it took; a segment without its header is cut at Open too
		return seg, nil, fmt.Errorf("uploadbuffer: new segment: %w", err)
	}
	return seg, f, nil
}

func (l *Log) readTrim() LSN {
	f, err := l.fs.Open(filepath.Join(l.dir, trimFile))
	if err != nil {
		return 0
	}
	defer f.Close()
	var b [12]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0
	}
	if crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return 0 // a torn trim file: replay from the start, which is safe
	}
	return LSN(binary.BigEndian.Uint64(b[:8]))
}

// Replay calls fn for each record not yet trimmed, in LSN order. Call it
// after Open and before the first Append.
func (l *Log) Replay(fn func(lsn LSN, rec []byte) error) error {
	l.mu.Lock()
	segs := append([]segment(nil), l.segs...)
	from := l.trimmed
	l.mu.Unlock()
	count := func(lsn LSN, rec []byte) error {
		l.mu.Lock()
		l.stats.Replayed++
		l.mu.Unlock()
		return fn(lsn, rec)
	}
	for i, seg := range segs {
		_, _, torn, err := l.scan(&seg, i == len(segs)-1, from, nil, count)
		if err != nil {
			return err
		}
		if torn && i < len(segs)-1 {
			// Open cut the log at its end: a bad record now is new damage.
			return errkind.Mark(errkind.Corrupt, fmt.Errorf("uploadbuffer: %s: a bad record, read whole when the log was opened", seg.path))
		}
	}
	return nil
}

// Append makes rec durable and returns its LSN. It waits while the log is
// full, until Trim frees space or ctx ends, and while the filesystem under
// the log is full, until space returns (Trim frees some, or the operator
// does) or ctx ends. The caller must not change rec before it is
// written (Append returns): until then ReadRecord reads the record from
// rec.
func (l *Log) Append(ctx context.Context, rec []byte) (LSN, error) {
	req, err := l.enqueue(ctx, rec, false)
	if err != nil {
		return 0, err
	}
	// Once queued, the record is written unless the filesystem is full
	// and ctx ends first: wait for the writer's answer, which is an error
	// only for a record that will not land (see awaitSpace for the one
	// exception).
	if err := <-req.done; err != nil {
		return 0, err
	}
	return req.lsn, nil
}

// AppendBuffered queues rec and returns its LSN without waiting for it to
// be written: the record is durable once Sync for its LSN returns nil. It
// waits for space as Append does; once it has returned, ctx no longer
// matters and the record is written unless the log fails or is closed
// while its filesystem is full (Sync then says so). The log keeps rec
// until the record is written (Written for its LSN returns), and
// ReadRecord reads it from rec until then: the caller must not change it
// before.
//
// A buffered record costs no sync of its own: the writer writes a group
// made only of buffered records without one, and the next sync makes them
// durable (Sync, Flush, an Append, Close). A power loss before that may
// lose the record, and with it every record written after it without a
// sync; Open then finds the log's end before them.
func (l *Log) AppendBuffered(ctx context.Context, rec []byte) (LSN, error) {
	req, err := l.enqueue(ctx, rec, true)
	if err != nil {
		return 0, err
	}
	return req.lsn, nil
}

// enqueue reserves space for rec (waiting for it as Append documents),
// gives it the next LSN and queues it for the writer.
func (l *Log) enqueue(ctx context.Context, rec []byte, buffered bool) (*request, error) {
	need := int64(recHeaderSize + len(rec))
	if need+segHeaderSize > l.opts.Capacity/4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(rec))
	}
	// A record may start a new segment: reserve for its header too.
	need += segHeaderSize
	crc, hasCRC := dataCRC(rec) // before the lock: callers compute theirs at once
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.space.Wait(ctx, func() bool {
		return l.failed != nil || l.closed || !l.space.Blocked() && l.used.Load()+l.reserved+need <= l.opts.Capacity
	})
	if err != nil {
		return nil, err
	}
	if err := l.failed; err != nil {
		return nil, err
	}
	if l.closed {
		return nil, ErrClosed
	}
	l.reserved += need
	req := &request{ctx: ctx, rec: rec, need: need, lsn: l.assigned, buffered: buffered, answered: buffered, crc: crc, hasCRC: hasCRC, done: make(chan error, 1)}
	if buffered {
		req.ctx = context.Background() // its caller has gone: only Close or a failure stops it now
	}
	l.assigned++
	l.queue = append(l.queue, req)
	select { // under l.mu: Close cannot have closed wake yet
	case l.wake <- struct{}{}:
	default:
	}
	return req, nil
}

// Sync returns once every record up to and including lsn is durable, or
// with an error when one of them will never be (the log failed, or it was
// closed with the record still waiting for space on a full filesystem),
// or when ctx ends. With buffered appends, it is the flush of a write-back
// cache: if the records are written but not synced, the writer syncs
// them now.
func (l *Log) Sync(ctx context.Context, lsn LSN) error {
	return l.await(ctx, lsn, &l.next, true)
}

// Written returns once record lsn and every one before it is written to
// its segment, so the log no longer reads the caller's buffer (it may
// not be durable yet), or will never be (the log failed or was closed:
// then an error), or when ctx ends. It starts no sync.
func (l *Log) Written(ctx context.Context, lsn LSN) error {
	return l.await(ctx, lsn, &l.written, false)
}

// await waits until mark (next or written) is past lsn; sync says to ask
// the writer for a sync of the records written meanwhile.
func (l *Log) await(ctx context.Context, lsn LSN, mark *atomic.Uint64, sync bool) error {
	for {
		l.mu.Lock()
		switch {
		case LSN(mark.Load()) > lsn:
			l.mu.Unlock()
			return nil
		case l.failed != nil:
			err := l.failed
			l.mu.Unlock()
			return err
		case l.stopped:
			l.mu.Unlock()
			return fmt.Errorf("%w before LSN %d was written", ErrClosed, lsn)
		case lsn >= l.assigned:
			assigned := l.assigned
			l.mu.Unlock()
			return fmt.Errorf("uploadbuffer: sync of LSN %d, which was never appended (next %d)", lsn, assigned)
		}
		if sync && l.syncWant < lsn {
			l.syncWant = lsn
			if !l.closed { // Close closes wake after setting closed under l.mu; the writer syncs as it stops
				select {
				case l.wake <- struct{}{}:
				default:
				}
			}
		}
		ch := l.synced
		if mark == &l.written {
			ch = l.awaitWritten(lsn)
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writtenWaiter is a caller of Written waiting for record lsn (ch), or
// a callback of OnWritten (fn).
type writtenWaiter struct {
	lsn LSN
	ch  chan struct{}
	fn  func()
}

// wake tells w's waiter. Called with l.mu held.
func (w writtenWaiter) wake() {
	if w.fn != nil {
		w.fn()
		return
	}
	close(w.ch)
}

// OnWritten calls fn once record lsn and every one before it is written
// to its segment, or will never be (the log failed or was closed): when
// Written would return. If that is so already, it calls fn at once.
// Otherwise fn runs on the goroutine that moves the log on (its writer,
// mostly) with the log's lock held, so it must be quick, must not block
// and must not call the log. It is for a caller of AppendBuffered taking
// its buffer back: no goroutine waits per record in flight, and the
// writer wakes none.
func (l *Log) OnWritten(lsn LSN, fn func()) {
	l.mu.Lock()
	if LSN(l.written.Load()) > lsn || l.failed != nil || l.stopped || lsn >= l.assigned {
		l.mu.Unlock()
		fn()
		return
	}
	l.addWrittenWaiter(writtenWaiter{lsn: lsn, fn: fn})
	l.mu.Unlock()
}

// awaitWritten returns a channel closed once written passes lsn, or the
// log fails or its writer stops (progress): only the callers whose
// records are written wake, not every caller of Written (one per
// buffered write in flight, under a stream of writes). Called with l.mu
// held.
func (l *Log) awaitWritten(lsn LSN) chan struct{} {
	w := writtenWaiter{lsn: lsn, ch: make(chan struct{})}
	l.addWrittenWaiter(w)
	return w.ch
}

// addWrittenWaiter puts w in writtenWaiters, in LSN order. Called with
// l.mu held.
func (l *Log) addWrittenWaiter(w writtenWaiter) {
	i := sort.Search(len(l.writtenWaiters), func(i int) bool { return l.writtenWaiters[i].lsn > w.lsn })
	l.writtenWaiters = append(l.writtenWaiters, writtenWaiter{})
	copy(l.writtenWaiters[i+1:], l.writtenWaiters[i:])
	l.writtenWaiters[i] = w
}

// Yield is for background work that competes with appends for CPU and
// disk (uploads): called before each unit of such work, it waits until
// the appends waiting now are written (a durable append once synced), so
// their group commit goes first, for at most max. It returns at once when no append waits, and when the
// log is more than half full: then the background work is what frees the
// space appends wait for. It returns an error only when ctx ends.
func (l *Log) Yield(ctx context.Context, max time.Duration) error {
	_, err := l.yield(ctx, max)
	return err
}

// yield is Yield; waited says whether appends were waiting.
func (l *Log) yield(ctx context.Context, max time.Duration) (waited bool, err error) {
	l.mu.Lock()
	last := l.assigned - 1
	l.mu.Unlock()
	if LSN(l.written.Load()) > last || l.used.Load() > l.opts.Capacity/2 {
		return false, nil
	}
	l.yields.Add(1)
	wctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	// Written, not Sync: a durable append is written once synced, and a
	// buffered one needs no sync now.
	if err := l.Written(wctx, last); err != nil && ctx.Err() != nil {
		return true, ctx.Err()
	}
	return true, nil // durable, failed, closed or max passed: the caller goes on
}

// Flush makes every record appended so far durable (Sync of the last one).
func (l *Log) Flush(ctx context.Context) error {
	l.mu.Lock()
	last := l.assigned - 1
	l.mu.Unlock()
	if last == 0 {
		return nil
	}
	return l.Sync(ctx, last)
}

// progress wakes the callers of Sync to look again, and the callers of
// Written (and calls the callbacks of OnWritten) whose records are
// written. Called with l.mu held.
func (l *Log) progress() {
	close(l.synced)
	l.synced = make(chan struct{})
	written, all := LSN(l.written.Load()), l.failed != nil || l.stopped
	i := 0
	for ; i < len(l.writtenWaiters) && (all || l.writtenWaiters[i].lsn < written); i++ {
		l.writtenWaiters[i].wake()
		l.writtenWaiters[i] = writtenWaiter{}
	}
	l.writtenWaiters = l.writtenWaiters[i:]
	// And those whose LSN was dropped (awaitSpace): never appended now.
	j := len(l.writtenWaiters)
	for ; j > 0 && l.writtenWaiters[j-1].lsn >= l.assigned; j-- {
		l.writtenWaiters[j-1].wake()
		l.writtenWaiters[j-1] = writtenWaiter{}
	}
	l.writtenWaiters = l.writtenWaiters[:j]
}

// answer tells r's caller how its append ended (unless it has been told)
// and releases its reservation. Called with l.mu held, once per request.
func (l *Log) answer(r *request, err error) {
	l.reserved -= r.need
	l.reply(r, err)
}

// reply tells r's caller how its append ended, once. Called with l.mu held.
func (l *Log) reply(r *request, err error) {
	if !r.answered {
		r.answered = true
		r.done <- err
	}
}

// writer is the one goroutine that writes: it takes everything queued,
// writes it, syncs once if it must (below) and releases the whole batch;
// what is queued meanwhile forms the next batch. When the filesystem is
// full it keeps the batch and tries again once space may have returned.
// When nothing is queued and Sync waits for records written without a
// sync, it syncs them. As it stops (Close) it syncs what it wrote.
func (l *Log) writer() {
	defer func() {
		l.syncWritten(func() bool { return true })
		close(l.retire)
		<-l.syncerDone
		l.mu.Lock()
		l.stopped = true
		l.progress()
		l.mu.Unlock()
		close(l.done)
	}()
	var pending []*request
	delay := minSpaceRetry
	for range l.wake {
		for {
			l.mu.Lock()
			batch := append(pending, l.queue...)
			l.queue = nil
			if len(batch) > 0 {
				l.inflight = batch
			}
			l.mu.Unlock()
			if len(batch) == 0 {
				l.syncWritten(l.syncWanted)
				break
			}
			pending = l.writeBatch(batch)
			if len(pending) == 0 {
				delay = minSpaceRetry
				continue
			}
			pending = l.awaitSpace(pending, delay)
			delay = min(2*delay, maxSpaceRetry)
		}
	}
}

// syncWanted says whether Sync waits for a record not yet durable. Called
// without l.mu.
func (l *Log) syncWanted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncWant >= LSN(l.next.Load())
}

// syncWritten syncs the records written without a sync, if there are any
// and want says so. A failed sync makes the log fail-stop, also on a full
// filesystem: the records' buffers went back to their callers when they
// were written, so they cannot be written again. Called by the writer,
// without the locks.
func (l *Log) syncWritten(want func() bool) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.written.Load() == l.next.Load() || !want() {
		return
	}
	l.mu.Lock()
	failed := l.failed
	l.mu.Unlock()
	if failed != nil {
		return
	}
	err := l.syncAll()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fail(err)
		return
	}
	l.publishSync()
	l.space.Broadcast()
}

// syncAll syncs the last segment, waits for the syncer to have synced
// every full segment before it, and syncs the directory if segments were
// made since its last sync: then every record written is durable. Called
// by the writer with wmu held, without mu.
func (l *Log) syncAll() error {
	if err := l.cur.Sync(); err != nil {
		return syncError{err}
	}
	if err := l.awaitRetired(0); err != nil {
		return err
	}
	if l.newEntries {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return syncError{err}
		}
		l.newEntries = false
	}
	return nil
}

// awaitRetired waits until at most n full segments wait for their
// background sync. It fails when the log has failed (a background sync
// failed). Called without mu.
func (l *Log) awaitRetired(n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.retired) > n && l.failed == nil {
		ch := l.synced
		l.mu.Unlock()
		<-ch
		l.mu.Lock()
	}
	if l.failed != nil {
		return syncError{l.failed}
	}
	return nil
}

// syncer syncs the full segments the writer hands over (retireSegment),
// in order, unless nothing was written to one since its last sync. It
// does not move next: the writer's next sync (syncAll) waits for it,
// syncs the directory and publishes the records durable, so that next,
// the durable marks and the trim point move only with the writer's
// syncs. A failed sync makes the
// log fail-stop: the records' buffers went back to their callers when
// they were written. It stops once the writer has stopped and every
// segment handed over is done.
func (l *Log) syncer() {
	defer close(l.syncerDone)
	for range l.retire {
		for {
			l.mu.Lock()
			if len(l.retired) == 0 {
				l.mu.Unlock()
				break
			}
			r, failed := l.retired[0], l.failed
			l.mu.Unlock()
			var err error
			if failed == nil && (r.bytes > 0 || r.cut) {
				err = r.f.Sync()
			}
			r.f.Close()
			l.mu.Lock()
			l.retired[0] = retired{}
			l.retired = l.retired[1:]
			if err != nil {
				l.fail(fmt.Errorf("background sync of a full segment: %w", err))
			} else if failed == nil && r.bytes > 0 {
				l.countSync(r.bytes, r.recs)
			}
			l.progress()
			l.mu.Unlock()
		}
	}
}

// retireSegment starts the segment at first, without a sync, and hands
// the full one before it to the syncer. The new segment's header is
// written, not synced, and its directory entry is not synced either:
// both are durable with the first sync of its records (syncAll). It first
// waits while maxRetired segments wait for their sync. Called by the
// writer with wmu held, without mu.
func (l *Log) retireSegment(first LSN) error {
	if err := l.awaitRetired(maxRetired - 1); err != nil {
		return err
	}
	l.mu.Lock()
	full := l.segs[len(l.segs)-1]
	l.mu.Unlock()
	if full.reused {
		// Its file was a trimmed segment's: the old bytes past its
		// records go, so that Open does not read them as a torn write
		// in a segment before the last. The syncer's sync makes the
		// new size durable with the records.
		if err := l.cur.Truncate(full.size); err != nil {
			return err
		}
	}
	seg, f, err := l.createSegment(first)
	if err != nil {
		return err
	}
	old := l.cur
	l.cur = f
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	l.used.Add(segHeaderSize)
	l.retired = append(l.retired, retired{f: old, bytes: l.unsyncedBytes, recs: l.unsyncedRecs, cut: full.reused})
	l.mu.Unlock()
	l.unsyncedBytes, l.unsyncedRecs = 0, 0
	l.newEntries = true
	select {
	case l.retire <- struct{}{}:
	default:
	}
	return nil
}

// publishSync records that every record written is durable. Called with
// wmu and mu held, after a sync of the last segment.
func (l *Log) publishSync() {
	l.next.Store(l.written.Load())
	l.countSync(l.unsyncedBytes, l.unsyncedRecs)
	l.unsyncedBytes, l.unsyncedRecs = 0, 0
	l.progress()
}

// countSync counts a sync that made recs records of n bytes durable.
// Called with mu held.
func (l *Log) countSync(n, recs int64) {
	l.stats.Syncs++
	l.stats.SyncedBytes += uint64(n)
	l.stats.SyncBytes[syncBucket(n, SyncBytesBound)]++
	l.stats.SyncRecords[syncBucket(recs, SyncRecordsBound)]++
}

// syncError is a failed sync, as opposed to a failed write.
type syncError struct{ error }

func (e syncError) Unwrap() error { return e.error }

// writeBatch writes batch and answers each request. It syncs once per
// segment if a record of the batch is a durable Append's or Sync waits
// for one not yet durable; a batch of buffered records only is written
// without a sync. When a segment is full it goes on in a new one and
// hands the full one to the syncer (retireSegment), having synced it
// first only if it holds a durable Append's record of the batch; a sync
// at the end of the batch also waits for the syncer. If
// the filesystem is full it cuts off
// what it wrote of the failed part and returns the requests not written,
// to be tried again. It holds wmu, and mu only to read and publish state:
// appends queue while it writes and syncs.
//
// Each record carries the log's durable mark when it is written (next:
// every record below it is synced), which is how Open tells a torn
// unsynced tail from corruption.
func (l *Log) writeBatch(batch []*request) []*request {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	failed := l.failed
	seg := l.segs[len(l.segs)-1] // only this goroutine changes the last segment
	syncIt := l.syncWant >= LSN(l.next.Load())
	l.mu.Unlock()
	if failed != nil {
		l.mu.Lock()
		for _, r := range batch {
			l.answer(r, failed)
		}
		l.space.Broadcast()
		l.mu.Unlock()
		return nil
	}
	for _, r := range batch {
		syncIt = syncIt || !r.buffered
	}
	if l.torn {
		if err := l.cutTail(seg.size); err != nil {
			return l.writeFailed(err, batch)
		}
	}
	if seg.size < segHeaderSize {
		if err := l.writeHeader(seg.first); err != nil {
			return l.writeFailed(err, batch)
		}
		seg.size = segHeaderSize
		l.mu.Lock()
		l.segs[len(l.segs)-1].size = seg.size
		l.used.Add(segHeaderSize)
		l.mu.Unlock()
	}
	written := LSN(l.written.Load())
	buf := l.wbuf[:0]
	defer func() {
		if cap(buf) <= maxKeptBuffer {
			l.wbuf = buf[:0]
		}
	}()
	var inBuf []*request // the requests whose records are written or in buf, not published
	var offs []int64     // where each of them starts in the segment
	var pend int64       // bytes of them written past seg.size
	write := func(b []byte) error {
		l.torn = true // until published, a failure may leave part of b
		if _, err := l.cur.WriteAt(b, seg.size+pend); err != nil {
			return err
		}
		pend += int64(len(b))
		return nil
	}
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := write(buf)
		buf = buf[:0]
		return err
	}
	// commit writes what is in buf, syncs if sync says so, and publishes
	// the records written: their callers' buffers go back, a durable
	// Append's caller has its answer once synced.
	commit := func(sync bool) error {
		if err := flush(); err != nil {
			return err
		}
		if sync {
			if err := l.syncAll(); err != nil {
				return err
			}
		}
		l.torn = false
		seg.size += pend
		written += LSN(len(inBuf))
		l.unsyncedBytes += pend
		l.unsyncedRecs += int64(len(inBuf))
		l.mu.Lock()
		l.segs[len(l.segs)-1].size = seg.size
		for _, off := range offs {
			l.segs[len(l.segs)-1].idx.add(off)
		}
		l.used.Add(pend)
		l.written.Store(uint64(written))
		if sync {
			l.publishSync()
		} else {
			l.stats.Unsynced++
			l.progress()
		}
		for _, r := range inBuf {
			l.stats.Appends++
			l.stats.Bytes += uint64(len(r.rec))
			l.answer(r, nil) // a buffered request's caller has had its answer: this releases its reservation
			r.rec = nil
		}
		l.space.Broadcast()
		l.mu.Unlock()
		inBuf, offs, pend = inBuf[:0], offs[:0], 0
		return nil
	}
	durables := 0 // durable Appends in inBuf
	for i, r := range batch {
		size := int64(recHeaderSize + len(r.rec))
		if at := seg.size + pend + int64(len(buf)); at+size > l.opts.SegmentSize && at > segHeaderSize {
			// The full segment is synced in the background while the
			// records go on in the next one. A durable Append's
			// record in it is synced now, before it is published as
			// written: a sync failing on a full filesystem is then
			// waited out, not fail-stop (writeFailed).
			if len(inBuf) > 0 {
				if err := commit(durables > 0); err != nil {
					return l.writeFailed(err, batch[i-len(inBuf):])
				}
				durables = 0
			}
			if err := l.retireSegment(written); err != nil {
				return l.writeFailed(err, batch[i:])
			}
			seg = segment{first: written, size: segHeaderSize}
		}
		if want := written + LSN(len(inBuf)); r.lsn != want {
			// Cannot happen: LSNs are given in queue order.
			return l.writeFailed(fmt.Errorf("uploadbuffer: record queued with LSN %d where %d is next", r.lsn, want), batch[i-len(inBuf):])
		}
		offs = append(offs, seg.size+pend+int64(len(buf)))
		durable := LSN(l.next.Load())
		if len(r.rec) < directWrite {
			buf = appendRecord(buf, r.lsn, durable, r.rec)
		} else {
			// A large record goes to the file from the caller's buffer,
			// not copied into buf first.
			if r.hasCRC {
				buf = appendHeaderCRC(buf, r.lsn, durable, len(r.rec), r.crc)
			} else {
				buf = appendHeader(buf, r.lsn, durable, r.rec)
			}
			if err := flush(); err != nil {
				return l.writeFailed(err, batch[i-len(inBuf):])
			}
			if err := write(r.rec); err != nil {
				return l.writeFailed(err, batch[i-len(inBuf):])
			}
		}
		inBuf = append(inBuf, r)
		if !r.buffered {
			durables++
		}
	}
	if err := commit(syncIt); err != nil {
		return l.writeFailed(err, batch[len(batch)-len(inBuf):])
	}
	l.mu.Lock()
	if l.noSpace != nil {
		l.log.Info("upload buffer writes go on: its filesystem has room again")
		l.noSpace = nil
		l.space.Unblock()
	}
	l.mu.Unlock()
	return nil
}

// appendRecord appends the record of rec with LSN lsn and durable mark
// durable to buf.
func appendRecord(buf []byte, lsn, durable LSN, rec []byte) []byte {
	return append(appendHeader(buf, lsn, durable, rec), rec...)
}

// appendHeader appends the header of the record of rec with LSN lsn and
// durable mark durable to buf.
func appendHeader(buf []byte, lsn, durable LSN, rec []byte) []byte {
	var h [recHeaderSize]byte
	binary.BigEndian.PutUint32(h[0:], uint32(len(rec)))
	binary.BigEndian.PutUint64(h[8:], uint64(lsn))
	binary.BigEndian.PutUint64(h[16:], uint64(durable))
	binary.BigEndian.PutUint32(h[4:], crc32.Update(crc32.Checksum(h[8:], castagnoli), castagnoli, rec))
	return append(buf, h[:]...)
}

// appendHeaderCRC is appendHeader for a record of size bytes whose data's
// CRC-32C is dataCRC: the same bytes, without reading the data.
func appendHeaderCRC(buf []byte, lsn, durable LSN, size int, dataCRC uint32) []byte {
	var h [recHeaderSize]byte
	binary.BigEndian.PutUint32(h[0:], uint32(size))
	binary.BigEndian.PutUint64(h[8:], uint64(lsn))
	binary.BigEndian.PutUint64(h[16:], uint64(durable))
	binary.BigEndian.PutUint32(h[4:], crcCombine(crc32.Checksum(h[8:], castagnoli), dataCRC, size))
	return append(buf, h[:]...)
}

// writeFailed handles a failed write or sync; left are the requests not
// written. A full filesystem (ENOSPC, EDQUOT) is waited out: what was
// written of the failed part is cut off and left is returned to be tried
// again. Any other error makes the log fail-stop. Called by the writer
// with wmu held and mu not held.
//
// A failed sync while records written earlier without one are not yet
// durable is fail-stop even on a full filesystem: after a failed sync the
// kernel may have dropped their pages, and their buffers went back to
// their callers when they were written, so they cannot be written again.
func (l *Log) writeFailed(err error, left []*request) []*request {
	lost := l.lostWritten(err)
	if lost {
		err = fmt.Errorf("%w (records written before it without a sync cannot be written again)", err)
	} else if outOfSpace(err) {
		return l.awaitRoom(err, left)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err = l.fail(err)
	for _, r := range left {
		l.answer(r, err)
	}
	return nil
}

// lostWritten says whether err is a failed sync while records written
// earlier without one were not yet durable. Called with wmu held.
func (l *Log) lostWritten(err error) bool {
	var se syncError
	return errors.As(err, &se) && l.written.Load() != l.next.Load()
}

// awaitRoom handles a full filesystem: what was written of the failed
// part is cut off and left is returned to be tried again. Called by the
// writer with wmu held and mu not held.
func (l *Log) awaitRoom(err error, left []*request) []*request {
	l.dropFree()
	if l.torn || l.written.Load() != l.next.Load() {
		// Also with nothing to cut: the records written without a
		// sync (before a new segment that could not be made) are
		// synced now, not once space returns.
		l.mu.Lock()
		size := l.segs[len(l.segs)-1].size
		l.mu.Unlock()
		if cerr := l.cutTail(size); cerr != nil && (!outOfSpace(cerr) || l.lostWritten(cerr)) {
			return l.writeFailed(cerr, left)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.noSpace == nil {
		l.log.Warn("upload buffer filesystem full: writes wait for space", "dir", l.dir, "err", err)
		l.space.Block(fmt.Sprintf("upload buffer filesystem full (%v): writes wait until uploads or the operator free space", err))
	}
	l.noSpace = err
	return left
}

// outOfSpace reports whether err means the filesystem has no room for the
// write: a state that passes, unlike an I/O error.
func outOfSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// cutTail truncates the last segment to size, the end of its last record
// written, so that bytes of a failed append are never read as records.
// Its sync makes the records written before durable. Called with wmu
// held, not after a failed sync of records written before (writeFailed).
func (l *Log) cutTail(size int64) error {
	if err := l.cur.Truncate(size); err != nil {
		return err
	}
	if err := l.syncAll(); err != nil {
		return err
	}
	l.torn = false
	if l.written.Load() != l.next.Load() {
		l.mu.Lock()
		l.publishSync()
		l.space.Broadcast()
		l.mu.Unlock()
	}
	return nil
}

// awaitSpace waits, without the locks, until space may have returned: Trim
// freed some, delay passed (an operator may have freed some), or a caller
// gave up. It returns the requests to try again, having answered those
// whose ctx ended (their records were cut off, so they will not land) and,
// after Close, all of them.
//
// A record that is dropped frees its LSN: the records queued after it
// move down by one, for LSNs follow each other without gaps on disk. The
// LSN of a buffered record was returned to its caller and cannot move: a
// cancelled Append queued before one is still written, and its caller
// is told its ctx ended and that the record may land.
func (l *Log) awaitSpace(pending []*request, delay time.Duration) []*request {
	stops := make([]func() bool, len(pending))
	for i, r := range pending {
		stops[i] = context.AfterFunc(r.ctx, l.kickRetry)
	}
	t := time.NewTimer(delay)
	select {
	case <-l.retry:
	case <-t.C:
	case <-l.stop:
	}
	t.Stop()
	for _, stop := range stops {
		stop()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.space.Broadcast()
	if l.closed {
		// Nothing queued after these is written either: it would leave a
		// gap where they were.
		for _, r := range append(pending, l.queue...) {
			l.answer(r, fmt.Errorf("%w while waiting for space on its filesystem", ErrClosed))
		}
		l.queue, l.inflight = nil, nil
		l.progress()
		return nil
	}
	all := append(append([]*request(nil), pending...), l.queue...)
	bufferedAfter := make([]bool, len(all)) // a buffered record comes after all[i]
	for i := len(all) - 2; i >= 0; i-- {
		bufferedAfter[i] = bufferedAfter[i+1] || all[i+1].buffered
	}
	var shift LSN
	left := pending[:0]
	for i, r := range all {
		if i < len(pending) && r.ctx.Err() != nil {
			err := fmt.Errorf("uploadbuffer: waiting for space on its filesystem: %w", r.ctx.Err())
			if !bufferedAfter[i] {
				l.answer(r, err)
				shift++
				continue
			}
			l.reply(r, fmt.Errorf("%w (the record may still be written: a buffered record after it holds its LSN)", err))
		}
		if shift > 0 {
			r.lsn -= shift
		}
		if i < len(pending) {
			left = append(left, r)
		}
	}
	l.assigned -= shift
	if shift > 0 {
		l.progress()
	}
	l.inflight = left // the dropped are not read back: their LSNs went to others
	if len(left) == 0 && len(l.queue) == 0 && l.noSpace != nil {
		// No one is left to find out when space returns: the next
		// append tries, and waits again if there is still none.
		l.noSpace = nil
		l.space.Unblock()
	}
	return left
}

// kickRetry wakes a writer waiting for space to try again.
func (l *Log) kickRetry() {
	select {
	case l.retry <- struct{}{}:
	default:
	}
}

// fail makes the log fail-stop: after a failed write or fsync the state of
// the file is unknown, so nothing more is appended until it is reopened.
// Called with l.mu held.
func (l *Log) fail(err error) error {
	if l.failed == nil {
		l.failed = fmt.Errorf("uploadbuffer: write failed, the buffer refuses writes until gatewayd restarts: %w", err)
	}
	l.space.Fail(l.failed.Error())
	l.progress()
	return l.failed
}

// Trim declares the records below upTo no longer needed and deletes the
// segments that hold only such records. It writes and syncs the trim file
// and removes segments without holding the log's lock: appends go on.
func (l *Log) Trim(upTo LSN) error {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	l.mu.Lock()
	upTo = min(upTo, LSN(l.next.Load()))
	if upTo <= l.trimmed {
		l.mu.Unlock()
		return nil
	}
	l.stats.Trims++
	l.stats.TrimmedRecords += uint64(upTo - l.trimmed)
	l.trimmed = upTo
	l.mu.Unlock()
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(upTo))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	trimErr := l.writeTrim(b[:])
	if trimErr != nil {
		l.log.Warn("persist trim point", "err", trimErr) // costs replay time only
	}
	freed := false
	var kept []string // trimmed segment files renamed to be reused
	// A segment is done when the next one starts at or below the trim
	// point. Only Trim removes segments, and never the last one, which
	// the writer appends to.
	for {
		l.mu.Lock()
		if len(l.segs) < 2 || l.segs[1].first > upTo {
			l.mu.Unlock()
			break
		}
		first := l.segs[0]
		keep := l.noSpace == nil && l.used.Load()+l.freeBytes+int64(len(kept)+1)*l.opts.SegmentSize <= l.opts.Capacity
		l.mu.Unlock()
		var free string
		if keep {
			free = l.freeName()
			if err := l.fs.Rename(first.path, free); err != nil {
				l.keepFree(kept)
				return fmt.Errorf("uploadbuffer: keep trimmed segment: %w", err)
			}
		} else if err := l.fs.Remove(first.path); err != nil {
			return fmt.Errorf("uploadbuffer: remove segment: %w", err)
		}
		l.mu.Lock()
		l.segs = l.segs[1:]
		l.used.Add(-first.size)
		first.idx.retire()
		if keep && first.idx.refs.Load() > 0 {
			// A read of it is still under way (it found the record
			// before the trim): the file is not written over.
			keep = false
		}
		l.mu.Unlock()
		if free != "" && !keep {
			l.fs.Remove(free)
		} else if keep {
			kept = append(kept, free)
		}
		freed = true
	}
	l.keepFree(kept)
	l.mu.Lock()
	full := l.noSpace != nil
	l.mu.Unlock()
	if full {
		// The writer waits for space. If every record is trimmed but the
		// segment being appended to still holds them, emptying it is
		// the only way to free its space on a full filesystem.
		l.wmu.Lock()
		l.mu.Lock()
		if l.noSpace != nil && upTo == LSN(l.next.Load()) && l.written.Load() == l.next.Load() && l.segs[0].size > segHeaderSize {
			if err := l.restartSegment(); err != nil {
				l.mu.Unlock()
				l.wmu.Unlock()
				return err
			}
			freed = true
			if trimErr != nil {
				if err := l.writeTrim(b[:]); err != nil {
					l.log.Warn("persist trim point", "err", err)
				}
			}
		}
		l.mu.Unlock()
		l.wmu.Unlock()
	}
	l.mu.Lock()
	if freed && l.noSpace != nil {
		l.kickRetry()
	}
	l.space.Broadcast()
	l.mu.Unlock()
	return nil
}

// restartSegment empties the last (and only) segment, all of whose records
// are trimmed, and makes it start at the next LSN. The truncation is
// durable before the rename, so a crash leaves either the old name (Open
// starts at the trim point) or the new one, empty or with its header.
// Called with wmu and mu held (the writer is waiting for space).
func (l *Log) restartSegment() error {
	seg := &l.segs[len(l.segs)-1]
	if err := l.cur.Truncate(0); err != nil {
		return fmt.Errorf("uploadbuffer: empty trimmed segment: %w", err)
	}
	l.used.Add(-seg.size)
	seg.size = 0
	seg.reused = false
	l.torn = false
	next := LSN(l.next.Load())
	path := filepath.Join(l.dir, segName(next))
	if err := l.cur.Sync(); err != nil {
		return l.fail(err)
	}
	if err := l.fs.Rename(seg.path, path); err != nil {
		return l.fail(err)
	}
	seg.first, seg.path = next, path
	seg.idx.retire() // every record it had is trimmed
	seg.idx = &segIndex{}
	if err := l.fs.SyncDir(l.dir); err != nil {
		l.log.Warn("sync upload buffer directory", "err", err) // the old name is safe too
	}
	if err := l.writeHeader(next); err != nil {
		if !outOfSpace(err) {
			return l.fail(err)
		}
	} else {
		seg.size = segHeaderSize
		l.used.Add(segHeaderSize)
	}
	l.log.Info("emptied the upload buffer's trimmed segment to free its filesystem", "segment", path)
	return nil
}

// writeHeader writes the header of a last segment that has none yet (a
// segment restarted by Trim); the caller records its size. Called with
// wmu held.
func (l *Log) writeHeader(first LSN) error {
	l.torn = true
	if _, err := l.cur.WriteAt(segmentHeader(first), 0); err != nil {
		return err
	}
	if err := l.cur.Sync(); err != nil {
		return err
	}
	l.torn = false
	return nil
}

func (l *Log) writeTrim(b []byte) error {
	tmp := filepath.Join(l.dir, trimFile+".tmp")
	f, err := l.fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		l.fs.Remove(tmp) // give back its space (the filesystem may be full)
		return err
	}
	return l.fs.Rename(tmp, filepath.Join(l.dir, trimFile))
}

// Used is how many bytes of log are on disk. It takes no lock.
func (l *Log) Used() int64 { return l.used.Load() }

// Capacity is the configured size of the log.
func (l *Log) Capacity() int64 { return l.opts.Capacity }

// NextLSN is the LSN after the last synced record: every record below it
// is durable, and every record appended from now on gets an LSN at or
// above it. It takes no lock.
func (l *Log) NextLSN() LSN { return LSN(l.next.Load()) }

// WrittenLSN is the LSN after the last record written to its segment,
// synced or not: the log no longer reads the buffers of the records below
// it. It takes no lock.
func (l *Log) WrittenLSN() LSN { return LSN(l.written.Load()) }

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Waits = l.space.Total()
	st.Yields = l.yields.Load()
	return st
}

// Close stops the writer after the queued records are written; records
// waiting for space on a full filesystem fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.space.Broadcast()
	l.mu.Unlock()
	close(l.stop)
	close(l.wake)
	<-l.done
	l.mu.Lock()
	for _, seg := range l.segs {
		seg.idx.retire()
	}
	last, failed := l.segs[len(l.segs)-1], l.failed
	l.mu.Unlock()
	if last.reused && failed == nil {
		// The old bytes past its records go (recycle.go); Open would
		// cut them too, as a torn write.
		if err := l.cur.Truncate(last.size); err != nil {
			l.cur.Close()
			return fmt.Errorf("uploadbuffer: %w", err)
		}
	}
	return l.cur.Close()
}
