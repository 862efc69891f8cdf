package tapes

import (
	"sync"

	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Buffers a tape write reuses instead of allocating (and zeroing) one the
// size of a record or a segment for each: at 1 MiB records that is a
// megabyte a record for the log record and 16 MiB a segment. The free
// ones are dropped on every uploader tick (release), so an idle library
// keeps none.

// maxKeptLogBufs bounds the bytes of log record buffers kept for reuse
// (handed to the log and free ones together); past it a buffer is left to
// the collector.
const maxKeptLogBufs = 32 << 20

// logBufs recycles the buffers log records are encoded into. The log
// keeps a record's buffer until the record is written (AppendBuffered):
// a buffer goes back to use once the log's written LSN has passed its
// record's (written, perhaps not synced: a buffered record has no sync of
// its own).
type logBufs struct {
	log *uploadbuffer.Log

	mu    sync.Mutex
	held  []heldBuf // handed to the log, in LSN order
	free  [][]byte
	bytes int // cap of held and free together
}

type heldBuf struct {
	lsn uploadbuffer.LSN
	buf []byte
}

// get returns an empty buffer with room for n bytes.
func (p *logBufs) get(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	written := p.log.WrittenLSN()
	i := 0
	for ; i < len(p.held) && p.held[i].lsn < written; i++ {
		p.free = append(p.free, p.held[i].buf)
	}
	if i > 0 {
		p.held = append(p.held[:0], p.held[i:]...)
	}
	for len(p.free) > 0 {
		b := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		if cap(b) >= n {
			p.bytes -= cap(b)
			return b[:0]
		}
		p.bytes -= cap(b) // too small for this record: dropped
	}
	return make([]byte, 0, n)
}

// release drops the free buffers (those still held by the log stay).
func (p *logBufs) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.free {
		p.bytes -= cap(b)
	}
	p.free = nil
}

// put hands b back once the log holds it as the record of lsn (or, for a
// record already written, at once).
func (p *logBufs) put(lsn uploadbuffer.LSN, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+cap(b) > maxKeptLogBufs {
		return
	}
	p.bytes += cap(b)
	p.held = append(p.held, heldBuf{lsn, b})
}

// maxKeptSegBufs is how many segment buffers are kept for reuse.
const maxKeptSegBufs = 3

// segBufs recycles the buffers of segments once they are in the store.
type segBufs struct {
	mu   sync.Mutex
	free [][]byte
}

// get returns an empty buffer with room for n bytes.
func (p *segBufs) get(n int) []byte {
	p.mu.Lock()
	for len(p.free) > 0 {
		b := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		if cap(b) >= n {
			p.mu.Unlock()
			return b[:0]
		}
	}
	p.mu.Unlock()
	return make([]byte, 0, n)
}

// release drops the free buffers.
func (p *segBufs) release() {
	p.mu.Lock()
	p.free = nil
	p.mu.Unlock()
}

// put keeps b for a later segment; nothing may use it any more.
func (p *segBufs) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	p.mu.Lock()
	if len(p.free) < maxKeptSegBufs {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}
