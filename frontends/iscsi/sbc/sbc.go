// Package sbc is the SCSI block device (SBC-3) gatewayd serves for each
// volume: reads, writes, verify, write same, unmap, compare and write and
// the capacity and provisioning reports, on top of a Backend (a
// volume.Volume). By default writes are durable when the Backend returns:
// the device reports no volatile write cache (WCE=0 in the Caching mode
// page), FUA is implied and SYNCHRONIZE CACHE has nothing to wait for.
// With the volume's write cache on (Options.WriteCache) it reports WCE=1:
// a write is acknowledged once the Backend has applied it, and is durable
// at the next SYNCHRONIZE CACHE (Backend.Flush) or at once when it has
// FUA, or is a WRITE AND VERIFY or COMPARE AND WRITE (Backend.WriteThrough).
// WCE is the volume's setting: MODE SELECT cannot change it (the page is
// not changeable, and a MODE SELECT that changes it is refused with
// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST); SetWriteCache does.
package sbc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"log/slog"
	"sync"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// Backend is the storage under a block device; volume.Volume implements it.
type Backend interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt returns once the write is durable, or, with the write cache
	// on, once it is applied (durable at the next Flush).
	WriteAt(ctx context.Context, p []byte, off int64) error
	// WriteThrough returns once the write, and every write acknowledged
	// before it, is durable, write cache or not.
	WriteThrough(ctx context.Context, p []byte, off int64) error
	Unmap(ctx context.Context, off, n int64) error
	// Flush returns once every write acknowledged before it is durable.
	Flush(ctx context.Context) error
	Size() int64
}

// Limits the device advertises in the Block Limits VPD page and enforces.
const (
	BlockSize           = 512
	MaxTransferBytes    = 32 << 20 // one command moves at most this much data
	maxUnmapDescriptors = 256
	maxUnmapBlocks      = 1 << 20 // 512 MiB per descriptor
	maxWriteSameBlocks  = 1 << 22
	maxCompareAndWrite  = 255 // blocks
)

// Options describe a device.
type Options struct {
	Name     string // for INQUIRY product id (truncated to 16 bytes)
	Serial   string // unit serial number: the volume id
	ReadOnly bool
	// OptimalBytes is the preferred I/O size (the volume's chunk size);
	// it becomes the optimal transfer and unmap granularity.
	OptimalBytes int
	// WriteCache reports a volatile write cache (WCE=1): the Backend's
	// WriteAt acknowledges writes before they are durable.
	WriteCache bool
}

// Device is an SBC block device on a Backend.
type Device struct {
	b    Backend
	opts Options
	lu   *scsi.LU
	// cawMu makes COMPARE AND WRITE atomic: it takes the lock exclusively,
	// every other write shares it.
	cawMu sync.RWMutex
}

// New returns the device; wrap it with scsi.NewLU to serve it.
func New(b Backend, opts Options) *Device {
	if opts.OptimalBytes <= 0 {
		opts.OptimalBytes = 1 << 20
	}
	return &Device{b: b, opts: opts}
}

// NewLU returns an LU serving a new device on b.
func NewLU(b Backend, opts Options, log *slog.Logger) *scsi.LU {
	d := New(b, opts)
	d.lu = scsi.NewLU(d, log)
	return d.lu
}

// blocks is the capacity in logical blocks.
func (d *Device) blocks() uint64 { return uint64(d.b.Size()) / BlockSize }

// Identity implements scsi.DeviceType.
func (d *Device) Identity() scsi.Identity {
	id := scsi.Identity{
		PeripheralType: 0x00, Vendor: "GATEWAYD", Product: d.opts.Name, Revision: "0001",
		VersionDescriptors: []uint16{0x00a0, 0x0960, 0x0460, 0x04c0}, // SAM-5, iSCSI, SPC-4, SBC-3
		Serial:             d.opts.Serial,
	}
	if id.Product == "" {
		id.Product = "VOLUME"
	}
	h := fnv.New64a()
	h.Write([]byte(d.opts.Serial))
	binary.BigEndian.PutUint64(id.NAA[:], h.Sum64())
	id.NAA[0] = 0x30 | id.NAA[0]&0x0f // NAA 3: locally assigned
	return id
}

