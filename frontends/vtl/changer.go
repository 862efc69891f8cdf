package vtl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/tapes"
)

// Addresses are the first element address of each element type; the
// elements of a type have consecutive addresses from there.
type Addresses struct {
	Transport, IE, Drive, Slot uint16
}

// DefaultAddresses are those of an STK L700: the robot at 1, the
// import/export elements (the CAP) from 10, drives from 500, storage
// slots from 1000.
var DefaultAddresses = Addresses{Transport: 1, IE: 10, Drive: 500, Slot: 1000}

// ChangerOptions describe a medium changer.
type ChangerOptions struct {
	Shelf Shelf
	// Drives are the library's drives in element order; there must be as
	// many as the shelf's inventory has.
	Drives []*Drive
	// Vendor and Product default to STK L700 (AWS Storage Gateway's
	// changer is AWS Gateway-VTL); Revision to the gateway's own.
	Vendor, Product, Revision string
	Serial                    string
	// Addresses default to DefaultAddresses.
	Addresses *Addresses
	Log       *slog.Logger
}

// element is one element of the library.
type element struct {
	tapes.Element
	addr uint16
}

// Changer is an SMC medium changer (SMC-3) over a Shelf: one medium
// transport, the shelf's storage slots, import/export elements and
// drives. Moves are instant, so the transport never holds a tape.
type Changer struct {
	opts   ChangerOptions
	lu     *scsi.LU
	log    *slog.Logger
	addrs  Addresses
	counts [5]int    // elements per tapes.ElementType
	elems  []element // by address
	byAddr map[uint16]element

	mu      sync.Mutex // one move at a time
	prevent map[string]bool
	// source is where each tape was last moved from when that was a
	// storage or import/export element (SOURCE STORAGE ELEMENT ADDRESS).
	source map[string]uint16
}

// NewChanger returns the changer of the shelf's library, with its LU.
func NewChanger(ctx context.Context, opts ChangerOptions) (*Changer, error) {
	if opts.Vendor == "" {
		opts.Vendor = "STK"
	}
	if opts.Product == "" {
		opts.Product = "L700"
	}
	if opts.Revision == "" {
		opts.Revision = "GW01"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	addrs := DefaultAddresses
	if opts.Addresses != nil {
		addrs = *opts.Addresses
	}
	inv, err := opts.Shelf.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("vtl: library inventory: %w", err)
	}
	if len(inv.Drives) != len(opts.Drives) {
		return nil, fmt.Errorf("vtl: the library has %d drives, the changer was given %d", len(inv.Drives), len(opts.Drives))
	}
	c := &Changer{opts: opts, log: opts.Log, addrs: addrs, byAddr: map[uint16]element{},
		prevent: map[string]bool{}, source: map[string]uint16{}}
	c.counts[tapes.ElementTransport] = 1
	c.counts[tapes.ElementSlot] = len(inv.Slots)
	c.counts[tapes.ElementIE] = len(inv.IE)
	c.counts[tapes.ElementDrive] = len(inv.Drives)
	for _, typ := range []tapes.ElementType{tapes.ElementTransport, tapes.ElementSlot, tapes.ElementIE, tapes.ElementDrive} {
		first := int(c.first(typ))
		if first+c.counts[typ] > 0x10000 {
			return nil, fmt.Errorf("vtl: %d elements of type %d from address %d pass 65535", c.counts[typ], typ, first)
		}
		for i := 0; i < c.counts[typ]; i++ {
			e := element{tapes.Element{Type: typ, Index: i}, uint16(first + i)}
			if _, dup := c.byAddr[e.addr]; dup {
				return nil, fmt.Errorf("vtl: element address %d assigned twice", e.addr)
			}
			c.byAddr[e.addr] = e
			c.elems = append(c.elems, e)
		}
	}
	sort.Slice(c.elems, func(i, j int) bool { return c.elems[i].addr < c.elems[j].addr })
	c.lu = scsi.NewLU(c, opts.Log)
	return c, nil
}

func (c *Changer) first(typ tapes.ElementType) uint16 {
	switch typ {
	case tapes.ElementTransport:
		return c.addrs.Transport
	case tapes.ElementSlot:
		return c.addrs.Slot
	case tapes.ElementIE:
		return c.addrs.IE
	}
	return c.addrs.Drive
}

// LU returns the changer's logical unit, for an iSCSI target.
func (c *Changer) LU() *scsi.LU { return c.lu }

