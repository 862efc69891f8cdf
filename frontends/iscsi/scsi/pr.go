package scsi

import (
	"context"
	"encoding/binary"
	"sort"
)

// Persistent reservation types (SPC-4 table 191).
const (
	prWriteExclusive              = 1
	prExclusiveAccess             = 3
	prWriteExclusiveRegsOnly      = 5
	prExclusiveAccessRegsOnly     = 6
	prWriteExclusiveAllRegs       = 7
	prExclusiveAccessAllRegs      = 8
	ascInvalidReleaseOfPR     ASC = 0x2604
)

// persistentReservations is an LU's PR state. Registrations and the
// reservation live as long as the gateway process: APTPL (persist through
// power loss) is not offered (REPORT CAPABILITIES says so).
type persistentReservations struct {
	generation uint32
	regs       map[string]uint64 // initiator port -> reservation key
	holder     string            // initiator port holding the reservation ("" for all-registrants types)
	rtype      byte              // 0: no reservation
}

func (p *persistentReservations) reserved() bool { return p.rtype != 0 }

func allRegistrants(t byte) bool {
	return t == prWriteExclusiveAllRegs || t == prExclusiveAccessAllRegs
}

func registrantsOnly(t byte) bool {
	return t == prWriteExclusiveRegsOnly || t == prExclusiveAccessRegsOnly || allRegistrants(t)
}

// isHolder reports whether port holds the reservation.
func (p *persistentReservations) isHolder(port string) bool {
	if p.rtype == 0 {
		return false
	}
	if allRegistrants(p.rtype) {
		_, ok := p.regs[port]
		return ok
	}
	return p.holder == port
}

// conflicts applies SPC-4 table 63 to a read or write from port.
func (p *persistentReservations) conflicts(port string, write bool) bool {
	if p.rtype == 0 || p.isHolder(port) {
		return false
	}
	if _, registered := p.regs[port]; registered && registrantsOnly(p.rtype) {
		return false
	}
	switch p.rtype {
	case prWriteExclusive, prWriteExclusiveRegsOnly, prWriteExclusiveAllRegs:
		return write
	}
	return true
}

func (lu *LU) prIn(_ context.Context, t *Task) ([]byte, error) {
	alloc := int(U16(t.CDB[7:]))
	lu.mu.Lock()
	defer lu.mu.Unlock()
	p := &lu.pr
	var b []byte
	switch t.CDB[1] & 0x1f {
	case 0: // READ KEYS
		b = make([]byte, 8)
		binary.BigEndian.PutUint32(b, p.generation)
		for _, port := range sortedPorts(p.regs) {
			b = binary.BigEndian.AppendUint64(b, p.regs[port])
		}
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	case 1: // READ RESERVATION
		b = make([]byte, 8)
		binary.BigEndian.PutUint32(b, p.generation)
		if p.rtype != 0 {
			r := make([]byte, 16)
			if !allRegistrants(p.rtype) {
				binary.BigEndian.PutUint64(r, p.regs[p.holder])
			}
			r[13] = p.rtype & 0x0f
			b = append(b, r...)
		}
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	case 2: // REPORT CAPABILITIES
		b = make([]byte, 8)
		b[1] = 8
		b[2] = 0x10 // CRH: RESERVE/RELEASE conflict with persistent reservations as SPC-3 says
		b[3] = 0x80 // TMV: the type mask is valid
		b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02
		b[5] = 0x01
	case 3: // READ FULL STATUS
		b = make([]byte, 8)
		binary.BigEndian.PutUint32(b, p.generation)
		for _, port := range sortedPorts(p.regs) {
			d := make([]byte, 24)
			binary.BigEndian.PutUint64(d, p.regs[port])
			if p.isHolder(port) {
				d[12] = 0x01
				d[13] = p.rtype & 0x0f
			}
			binary.BigEndian.PutUint16(d[18:], 1) // relative target port
			tid := transportID(port)
			binary.BigEndian.PutUint32(d[20:], uint32(len(tid)))
			b = append(append(b, d...), tid...)
		}
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	default:
		return nil, InvalidCDBField(1, 4)
	}
	return Truncate(b, alloc), nil
}

// transportID is an iSCSI TransportID in the initiator-port format
// (SPC-4 7.6.4.6): "<name>,i,0x<isid>", NUL-padded to a multiple of 4.
func transportID(port string) []byte {
	n := len(port) + 1
	n = (n + 3) &^ 3
	b := make([]byte, 4+n)
	b[0] = 0x40 | 0x05 // format 01b, protocol iSCSI
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[4:], port)
	return b
}