// ModeDeviceSpecific implements scsi.DeviceType: DPOFUA.
func (d *Device) ModeDeviceSpecific() byte {
	b := byte(0x10)
	if d.opts.ReadOnly {
		b |= 0x80
	}
	return b
}

// BlockDescriptor implements scsi.DeviceType.
func (d *Device) BlockDescriptor() []byte {
	b := make([]byte, 8)
	n := d.blocks()
	if n > 0xffffff {
		n = 0xffffff
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	binary.BigEndian.PutUint32(b[4:], BlockSize)
	return b
}

// Caching mode page: its code, and WCE in its byte 2.
const (
	pageCaching = 0x08
	cachingWCE  = 0x04
)

// ModePages implements scsi.DeviceType: the Caching page, reporting the
// volume's write cache (WCE), which MODE SELECT cannot change.
func (d *Device) ModePages() []*scsi.ModePage {
	caching := make([]byte, 20)
	if d.opts.WriteCache {
		caching[2] |= cachingWCE
	}
	return []*scsi.ModePage{scsi.NewModePage(pageCaching, 0, caching, nil)}
}

// SetWriteCache reports the volume's write cache as now on or off: WCE
// in the Caching page, and MODE PARAMETERS CHANGED for every nexus when it
// changed. The Backend's own setting decides how its writes are made
// durable; this tells initiators.
func (d *Device) SetWriteCache(on bool) {
	if d.lu == nil {
		return
	}
	d.lu.SetModePage(pageCaching, 0, func(p []byte) {
		p[2] &^= cachingWCE
		if on {
			p[2] |= cachingWCE
		}
	})
}

// VPD implements scsi.DeviceType: Block Limits, Block Device
// Characteristics and Logical Block Provisioning.
func (d *Device) VPD() map[byte]func() []byte {
	return map[byte]func() []byte{
		0xb0: d.blockLimits,
		0xb1: func() []byte {
			b := make([]byte, 60)
			b[1] = 0x01 // non-rotating medium
			b[4] = 0x05 // nominal form factor: less than 1.8 inch (none)
			return b
		},
		0xb2: func() []byte {
			b := make([]byte, 4)
			b[1] = 0x80 | 0x40 | 0x20 | 0x04 // LBPU, LBPWS, LBPWS10, LBPRZ
			b[2] = 0x02                      // thin provisioned
			return b
		},
	}
}

func (d *Device) blockLimits() []byte {
	b := make([]byte, 60)
	b[0] = 0x01 // WSNZ: WRITE SAME with zero blocks is refused
	b[1] = maxCompareAndWrite
	opt := uint32(d.opts.OptimalBytes / BlockSize)
	binary.BigEndian.PutUint16(b[2:], uint16(min(opt, 0xffff)))
	binary.BigEndian.PutUint32(b[4:], MaxTransferBytes/BlockSize)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[16:], maxUnmapBlocks)
	binary.BigEndian.PutUint32(b[20:], maxUnmapDescriptors)
	binary.BigEndian.PutUint32(b[24:], opt)
	binary.BigEndian.PutUint64(b[32:], maxWriteSameBlocks)
	return b
}

// SBC opcodes.
const (
	opRead6          = 0x08
	opWrite6         = 0x0a
	opStartStopUnit  = 0x1b
	opPreventAllow   = 0x1e
	opReadCapacity10 = 0x25
	opRead10         = 0x28
	opWrite10        = 0x2a
	opWriteVerify10  = 0x2e
	opVerify10       = 0x2f
	opPrefetch10     = 0x34
	opSyncCache10    = 0x35
	opWriteSame10    = 0x41
	opUnmap          = 0x42
	opRead16         = 0x88
	opCompareWrite   = 0x89
	opWrite16        = 0x8a
	opWriteVerify16  = 0x8e
	opVerify16       = 0x8f
	opPrefetch16     = 0x90
	opSyncCache16    = 0x91
	opWriteSame16    = 0x93
	opOrWrite16      = 0x8b
	opReadDefect10   = 0x37
	opReadDefect12   = 0xb7
	opServiceIn16    = 0x9e
	saReadCapacity16 = 0x10
	saGetLBAStatus   = 0x12
	opRead12         = 0xa8
	opWrite12        = 0xaa
	opWriteVerify12  = 0xae
	opVerify12       = 0xaf
)

