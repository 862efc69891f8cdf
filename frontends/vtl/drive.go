package vtl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/tapes"
)

// defaultBufMode is the buffered mode a drive starts in and returns to
// on reset: 1, as LTO drives.
const defaultBufMode = 1

// Limits of the tape drive.
const (
	// MaxBlockBytes is the largest record (READ BLOCK LIMITS).
	MaxBlockBytes = 8 << 20
	// MaxTransferBytes bounds the data one fixed-block READ or WRITE
	// moves (the iSCSI target takes at most 33 MiB of data-out).
	MaxTransferBytes = 32 << 20
	// DensityLTO5 is the density code of the drive's native format.
	DensityLTO5 = 0x58
)

// DriveOptions describe a tape drive.
type DriveOptions struct {
	// Shelf opens the tapes moved into the drive.
	Shelf Shelf
	// Serial is the unit serial number (VPD page 0x80, and the drive's
	// identifier in the changer's READ ELEMENT STATUS).
	Serial string
	// Vendor, Product and Revision default to IBM, ULT3580-TD5, and the
	// gateway's own revision.
	Vendor, Product, Revision string
	Log                       *slog.Logger
}

// Drive is an SSC tape drive (SSC-4) that reads and writes the Medium of
// the tape the changer moved into it. Commands run one at a time: a tape
// is sequential.
//
// Buffered mode 1, the default as on LTO drives, acknowledges a WRITE once
// its records are in the medium's memory and queued for its log; they are
// made durable (a synchronize operation, Medium.Sync) by WRITE FILEMARKS
// without IMMED (a count of 0 too), by every command that moves the
// tape or reads it (REWIND, SPACE, LOCATE, READ, LOAD UNLOAD, ERASE), by
// an unload and by a MODE SELECT to buffered mode 0. In mode 0 every
// record is durable when its WRITE completes.
type Drive struct {
	opts DriveOptions
	lu   *scsi.LU
	log  *slog.Logger

	mu      sync.Mutex
	barcode string // tape in the drive, "" when empty
	m       Medium // its medium while loaded, nil when unloaded
	pos     uint64
	// Mode parameters from the block descriptor and header.
	blockLen uint32 // 0: variable-block mode
	bufMode  byte   // 1 (the default): buffered; 0: unbuffered
	// unsynced: the medium may hold buffered writes not yet durable.
	unsynced bool
	prevent  map[string]bool // nexuses preventing medium removal
	// Counters for LOG SENSE since the drive started.
	bytesWritten, bytesRead int64
}

// NewDrive returns an empty drive with its LU.
func NewDrive(opts DriveOptions) *Drive {
	if opts.Vendor == "" {
		opts.Vendor = "IBM"
	}
	if opts.Product == "" {
		opts.Product = "ULT3580-TD5"
	}
	if opts.Revision == "" {
		opts.Revision = "GW01"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Drive{opts: opts, log: opts.Log, prevent: map[string]bool{}, bufMode: defaultBufMode}
	d.lu = scsi.NewLU(d, opts.Log)
	return d
}

// LU returns the drive's logical unit, for an iSCSI target.
func (d *Drive) LU() *scsi.LU { return d.lu }

// Serial returns the drive's unit serial number.
func (d *Drive) Serial() string { return d.opts.Serial }

// Barcode returns the tape in the drive, "" when it is empty.
func (d *Drive) Barcode() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.barcode
}

// Insert is told by the changer that it moved a tape into the drive; the
// drive loads it (opens its medium, positions at beginning-of-partition)
// and every initiator gets NOT READY TO READY CHANGE. A tape whose medium
// does not open stays in the drive unloaded; the error says why.
func (d *Drive) Insert(ctx context.Context, barcode string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.barcode != "" {
		return fmt.Errorf("vtl: drive %s already holds %s", d.opts.Serial, d.barcode)
	}
	d.barcode, d.pos = barcode, 0
	if err := d.loadLocked(ctx); err != nil {
		return err
	}
	d.lu.UnitAttention(scsi.ASCMediumMayHaveChanged, "")
	return nil
}

// Eject unloads the tape before the changer moves it out: it fails with
// MEDIUM REMOVAL PREVENTED while an initiator prevents removal.
func (d *Drive) Eject(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.barcode == "" {
		return nil
	}
	if len(d.prevent) > 0 {
		return errRemovalPrevented()
	}
	return d.unloadLocked(ctx)
}

// reload loads the tape again after an Eject whose move failed; the
// position is lost, so initiators hear of a medium change.
func (d *Drive) reload(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.barcode == "" || d.m != nil {
		return nil
	}
	if err := d.loadLocked(ctx); err != nil {
		return err
	}
	d.lu.UnitAttention(scsi.ASCMediumMayHaveChanged, "")
	return nil
}

