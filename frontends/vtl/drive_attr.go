package vtl

import (
	"context"
	"encoding/binary"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// formatMedium is FORMAT MEDIUM with the default format (FORMAT 0h, no
// parameter data): at beginning-of-partition it makes the tape blank,
// durably. On a WORM tape that holds anything the medium refuses it: DATA
// PROTECT, WORM MEDIUM - OVERWRITE ATTEMPTED. Partitioning is not offered.
func (d *Drive) formatMedium(ctx context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[2]&0x0f != 0 {
		return nil, scsi.InvalidCDBField(2, 3)
	}
	if cdb[3] != 0 || cdb[4] != 0 {
		return nil, scsi.InvalidCDBField(3, -1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m, err := d.loaded()
	if err != nil {
		return nil, err
	}
	if d.pos != 0 {
		return nil, scsi.Sense(scsi.KeyIllegalRequest, ascPositionPastBOM)
	}
	if err := d.writable(m); err != nil {
		return nil, err
	}
	if err := d.synchronize(ctx, m); err != nil {
		return nil, err
	}
	d.written()
	if err := m.Erase(ctx, 0); err != nil {
		return nil, mediumError(err, scsi.ASCWriteError)
	}
	return nil, d.synchronize(ctx, m)
}

// Medium auxiliary memory attributes (SPC-4 7.4) the drive reports.
const (
	attrRemainingCapacity = 0x0000 // MiB left in the partition
	attrMaximumCapacity   = 0x0001 // MiB the partition holds
	attrMediumManufacture = 0x0400
	attrMediumSerial      = 0x0401
	attrMediumType        = 0x0408 // 00h data, 80h WORM
	attrBarcode           = 0x0806

	attrFormatBinary = 0x00
	attrFormatASCII  = 0x01
	attrReadOnly     = 0x80

	mamTypeData = 0x00
	mamTypeWORM = 0x80
)

type attribute struct {
	id     uint16
	format byte
	value  []byte
}

// attributes are the loaded tape's attributes, by identifier. Callers
// hold d.mu; the drive has a medium.
func (d *Drive) attributes() []attribute {
	m := d.m
	u64 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(max(v, 0))) }
	ascii := func(s string, n int) []byte {
		b := make([]byte, n)
		padSpaces(b, s)
		return b
	}
	typ := byte(mamTypeData)
	if m.WORM() {
		typ = mamTypeWORM
	}
	const mib = 1 << 20
	return []attribute{
		{attrRemainingCapacity, attrFormatBinary, u64((m.Capacity() - m.Used()) / mib)},
		{attrMaximumCapacity, attrFormatBinary, u64(m.Capacity() / mib)},
		{attrMediumManufacture, attrFormatASCII, ascii("GATEWAYD", 8)},
		{attrMediumSerial, attrFormatASCII, ascii(m.Barcode(), 32)},
		{attrMediumType, attrFormatBinary, []byte{typ}},
		{attrBarcode, attrFormatASCII, ascii(m.Barcode(), 32)},
	}
}

// READ ATTRIBUTE service actions.
const (
	saAttributeValues    = 0x00
	saAttributeList      = 0x01
	saSupportedAttribute = 0x05
)

// readAttribute is READ ATTRIBUTE of the loaded tape's medium auxiliary
// memory: the values of its attributes from the first asked for
// (ATTRIBUTE VALUES), or their identifiers (ATTRIBUTE LIST, SUPPORTED
// ATTRIBUTES). Every attribute is read-only: WRITE ATTRIBUTE is not
// offered. There is one logical volume and one partition.
func (d *Drive) readAttribute(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	sa := cdb[1] & 0x1f
	if sa != saAttributeValues && sa != saAttributeList && sa != saSupportedAttribute {
		return nil, scsi.InvalidCDBField(1, 4)
	}
	if cdb[5] != 0 {
		return nil, scsi.InvalidCDBField(5, -1)
	}
	if cdb[7] != 0 {
		return nil, scsi.InvalidCDBField(7, -1)
	}
	first := scsi.U16(cdb[8:])
	alloc := int(scsi.U32(cdb[10:]))
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.loaded(); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	for _, a := range d.attributes() {
		if sa != saAttributeValues {
			b = binary.BigEndian.AppendUint16(b, a.id)
			continue
		}
		if a.id < first {
			continue
		}
		b = binary.BigEndian.AppendUint16(b, a.id)
		b = append(b, attrReadOnly|a.format)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.value)))
		b = append(b, a.value...)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return scsi.Truncate(b, alloc), nil
}