// Commands implements scsi.DeviceType.
func (d *Device) Commands() []scsi.CommandSpec {
	r, w := scsi.AccessRead, scsi.AccessWrite
	return []scsi.CommandSpec{
		{Opcode: opRead6, Name: "READ(6)", CDBLen: 6, Access: r, Run: d.read},
		{Opcode: opRead10, Name: "READ(10)", CDBLen: 10, Access: r, Run: d.read},
		{Opcode: opRead12, Name: "READ(12)", CDBLen: 12, Access: r, Run: d.read},
		{Opcode: opRead16, Name: "READ(16)", CDBLen: 16, Access: r, Run: d.read},
		{Opcode: opWrite6, Name: "WRITE(6)", CDBLen: 6, Access: w, Run: d.write},
		{Opcode: opWrite10, Name: "WRITE(10)", CDBLen: 10, Access: w, Run: d.write},
		{Opcode: opWrite12, Name: "WRITE(12)", CDBLen: 12, Access: w, Run: d.write},
		{Opcode: opWrite16, Name: "WRITE(16)", CDBLen: 16, Access: w, Run: d.write},
		{Opcode: opWriteVerify10, Name: "WRITE AND VERIFY(10)", CDBLen: 10, Access: w, Run: d.write},
		{Opcode: opWriteVerify12, Name: "WRITE AND VERIFY(12)", CDBLen: 12, Access: w, Run: d.write},
		{Opcode: opWriteVerify16, Name: "WRITE AND VERIFY(16)", CDBLen: 16, Access: w, Run: d.write},
		{Opcode: opVerify10, Name: "VERIFY(10)", CDBLen: 10, Access: r, Run: d.verify},
		{Opcode: opVerify12, Name: "VERIFY(12)", CDBLen: 12, Access: r, Run: d.verify},
		{Opcode: opVerify16, Name: "VERIFY(16)", CDBLen: 16, Access: r, Run: d.verify},
		{Opcode: opWriteSame10, Name: "WRITE SAME(10)", CDBLen: 10, Access: w, Run: d.writeSame},
		{Opcode: opWriteSame16, Name: "WRITE SAME(16)", CDBLen: 16, Access: w, Run: d.writeSame},
		{Opcode: opUnmap, Name: "UNMAP", CDBLen: 10, Access: w, Run: d.unmap},
		{Opcode: opSyncCache10, Name: "SYNCHRONIZE CACHE(10)", CDBLen: 10, Access: scsi.AccessPR, Run: d.syncCache},
		{Opcode: opSyncCache16, Name: "SYNCHRONIZE CACHE(16)", CDBLen: 16, Access: scsi.AccessPR, Run: d.syncCache},
		{Opcode: opPrefetch10, Name: "PRE-FETCH(10)", CDBLen: 10, Access: r, Run: d.prefetch},
		{Opcode: opPrefetch16, Name: "PRE-FETCH(16)", CDBLen: 16, Access: r, Run: d.prefetch},
		{Opcode: opReadCapacity10, Name: "READ CAPACITY(10)", CDBLen: 10, Access: scsi.AccessPR, Run: d.readCapacity10},
		{Opcode: opServiceIn16, ServiceAction: saReadCapacity16, HasSA: true, Name: "READ CAPACITY(16)", CDBLen: 16, Access: scsi.AccessPR, Run: d.readCapacity16},
		{Opcode: opServiceIn16, ServiceAction: saGetLBAStatus, HasSA: true, Name: "GET LBA STATUS", CDBLen: 16, Access: r, Run: d.getLBAStatus},
		{Opcode: opCompareWrite, Name: "COMPARE AND WRITE", CDBLen: 16, Access: w, Run: d.compareAndWrite},
		{Opcode: opOrWrite16, Name: "ORWRITE(16)", CDBLen: 16, Access: w, Run: d.orWrite},
		{Opcode: opReadDefect10, Name: "READ DEFECT DATA(10)", CDBLen: 10, Access: r, Run: d.readDefectData},
		{Opcode: opReadDefect12, Name: "READ DEFECT DATA(12)", CDBLen: 12, Access: r, Run: d.readDefectData},
		{Opcode: opStartStopUnit, Name: "START STOP UNIT", CDBLen: 6, Access: w, Run: d.startStop},
		{Opcode: opPreventAllow, Name: "PREVENT ALLOW MEDIUM REMOVAL", CDBLen: 6, Access: scsi.AccessPR, Run: d.preventAllow},
	}
}