// Remove is told by the changer that the (ejected) tape left the drive.
func (d *Drive) Remove() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m != nil {
		d.log.Error("vtl: tape removed from a drive that had it loaded", "drive", d.opts.Serial, "barcode", d.barcode)
		d.m = nil
	}
	d.barcode, d.pos = "", 0
}

func (d *Drive) loadLocked(ctx context.Context) error {
	if d.m != nil {
		d.pos = 0
		return nil
	}
	m, err := d.opts.Shelf.Open(ctx, d.barcode)
	if err != nil {
		return fmt.Errorf("vtl: open tape %s: %w", d.barcode, err)
	}
	m.SetBuffered(d.bufMode == 1)
	d.m, d.pos, d.unsynced = m, 0, false
	d.setWORMMode(m.WORM())
	return nil
}

// setWORMMode sets the Medium Configuration page's WORMM bit: the drive
// is in WORM mode while a WORM tape is loaded. The medium change's unit
// attention announces it. Callers hold d.mu.
func (d *Drive) setWORMMode(on bool) {
	d.lu.SetModePageQuiet(pageMediumConfig, 0, func(p []byte) {
		p[2] &^= wormm
		if on {
			p[2] |= wormm
		}
	})
}

func (d *Drive) unloadLocked(ctx context.Context) error {
	if d.m == nil {
		return nil
	}
	m := d.m
	d.m, d.pos, d.unsynced = nil, 0, false // Close makes every write durable
	d.setWORMMode(false)
	if err := m.Close(ctx); err != nil {
		return fmt.Errorf("vtl: close tape %s: %w", d.barcode, err)
	}
	return nil
}

// Close unloads the tape, if any, closing its medium (the library is
// stopping).
func (d *Drive) Close(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unloadLocked(ctx)
}

// Reset implements scsi.Resetter: mode parameters return to their
// defaults and removal is allowed again; the position is kept, and so are
// the records in the buffer (they are written all the same).
func (d *Drive) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blockLen, d.bufMode = 0, defaultBufMode
	if d.m != nil {
		d.m.SetBuffered(d.bufMode == 1)
	}
	clear(d.prevent)
}

// ForgetNexus implements scsi.NexusForgetter: a lost nexus no longer
// prevents medium removal.
func (d *Drive) ForgetNexus(port string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.prevent, port)
}

// Identity implements scsi.DeviceType.
func (d *Drive) Identity() scsi.Identity {
	return identity(0x01, d.opts.Vendor, d.opts.Product, d.opts.Revision, d.opts.Serial)
}

// identity is what both device types report: removable medium, SAM-5,
// iSCSI and SPC-4, and an NAA designator hashed from the serial number.
func identity(typ byte, vendor, product, revision, serial string) scsi.Identity {
	id := scsi.Identity{
		PeripheralType: typ, Removable: true, Vendor: vendor, Product: product, Revision: revision,
		VersionDescriptors: []uint16{0x00a0, 0x0960, 0x0460}, // SAM-5, iSCSI, SPC-4
		Serial:             serial,
	}
	h := fnv.New64a()
	h.Write([]byte{typ})
	h.Write([]byte(serial))
	binary.BigEndian.PutUint64(id.NAA[:], h.Sum64())
	id.NAA[0] = 0x30 | id.NAA[0]&0x0f // NAA 3: locally assigned
	return id
}

// VPD implements scsi.DeviceType: the framework's pages are enough.
func (d *Drive) VPD() map[byte]func() []byte { return nil }

// Mode pages of the drive.
const (
	pageDataCompression = 0x0f
	pageDeviceConfig    = 0x10
	pageMediumConfig    = 0x1d
	dce                 = 0x80 // data compression page byte 2: compression enabled
	wormm               = 0x01 // medium configuration page byte 2: WORM mode
)

// Medium types of the mode parameter header, as IBM LTO-5 drives report
// them: an LTO-5 data cartridge, and its WORM variant.
const (
	mediumTypeLTO5     = 0x58
	mediumTypeLTO5WORM = 0x5c
)

// ModePages implements scsi.DeviceType: page 0 (header and block
// descriptor alone), Data Compression (DCE changeable, on by default) and
// Device Configuration.
func (d *Drive) ModePages() []*scsi.ModePage {
	comp := make([]byte, 16)
	comp[2] = dce | 0x40 // DCE, DCC: the drive compresses
	comp[3] = 0x80       // DDE: decompression enabled
	binary.BigEndian.PutUint32(comp[4:], 1)
	binary.BigEndian.PutUint32(comp[8:], 1)
	compMask := make([]byte, 16)
	compMask[2] = dce
	conf := make([]byte, 16)
	conf[10] = 0x18 // EEG: end-of-data is generated; SEW: synchronize at early warning
	conf[14] = 1    // SELECT DATA COMPRESSION ALGORITHM: the default one
	// Medium Configuration (SSC-4): WORMM follows the loaded tape
	// (setWORMMode); in WORM mode no logical block may be overwritten
	// (label restrictions 00h) and filemarks just before end-of-data may,
	// except the tape's first (filemark restrictions 02h).
	medium := make([]byte, 32)
	medium[5] = 0x02
	return []*scsi.ModePage{
		{Code: 0, Current: []byte{}, Default: []byte{}, Changeable: []byte{}},
		scsi.NewModePage(pageDataCompression, 0, comp, compMask),
		scsi.NewModePage(pageDeviceConfig, 0, conf, nil),
		scsi.NewModePage(pageMediumConfig, 0, medium, nil),
	}
}

