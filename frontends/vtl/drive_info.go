package vtl

import (
	"context"
	"encoding/binary"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// density is one density the drive reports in REPORT DENSITY SUPPORT.
type density struct {
	code         byte
	write        bool // WRTOK
	bitsPerMM    uint32
	tracks       uint16
	capacityMB   uint32 // native, in 10^6 bytes
	name, descr  string
	defaultWrite bool
}

const densityLTO4 = 0x46

// densities are those of an LTO-5 drive: it writes LTO-5 and LTO-4 and
// reads LTO-3.
var densities = []density{
	{code: DensityLTO5, write: true, defaultWrite: true, bitsPerMM: 15142, tracks: 1280, capacityMB: 1500000, name: "U-516", descr: "Ultrium 5/16T"},
	{code: densityLTO4, write: true, bitsPerMM: 13250, tracks: 896, capacityMB: 800000, name: "U-416", descr: "Ultrium 4/16T"},
	{code: 0x44, bitsPerMM: 9638, tracks: 704, capacityMB: 400000, name: "U-316", descr: "Ultrium 3/16T"},
}

// reportDensity is REPORT DENSITY SUPPORT for density codes: all the
// drive knows, or (MEDIA) those of the loaded tape. Medium type reports
// are not offered.
func (d *Drive) reportDensity(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	media := cdb[1]&0x01 != 0
	if cdb[1]&0x02 != 0 { // MEDIUM TYPE
		return nil, scsi.InvalidCDBField(1, 1)
	}
	alloc := int(scsi.U16(cdb[7:]))
	list := densities
	if media {
		d.mu.Lock()
		_, err := d.loaded()
		d.mu.Unlock()
		if err != nil {
			return nil, err
		}
		list = densities[:1] // every tape of the library is an LTO-5 cartridge
	}
	b := make([]byte, 4, 4+52*len(list))
	for _, den := range list {
		desc := make([]byte, 52)
		desc[0], desc[1] = den.code, den.code
		if den.write {
			desc[2] |= 0x80 // WRTOK
		}
		if den.defaultWrite {
			desc[2] |= 0x20 // DEFLT
		}
		put24(desc[5:], den.bitsPerMM)
		binary.BigEndian.PutUint16(desc[8:], 127) // media width 12.7 mm, in tenths
		binary.BigEndian.PutUint16(desc[10:], den.tracks)
		binary.BigEndian.PutUint32(desc[12:], den.capacityMB)
		padSpaces(desc[16:24], "LTO-CVE")
		padSpaces(desc[24:32], den.name)
		padSpaces(desc[32:52], den.descr)
		b = append(b, desc...)
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	return scsi.Truncate(b, alloc), nil
}

func padSpaces(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
}

// Log pages of the drive.
const (
	logSupported    = 0x00
	logWriteErrors  = 0x02
	logReadErrors   = 0x03
	logSequential   = 0x0c
	logTapeAlert    = 0x2e
	logParamCounter = 0x00 // parameter control: bounded data counter
	logParamList    = 0x03 // parameter control: binary format list
)

type logParam struct {
	code    uint16
	control byte
	value   []byte
}

func u64Param(code uint16, v uint64) logParam {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return logParam{code, logParamCounter, b}
}

func u32Param(code uint16, v uint32) logParam {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return logParam{code, logParamCounter, b}
}

// logParams returns the parameters of a page (cumulative values), or
// false for a page the drive does not have.
func (d *Drive) logParams(page byte) ([]logParam, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	errorCounters := func(processed int64) []logParam {
		var ps []logParam
		for c := uint16(0); c <= 6; c++ {
			var v uint64
			if c == 5 { // total bytes processed
				v = uint64(processed)
			}
			ps = append(ps, u64Param(c, v))
		}
		return ps
	}
	switch page {
	case logWriteErrors:
		return errorCounters(d.bytesWritten), true
	case logReadErrors:
		return errorCounters(d.bytesRead), true
	case logSequential:
		ps := []logParam{
			u64Param(0x0000, uint64(d.bytesWritten)), // data bytes received with WRITE commands
			u64Param(0x0003, uint64(d.bytesRead)),    // data bytes transferred by READ commands
		}
		if d.m != nil {
			const mib = 1 << 20
			ps = append(ps,
				u32Param(0x0004, uint32(d.m.Used()/mib)),                          // native capacity BOP to EOD, MiB
				u32Param(0x0005, uint32((d.m.Capacity()-d.m.EarlyWarning())/mib)), // BOP to early warning
			)
		}
		return append(ps, logParam{0x0100, logParamCounter, []byte{0}}), true // cleaning not required
	case logTapeAlert:
		var ps []logParam
		for c := uint16(1); c <= 0x40; c++ {
			ps = append(ps, logParam{c, logParamList, []byte{0}})
		}
		return ps, true
	}
	return nil, false
}

// logSense is LOG SENSE of the supported pages, the write and read error
// counters, the sequential-access device page and TapeAlert (no alert is
// ever raised). Threshold and default values are zero; nothing is saved.
func (d *Drive) logSense(_ context.Context, t *scsi.Task) ([]byte, error) {
	cdb := t.CDB
	if cdb[1]&0x01 != 0 { // SP
		return nil, scsi.InvalidCDBField(1, 0)
	}
	if cdb[1]&0x02 != 0 { // PPC
		return nil, scsi.InvalidCDBField(1, 1)
	}
	pc := cdb[2] >> 6
	page := cdb[2] & 0x3f
	sub := cdb[3]
	ptr := scsi.U16(cdb[5:])
	alloc := int(scsi.U16(cdb[7:]))
	if sub != 0 {
		return nil, scsi.InvalidCDBField(3, -1)
	}
	b := []byte{page, 0, 0, 0}
	if page == logSupported {
		b = append(b, logSupported, logWriteErrors, logReadErrors, logSequential, logTapeAlert)
	} else {
		params, ok := d.logParams(page)
		if !ok {
			return nil, scsi.InvalidCDBField(2, 5)
		}
		if ptr > params[len(params)-1].code {
			return nil, scsi.InvalidCDBField(5, -1)
		}
		for _, p := range params {
			if p.code < ptr {
				continue
			}
			v := p.value
			if pc != 1 { // thresholds and defaults: zero
				v = make([]byte, len(v))
			}
			b = append(b, byte(p.code>>8), byte(p.code), p.control, byte(len(v)))
			b = append(b, v...)
		}
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-4))
	return scsi.Truncate(b, alloc), nil
}
