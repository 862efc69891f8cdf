package tapes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gatewayd/gatewayd/errkind"
)

// Tape is an open tape: the medium a drive reads and writes (it
// implements frontends/vtl's Medium). Handles of one tape share its state.
type Tape struct {
	t        *tape
	closed   atomic.Bool
	buffered atomic.Bool
}

var errLibraryClosed = errkind.Mark(errkind.Permanent, errors.New("tapes: library is closed"))

var errClosed = errkind.Mark(errkind.Permanent, errors.New("tapes: tape handle is closed"))

// Open implements Shelf: the medium of a tape in the library (in a slot or
// a drive; an archived tape must be retrieved first).
func (l *Library) Open(ctx context.Context, barcode string) (*Tape, error) {
	if l.closed.Load() {
		return nil, errLibraryClosed
	}
	for {
		t, err := l.load(ctx, barcode)
		if err != nil {
			return nil, err
		}
		// Registered under l.mu, so release cannot drop the tape's
		// state between load and here and leave two of it.
		l.mu.Lock()
		t.mu.Lock()
		current, gone := l.tapes[barcode] == t, t.gone
		if current && gone == nil {
			t.users++
		}
		t.mu.Unlock()
		if !current || gone == nil {
			l.mu.Unlock()
			if current {
				return &Tape{t: t}, nil
			}
			continue
		}
		// Deleted or archived: load again, which reports it.
		delete(l.tapes, barcode)
		l.mu.Unlock()
	}
}

func (h *Tape) check() error {
	if h.closed.Load() {
		return errClosed
	}
	return nil
}

// Barcode is the tape's barcode.
func (h *Tape) Barcode() string { return h.t.barcode }

// ReadOnly is true for a tape retrieved from the archive.
func (h *Tape) ReadOnly() bool {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	return h.t.readOnly
}

// WORM is true for a write-once tape: writes append; nothing written is
// overwritten or erased (ErrWORMOverwrite).
func (h *Tape) WORM() bool { return h.t.worm }

// Capacity is the tape's size in bytes.
func (h *Tape) Capacity() int64 { return h.t.capacity }

// EarlyWarning is how many bytes before Capacity writes report early
// warning.
func (h *Tape) EarlyWarning() int64 { return min(h.t.lib.opts.EarlyWarning, h.t.capacity/4) }

// Used is the bytes stored up to end-of-data (compressed sizes).
func (h *Tape) Used() int64 {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	return h.t.used
}

// EOD is the number of objects on the tape.
func (h *Tape) EOD() uint64 {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	return h.t.eod
}

// Stat describes object i.
func (h *Tape) Stat(ctx context.Context, i uint64) (Object, error) {
	if err := h.check(); err != nil {
		return Object{}, err
	}
	t := h.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone != nil {
		return Object{}, t.gone
	}
	if i >= t.eod {
		return Object{}, errkind.Mark(errkind.Permanent, fmt.Errorf("tape %s: object %d at or beyond end-of-data %d", t.barcode, i, t.eod))
	}
	e, err := t.entry(ctx, i)
	if err != nil {
		return Object{}, err
	}
	return Object{Filemark: e.filemark(), Size: int(e.size)}, nil
}

// ReadRecord copies record i into p and returns its full length.
func (h *Tape) ReadRecord(ctx context.Context, i uint64, p []byte) (int, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	return h.t.record(ctx, i, p)
}

// NextFilemark returns the first filemark at or after from.
func (h *Tape) NextFilemark(ctx context.Context, from uint64) (uint64, bool, error) {
	if err := h.check(); err != nil {
		return 0, false, err
	}
	return h.t.nextFilemark(ctx, from)
}

// PrevFilemark returns the last filemark before before.
func (h *Tape) PrevFilemark(ctx context.Context, before uint64) (uint64, bool, error) {
	if err := h.check(); err != nil {
		return 0, false, err
	}
	return h.t.prevFilemark(ctx, before)
}

// SetBuffered chooses when the writes of this handle are durable. Off
// (the default): each write (WriteRecord, WriteFilemarks, Erase) is
// durable in the upload buffer when it returns. On: a write returns once
// it is applied, readable through every handle, without going to the
// upload buffer; it is durable once an index in the store holds it (the
// segment it filled went up), once Sync returns, once a later write to
// the tape made without buffering returns, or once Close returns. A crash
// loses at most the last buffered writes, never one before a write that
// is kept: after a restart the tape ends at its last durable write, as if
// the later ones had never been made.
func (h *Tape) SetBuffered(on bool) { h.buffered.Store(on) }

