// Package vtltest has in-memory twins of the tape library's seams,
// vtl.Medium and vtl.Shelf, for tests of the tape devices and of anything
// built on them. They keep the contracts of the interfaces strictly (a
// write past capacity writes nothing, a tape leaves a drive only once its
// medium is closed, a tape moved to an import/export element is archived)
// so that a device breaking a contract fails its test.
package vtltest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/tapes"
)

// ErrClosed is returned by a medium used after Close.
var ErrClosed = errors.New("vtltest: medium is closed")

type object struct {
	filemark bool
	data     []byte
	stored   int64 // bytes it takes on the tape
}

// Tape is one in-memory tape; its Medium methods implement vtl.Medium.
type Tape struct {
	mu       sync.Mutex
	barcode  string
	readOnly bool
	worm     bool
	capacity int64
	ew       int64
	objs     []object
	open     bool
	fail     error
	// Compressed counts the writes that asked for compression.
	compressed int
	// buffered: writes are durable at the next Sync; durable is what a
	// crash keeps.
	buffered bool
	durable  []object
	syncs    int
}

// TapeOptions describe a new tape.
type TapeOptions struct {
	ReadOnly bool
	// WORM: writes append; overwriting a record, or the first
	// filemark, fails with tapes.ErrWORMOverwrite (as package tapes).
	WORM bool
	// Capacity defaults to 1 GiB, EarlyWarning to 1/64 of it.
	Capacity, EarlyWarning int64
}

// NewTape returns an empty tape.
func NewTape(barcode string, o TapeOptions) *Tape {
	if o.Capacity <= 0 {
		o.Capacity = 1 << 30
	}
	if o.EarlyWarning <= 0 {
		o.EarlyWarning = o.Capacity / 64
	}
	return &Tape{barcode: barcode, readOnly: o.ReadOnly, worm: o.WORM, capacity: o.Capacity, ew: o.EarlyWarning}
}

var _ vtl.Medium = (*Tape)(nil)

// Fail makes every later medium operation return err (nil: heal).
func (t *Tape) Fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fail = err
}

// Compressed reports how many records were written with compression asked for.
func (t *Tape) Compressed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.compressed
}

// Crash drops the writes that are not durable yet (buffered since the
// last Sync), as a power loss would.
func (t *Tape) Crash() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.objs = append([]object(nil), t.durable...)
}

// Syncs counts the calls of Sync.
func (t *Tape) Syncs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.syncs
}

// Buffered reports whether the medium's writes are buffered.
func (t *Tape) Buffered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buffered
}

// Open reports whether a drive holds the medium open.
func (t *Tape) Open() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}

// Objects describes the tape's contents: "R<size>" per record, "F" per
// filemark.
func (t *Tape) Objects() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, o := range t.objs {
		if o.filemark {
			out = append(out, "F")
		} else {
			out = append(out, fmt.Sprintf("R%d", len(o.data)))
		}
	}
	return out
}

func (t *Tape) Barcode() string     { return t.barcode }
func (t *Tape) ReadOnly() bool      { return t.readOnly }
func (t *Tape) WORM() bool          { return t.worm }
func (t *Tape) Capacity() int64     { return t.capacity }
func (t *Tape) EarlyWarning() int64 { return t.ew }

func (t *Tape) Used() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.usedTo(len(t.objs))
}

func (t *Tape) usedTo(n int) int64 {
	var u int64
	for _, o := range t.objs[:n] {
		u += o.stored
	}
	return u
}

func (t *Tape) EOD() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uint64(len(t.objs))
}

// usable checks the medium may be used; callers hold t.mu.
func (t *Tape) usable() error {
	if !t.open {
		return ErrClosed
	}
	return t.fail
}

func (t *Tape) Stat(_ context.Context, i uint64) (tapes.Object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return tapes.Object{}, err
	}
	if i >= uint64(len(t.objs)) {
		return tapes.Object{}, fmt.Errorf("vtltest: object %d at or past end-of-data %d", i, len(t.objs))
	}
	o := t.objs[i]
	return tapes.Object{Filemark: o.filemark, Size: len(o.data)}, nil
}