func sortedPorts(m map[string]uint64) []string {
	ports := make([]string, 0, len(m))
	for p := range m {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	return ports
}

func (lu *LU) prOut(_ context.Context, t *Task) ([]byte, error) {
	cdb := t.CDB
	plen := int(U32(cdb[5:]))
	t.DataOutLen = plen
	sa := cdb[1] & 0x1f
	scope, rtype := cdb[2]>>4, cdb[2]&0x0f
	if plen != 24 {
		return nil, ErrParamLength()
	}
	if len(t.DataOut) < 24 {
		return nil, ErrParamLength()
	}
	param := t.DataOut[:24]
	key, saKey := U64(param), U64(param[8:])
	flags := param[20]
	if flags&0x08 != 0 { // SPEC_I_PT: not offered
		return nil, InvalidParamField(20, 3)
	}
	if flags&0x01 != 0 { // APTPL: not offered
		return nil, InvalidParamField(20, 0)
	}
	port := t.Nexus.InitiatorPort
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.reserve2 != nil && *lu.reserve2 != port {
		return nil, ErrReservationConflict
	}
	p := &lu.pr
	current, registered := p.regs[port]
	validType := func() error {
		if scope != 0 {
			return InvalidCDBField(2, 4)
		}
		switch rtype {
		case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRegsOnly, prExclusiveAccessRegsOnly,
			prWriteExclusiveAllRegs, prExclusiveAccessAllRegs:
			return nil
		}
		return InvalidCDBField(2, 0)
	}
	switch sa {
	case 0, 6: // REGISTER, REGISTER AND IGNORE EXISTING KEY
		if sa == 0 {
			if !registered && key != 0 {
				return nil, ErrReservationConflict
			}
			if registered && key != current {
				return nil, ErrReservationConflict
			}
		}
		if saKey == 0 {
			if registered {
				lu.unregisterLocked(port)
			}
		} else {
			p.regs[port] = saKey
		}
		p.generation++
		return nil, nil
	}
	if !registered || key != current {
		return nil, ErrReservationConflict
	}
	switch sa {
	case 1: // RESERVE
		if err := validType(); err != nil {
			return nil, err
		}
		if p.rtype != 0 {
			if p.isHolder(port) && p.rtype == rtype {
				return nil, nil
			}
			return nil, ErrReservationConflict
		}
		p.rtype, p.holder = rtype, port
		return nil, nil
	case 2: // RELEASE
		if p.rtype == 0 || !p.isHolder(port) {
			return nil, nil
		}
		if scope != 0 || rtype != p.rtype {
			return nil, Sense(KeyIllegalRequest, ascInvalidReleaseOfPR)
		}
		old := p.rtype
		p.rtype, p.holder = 0, ""
		if registrantsOnly(old) {
			for other := range p.regs {
				if other != port {
					lu.queueUAForLocked(other, ASCReservationsReleased)
				}
			}
		}
		return nil, nil
	case 3: // CLEAR
		for other := range p.regs {
			if other != port {
				lu.queueUAForLocked(other, ASCReservationsPreempted)
			}
		}
		p.regs = map[string]uint64{}
		p.rtype, p.holder = 0, ""
		p.generation++
		return nil, nil
	case 4, 5: // PREEMPT, PREEMPT AND ABORT
		if err := validType(); err != nil && p.rtype != 0 {
			return nil, err
		}
		return nil, lu.preemptLocked(port, saKey, rtype)
	}
	return nil, InvalidCDBField(1, 4)
}

// unregisterLocked removes port's registration and the reservation it
// alone held.
func (lu *LU) unregisterLocked(port string) {
	p := &lu.pr
	delete(p.regs, port)
	switch {
	case p.rtype != 0 && allRegistrants(p.rtype):
		if len(p.regs) == 0 {
			p.rtype, p.holder = 0, ""
		}
	case p.rtype != 0 && p.holder == port:
		old := p.rtype
		p.rtype, p.holder = 0, ""
		if registrantsOnly(old) {
			for other := range p.regs {
				lu.queueUAForLocked(other, ASCReservationsReleased)
			}
		}
	}
}

func (lu *LU) preemptLocked(port string, saKey uint64, rtype byte) error {
	p := &lu.pr
	remove := func(match func(string, uint64) bool) int {
		n := 0
		for other, k := range p.regs {
			if other != port && match(other, k) {
				delete(p.regs, other)
				lu.queueUAForLocked(other, ASCRegistrationsPreempted)
				n++
			}
		}
		return n
	}
	defer func() { p.generation++ }()
	switch {
	case p.rtype == 0:
		if saKey == 0 {
			return InvalidParamField(8, -1)
		}
		if remove(func(_ string, k uint64) bool { return k == saKey }) == 0 {
			return ErrReservationConflict
		}
	case allRegistrants(p.rtype):
		if saKey == 0 {
			remove(func(string, uint64) bool { return true })
			p.rtype, p.holder = rtype, port
			return nil
		}
		if remove(func(_ string, k uint64) bool { return k == saKey }) == 0 {
			return ErrReservationConflict
		}
	case p.regs[p.holder] == saKey:
		remove(func(_ string, k uint64) bool { return k == saKey })
		p.rtype, p.holder = rtype, port
	default:
		if saKey == 0 {
			return InvalidParamField(8, -1)
		}
		if remove(func(_ string, k uint64) bool { return k == saKey }) == 0 {
			return ErrReservationConflict
		}
	}
	return nil
}