// Sync makes every write made before it durable (buffered ones too, and
// those of the other tapes of the library): it logs the buffered writes
// no stored index holds yet and syncs the upload buffer.
func (h *Tape) Sync(ctx context.Context) error {
	if err := h.check(); err != nil {
		return err
	}
	if err := h.t.lib.logBuffered(ctx); err != nil {
		return fmt.Errorf("tape %s: %w", h.t.barcode, err)
	}
	return nil
}

// WriteRecord makes data object at and end-of-data at+1; compress stores
// it zstd-compressed when that is smaller. It is durable when it returns,
// or once Sync returns when the handle is buffered (SetBuffered).
func (h *Tape) WriteRecord(ctx context.Context, at uint64, data []byte, compress bool) error {
	if err := h.check(); err != nil {
		return err
	}
	if len(data) == 0 || len(data) > MaxRecord {
		return fmt.Errorf("%w: record of %d bytes (1 to %d)", ErrBadInput, len(data), MaxRecord)
	}
	o := logOp{op: opRecord, barcode: h.t.barcode, at: at, size: uint32(len(data)), payload: data}
	if compress && h.t.lib.mayCompress(data) {
		// The compressed copy is needed only until the write returns:
		// the log record and the segment hold copies of it.
		bp := zbufs.Get().(*[]byte)
		defer zbufs.Put(bp)
		c := h.t.lib.enc.EncodeAll(data, (*bp)[:0])
		if cap(c) > cap(*bp) {
			*bp = c[:0]
		}
		if len(c) < len(data) {
			o.payload, o.flags = c, entZstd
		}
	}
	return h.t.write(ctx, o, h.buffered.Load())
}

// Compression sample: a record larger than three windows is compressed
// only when its windows at the start, the middle and the end, compressed
// together, come out smaller by at least a twentieth.
const sampleWindow = 4 << 10

// mayCompress says whether compressing data may pay: a record whose
// samples do not compress (encrypted, compressed or random data) is
// stored as it is without the cost of compressing it whole. A drive's
// own compression (SLDC, with a 1 KiB history) sees no further.
func (l *Library) mayCompress(data []byte) bool {
	if len(data) <= 3*sampleWindow {
		return true
	}
	var sample [3 * sampleWindow]byte
	mid := len(data)/2 - sampleWindow/2
	copy(sample[:], data[:sampleWindow])
	copy(sample[sampleWindow:], data[mid:mid+sampleWindow])
	copy(sample[2*sampleWindow:], data[len(data)-sampleWindow:])
	bp := zbufs.Get().(*[]byte)
	defer zbufs.Put(bp)
	c := l.enc.EncodeAll(sample[:], (*bp)[:0])
	if cap(c) > cap(*bp) {
		*bp = c[:0]
	}
	return len(c) < len(sample)-len(sample)/20
}

// zbufs are the buffers records are compressed into.
var zbufs = sync.Pool{New: func() any { return new([]byte) }}

// WriteFilemarks writes n filemarks at at (n == 0 only truncates).
func (h *Tape) WriteFilemarks(ctx context.Context, at uint64, n int) error {
	if err := h.check(); err != nil {
		return err
	}
	if n < 0 || n > 1<<20 {
		return fmt.Errorf("%w: %d filemarks", ErrBadInput, n)
	}
	op := byte(opFilemarks)
	if n == 0 {
		op = opErase
	}
	return h.t.write(ctx, logOp{op: op, barcode: h.t.barcode, at: at, size: uint32(n)}, h.buffered.Load())
}

// Erase makes at end-of-data.
func (h *Tape) Erase(ctx context.Context, at uint64) error {
	if err := h.check(); err != nil {
		return err
	}
	return h.t.write(ctx, logOp{op: opErase, barcode: h.t.barcode, at: at}, h.buffered.Load())
}

// Close uploads the tape's data and index, which makes every write
// durable (buffered ones too), and releases the handle. When the upload
// fails, the writes are still made durable in the upload buffer, and the
// error says why the upload failed.
func (h *Tape) Close(ctx context.Context) error {
	if h.closed.Swap(true) {
		return nil
	}
	t := h.t
	err := t.flush(ctx, true)
	if err != nil {
		// What the upload failed to store goes to the log, durable there.
		t.wmu.Lock()
		serr := t.logUnlogged(ctx)
		t.wmu.Unlock()
		if serr == nil {
			serr = t.lib.j.Sync(ctx)
		}
		if serr != nil {
			err = fmt.Errorf("%w (and the upload buffer: %v)", err, serr)
		}
	}
	t.mu.Lock()
	t.users--
	t.mu.Unlock()
	if err == nil {
		t.lib.release(t)
	}
	return err
}