// Identity implements scsi.DeviceType.
func (c *Changer) Identity() scsi.Identity {
	return identity(0x08, c.opts.Vendor, c.opts.Product, c.opts.Revision, c.opts.Serial)
}

// VPD implements scsi.DeviceType: the framework's pages are enough.
func (c *Changer) VPD() map[byte]func() []byte { return nil }

// ModeDeviceSpecific implements scsi.DeviceType.
func (c *Changer) ModeDeviceSpecific() byte { return 0 }

// BlockDescriptor implements scsi.DeviceType: a changer has none.
func (c *Changer) BlockDescriptor() []byte { return nil }

// Reset implements scsi.Resetter: removal is allowed again.
func (c *Changer) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.prevent)
}

// ForgetNexus implements scsi.NexusForgetter.
func (c *Changer) ForgetNexus(port string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.prevent, port)
}

// ModePages implements scsi.DeviceType: Element Address Assignment,
// Transport Geometry Parameters and Device Capabilities.
func (c *Changer) ModePages() []*scsi.ModePage {
	eaa := make([]byte, 20)
	put := func(off int, typ tapes.ElementType) {
		binary.BigEndian.PutUint16(eaa[off:], c.first(typ))
		binary.BigEndian.PutUint16(eaa[off+2:], uint16(c.counts[typ]))
	}
	put(2, tapes.ElementTransport)
	put(6, tapes.ElementSlot)
	put(10, tapes.ElementIE)
	put(14, tapes.ElementDrive)
	geometry := make([]byte, 4) // one transport: no rotation, member 0
	caps := make([]byte, 20)
	// Media are stored in slots, import/export elements and drives,
	// never in the transport, and move between any two of those.
	const st, ie, dt = 0x02, 0x04, 0x08
	caps[2] = st | ie | dt
	caps[5], caps[6], caps[7] = st|ie|dt, st|ie|dt, st|ie|dt
	return []*scsi.ModePage{
		scsi.NewModePage(0x1d, 0, eaa, nil),
		scsi.NewModePage(0x1e, 0, geometry, nil),
		scsi.NewModePage(0x1f, 0, caps, nil),
	}
}

// SMC opcodes.
const (
	opInitElementStatus      = 0x07
	opInitElementStatusRange = 0x37
	opPositionToElement      = 0x2b
	opMoveMedium             = 0xa5
	opReadElementStatus      = 0xb8
)

// Commands implements scsi.DeviceType.
func (c *Changer) Commands() []scsi.CommandSpec {
	return []scsi.CommandSpec{
		{Opcode: opInitElementStatus, Name: "INITIALIZE ELEMENT STATUS", CDBLen: 6, Access: scsi.AccessWrite, Run: c.initElementStatus},
		{Opcode: opInitElementStatusRange, Name: "INITIALIZE ELEMENT STATUS WITH RANGE", CDBLen: 10, Access: scsi.AccessWrite, Run: c.initElementStatus},
		{Opcode: opPositionToElement, Name: "POSITION TO ELEMENT", CDBLen: 10, Access: scsi.AccessWrite, Run: c.positionToElement},
		{Opcode: opPreventAllow, Name: "PREVENT ALLOW MEDIUM REMOVAL", CDBLen: 6, Access: scsi.AccessPR, Run: c.preventAllow},
		{Opcode: opMoveMedium, Name: "MOVE MEDIUM", CDBLen: 12, Access: scsi.AccessWrite, Run: c.moveMedium},
		{Opcode: opReadElementStatus, Name: "READ ELEMENT STATUS", CDBLen: 12, Access: scsi.AccessRead, Run: c.readElementStatus},
	}
}

// initElementStatus is INITIALIZE ELEMENT STATUS (WITH RANGE): the
// inventory is always known, so there is nothing to scan; a range must
// start at an element.
func (c *Changer) initElementStatus(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[0] == opInitElementStatusRange && cdb[1]&0x01 != 0 {
		if _, ok := c.byAddr[scsi.U16(cdb[2:])]; !ok {
			return nil, errInvalidElement()
		}
	}
	return nil, nil
}

// transport checks a medium transport address: the transport's, or 0
// for the default one.
func (c *Changer) transport(addr uint16) error {
	if addr != 0 && addr != c.addrs.Transport {
		return errInvalidElement()
	}
	return nil
}

