package scsi

import (
	"context"
	"encoding/binary"
)

// ModePage is one mode page: its current, default and changeable values,
// each the whole page including its two-byte header. A page with code 0
// and no bytes makes MODE SENSE of page 0 answer the mode parameter
// header and block descriptor alone (what a tape driver asks to learn the
// block size and density).
type ModePage struct {
	Code, Subpage byte
	Current       []byte
	Default       []byte
	Changeable    []byte // a mask: 1 bits may be set by MODE SELECT
}

// NewModePage makes a page whose default and current values are def and
// whose changeable mask is mask (nil: nothing changeable). def includes
// the page header; its length byte is set here.
func NewModePage(code, subpage byte, def, mask []byte) *ModePage {
	def[0] = code & 0x3f
	if subpage != 0 {
		def[0] |= 0x40
		def[1] = subpage
		binary.BigEndian.PutUint16(def[2:], uint16(len(def)-4))
	} else {
		def[1] = byte(len(def) - 2)
	}
	if mask == nil {
		mask = make([]byte, len(def))
	}
	return &ModePage{Code: code, Subpage: subpage, Default: def, Current: append([]byte(nil), def...), Changeable: mask}
}

// Page returns the current value of the LU's mode page code/subpage, or
// nil.
func (lu *LU) Page(code, subpage byte) []byte {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for _, p := range lu.modePages {
		if p.Code == code && p.Subpage == subpage {
			return append([]byte(nil), p.Current...)
		}
	}
	return nil
}

// SetModePage changes the current and default values of the LU's mode
// page code/subpage with set, under the LU's lock, for a setting the
// device takes from elsewhere than MODE SELECT (a volume's write cache,
// set by its administrator). When the page changed, every nexus gets MODE
// PARAMETERS CHANGED. It reports whether the LU has the page.
func (lu *LU) SetModePage(code, subpage byte, set func(page []byte)) bool {
	return lu.setModePage(code, subpage, set, true)
}

// SetModePageQuiet changes a page as SetModePage does, without the unit
// attention: for a value that follows the medium (a tape drive's WORM
// mode), whose change the medium change's own unit attention announces.
func (lu *LU) SetModePageQuiet(code, subpage byte, set func(page []byte)) bool {
	return lu.setModePage(code, subpage, set, false)
}

func (lu *LU) setModePage(code, subpage byte, set func(page []byte), ua bool) bool {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for _, p := range lu.modePages {
		if p.Code != code || p.Subpage != subpage {
			continue
		}
		before := append([]byte(nil), p.Current...)
		set(p.Current)
		set(p.Default)
		if ua && string(before) != string(p.Current) {
			lu.queueUALocked(ASCModeParametersChanged, "")
		}
		return true
	}
	return false
}

// MediumTyper is implemented by device types whose mode parameter header
// carries a medium type (a tape drive: the loaded cartridge's); others
// report 0.
type MediumTyper interface{ ModeMediumType() byte }

// Control mode page fields the LU acts on.
const (
	controlDSense = 0x04 // byte 2: descriptor-format sense
	controlSWP    = 0x08 // byte 4: software write protect
)

func controlPage() *ModePage {
	def := make([]byte, 12)
	def[3] = 0x10 // queue algorithm modifier: unrestricted reordering
	def[5] = 0x40 // TAS: aborted tasks of other nexuses end with TASK ABORTED
	mask := make([]byte, 12)
	mask[2] = controlDSense
	mask[4] = controlSWP
	return NewModePage(0x0a, 0, def, mask)
}

// WriteProtected reports whether the Control page's SWP bit is set; device
// types refuse writes while it is.
func (lu *LU) WriteProtected() bool {
	p := lu.Page(0x0a, 0)
	return p != nil && p[4]&controlSWP != 0
}

// ErrWriteProtected is DATA PROTECT, WRITE PROTECTED.
func ErrWriteProtected() *Error { return Sense(KeyDataProtect, ASCWriteProtected) }

func (lu *LU) modeSense(_ context.Context, t *Task) ([]byte, error) {
	cdb := t.CDB
	ten := cdb[0] == OpModeSense10
	dbd := cdb[1]&0x08 != 0
	pc := cdb[2] >> 6
	code := cdb[2] & 0x3f
	sub := cdb[3]
	alloc := int(cdb[4])
	if ten {
		alloc = int(U16(cdb[7:]))
	}
	if pc == 3 {
		return nil, Sense(KeyIllegalRequest, ASCSavingParametersUnsupported)
	}
	var pages []byte
	found := false
	lu.mu.Lock()
	for _, p := range lu.modePages {
		match := (code == 0x3f && (sub == 0 || sub == 0xff)) ||
			(p.Code == code && (p.Subpage == sub || sub == 0xff))
		if code == 0x3f && sub == 0 && p.Subpage != 0 {
			match = false
		}
		if !match {
			continue
		}
		found = true
		if len(p.Current) == 0 {
			continue // page 0 answered by the header and block descriptor alone
		}
		switch pc {
		case 0:
			pages = append(pages, p.Current...)
		case 1:
			m := append([]byte(nil), p.Changeable...)
			copy(m[:2], p.Default[:2])
			if p.Subpage != 0 {
				copy(m[:4], p.Default[:4])
			}
			pages = append(pages, m...)
		case 2:
			pages = append(pages, p.Default...)
		}
	}
	lu.mu.Unlock()
	if !found {
		return nil, InvalidCDBField(2, 5)
	}
	var bd []byte
	if !dbd {
		bd = lu.dev.BlockDescriptor()
	}
	devSpecific := lu.dev.ModeDeviceSpecific()
	if lu.WriteProtected() {
		devSpecific |= 0x80
	}
	var mediumType byte
	if m, ok := lu.dev.(MediumTyper); ok {
		mediumType = m.ModeMediumType()
	}
	var b []byte
	if ten {
		b = make([]byte, 8)
		b[2] = mediumType
		b[3] = devSpecific
		binary.BigEndian.PutUint16(b[6:], uint16(len(bd)))
		b = append(append(b, bd...), pages...)
		binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	} else {
		b = make([]byte, 4)
		b[1] = mediumType
		b[2] = devSpecific
		b[3] = byte(len(bd))
		b = append(append(b, bd...), pages...)
		if len(b) > 256 {
			b = b[:256]
		}
		b[0] = byte(len(b) - 1)
	}
	return Truncate(b, alloc), nil
}