// ModeMediumType implements scsi.MediumTyper: the loaded tape's medium
// type (LTO-5 data or WORM), 0 with none.
func (d *Drive) ModeMediumType() byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.m == nil:
		return 0
	case d.m.WORM():
		return mediumTypeLTO5WORM
	}
	return mediumTypeLTO5
}

// ModeDeviceSpecific implements scsi.DeviceType: WP for a write-protected
// tape, and the buffered mode.
func (d *Drive) ModeDeviceSpecific() byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.bufMode << 4
	if d.m != nil && d.m.ReadOnly() {
		b |= 0x80
	}
	return b
}

// BlockDescriptor implements scsi.DeviceType: the density of the loaded
// tape (0 with none), and the block length (0: variable).
func (d *Drive) BlockDescriptor() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := make([]byte, 8)
	if d.m != nil {
		b[0] = DensityLTO5
	}
	put24(b[5:], d.blockLen)
	return b
}

// CheckModeSelect implements scsi.ModeSelector: buffered mode 0 or 1,
// speed 0, a density the drive writes (or 0 / 0x7f: no change) and a block
// length up to MaxBlockBytes. A change is a synchronize point: the
// buffered records are made durable first, and if that fails the change
// is not made and MODE SELECT fails with the write error.
func (d *Drive) CheckModeSelect(devSpecific byte, bd []byte, bdOff int) (func() error, error) {
	devOff, bdLenOff := 2, 3
	if bdOff == 8 {
		devOff, bdLenOff = 3, 6
	}
	mode := devSpecific >> 4 & 0x07
	if mode > 1 {
		return nil, scsi.InvalidParamField(devOff, 6)
	}
	if devSpecific&0x0f != 0 {
		return nil, scsi.InvalidParamField(devOff, 3)
	}
	d.mu.Lock()
	blockLen := d.blockLen
	changed := mode != d.bufMode
	d.mu.Unlock()
	switch len(bd) {
	case 0:
	case 8:
		switch bd[0] {
		case 0x00, 0x7f, DensityLTO5, densityLTO4:
		default:
			return nil, scsi.InvalidParamField(bdOff, -1)
		}
		n := uint32(bd[5])<<16 | uint32(bd[6])<<8 | uint32(bd[7])
		if n > MaxBlockBytes {
			return nil, scsi.InvalidParamField(bdOff+5, -1)
		}
		changed = changed || n != blockLen
		blockLen = n
	default:
		return nil, scsi.InvalidParamField(bdLenOff, -1)
	}
	if !changed {
		return nil, nil
	}
	return func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.m != nil {
			// A write between the check and here is durable too.
			if err := d.synchronize(context.Background(), d.m); err != nil {
				d.log.Error("vtl: write buffered records", "drive", d.opts.Serial, "err", err)
				return err
			}
			d.m.SetBuffered(mode == 1)
		}
		d.bufMode, d.blockLen = mode, blockLen
		return nil
	}, nil
}

// SSC opcodes.
const (
	opRewind             = 0x01
	opFormatMedium       = 0x04
	opReadBlockLimits    = 0x05
	opRead6              = 0x08
	opWrite6             = 0x0a
	opWriteFilemarks6    = 0x10
	opSpace6             = 0x11
	opErase6             = 0x19
	opLoadUnload         = 0x1b
	opPreventAllow       = 0x1e
	opLocate10           = 0x2b
	opReadPosition       = 0x34
	opReportDensity      = 0x44
	opLogSense           = 0x4d
	opLocate16           = 0x92
	opReadAttribute      = 0x8c
	saReadPosShort       = 0x00
	saReadPosShortVendor = 0x01
	saReadPosLong        = 0x06
	saReadPosExtended    = 0x08
)