func (c *Changer) positionToElement(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[8]&0x01 != 0 { // INVERT: the transport does not rotate media
		return nil, scsi.InvalidCDBField(8, 0)
	}
	if err := c.transport(scsi.U16(cdb[2:])); err != nil {
		return nil, err
	}
	if _, ok := c.byAddr[scsi.U16(cdb[4:])]; !ok {
		return nil, errInvalidElement()
	}
	return nil, nil
}

// preventAllow records which nexuses prevent medium removal from the
// library. Moving a tape to an import/export element is the transport's
// doing and stays allowed: a real library's door stays locked, here the
// tape is archived.
func (c *Changer) preventAllow(_ context.Context, t *scsi.Task) ([]byte, error) {
	return nil, setPrevent(&c.mu, c.prevent, t)
}

// barcodeAt returns the tape in e ("" when empty).
func barcodeAt(inv tapes.Inventory, e tapes.Element) string {
	var list []string
	switch e.Type {
	case tapes.ElementSlot:
		list = inv.Slots
	case tapes.ElementIE:
		list = inv.IE
	case tapes.ElementDrive:
		list = inv.Drives
	}
	if e.Index < len(list) {
		return list[e.Index]
	}
	return ""
}

// moveMedium is MOVE MEDIUM between slots, import/export elements and
// drives. A tape leaving a drive is unloaded first (refused while an
// initiator of the drive prevents removal); a tape entering a drive is
// loaded; a tape moved to an import/export element is archived and
// leaves the library.
func (c *Changer) moveMedium(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[10]&0x01 != 0 { // INVERT
		return nil, scsi.InvalidCDBField(10, 0)
	}
	if err := c.transport(scsi.U16(cdb[2:])); err != nil {
		return nil, err
	}
	src, ok1 := c.byAddr[scsi.U16(cdb[4:])]
	dst, ok2 := c.byAddr[scsi.U16(cdb[6:])]
	if !ok1 || !ok2 || dst.Type == tapes.ElementTransport {
		return nil, errInvalidElement()
	}
	if src.Type == tapes.ElementTransport { // moves are instant: it is always empty
		return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCMediumSourceElementEmpty)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inv, err := c.opts.Shelf.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("vtl: library inventory: %w", err)
	}
	barcode := barcodeAt(inv, src.Element)
	switch {
	case barcode == "":
		return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCMediumSourceElementEmpty)
	case src.addr == dst.addr:
		return nil, nil // already there
	case barcodeAt(inv, dst.Element) != "":
		return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCMediumDestinationElementFull)
	}
	var from *Drive
	if src.Type == tapes.ElementDrive {
		from = c.opts.Drives[src.Index]
		if err := from.Eject(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.opts.Shelf.Move(ctx, src.Element, dst.Element); err != nil {
		if from != nil {
			// The tape stays in the drive: load it again.
			if rerr := from.reload(ctx); rerr != nil {
				c.log.Error("vtl: tape not moved out of a drive did not load again", "barcode", barcode, "err", rerr)
			}
		}
		switch {
		case errors.Is(err, tapes.ErrSourceEmpty):
			return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCMediumSourceElementEmpty)
		case errors.Is(err, tapes.ErrDestinationFull):
			return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCMediumDestinationElementFull)
		}
		return nil, fmt.Errorf("vtl: move %s from element %d to %d: %w", barcode, src.addr, dst.addr, err)
	}
	if from != nil {
		from.Remove()
	}
	switch {
	case dst.Type == tapes.ElementIE:
		delete(c.source, barcode) // archived: gone from the library
	case src.Type == tapes.ElementSlot || src.Type == tapes.ElementIE:
		c.source[barcode] = src.addr
	}
	if dst.Type == tapes.ElementDrive {
		// The move is done; a tape whose medium does not open stays in
		// the drive unloaded, and the drive reports not ready.
		if err := c.opts.Drives[dst.Index].Insert(ctx, barcode); err != nil {
			c.log.Error("vtl: tape moved into a drive did not load", "barcode", barcode, "drive", dst.addr, "err", err)
		}
	}
	return nil, nil
}

// Element descriptor sizes (SMC-3 6.12).
const (
	elementHeaderLen  = 8
	descriptorBaseLen = 12
	volTagLen         = 36
	identHeaderLen    = 4
)