func (t *Tape) ReadRecord(_ context.Context, i uint64, p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return 0, err
	}
	if i >= uint64(len(t.objs)) {
		return 0, fmt.Errorf("vtltest: read of object %d at or past end-of-data %d", i, len(t.objs))
	}
	o := t.objs[i]
	if o.filemark {
		return 0, fmt.Errorf("vtltest: object %d is a filemark", i)
	}
	copy(p, o.data)
	return len(o.data), nil
}

func (t *Tape) NextFilemark(_ context.Context, from uint64) (uint64, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return 0, false, err
	}
	for i := from; i < uint64(len(t.objs)); i++ {
		if t.objs[i].filemark {
			return i, true, nil
		}
	}
	return 0, false, nil
}

func (t *Tape) PrevFilemark(_ context.Context, before uint64) (uint64, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return 0, false, err
	}
	for i := min(before, uint64(len(t.objs))); i > 0; i-- {
		if t.objs[i-1].filemark {
			return i - 1, true, nil
		}
	}
	return 0, false, nil
}

// write puts objs at position at; callers hold t.mu.
func (t *Tape) write(at uint64, objs ...object) error {
	if err := t.usable(); err != nil {
		return err
	}
	if t.readOnly {
		return tapes.ErrWriteProtected
	}
	if at > uint64(len(t.objs)) {
		return fmt.Errorf("vtltest: write at %d past end-of-data %d", at, len(t.objs))
	}
	if t.worm && !t.wormAllows(int(at)) {
		return tapes.ErrWORMOverwrite
	}
	// The twin holds at most one object per byte of capacity, so that a
	// huge filemark count fails as a full tape instead of filling memory.
	if int64(at)+int64(len(objs)) > t.capacity {
		return tapes.ErrEndOfMedium
	}
	used := t.usedTo(int(at))
	for _, o := range objs {
		used += o.stored
	}
	if used > t.capacity {
		return tapes.ErrEndOfMedium
	}
	t.objs = append(t.objs[:at:at], objs...)
	if !t.buffered {
		t.durable = t.objs
	}
	return nil
}

// wormAllows says whether a WORM tape lets a write at at through: only
// filemarks after the first one and up to end-of-data are written over.
func (t *Tape) wormAllows(at int) bool {
	if at == len(t.objs) {
		return true
	}
	for _, o := range t.objs[at:] {
		if !o.filemark {
			return false
		}
	}
	for _, o := range t.objs[:at] {
		if o.filemark {
			return true
		}
	}
	return false
}

// SetBuffered implements vtl.Medium.
func (t *Tape) SetBuffered(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buffered = on
}

// Sync implements vtl.Medium: every write so far becomes durable.
func (t *Tape) Sync(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return err
	}
	t.syncs++
	t.durable = t.objs
	return nil
}

// WriteRecord stores data; a compressed record takes half its length on
// the tape (the twin's model of hardware compression).
func (t *Tape) WriteRecord(_ context.Context, at uint64, data []byte, compress bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := object{data: append([]byte(nil), data...), stored: int64(len(data))}
	if compress {
		o.stored = (o.stored + 1) / 2
	}
	if err := t.write(at, o); err != nil {
		return err
	}
	if compress {
		t.compressed++
	}
	return nil
}

// WriteFilemarks writes n filemarks; each takes no space.
func (t *Tape) WriteFilemarks(_ context.Context, at uint64, n int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n < 0 {
		return fmt.Errorf("vtltest: %d filemarks", n)
	}
	if int64(n) > t.capacity {
		return tapes.ErrEndOfMedium
	}
	fms := make([]object, n)
	for i := range fms {
		fms[i].filemark = true
	}
	return t.write(at, fms...)
}

func (t *Tape) Erase(_ context.Context, at uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.write(at)
}

func (t *Tape) Close(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		return ErrClosed
	}
	t.open = false
	t.durable = t.objs
	return nil
}