// Commands implements scsi.DeviceType.
func (d *Drive) Commands() []scsi.CommandSpec {
	r, w, pr := scsi.AccessRead, scsi.AccessWrite, scsi.AccessPR
	return []scsi.CommandSpec{
		{Opcode: scsi.OpTestUnitReady, Name: "TEST UNIT READY", CDBLen: 6, Access: pr, Run: d.testUnitReady},
		{Opcode: opRewind, Name: "REWIND", CDBLen: 6, Access: r, Run: d.rewind},
		{Opcode: opFormatMedium, Name: "FORMAT MEDIUM", CDBLen: 6, Access: w, Run: d.formatMedium},
		{Opcode: opReadAttribute, Name: "READ ATTRIBUTE", CDBLen: 16, Access: pr, Run: d.readAttribute},
		{Opcode: opReadBlockLimits, Name: "READ BLOCK LIMITS", CDBLen: 6, Access: pr, Run: d.readBlockLimits},
		{Opcode: opRead6, Name: "READ(6)", CDBLen: 6, Access: r, Run: d.read},
		{Opcode: opWrite6, Name: "WRITE(6)", CDBLen: 6, Access: w, Run: d.write},
		{Opcode: opWriteFilemarks6, Name: "WRITE FILEMARKS(6)", CDBLen: 6, Access: w, Run: d.writeFilemarks},
		{Opcode: opSpace6, Name: "SPACE(6)", CDBLen: 6, Access: r, Run: d.space},
		{Opcode: opErase6, Name: "ERASE(6)", CDBLen: 6, Access: w, Run: d.erase},
		{Opcode: opLoadUnload, Name: "LOAD UNLOAD", CDBLen: 6, Access: r, Run: d.loadUnload},
		{Opcode: opPreventAllow, Name: "PREVENT ALLOW MEDIUM REMOVAL", CDBLen: 6, Access: pr, Run: d.preventAllow},
		{Opcode: opLocate10, Name: "LOCATE(10)", CDBLen: 10, Access: r, Run: d.locate},
		{Opcode: opLocate16, Name: "LOCATE(16)", CDBLen: 16, Access: r, Run: d.locate},
		{Opcode: opReadPosition, ServiceAction: saReadPosShort, HasSA: true, Name: "READ POSITION (SHORT FORM)", CDBLen: 10, Access: pr, Run: d.readPosition},
		{Opcode: opReadPosition, ServiceAction: saReadPosShortVendor, HasSA: true, Name: "READ POSITION (SHORT FORM, VENDOR SPECIFIC)", CDBLen: 10, Access: pr, Run: d.readPosition},
		{Opcode: opReadPosition, ServiceAction: saReadPosLong, HasSA: true, Name: "READ POSITION (LONG FORM)", CDBLen: 10, Access: pr, Run: d.readPosition},
		{Opcode: opReadPosition, ServiceAction: saReadPosExtended, HasSA: true, Name: "READ POSITION (EXTENDED FORM)", CDBLen: 10, Access: pr, Run: d.readPosition},
		{Opcode: opReportDensity, Name: "REPORT DENSITY SUPPORT", CDBLen: 10, Access: pr, Run: d.reportDensity},
		{Opcode: opLogSense, Name: "LOG SENSE", CDBLen: 10, Access: pr, Run: d.logSense},
	}
}

// loaded returns the loaded medium or NOT READY, MEDIUM NOT PRESENT;
// callers hold d.mu.
func (d *Drive) loaded() (Medium, error) {
	if d.m == nil {
		return nil, errNoMedium()
	}
	return d.m, nil
}

// synchronize is SSC's synchronize operation: the buffered records go to
// the medium (are made durable) before the command goes on. In unbuffered
// mode, or with nothing written since the last one, there is nothing to
// do. Callers hold d.mu.
func (d *Drive) synchronize(ctx context.Context, m Medium) error {
	if !d.unsynced {
		return nil
	}
	if err := m.Sync(ctx); err != nil {
		return mediumError(err, scsi.ASCWriteError)
	}
	d.unsynced = false
	return nil
}

// written notes a write to the medium: in buffered mode it may not be
// durable yet. Callers hold d.mu.
func (d *Drive) written() {
	if d.bufMode == 1 {
		d.unsynced = true
	}
}

// inEarlyWarning reports whether the tape's data reaches into the
// early-warning zone.
func inEarlyWarning(m Medium) bool { return m.Used() > m.Capacity()-m.EarlyWarning() }

func (d *Drive) testUnitReady(context.Context, *scsi.Task) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := d.loaded()
	return nil, err
}

// rewind is REWIND: the buffered records are made durable first (with
// IMMED too, as LTO drives do), then the position is beginning-of-partition.
func (d *Drive) rewind(ctx context.Context, _ *scsi.Task) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if err := d.synchronize(ctx, m); err != nil {
		return nil, err
	}
	d.pos = 0
	return nil, nil
}

