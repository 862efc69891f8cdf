package scsi

import (
	"context"
	"encoding/binary"
)

// SPC opcodes the LU answers for every device type.
const (
	OpTestUnitReady      = 0x00
	OpRequestSense       = 0x03
	OpInquiry            = 0x12
	OpModeSelect6        = 0x15
	OpReserve6           = 0x16
	OpRelease6           = 0x17
	OpModeSense6         = 0x1a
	OpModeSelect10       = 0x55
	OpReserve10          = 0x56
	OpRelease10          = 0x57
	OpModeSense10        = 0x5a
	OpPersistReserveIn   = 0x5e
	OpPersistReserveOut  = 0x5f
	OpReportLUNs         = 0xa0
	OpMaintenanceIn      = 0xa3
	SAReportSupportedOps = 0x0c
)

func (lu *LU) spcCommands() []CommandSpec {
	return []CommandSpec{
		{Opcode: OpTestUnitReady, Name: "TEST UNIT READY", CDBLen: 6, Access: AccessPR, Run: func(context.Context, *Task) ([]byte, error) { return nil, nil }},
		{Opcode: OpRequestSense, Name: "REQUEST SENSE", CDBLen: 6, NoUA: true, Run: lu.requestSense},
		{Opcode: OpInquiry, Name: "INQUIRY", CDBLen: 6, NoUA: true, Run: lu.inquiry},
		{Opcode: OpModeSelect6, Name: "MODE SELECT(6)", CDBLen: 6, Access: AccessWrite, Run: lu.modeSelect},
		{Opcode: OpModeSelect10, Name: "MODE SELECT(10)", CDBLen: 10, Access: AccessWrite, Run: lu.modeSelect},
		{Opcode: OpModeSense6, Name: "MODE SENSE(6)", CDBLen: 6, Access: AccessRead, Run: lu.modeSense},
		{Opcode: OpModeSense10, Name: "MODE SENSE(10)", CDBLen: 10, Access: AccessRead, Run: lu.modeSense},
		{Opcode: OpReserve6, Name: "RESERVE(6)", CDBLen: 6, Run: lu.reserve},
		{Opcode: OpRelease6, Name: "RELEASE(6)", CDBLen: 6, Run: lu.release},
		{Opcode: OpReserve10, Name: "RESERVE(10)", CDBLen: 10, Run: lu.reserve},
		{Opcode: OpRelease10, Name: "RELEASE(10)", CDBLen: 10, Run: lu.release},
		{Opcode: OpPersistReserveIn, ServiceAction: 0, HasSA: true, Name: "PERSISTENT RESERVE IN (READ KEYS)", CDBLen: 10, Access: AccessPR, Run: lu.prIn},
		{Opcode: OpPersistReserveIn, ServiceAction: 1, HasSA: true, Name: "PERSISTENT RESERVE IN (READ RESERVATION)", CDBLen: 10, Access: AccessPR, Run: lu.prIn},
		{Opcode: OpPersistReserveIn, ServiceAction: 2, HasSA: true, Name: "PERSISTENT RESERVE IN (REPORT CAPABILITIES)", CDBLen: 10, Access: AccessPR, Run: lu.prIn},
		{Opcode: OpPersistReserveIn, ServiceAction: 3, HasSA: true, Name: "PERSISTENT RESERVE IN (READ FULL STATUS)", CDBLen: 10, Access: AccessPR, Run: lu.prIn},
		{Opcode: OpPersistReserveOut, ServiceAction: 0, HasSA: true, Name: "PERSISTENT RESERVE OUT (REGISTER)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpPersistReserveOut, ServiceAction: 1, HasSA: true, Name: "PERSISTENT RESERVE OUT (RESERVE)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpPersistReserveOut, ServiceAction: 2, HasSA: true, Name: "PERSISTENT RESERVE OUT (RELEASE)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpPersistReserveOut, ServiceAction: 3, HasSA: true, Name: "PERSISTENT RESERVE OUT (CLEAR)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpPersistReserveOut, ServiceAction: 4, HasSA: true, Name: "PERSISTENT RESERVE OUT (PREEMPT)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpPersistReserveOut, ServiceAction: 5, HasSA: true, Name: "PERSISTENT RESERVE OUT (PREEMPT AND ABORT)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpPersistReserveOut, ServiceAction: 6, HasSA: true, Name: "PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY)", CDBLen: 10, Access: AccessPR, Run: lu.prOut},
		{Opcode: OpMaintenanceIn, ServiceAction: SAReportSupportedOps, HasSA: true, Name: "REPORT SUPPORTED OPERATION CODES", CDBLen: 12, Access: AccessPR, Run: lu.reportSupportedOps},
	}
}

func (lu *LU) requestSense(_ context.Context, t *Task) ([]byte, error) {
	desc := t.CDB[1]&1 != 0
	e := Sense(KeyNoSense, ASCNoAdditionalSense)
	if asc, ok := lu.takeUA(t.Nexus.InitiatorPort); ok {
		e = Sense(KeyUnitAttention, asc)
	}
	return Truncate(e.bytes(desc), int(t.CDB[4])), nil
}

func padASCII(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
}