// lbaAndLength decodes the LBA and transfer length of the read/write
// family of CDBs.
func lbaAndLength(cdb []byte) (lba uint64, n uint32) {
	switch len(cdb) {
	case 6:
		lba = uint64(scsi.U24(cdb[1:]) & 0x1fffff)
		n = uint32(cdb[4])
		if n == 0 && (cdb[0] == opRead6 || cdb[0] == opWrite6) {
			n = 256
		}
	case 10:
		lba, n = uint64(scsi.U32(cdb[2:])), uint32(scsi.U16(cdb[7:]))
	case 12:
		lba, n = uint64(scsi.U32(cdb[2:])), scsi.U32(cdb[6:])
	default:
		lba, n = scsi.U64(cdb[2:]), scsi.U32(cdb[10:])
	}
	return lba, n
}

// checkRange refuses [lba, lba+n) beyond the capacity, and transfers above
// the advertised maximum when transfer is set.
func (d *Device) checkRange(lba uint64, n uint32, transfer bool, cdbLenField int) error {
	end := lba + uint64(n)
	if end < lba || end > d.blocks() || lba > d.blocks() {
		return scsi.ErrLBAOutOfRange()
	}
	if transfer && uint64(n)*BlockSize > MaxTransferBytes {
		return scsi.InvalidCDBField(cdbLenField, -1)
	}
	return nil
}

// lengthField is the CDB offset of the transfer length, for field pointers.
func lengthField(cdb []byte) int {
	switch len(cdb) {
	case 6:
		return 4
	case 10:
		return 7
	case 12:
		return 6
	}
	return 10
}

// protectField refuses a nonzero RDPROTECT/WRPROTECT/VRPROTECT: the
// device has no protection information.
func protectField(cdb []byte) error {
	if len(cdb) > 6 && cdb[1]&0xe0 != 0 {
		return scsi.InvalidCDBField(1, 7)
	}
	return nil
}

func (d *Device) read(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if err := protectField(cdb); err != nil {
		return nil, err
	}
	lba, n := lbaAndLength(cdb)
	if err := d.checkRange(lba, n, true, lengthField(cdb)); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	size := int(n) * BlockSize
	if lim := t.DataInLimit; lim > 0 && lim < size {
		// The initiator takes only lim bytes: read just the blocks they
		// fall in, and let the transport report the overflow.
		t.DataInLen = size
		size = lim
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, (size+BlockSize-1)/BlockSize*BlockSize)
	if err := d.b.ReadAt(ctx, buf, int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	return buf[:size], nil
}

// mediumError maps a backend failure to sense: cancellation passes
// through, anything else is a MEDIUM ERROR the initiator may retry.
func mediumError(err error, asc scsi.ASC) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	e := scsi.Sense(scsi.KeyMediumError, asc)
	e.Msg = err.Error()
	return e
}

// dataOut checks the data-out buffer holds exactly want bytes. When it
// does not, the command transfers nothing: CHECK CONDITION, INVALID FIELD
// IN COMMAND INFORMATION UNIT, and the transport reports the residual.
func dataOut(t *scsi.Task, want int) ([]byte, error) {
	t.DataOutLen = want
	if len(t.DataOut) != want {
		return nil, scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCInvalidFieldInIU)
	}
	return t.DataOut, nil
}

func (d *Device) writable() error {
	if d.opts.ReadOnly || (d.lu != nil && d.lu.WriteProtected()) {
		return scsi.ErrWriteProtected()
	}
	return nil
}