// Shelf is an in-memory vtl.Shelf.
type Shelf struct {
	mu       sync.Mutex
	inv      tapes.Inventory
	tapes    map[string]*Tape
	archived []string
	fail     error
	failOpen error
}

var _ vtl.Shelf = (*Shelf)(nil)

// NewShelf returns a library of empty elements.
func NewShelf(slots, drives, ie int) *Shelf {
	return &Shelf{
		inv:   tapes.Inventory{Slots: make([]string, slots), Drives: make([]string, drives), IE: make([]string, ie)},
		tapes: map[string]*Tape{},
	}
}

// Put places tape in slot (it must be empty).
func (s *Shelf) Put(slot int, t *Tape) { s.place(s.inv.Slots, slot, t) }

// PutDrive places tape in drive i (it must be empty), as a library
// restarting with a tape in a drive finds it.
func (s *Shelf) PutDrive(i int, t *Tape) { s.place(s.inv.Drives, i, t) }

func (s *Shelf) place(list []string, i int, t *Tape) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if list[i] != "" {
		panic(fmt.Sprintf("vtltest: element %d is full", i))
	}
	list[i] = t.barcode
	s.tapes[t.barcode] = t
}

// Tape returns the tape of barcode, archived ones included.
func (s *Shelf) Tape(barcode string) *Tape {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tapes[barcode]
}

// Archived lists the tapes moved out through an import/export element.
func (s *Shelf) Archived() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.archived...)
}

// FailMove makes Move return err (nil: heal).
func (s *Shelf) FailMove(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// FailOpen makes only Open return err (nil: heal).
func (s *Shelf) FailOpen(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failOpen = err
}

func (s *Shelf) Inventory(context.Context) (tapes.Inventory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tapes.Inventory{
		Slots:  append([]string(nil), s.inv.Slots...),
		Drives: append([]string(nil), s.inv.Drives...),
		IE:     append([]string(nil), s.inv.IE...),
	}, nil
}

func (s *Shelf) element(e tapes.Element) (*string, error) {
	var list []string
	switch e.Type {
	case tapes.ElementSlot:
		list = s.inv.Slots
	case tapes.ElementDrive:
		list = s.inv.Drives
	case tapes.ElementIE:
		list = s.inv.IE
	default:
		return nil, fmt.Errorf("vtltest: no element of type %d", e.Type)
	}
	if e.Index < 0 || e.Index >= len(list) {
		return nil, fmt.Errorf("vtltest: no element %d of type %d", e.Index, e.Type)
	}
	return &list[e.Index], nil
}

// Move moves a tape between elements. A tape leaves a drive only with its
// medium closed: a device that moves it while a drive still has it open
// gets an error.
func (s *Shelf) Move(_ context.Context, from, to tapes.Element) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	src, err := s.element(from)
	if err != nil {
		return err
	}
	dst, err := s.element(to)
	if err != nil {
		return err
	}
	if *src == "" {
		return tapes.ErrSourceEmpty
	}
	if *dst != "" {
		return tapes.ErrDestinationFull
	}
	t := s.tapes[*src]
	if t.Open() {
		return fmt.Errorf("vtltest: tape %s moved while its medium is open", *src)
	}
	if to.Type == tapes.ElementIE {
		s.archived = append(s.archived, *src)
	} else {
		*dst = *src
	}
	*src = ""
	return nil
}

// Open opens the medium of a tape that is in a drive.
func (s *Shelf) Open(_ context.Context, barcode string) (vtl.Medium, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failOpen != nil {
		return nil, s.failOpen
	}
	inDrive := false
	for _, b := range s.inv.Drives {
		inDrive = inDrive || (b != "" && b == barcode)
	}
	t := s.tapes[barcode]
	if t == nil || !inDrive {
		return nil, fmt.Errorf("vtltest: tape %q is in no drive", barcode)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		return nil, fmt.Errorf("vtltest: tape %s opened twice", barcode)
	}
	t.open, t.buffered = true, false // a new handle writes durably until told otherwise
	return t, nil
}
