package uploadbuffer

import (
	"fmt"
	"path/filepath"

	"github.com/gatewayd/gatewayd/vfs"
)

// Reusing trimmed segment files.
//
// A write into a new file costs the filesystem a page and a block
// allocation for every page; a write over a file's existing blocks, whose
// pages are often still in the page cache, is a copy (a sequential write
// of 1 GiB measured 240-540 MB/s into a new file and 2.4-3.4 GB/s over
// the same file's blocks). So Trim keeps the files of trimmed segments,
// within the log's capacity, and the writer writes the next segments over
// them instead of making new files.
//
// A kept file is renamed to a name ending in freeSuffix, the rename made
// durable (a sync of the directory), and then its header zeroed and
// synced, all in Trim: a crash then leaves it either at its segment name
// with its records intact (a segment below the trim point, as when a
// removal is lost) or at its free name, which Open removes. A new segment
// renames a free file to the segment's name and writes its header over
// the zeroed one, without a sync, as it writes a new file's: after a crash
// before the segment's first sync its header is zeroed or new, and the
// old segment's records behind it have LSNs below the segment's first, so
// they are never taken for its records. Those old bytes past the last
// record written are cut before the segment is handed to the syncer
// (retireSegment) and at Close; Open cuts them in the last segment after
// a crash, as it cuts a torn write.

// freeSuffix ends the name of a trimmed segment file kept for reuse.
const freeSuffix = ".free"

// freeFile is a kept segment file and its bytes on disk.
type freeFile struct {
	path string
	size int64
}

// freeName names the next kept file. Called with trimMu held.
func (l *Log) freeName() string {
	l.freeSeq++
	return filepath.Join(l.dir, fmt.Sprintf("%016x%s", l.freeSeq, freeSuffix))
}

// keepFree makes the renames of paths durable, zeroes and syncs each
// file's header and adds the files to the free ones. A file that fails
// any step is removed. Called by Trim.
func (l *Log) keepFree(paths []string) {
	if len(paths) == 0 {
		return
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		for _, p := range paths {
			l.fs.Remove(p)
		}
		return
	}
	for _, p := range paths {
		size, err := zeroHeader(l, p)
		l.mu.Lock()
		keep := err == nil && l.noSpace == nil && !l.closed
		if keep {
			l.free = append(l.free, freeFile{p, size})
			l.freeBytes += size
		}
		l.mu.Unlock()
		if !keep {
			l.fs.Remove(p)
		}
	}
}

// zeroHeader zeroes the segment header of the file at path and syncs it;
// it returns the file's size.
func zeroHeader(l *Log, path string) (int64, error) {
	f, err := l.fs.OpenReadWrite(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, segHeaderSize), 0); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// reuseSegment renames a free file to path and writes the header of a
// segment starting at first over its zeroed one, not synced, and returns
// it open; nil when there is no free file or a step failed (the caller
// then creates the file, which empties one left at path). Called by the
// writer (or Open) with wmu held.
func (l *Log) reuseSegment(path string, first LSN) vfs.File {
	l.mu.Lock()
	if len(l.free) == 0 {
		l.mu.Unlock()
		return nil
	}
	ff := l.free[len(l.free)-1]
	l.free = l.free[:len(l.free)-1]
	l.freeBytes -= ff.size
	l.mu.Unlock()
	if err := l.fs.Rename(ff.path, path); err != nil {
		l.fs.Remove(ff.path)
		return nil
	}
	f, err := l.fs.OpenReadWrite(path)
	if err != nil {
		return nil
	}
	if _, err := f.WriteAt(segmentHeader(first), 0); err != nil {
		f.Close()
		return nil
	}
	return f
}

// dropFree removes the free files: their space is the filesystem's again
// (it is full). Called without mu.
func (l *Log) dropFree() {
	l.mu.Lock()
	free := l.free
	l.free, l.freeBytes = nil, 0
	l.mu.Unlock()
	for _, ff := range free {
		l.fs.Remove(ff.path)
	}
}