func (d *Device) write(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	lba, n := lbaAndLength(cdb)
	t.DataOutLen = int(n) * BlockSize
	if err := protectField(cdb); err != nil {
		return nil, err
	}
	if err := d.checkRange(lba, n, true, lengthField(cdb)); err != nil {
		return nil, err
	}
	if err := d.writable(); err != nil {
		return nil, err
	}
	// When the transport's expected length and the CDB disagree, the
	// command proceeds on the data that both allow (FCP-4 9.4.2, the rule
	// iSCSI follows) and the transport reports the residual.
	data := t.DataOut
	if len(data) > int(n)*BlockSize {
		data = data[:int(n)*BlockSize]
	}
	if len(data) == 0 {
		return nil, nil
	}
	d.cawMu.RLock()
	defer d.cawMu.RUnlock()
	if err := d.writeAt(ctx, cdb, data, int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, nil
}

// writeAt writes for a command: through to durable storage when the
// command asks for it (FUA, or a WRITE AND VERIFY, which verifies what is
// on the medium), else into the write cache, if on.
func (d *Device) writeAt(ctx context.Context, cdb, p []byte, off int64) error {
	if fua(cdb) {
		return d.b.WriteThrough(ctx, p, off)
	}
	return d.b.WriteAt(ctx, p, off)
}

// fua says whether a write must be durable when it completes: the FUA bit
// of WRITE(10/12/16) and ORWRITE(16), and every WRITE AND VERIFY (its
// BYTCHK compares with the medium). COMPARE AND WRITE always writes
// through (compareAndWrite).
func fua(cdb []byte) bool {
	switch cdb[0] {
	case opWriteVerify10, opWriteVerify12, opWriteVerify16:
		return true
	case opWrite10, opWrite12, opWrite16, opOrWrite16:
		return cdb[1]&0x08 != 0
	}
	return false // WRITE(6) has no FUA bit
}

func (d *Device) verify(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if err := protectField(cdb); err != nil {
		return nil, err
	}
	lba, n := lbaAndLength(cdb)
	bytchk := (cdb[1] >> 1) & 0x03
	if err := d.checkRange(lba, n, bytchk != 0, lengthField(cdb)); err != nil {
		return nil, err
	}
	switch bytchk {
	case 0:
		return nil, nil // no data to compare: the medium is readable
	case 2:
		return nil, scsi.InvalidCDBField(1, 2)
	}
	want := int(n) * BlockSize
	if bytchk == 3 {
		want = BlockSize
	}
	data, err := dataOut(t, want)
	if err != nil || n == 0 {
		return nil, err
	}
	have := make([]byte, int(n)*BlockSize)
	if err := d.b.ReadAt(ctx, have, int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	for off := 0; off < len(have); off += len(data) {
		if i := firstDiff(have[off:off+len(data)], data); i >= 0 {
			e := scsi.Sense(scsi.KeyMiscompare, scsi.ASCMiscompareDuringVerify)
			e.InfoValid, e.Info = true, uint64(off+i)
			return nil, e
		}
	}
	return nil, nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func (d *Device) writeSame(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	var lba uint64
	var n uint32
	ndob := false
	if cdb[0] == opWriteSame10 {
		lba, n = uint64(scsi.U32(cdb[2:])), uint32(scsi.U16(cdb[7:]))
	} else {
		lba, n = scsi.U64(cdb[2:]), scsi.U32(cdb[10:])
		ndob = cdb[1]&0x01 != 0
	}
	unmap := cdb[1]&0x08 != 0
	if ndob {
		t.DataOutLen = 0
	} else {
		t.DataOutLen = BlockSize
	}
	if err := protectField(cdb); err != nil {
		return nil, err
	}
	if cdb[1]&0x10 != 0 { // ANCHOR: anchored state is not offered
		return nil, scsi.InvalidCDBField(1, 4)
	}
	if n == 0 { // WSNZ
		return nil, scsi.InvalidCDBField(lengthField(cdb), -1)
	}
	if n > maxWriteSameBlocks {
		return nil, scsi.InvalidCDBField(lengthField(cdb), -1)
	}
	if err := d.checkRange(lba, n, false, 0); err != nil {
		return nil, err
	}
	if err := d.writable(); err != nil {
		return nil, err
	}
	block := make([]byte, BlockSize)
	if !ndob {
		data, err := dataOut(t, BlockSize)
		if err != nil {
			return nil, err
		}
		block = data
	}
	d.cawMu.RLock()
	defer d.cawMu.RUnlock()
	off, total := int64(lba)*BlockSize, int64(n)*BlockSize
	if unmap && isZero(block) {
		if err := d.b.Unmap(ctx, off, total); err != nil {
			return nil, mediumError(err, scsi.ASCWriteError)
		}
		return nil, nil
	}
	buf := bytes.Repeat(block, int(min(total, MaxTransferBytes)/BlockSize))
	for total > 0 {
		step := min(total, int64(len(buf)))
		if err := d.b.WriteAt(ctx, buf[:step], off); err != nil {
			return nil, mediumError(err, scsi.ASCWriteError)
		}
		off += step
		total -= step
	}
	return nil, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (d *Device) unmap(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[1]&0x01 != 0 { // ANCHOR
		return nil, scsi.InvalidCDBField(1, 0)
	}
	plen := int(scsi.U16(cdb[7:]))
	t.DataOutLen = plen
	if plen == 0 {
		return nil, nil
	}
	if err := d.writable(); err != nil {
		return nil, err
	}
	if plen < 8 || len(t.DataOut) < plen {
		return nil, scsi.ErrParamLength()
	}
	p := t.DataOut[:plen]
	descLen := int(scsi.U16(p[2:]))
	if descLen%16 != 0 || 8+descLen > plen {
		return nil, scsi.ErrParamLength()
	}
	if descLen/16 > maxUnmapDescriptors {
		return nil, scsi.InvalidParamField(2, -1)
	}
	type extent struct{ lba, n uint64 }
	var extents []extent
	for i := 0; i < descLen/16; i++ {
		desc := p[8+16*i:]
		lba, n := scsi.U64(desc), uint64(scsi.U32(desc[8:]))
		if n > maxUnmapBlocks {
			return nil, scsi.InvalidParamField(8+16*i+8, -1)
		}
		if err := d.checkRange(lba, uint32(n), false, 0); err != nil {
			return nil, err
		}
		if n > 0 {
			extents = append(extents, extent{lba, n})
		}
	}
	d.cawMu.RLock()
	defer d.cawMu.RUnlock()
	for _, e := range extents {
		if err := d.b.Unmap(ctx, int64(e.lba)*BlockSize, int64(e.n)*BlockSize); err != nil {
			return nil, mediumError(err, scsi.ASCWriteError)
		}
	}
	return nil, nil
}

func (d *Device) syncCache(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	var lba uint64
	var n uint32
	if cdb[0] == opSyncCache10 {
		lba, n = uint64(scsi.U32(cdb[2:])), uint32(scsi.U16(cdb[7:]))
	} else {
		lba, n = scsi.U64(cdb[2:]), scsi.U32(cdb[10:])
	}
	if err := d.checkRange(lba, n, false, 0); err != nil {
		return nil, err
	}
	if err := d.b.Flush(ctx); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, nil
}

func (d *Device) prefetch(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	var lba uint64
	var n uint32
	if cdb[0] == opPrefetch10 {
		lba, n = uint64(scsi.U32(cdb[2:])), uint32(scsi.U16(cdb[7:]))
	} else {
		lba, n = scsi.U64(cdb[2:]), scsi.U32(cdb[10:])
	}
	return nil, d.checkRange(lba, n, false, 0)
}

func (d *Device) readCapacity10(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[8]&0x01 == 0 && scsi.U32(cdb[2:]) != 0 {
		return nil, scsi.InvalidCDBField(2, -1)
	}
	b := make([]byte, 8)
	last := d.blocks() - 1
	if last > 0xffffffff {
		last = 0xffffffff
	}
	binary.BigEndian.PutUint32(b, uint32(last))
	binary.BigEndian.PutUint32(b[4:], BlockSize)
	return b, nil
}

func (d *Device) readCapacity16(_ context.Context, t *scsi.Task) ([]byte, error) {
	alloc := int(scsi.U32(t.CDB[10:]))
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b, d.blocks()-1)
	binary.BigEndian.PutUint32(b[8:], BlockSize)
	b[14] = 0x80 | 0x40 // LBPME, LBPRZ
	return scsi.Truncate(b, alloc), nil
}

// getLBAStatus reports one descriptor from the requested LBA to the end
// as "mapped or unknown": the device does not track allocation per block,
// and reading an unmapped block returns zeroes either way (LBPRZ).
func (d *Device) getLBAStatus(_ context.Context, t *scsi.Task) ([]byte, error) {
	lba := scsi.U64(t.CDB[2:])
	alloc := int(scsi.U32(t.CDB[10:]))
	if lba >= d.blocks() {
		return nil, scsi.ErrLBAOutOfRange()
	}
	b := make([]byte, 24)
	binary.BigEndian.PutUint32(b, 20)
	binary.BigEndian.PutUint64(b[8:], lba)
	binary.BigEndian.PutUint32(b[16:], uint32(min(d.blocks()-lba, 0xffffffff)))
	return scsi.Truncate(b, alloc), nil
}

func (d *Device) compareAndWrite(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	lba, n := scsi.U64(cdb[2:]), uint32(cdb[13])
	t.DataOutLen = 2 * int(n) * BlockSize
	if err := protectField(cdb); err != nil {
		return nil, err
	}
	if n > maxCompareAndWrite {
		return nil, scsi.InvalidCDBField(13, -1)
	}
	if err := d.checkRange(lba, n, false, 0); err != nil {
		return nil, err
	}
	if err := d.writable(); err != nil {
		return nil, err
	}
	if len(t.DataOut) != 2*int(n)*BlockSize {
		// The verify and write halves must both be there: a buffer of
		// another size means the NUMBER OF LOGICAL BLOCKS is wrong.
		return nil, scsi.InvalidCDBField(13, -1)
	}
	data := t.DataOut
	if n == 0 {
		return nil, nil
	}
	size := int(n) * BlockSize
	d.cawMu.Lock()
	defer d.cawMu.Unlock()
	have := make([]byte, size)
	if err := d.b.ReadAt(ctx, have, int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	if i := firstDiff(have, data[:size]); i >= 0 {
		e := scsi.Sense(scsi.KeyMiscompare, scsi.ASCMiscompareDuringVerify)
		e.InfoValid, e.Info = true, uint64(i)
		return nil, e
	}
	// Write-through whatever its FUA bit: the compare and the write are
	// one atomic operation, and an initiator relies on the result.
	if err := d.b.WriteThrough(ctx, data[size:], int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, nil
}

func (d *Device) startStop(_ context.Context, t *scsi.Task) ([]byte, error) {
	if t.CDB[4]&0xf0 != 0 { // POWER CONDITION: not offered
		return nil, scsi.InvalidCDBField(4, 7)
	}
	return nil, nil
}

func (d *Device) preventAllow(_ context.Context, t *scsi.Task) ([]byte, error) {
	return nil, nil
}

// orWrite is ORWRITE(16): each block becomes the OR of its contents and
// the data sent, atomically with respect to other writes.
func (d *Device) orWrite(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	lba, n := lbaAndLength(cdb)
	t.DataOutLen = int(n) * BlockSize
	if err := protectField(cdb); err != nil {
		return nil, err
	}
	if err := d.checkRange(lba, n, true, lengthField(cdb)); err != nil {
		return nil, err
	}
	if err := d.writable(); err != nil {
		return nil, err
	}
	data, err := dataOut(t, int(n)*BlockSize)
	if err != nil || n == 0 {
		return nil, err
	}
	d.cawMu.Lock()
	defer d.cawMu.Unlock()
	buf := make([]byte, len(data))
	if err := d.b.ReadAt(ctx, buf, int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCUnrecoveredReadError)
	}
	for i := range buf {
		buf[i] |= data[i]
	}
	if err := d.writeAt(ctx, cdb, buf, int64(lba)*BlockSize); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, nil
}

// readDefectData reports an empty defect list in the format asked for: a
// volume has no media defects.
func (d *Device) readDefectData(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[0] == opReadDefect10 {
		b := []byte{0, cdb[2] & 0x1f, 0, 0}
		return scsi.Truncate(b, int(scsi.U16(cdb[7:]))), nil
	}
	b := []byte{0, cdb[1] & 0x1f, 0, 0, 0, 0, 0, 0}
	return scsi.Truncate(b, int(scsi.U32(cdb[6:]))), nil
}
