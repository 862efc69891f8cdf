package cache

import (
	"fmt"
	"sort"

	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// RecordReader reads back part of a log record's payload: the upload
// buffer (uploadbuffer.Log) is one.
type RecordReader interface {
	ReadRecord(lsn uploadbuffer.LSN, p []byte, off int64) error
}

// RecordCopier is a RecordReader that can also copy a record's bytes into
// a file without reading them into memory (uploadbuffer.Log does, inside
// the kernel). ok false says it could not: the bytes are then read.
type RecordCopier interface {
	CopyRecord(lsn uploadbuffer.LSN, dst vfs.File, dstOff, off, n int64) (ok bool, err error)
}

// Source says where the bytes of a write are durable already: bytes
// [Off, Off+len(p)) of the payload of record LSN, which R reads back.
type Source struct {
	R   RecordReader
	LSN uploadbuffer.LSN
	Off int64
}

// maxSpans bounds an entry's overlay: past it, the spans are written into
// the chunk file (as MarkClean does), so the overlay's memory stays within
// a few KiB per dirty chunk whatever the writes' sizes.
const maxSpans = 256

// span is a range [off, end) of a chunk whose bytes are in a log record:
// src.Off is where byte off is in the record's payload.
type span struct {
	off, end int64
	src      Source
}

// spans is an entry's overlay: sorted, not overlapping (they may touch).
type spans []span

// add returns x with [off, end) from src on top of what it held there.
func (x spans) add(off, end int64, src Source) spans {
	if off >= end {
		return x
	}
	x = x.cut(off, end)
	i := sort.Search(len(x), func(i int) bool { return x[i].off >= end })
	x = append(x, span{})
	copy(x[i+1:], x[i:])
	x[i] = span{off, end, src}
	return x
}

// cut returns x without [off, end): newer bytes replace it.
func (x spans) cut(off, end int64) spans {
	i := sort.Search(len(x), func(i int) bool { return x[i].end > off })
	j := i
	for j < len(x) && x[j].off < end {
		j++
	}
	if i == j {
		return x
	}
	var keep [2]span // what is left of the first and the last span cut
	n := 0
	if a := x[i]; a.off < off {
		keep[n] = span{a.off, off, a.src}
		n++
	}
	if b := x[j-1]; b.end > end {
		b.src.Off += end - b.off
		b.off = end
		keep[n] = b
		n++
	}
	if n > j-i { // one span split in two around [off, end)
		x = append(x, span{})
		copy(x[j+1:], x[j:])
		x[i], x[i+1] = keep[0], keep[1]
		return x
	}
	tail := len(x) - j
	copy(x[i:], keep[:n])
	copy(x[i+n:], x[j:])
	return x[:i+n+tail]
}

// covers reports whether x holds every byte of [off, end).
func (x spans) covers(off, end int64) bool {
	i := sort.Search(len(x), func(i int) bool { return x[i].end > off })
	at := off
	for ; i < len(x) && at < end && x[i].off <= at; i++ {
		at = x[i].end
	}
	return at >= end
}

// read copies what x holds of [off, off+len(p)) into p from the records.
func (x spans) read(p []byte, off int64) error {
	end := off + int64(len(p))
	for i := sort.Search(len(x), func(i int) bool { return x[i].end > off }); i < len(x) && x[i].off < end; i++ {
		s := x[i]
		a, b := max(s.off, off), min(s.end, end)
		if err := s.src.R.ReadRecord(s.src.LSN, p[a-off:b-off], s.src.Off+a-s.off); err != nil {
			return fmt.Errorf("cache: read written bytes back from the upload buffer: %w", err)
		}
	}
	return nil
}

// copyTo copies x's bytes from the records into f at their offsets when
// every record's reader can copy into a file (RecordCopier): the chunk's
// second local copy made by the kernel, with no pass through memory (on a
// 2-core machine the copy through memory was half of the CPU of an upload
// of a large file just written). false: x is to be read and written.
func (x spans) copyTo(f vfs.File) (bool, error) {
	for _, s := range x {
		if _, ok := s.src.R.(RecordCopier); !ok {
			return false, nil
		}
	}
	for _, s := range x {
		ok, err := s.src.R.(RecordCopier).CopyRecord(s.src.LSN, f, s.off, s.src.Off, s.end-s.off)
		if err != nil {
			return false, fmt.Errorf("cache: copy written bytes from the upload buffer: %w", err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// readEntry copies [off, off+len(p)) of e's content into p: the chunk
// file (zeroes where there is none) under the overlay. Called with e.mu
// held.
func (c *Cache) readEntry(e *entry, p []byte, off int64) error {
	if !e.spans.covers(off, off+int64(len(p))) {
		if !e.file {
			clear(p)
		} else {
			h, err := c.files.acquire(e)
			if err != nil {
				return fmt.Errorf("cache: %w", err)
			}
			_, err = h.f.ReadAt(p, off)
			c.files.release(h)
			if err != nil {
				return fmt.Errorf("cache: read chunk: %w", err)
			}
		}
	}
	return e.spans.read(p, off)
}

// materialize writes e's overlay into its file, each run of touching spans
// with one write, and empties the overlay: the one deferred write of bytes
// that stayed in the log, overwritten ones not at all. Called with e.mu
// held (write).
func (c *Cache) materialize(e *entry) error {
	if len(e.spans) == 0 {
		return nil
	}
	h, err := c.ensureFile(e)
	if err != nil {
		return err
	}
	defer c.files.release(h)
	var buf []byte
	for i := 0; i < len(e.spans); {
		j := i + 1
		for j < len(e.spans) && e.spans[j].off == e.spans[j-1].end {
			j++
		}
		copied, err := e.spans[i:j].copyTo(h.f)
		if err != nil {
			return err
		}
		if copied {
			c.materialized.Add(uint64(e.spans[j-1].end - e.spans[i].off))
			i = j
			continue
		}
		off, end := e.spans[i].off, e.spans[j-1].end
		if int64(cap(buf)) < end-off {
			buf = make([]byte, end-off)
		}
		run := buf[:end-off]
		if err := e.spans[i:j].read(run, off); err != nil {
			return err
		}
		if _, err := h.f.WriteAt(run, off); err != nil {
			return fmt.Errorf("cache: write chunk: %w", err)
		}
		c.materialized.Add(uint64(len(run)))
		i = j
	}
	e.spans = nil
	return nil
}

// ensureFile returns a handle on e's file, making the file (e.size bytes,
// zeroes) if e has none yet. Called with e.mu held (write).
func (c *Cache) ensureFile(e *entry) (*handle, error) {
	if !e.file {
		if err := c.fs.MkdirAll(c.volumeDir(e.key.Volume), 0o700); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	h, err := c.files.acquire(e)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if !e.file {
		// Anything at the path is not e's: e has had no file.
		err := h.f.Truncate(0)
		if err == nil {
			err = h.f.Truncate(e.size)
		}
		if err != nil {
			c.files.release(h)
			return nil, fmt.Errorf("cache: write chunk: %w", err)
		}
		e.file = true
	}
	return h, nil
}