func (lu *LU) modeSelect(_ context.Context, t *Task) ([]byte, error) {
	cdb := t.CDB
	ten := cdb[0] == OpModeSelect10
	plen := int(cdb[4])
	if ten {
		plen = int(U16(cdb[7:]))
	}
	t.DataOutLen = plen
	if cdb[1]&0x01 != 0 { // SP: saving pages is not supported
		return nil, InvalidCDBField(1, 0)
	}
	if plen == 0 {
		return nil, nil
	}
	data := t.DataOut
	if len(data) < plen {
		return nil, ErrParamLength()
	}
	data = data[:plen]
	hdr := 4
	bdlen := 0
	if ten {
		hdr = 8
		if len(data) < hdr {
			return nil, ErrParamLength()
		}
		bdlen = int(U16(data[6:]))
	} else {
		if len(data) < hdr {
			return nil, ErrParamLength()
		}
		bdlen = int(data[3])
	}
	off := hdr + bdlen
	if off > len(data) {
		return nil, ErrParamLength()
	}
	var apply func() error
	if ms, ok := lu.dev.(ModeSelector); ok {
		devSpecific := data[2]
		if ten {
			devSpecific = data[3]
		}
		var err error
		if apply, err = ms.CheckModeSelect(devSpecific, data[hdr:off], hdr); err != nil {
			return nil, err
		}
	}
	changes, err := lu.checkPages(data, off)
	if err != nil {
		return nil, err
	}
	// The device's change, which may fail (a tape drive's buffered records
	// written out), goes before the pages: a MODE SELECT that fails
	// changes nothing.
	if apply != nil {
		if err := apply(); err != nil {
			return nil, err
		}
	}
	lu.selectPages(changes, t.Nexus.InitiatorPort, apply != nil)
	return nil, nil
}

// pageChange is a mode page of a MODE SELECT parameter list, validated.
type pageChange struct {
	page *ModePage
	data []byte
}

// checkPages validates the mode pages of a MODE SELECT parameter list
// from off, and returns them once all are valid.
func (lu *LU) checkPages(data []byte, off int) ([]pageChange, error) {
	var changes []pageChange
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for off < len(data) {
		if off+2 > len(data) {
			return nil, ErrParamLength()
		}
		code := data[off] & 0x3f
		var sub byte
		n := int(data[off+1]) + 2
		if data[off]&0x40 != 0 {
			if off+4 > len(data) {
				return nil, ErrParamLength()
			}
			sub = data[off+1]
			n = int(U16(data[off+2:])) + 4
		}
		var page *ModePage
		for _, p := range lu.modePages {
			if p.Code == code && p.Subpage == sub {
				page = p
			}
		}
		if page == nil {
			return nil, InvalidParamField(off, 5)
		}
		if n != len(page.Current) || off+n > len(data) {
			return nil, InvalidParamField(off+1, -1)
		}
		in := data[off : off+n]
		hdrLen := 2
		if sub != 0 {
			hdrLen = 4
		}
		for i := hdrLen; i < n; i++ {
			if (in[i]^page.Current[i])&^page.Changeable[i] != 0 {
				return nil, InvalidParamField(off+i, -1)
			}
		}
		changes = append(changes, pageChange{page, in})
		off += n
	}
	return changes, nil
}

// selectPages changes the validated pages and queues MODE PARAMETERS
// CHANGED for the other nexuses when anything changed (pages, or the
// device's header and block descriptor when more is set). Bits a MODE
// SELECT cannot change are not written, so pages validated before stay
// valid whatever changed meanwhile.
func (lu *LU) selectPages(changes []pageChange, port string, more bool) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for _, c := range changes {
		for i := range c.page.Current {
			if i < 2 {
				continue
			}
			c.page.Current[i] = c.page.Current[i]&^c.page.Changeable[i] | c.data[i]&c.page.Changeable[i]
		}
		if c.page.Code == 0x0a && c.page.Subpage == 0 {
			lu.dsense = c.page.Current[2]&controlDSense != 0
		}
	}
	if len(changes) > 0 || more {
		lu.queueUALocked(ASCModeParametersChanged, port)
	}
}