// readElementStatus is READ ELEMENT STATUS: the elements of one type or
// all, from the starting address on, at most the number asked for, in
// address order, one element status page per run of one type; with
// primary volume tags (VOLTAG) and drive identifiers (DVCID). The header
// counts what is available, the data is cut to the allocation length.
func (c *Changer) readElementStatus(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	voltag := cdb[1]&0x10 != 0
	typ := tapes.ElementType(cdb[1] & 0x0f)
	start := scsi.U16(cdb[2:])
	count := int(scsi.U16(cdb[4:]))
	dvcid := cdb[6]&0x01 != 0
	alloc := int(scsi.U24(cdb[7:]))
	if typ > tapes.ElementDrive {
		return nil, scsi.InvalidCDBField(1, 3)
	}
	var picked []element
	last := c.elems[len(c.elems)-1].addr
	if start > last {
		return nil, errInvalidElement()
	}
	for _, e := range c.elems {
		if len(picked) == count {
			break
		}
		if e.addr >= start && (typ == 0 || e.Type == typ) {
			picked = append(picked, e)
		}
	}
	c.mu.Lock() // not in the middle of a move
	defer c.mu.Unlock()
	inv, err := c.opts.Shelf.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("vtl: library inventory: %w", err)
	}
	identLen := 0
	if dvcid {
		for _, d := range c.opts.Drives {
			identLen = max(identLen, len(driveIdentifier(d)))
		}
		identLen = min(identLen, 252)
	}
	b := make([]byte, elementHeaderLen)
	if len(picked) > 0 {
		binary.BigEndian.PutUint16(b, picked[0].addr)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(picked)))
	for i := 0; i < len(picked); {
		j := i
		for j < len(picked) && picked[j].Type == picked[i].Type {
			j++
		}
		pageTyp := picked[i].Type
		descLen := descriptorBaseLen + identHeaderLen
		if voltag {
			descLen += volTagLen
		}
		if pageTyp == tapes.ElementDrive {
			descLen += identLen
		}
		page := make([]byte, elementHeaderLen, elementHeaderLen+descLen*(j-i))
		page[0] = byte(pageTyp)
		if voltag {
			page[1] = 0x80 // PVOLTAG
		}
		binary.BigEndian.PutUint16(page[2:], uint16(descLen))
		put24(page[5:], uint32(descLen*(j-i)))
		for _, e := range picked[i:j] {
			page = append(page, c.descriptor(e, barcodeAt(inv, e.Element), voltag, identLen)...)
		}
		b = append(b, page...)
		i = j
	}
	put24(b[5:], uint32(len(b)-elementHeaderLen))
	return scsi.Truncate(b, alloc), nil
}

// descriptor is one element descriptor; callers hold c.mu.
func (c *Changer) descriptor(e element, barcode string, voltag bool, identLen int) []byte {
	d := make([]byte, descriptorBaseLen)
	binary.BigEndian.PutUint16(d, e.addr)
	full := barcode != ""
	var flags byte
	if full {
		flags |= 0x01 // FULL
	}
	switch e.Type {
	case tapes.ElementSlot, tapes.ElementDrive:
		flags |= 0x08 // ACCESS
	case tapes.ElementIE:
		flags |= 0x20 | 0x10 | 0x08 // INENAB, EXENAB, ACCESS
		if full {
			flags |= 0x02 // IMPEXP: put there from outside (retrieved)
		}
	}
	d[2] = flags
	if full {
		d[9] = 0x01 // medium type: data
		if src, ok := c.source[barcode]; ok {
			d[9] |= 0x80 // SVALID
			binary.BigEndian.PutUint16(d[10:], src)
		}
	}
	if voltag {
		tag := make([]byte, volTagLen)
		if full {
			padSpaces(tag[:32], barcode)
		}
		d = append(d, tag...)
	}
	ident := make([]byte, identHeaderLen)
	if e.Type == tapes.ElementDrive && identLen > 0 {
		ident[0] = 0x02 // code set: ASCII
		ident[1] = 0x01 // identifier type: T10 vendor identification
		ident[3] = byte(identLen)
		id := make([]byte, identLen)
		padSpaces(id, driveIdentifier(c.opts.Drives[e.Index]))
		ident = append(ident, id...)
	}
	return append(d, ident...)
}

// driveIdentifier is a drive's T10 vendor identification: vendor (8
// bytes), product (16) and serial number, as in its VPD page 0x83.
func driveIdentifier(d *Drive) string {
	id := make([]byte, 24)
	padSpaces(id[:8], d.opts.Vendor)
	padSpaces(id[8:], d.opts.Product)
	return string(id) + d.opts.Serial
}