// readBlockLimits reports records of 1 byte to MaxBlockBytes, any
// granularity. The MLOI form (maximum logical object identifier) is not
// offered.
func (d *Drive) readBlockLimits(_ context.Context, t *scsi.Task) ([]byte, error) {
	if t.CDB[1]&0x01 != 0 {
		return nil, scsi.InvalidCDBField(1, 0)
	}
	b := make([]byte, 6)
	put24(b[1:], MaxBlockBytes)
	binary.BigEndian.PutUint16(b[4:], 1)
	return b, nil
}

// put24 stores v big-endian in 3 bytes.
func put24(b []byte, v uint32) { b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v) }

// limitDataIn returns at most what the transport takes of data, saying
// the full length in t.DataInLen.
func limitDataIn(t *scsi.Task, data []byte) []byte {
	if lim := t.DataInLimit; lim > 0 && lim < len(data) {
		t.DataInLen = len(data)
		return data[:lim]
	}
	return data
}

// read is READ(6) in variable-block (FIXED 0) and fixed-block mode, with
// the incorrect-length, filemark and end-of-data conditions of SSC-4.
func (d *Drive) read(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	sili, fixed := cdb[1]&0x02 != 0, cdb[1]&0x01 != 0
	n := scsi.U24(cdb[2:])
	if sili && fixed {
		return nil, scsi.InvalidCDBField(1, 1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	blockLen := d.blockLen
	if fixed && blockLen == 0 {
		return nil, scsi.InvalidCDBField(1, 0)
	}
	if n == 0 {
		return nil, nil
	}
	if !fixed && n > MaxBlockBytes || fixed && uint64(n)*uint64(blockLen) > MaxTransferBytes {
		return nil, scsi.InvalidCDBField(2, -1)
	}
	if err := d.synchronize(ctx, m); err != nil {
		return nil, err
	}
	var data []byte
	if fixed {
		data, err = d.readFixed(ctx, m, int(n), int(blockLen))
	} else {
		data, err = d.readVariable(ctx, m, int(n), sili, blockLen)
	}
	d.bytesRead += int64(len(data))
	return limitDataIn(t, data), err
}

// atEOD checks for end-of-data at the position: BLANK CHECK with the
// residual when there.
func (d *Drive) atEOD(m Medium, residual int64) error {
	if d.pos >= m.EOD() {
		return errEOD(residual, inEarlyWarning(m))
	}
	return nil
}

// readObject reads the object at the position into the buffer buf
// returns for the record's size, and moves past it; isFilemark reports a
// filemark (nothing read).
func (d *Drive) readObject(ctx context.Context, m Medium, buf func(size int) []byte) (n int, isFilemark bool, err error) {
	o, err := m.Stat(ctx, d.pos)
	if err != nil {
		return 0, false, mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	if o.Filemark {
		d.pos++
		return 0, true, nil
	}
	n, err = m.ReadRecord(ctx, d.pos, buf(o.Size))
	if err != nil {
		return 0, false, mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	d.pos++
	return n, false, nil
}

func (d *Drive) readVariable(ctx context.Context, m Medium, n int, sili bool, blockLen uint32) ([]byte, error) {
	if err := d.atEOD(m, int64(n)); err != nil {
		return nil, err
	}
	var buf []byte
	size, fm, err := d.readObject(ctx, m, func(size int) []byte {
		buf = make([]byte, min(n, size)) // no more than the record
		return buf
	})
	switch {
	case err != nil:
		return nil, err
	case fm:
		return nil, errFilemark(int64(n))
	case len(buf) < min(size, n):
		// The medium's record is not the size its Stat said.
		return nil, mediumError(fmt.Errorf("vtl: record %d read as %d bytes, not %d", d.pos-1, size, len(buf)), scsi.ASCUnrecoveredReadError)
	case size == n:
		return buf, nil
	case size < n:
		// Underlength: SILI suppresses the incorrect length.
		if sili {
			return buf[:size], nil
		}
		return buf[:size], errILI(int64(n - size))
	default:
		// Overlength: the first n bytes, positioned after the record;
		// SILI suppresses it only in variable-block mode.
		if sili && blockLen == 0 {
			return buf, nil
		}
		return buf, errILI(int64(n) - int64(size))
	}
}

// readFixed reads n blocks of blockLen bytes, stopping at a filemark,
// end-of-data or a record of another length; the residual counts blocks.
func (d *Drive) readFixed(ctx context.Context, m Medium, n, blockLen int) ([]byte, error) {
	var buf []byte // grows block by block: a tape may hold fewer
	for i := 0; i < n; i++ {
		if err := d.atEOD(m, int64(n-i)); err != nil {
			return buf[:i*blockLen], err
		}
		buf = append(buf, make([]byte, blockLen)...)
		size, fm, err := d.readObject(ctx, m, func(int) []byte { return buf[i*blockLen : (i+1)*blockLen] })
		switch {
		case err != nil:
			return buf[:i*blockLen], err
		case fm:
			return buf[:i*blockLen], errFilemark(int64(n - i))
		case size != blockLen:
			// The incorrect-length block does not count as read.
			return buf[:i*blockLen+min(size, blockLen)], errILI(int64(n - i))
		}
	}
	return buf, nil
}

// writable refuses writes to a write-protected tape (or LU).
func (d *Drive) writable(m Medium) error {
	if m.ReadOnly() || d.lu.WriteProtected() {
		return scsi.ErrWriteProtected()
	}
	return nil
}

// compress reports the Data Compression page's DCE bit.
func (d *Drive) compress() bool {
	p := d.lu.Page(pageDataCompression, 0)
	return p != nil && p[2]&dce != 0
}

// writeFailure is a failed write with what it left unwritten.
func writeFailure(err error, residual int64) error {
	err = mediumError(err, scsi.ASCWriteError)
	var se *scsi.Error
	if errors.As(err, &se) {
		withInfo(se, residual)
	}
	return err
}

// afterWrite reports the early-warning condition once a write succeeded.
// There the buffer is synchronized first: the Device Configuration page
// says SEW (synchronize at early warning), so an initiator that meets
// early warning knows everything it wrote is on the medium.
func (d *Drive) afterWrite(ctx context.Context, m Medium) error {
	if !inEarlyWarning(m) {
		return nil
	}
	if err := d.synchronize(ctx, m); err != nil {
		return err
	}
	return errEarlyWarning()
}

// write is WRITE(6): one record of the transfer length (variable-block),
// or that many blocks of the mode's block length (fixed-block).
func (d *Drive) write(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	fixed := cdb[1]&0x01 != 0
	n := scsi.U24(cdb[2:])
	d.mu.Lock()
	defer d.mu.Unlock()
	blockLen := d.blockLen
	want := uint64(n)
	if fixed {
		want *= uint64(blockLen)
	}
	t.DataOutLen = int(want)
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if fixed && blockLen == 0 {
		return nil, scsi.InvalidCDBField(1, 0)
	}
	if n == 0 {
		return nil, nil
	}
	if !fixed && n > MaxBlockBytes || want > MaxTransferBytes {
		return nil, scsi.InvalidCDBField(2, -1)
	}
	if err := d.writable(m); err != nil {
		return nil, err
	}
	if uint64(len(t.DataOut)) < want {
		// A record is exactly what the CDB says: a shorter data-out
		// buffer writes nothing.
		return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCInvalidFieldInIU)
	}
	data := t.DataOut[:want]
	size := len(data)
	if fixed {
		size = int(blockLen)
	}
	compress := d.compress()
	d.written()
	for i := 0; i < len(data)/size; i++ {
		err := m.WriteRecord(ctx, d.pos, data[i*size:(i+1)*size], compress)
		residual := int64(len(data) - i*size) // bytes, or blocks below
		if fixed {
			residual = int64(int(n) - i)
		}
		switch {
		case errors.Is(err, tapes.ErrEndOfMedium):
			return nil, errOverflow(residual)
		case err != nil:
			return nil, writeFailure(err, residual)
		}
		d.pos++
		d.bytesWritten += int64(size)
	}
	return nil, d.afterWrite(ctx, m)
}

// writeFilemarks is WRITE FILEMARKS(6). Without IMMED it is a
// synchronize operation: the filemarks and every record buffered before
// them are durable when it completes (a count of 0 only does that); with
// IMMED, in buffered mode, the filemarks are buffered like records.
// Setmarks are not offered.
func (d *Drive) writeFilemarks(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[1]&0x02 != 0 { // WSMK
		return nil, scsi.InvalidCDBField(1, 1)
	}
	immed := cdb[1]&0x01 != 0
	n := scsi.U24(cdb[2:])
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		if immed {
			return nil, nil
		}
		return nil, d.synchronize(ctx, m)
	}
	if err := d.writable(m); err != nil {
		return nil, err
	}
	d.written()
	err = m.WriteFilemarks(ctx, d.pos, int(n))
	switch {
	case errors.Is(err, tapes.ErrEndOfMedium):
		return nil, errOverflow(int64(n))
	case err != nil:
		return nil, writeFailure(err, int64(n))
	}
	d.pos += uint64(n)
	if !immed {
		if err := d.synchronize(ctx, m); err != nil {
			return nil, err
		}
	}
	return nil, d.afterWrite(ctx, m)
}

// space is SPACE(6) over logical blocks, filemarks, or to end-of-data.
// Sequential filemarks and setmarks are not offered.
func (d *Drive) space(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	code := cdb[1] & 0x0f
	count := int64(scsi.U24(cdb[2:]))
	if count&0x800000 != 0 {
		count -= 1 << 24
	}
	if code != 0 && code != 1 && code != 3 {
		return nil, scsi.InvalidCDBField(1, 3)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if err := d.synchronize(ctx, m); err != nil {
		return nil, err
	}
	switch {
	case code == 3:
		d.pos = m.EOD()
		return nil, nil
	case count == 0:
		return nil, nil
	case code == 0 && count > 0:
		return nil, d.spaceBlocksForward(ctx, m, uint64(count))
	case code == 0:
		return nil, d.spaceBlocksBack(ctx, m, uint64(-count))
	case count > 0:
		return nil, d.spaceFilemarksForward(ctx, m, uint64(count))
	default:
		return nil, d.spaceFilemarksBack(ctx, m, uint64(-count))
	}
}

func (d *Drive) spaceBlocksForward(ctx context.Context, m Medium, count uint64) error {
	start := d.pos
	fm, ok, err := m.NextFilemark(ctx, start)
	if err != nil {
		return mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	if ok && fm < start+count {
		d.pos = fm + 1 // on the end-of-medium side of the filemark
		return errFilemark(int64(count - (fm - start)))
	}
	if eod := m.EOD(); start+count > eod {
		d.pos = eod
		return errEOD(int64(count-(eod-start)), inEarlyWarning(m))
	}
	d.pos = start + count
	return nil
}

func (d *Drive) spaceBlocksBack(ctx context.Context, m Medium, count uint64) error {
	start := d.pos
	fm, ok, err := m.PrevFilemark(ctx, start)
	if err != nil {
		return mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	if ok && start-fm <= count {
		d.pos = fm // on the beginning-of-partition side of the filemark
		return errFilemark(int64(count - (start - fm - 1)))
	}
	if count > start {
		d.pos = 0
		return errBOP(int64(count - start))
	}
	d.pos = start - count
	return nil
}

func (d *Drive) spaceFilemarksForward(ctx context.Context, m Medium, count uint64) error {
	for i := uint64(0); i < count; i++ {
		fm, ok, err := m.NextFilemark(ctx, d.pos)
		if err != nil {
			return mediumError(err, scsi.ASCUnrecoveredReadError)
		}
		if !ok {
			d.pos = m.EOD()
			return errEOD(int64(count-i), inEarlyWarning(m))
		}
		d.pos = fm + 1
	}
	return nil
}

func (d *Drive) spaceFilemarksBack(ctx context.Context, m Medium, count uint64) error {
	for i := uint64(0); i < count; i++ {
		fm, ok, err := m.PrevFilemark(ctx, d.pos)
		if err != nil {
			return mediumError(err, scsi.ASCUnrecoveredReadError)
		}
		if !ok {
			d.pos = 0
			return errBOP(int64(count - i))
		}
		d.pos = fm
	}
	return nil
}

// erase is ERASE(6), short or long: end-of-data at the position, made
// durable with the records buffered before it.
func (d *Drive) erase(ctx context.Context, _ *scsi.Task) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if err := d.writable(m); err != nil {
		return nil, err
	}
	d.written()
	if err := m.Erase(ctx, d.pos); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, d.synchronize(ctx, m)
}

// loadUnload is LOAD UNLOAD: load (or reload after an unload) positions
// at beginning-of-partition; unload closes the medium (which makes every
// buffered record durable), the tape staying in the drive for the changer
// to take. Both synchronize first. RETEN and HOLD change nothing here.
func (d *Drive) loadUnload(ctx context.Context, t *scsi.Task) ([]byte, error) {
	b := t.CDB[4]
	load, eot := b&0x01 != 0, b&0x04 != 0
	if load && eot {
		return nil, scsi.InvalidCDBField(4, 2)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.barcode == "" {
		return nil, errNoMedium()
	}
	if load {
		wasLoaded := d.m != nil
		if wasLoaded {
			if err := d.synchronize(ctx, d.m); err != nil {
				return nil, err
			}
		}
		if err := d.loadLocked(ctx); err != nil {
			d.log.Error("vtl: load failed", "drive", d.opts.Serial, "err", err)
			return nil, scsi.Sense(scsi.KeyNotReady, ascLogicalUnitNotReady)
		}
		if !wasLoaded {
			// Not ready to ready: the other nexuses hear of it.
			d.lu.UnitAttention(scsi.ASCMediumMayHaveChanged, t.Nexus.InitiatorPort)
		}
		return nil, nil
	}
	if len(d.prevent) > 0 {
		return nil, errRemovalPrevented()
	}
	if err := d.unloadLocked(ctx); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, nil
}

// preventAllow keeps which nexuses prevent medium removal; removal is
// prevented while any does.
func (d *Drive) preventAllow(_ context.Context, t *scsi.Task) ([]byte, error) {
	return nil, setPrevent(&d.mu, d.prevent, t)
}

// setPrevent applies PREVENT ALLOW MEDIUM REMOVAL's PREVENT field to the
// set of preventing nexuses.
func setPrevent(mu *sync.Mutex, prevent map[string]bool, t *scsi.Task) error {
	p := t.CDB[4] & 0x03
	if p > 1 {
		return scsi.InvalidCDBField(4, 1)
	}
	mu.Lock()
	defer mu.Unlock()
	if p == 1 {
		prevent[t.Nexus.InitiatorPort] = true
	} else {
		delete(prevent, t.Nexus.InitiatorPort)
	}
	return nil
}

// locate is LOCATE(10) and LOCATE(16) to a logical object (BT is
// accepted: a block address is the logical object identifier), to a
// logical file (LOCATE(16) DEST_TYPE 1) or to end-of-data (DEST_TYPE 3).
// There is one partition.
func (d *Drive) locate(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	cp := cdb[1]&0x02 != 0
	var dest byte
	var target uint64
	var part byte
	partField := 8
	if cdb[0] == opLocate10 {
		target, part = uint64(scsi.U32(cdb[3:])), cdb[8]
	} else {
		dest = cdb[1] >> 3 & 0x07
		target, part, partField = scsi.U64(cdb[4:]), cdb[3], 3
		if dest != 0 && dest != 1 && dest != 3 {
			return nil, scsi.InvalidCDBField(1, 5)
		}
	}
	if cp && part != 0 {
		return nil, scsi.InvalidCDBField(partField, -1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if err := d.synchronize(ctx, m); err != nil {
		return nil, err
	}
	eod := m.EOD()
	switch dest {
	case 0:
		if target > eod {
			d.pos = eod
			return nil, errEODLocate(inEarlyWarning(m))
		}
		d.pos = target
	case 1:
		pos := uint64(0)
		for i := uint64(0); i < target; i++ {
			fm, ok, err := m.NextFilemark(ctx, pos)
			if err != nil {
				return nil, mediumError(err, scsi.ASCUnrecoveredReadError)
			}
			if !ok {
				d.pos = eod
				return nil, errEODLocate(inEarlyWarning(m))
			}
			pos = fm + 1
		}
		d.pos = pos
	case 3:
		d.pos = eod
	}
	return nil, nil
}

// readPosition is READ POSITION in short (block id and vendor-specific
// block id, both the logical object identifier), long and extended form.
// The object buffer is reported empty (the last logical object location
// equals the first, no objects or bytes in it): in buffered mode a record
// leaves for the medium's log as soon as it is acknowledged, and the
// position is the initiator's, whatever is still on its way. EOP is set when
// positioned at end-of-data inside the early-warning zone.
func (d *Drive) readPosition(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	sa := cdb[1] & 0x1f
	alloc := int(scsi.U16(cdb[7:]))
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	var flags byte
	if d.pos == 0 {
		flags |= 0x80 // BOP
	}
	if d.pos == m.EOD() && inEarlyWarning(m) {
		flags |= 0x40 // EOP
	}
	switch sa {
	case saReadPosShort, saReadPosShortVendor:
		b := make([]byte, 20)
		b[0] = flags
		if d.pos > 0xffffffff {
			b[0] |= 0x04 // LOLU: the identifier does not fit
		} else {
			binary.BigEndian.PutUint32(b[4:], uint32(d.pos))
			binary.BigEndian.PutUint32(b[8:], uint32(d.pos))
		}
		return shortForm(b, alloc), nil
	case saReadPosLong:
		files, err := d.fileNumber(ctx, m)
		if err != nil {
			return nil, err
		}
		b := make([]byte, 32)
		b[0] = flags
		binary.BigEndian.PutUint64(b[8:], d.pos)
		binary.BigEndian.PutUint64(b[16:], files)
		return shortForm(b, alloc), nil
	default: // extended
		b := make([]byte, 32)
		b[0] = flags
		binary.BigEndian.PutUint16(b[2:], 28)
		binary.BigEndian.PutUint64(b[8:], d.pos)
		binary.BigEndian.PutUint64(b[16:], d.pos)
		return scsi.Truncate(b, alloc), nil
	}
}

// shortForm returns the short and long forms whole when the allocation
// length is zero (older initiators send none), truncated otherwise.
func shortForm(b []byte, alloc int) []byte {
	if alloc == 0 {
		return b
	}
	return scsi.Truncate(b, alloc)
}

// fileNumber counts the filemarks before the position: the logical file
// identifier.
func (d *Drive) fileNumber(ctx context.Context, m Medium) (uint64, error) {
	var n uint64
	for before := d.pos; ; n++ {
		fm, ok, err := m.PrevFilemark(ctx, before)
		if err != nil {
			return 0, mediumError(err, scsi.ASCUnrecoveredReadError)
		}
		if !ok {
			return n, nil
		}
		before = fm
	}
}