func (lu *LU) inquiry(_ context.Context, t *Task) ([]byte, error) {
	cdb := t.CDB
	alloc := int(U16(cdb[3:]))
	id := lu.dev.Identity()
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return nil, InvalidCDBField(2, -1)
		}
		b := make([]byte, 74)
		b[0] = id.PeripheralType & 0x1f
		if id.Removable {
			b[1] = 0x80
		}
		b[2] = 0x06 // SPC-4
		b[3] = 0x12 // HISUP, response data format 2
		b[4] = byte(len(b) - 5)
		b[7] = 0x02 // CMDQUE
		padASCII(b[8:16], id.Vendor)
		padASCII(b[16:32], id.Product)
		padASCII(b[32:36], id.Revision)
		for i, v := range id.VersionDescriptors {
			if i == 8 {
				break
			}
			binary.BigEndian.PutUint16(b[58+2*i:], v)
		}
		return Truncate(b, alloc), nil
	}
	pages := lu.vpdPages()
	fn, ok := pages[cdb[2]]
	if !ok {
		return nil, InvalidCDBField(2, -1)
	}
	body := fn()
	b := make([]byte, 4, 4+len(body))
	b[0] = id.PeripheralType & 0x1f
	b[1] = cdb[2]
	binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
	return Truncate(append(b, body...), alloc), nil
}

func (lu *LU) vpdPages() map[byte]func() []byte {
	id := lu.dev.Identity()
	pages := map[byte]func() []byte{
		0x80: func() []byte { return []byte(id.Serial) },
		0x83: func() []byte { return deviceIdentification(id) },
	}
	for code, fn := range lu.dev.VPD() {
		pages[code] = fn
	}
	pages[0x00] = func() []byte {
		var codes []byte
		for c := range pages {
			codes = append(codes, c)
		}
		sortBytes(codes)
		return codes
	}
	return pages
}

func sortBytes(b []byte) {
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && b[j] < b[j-1]; j-- {
			b[j], b[j-1] = b[j-1], b[j]
		}
	}
}

// deviceIdentification is VPD 0x83: the LU's NAA name and T10 vendor id,
// and the relative target port.
func deviceIdentification(id Identity) []byte {
	var b []byte
	// NAA, binary, associated with the LU.
	b = append(b, 0x01, 0x03, 0x00, 0x08)
	b = append(b, id.NAA[:]...)
	// T10 vendor identification, ASCII.
	t10 := make([]byte, 8, 8+len(id.Serial))
	padASCII(t10, id.Vendor)
	t10 = append(t10, id.Serial...)
	b = append(b, 0x02, 0x01, 0x00, byte(len(t10)))
	b = append(b, t10...)
	// Relative target port identifier 1, associated with the target port.
	b = append(b, 0x61, 0x94, 0x00, 0x04, 0, 0, 0, 1)
	return b
}

func (lu *LU) reportSupportedOps(_ context.Context, t *Task) ([]byte, error) {
	cdb := t.CDB
	rctd := cdb[2]&0x80 != 0
	opts := cdb[2] & 0x07
	alloc := int(U32(cdb[6:]))
	timeouts := func() []byte { return []byte{0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} }
	switch opts {
	case 0:
		var b []byte
		b = append(b, 0, 0, 0, 0)
		for _, c := range lu.ordered {
			d := make([]byte, 8)
			d[0] = c.Opcode
			binary.BigEndian.PutUint16(d[2:], c.ServiceAction)
			if c.HasSA {
				d[5] |= 0x01
			}
			if rctd {
				d[5] |= 0x02
			}
			binary.BigEndian.PutUint16(d[6:], uint16(c.CDBLen))
			b = append(b, d...)
			if rctd {
				b = append(b, timeouts()...)
			}
		}
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		return Truncate(b, alloc), nil
	case 1, 2, 3:
		op, sa := cdb[3], U16(cdb[4:])
		var c *CommandSpec
		hasSA := lu.hasServiceActions(op)
		switch {
		case opts == 1 && hasSA:
			return nil, InvalidCDBField(2, 0)
		case opts == 2 && !hasSA:
			return nil, InvalidCDBField(2, 0)
		case hasSA:
			c = lu.commands[commandKey(op, sa, true)]
		default:
			c = lu.commands[uint32(op)]
		}
		b := make([]byte, 4)
		if c == nil {
			b[1] = 0x01 // not supported
			return Truncate(b, alloc), nil
		}
		b[1] = 0x03
		if rctd {
			b[1] |= 0x80
		}
		binary.BigEndian.PutUint16(b[2:], uint16(c.CDBLen))
		b = append(b, usageData(c)...)
		if rctd {
			b = append(b, timeouts()...)
		}
		return Truncate(b, alloc), nil
	}
	return nil, InvalidCDBField(2, 0)
}

// usageData is the CDB usage bitmap of c: the opcode, the service action
// bits, every other field byte marked usable, and the control byte's
// NACA-free value.
func usageData(c *CommandSpec) []byte {
	u := make([]byte, c.CDBLen)
	u[0] = c.Opcode
	for i := 1; i < len(u)-1; i++ {
		u[i] = 0xff
	}
	if c.HasSA {
		u[1] = 0xe0 | byte(c.ServiceAction)
	}
	u[len(u)-1] = 0x00
	return u
}

func (lu *LU) reserve(_ context.Context, t *Task) ([]byte, error) {
	port := t.Nexus.InitiatorPort
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.pr.reserved() || (lu.reserve2 != nil && *lu.reserve2 != port) {
		return nil, ErrReservationConflict
	}
	lu.reserve2 = &port
	return nil, nil
}

func (lu *LU) release(_ context.Context, t *Task) ([]byte, error) {
	port := t.Nexus.InitiatorPort
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.pr.reserved() {
		return nil, ErrReservationConflict
	}
	if lu.reserve2 != nil && *lu.reserve2 == port {
		lu.reserve2 = nil
	}
	return nil, nil
}
