// Package tapeclient drives an iSCSI tape library from the initiator side,
// the way a backup server's kernel does: a medium changer that moves tapes
// between elements and tape drives that read and write variable-length
// records one command at a time. Tests and benchmarks use it against
// gatewayd and against other targets alike, so it follows the standards
// (SMC-3, SSC-4), not one target.
package tapeclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
)

// SenseError is a command that ended in CHECK CONDITION (or another
// non-GOOD status).
type SenseError struct {
	Opcode byte
	Status byte
	Sense  []byte
	// Data is the data-in that came with the status (a short read).
	Data []byte
}

func (e *SenseError) Error() string {
	return fmt.Sprintf("opcode 0x%02x: status 0x%02x, sense key 0x%x, ASC/ASCQ %02x/%02x (sense %x)",
		e.Opcode, e.Status, e.Key(), e.ASC()>>8, e.ASC()&0xff, e.Sense)
}

func (e *SenseError) fixed() bool { return len(e.Sense) > 0 && e.Sense[0]&0x7f < 0x72 }

// Key is the sense key.
func (e *SenseError) Key() byte {
	switch {
	case e.fixed() && len(e.Sense) > 2:
		return e.Sense[2] & 0x0f
	case !e.fixed() && len(e.Sense) > 1:
		return e.Sense[1] & 0x0f
	}
	return 0
}

// ASC is the additional sense code and qualifier as ASC<<8 | ASCQ.
func (e *SenseError) ASC() uint16 {
	switch {
	case e.fixed() && len(e.Sense) > 13:
		return uint16(e.Sense[12])<<8 | uint16(e.Sense[13])
	case !e.fixed() && len(e.Sense) > 3:
		return uint16(e.Sense[2])<<8 | uint16(e.Sense[3])
	}
	return 0
}

// Filemark, EOM and ILI are the flags of fixed-format sense byte 2.
func (e *SenseError) Filemark() bool { return e.fixed() && len(e.Sense) > 2 && e.Sense[2]&0x80 != 0 }
func (e *SenseError) EOM() bool      { return e.fixed() && len(e.Sense) > 2 && e.Sense[2]&0x40 != 0 }
func (e *SenseError) ILI() bool      { return e.fixed() && len(e.Sense) > 2 && e.Sense[2]&0x20 != 0 }

// Information is the INFORMATION field (the residual of a tape command).
func (e *SenseError) Information() int32 {
	if e.fixed() && len(e.Sense) > 6 && e.Sense[0]&0x80 != 0 {
		return int32(binary.BigEndian.Uint32(e.Sense[3:]))
	}
	return 0
}

// Sense keys a caller tells apart.
const (
	KeyNotReady       = 0x02
	KeyIllegalRequest = 0x05
	KeyUnitAttention  = 0x06
	KeyDataProtect    = 0x07
	KeyBlankCheck     = 0x08
)

// KeyOf returns err's sense key, or -1 when err is not a SenseError.
func KeyOf(err error) int {
	var se *SenseError
	if errors.As(err, &se) {
		return int(se.Key())
	}
	return -1
}

// Device is one logical unit of a library target.
type Device struct {
	Conn *initiator.Conn
	LUN  uint64
}

// Command runs a CDB: out is the data-out, in the most data-in wanted.
// A status other than GOOD is a *SenseError.
func (d Device) Command(ctx context.Context, cdb, out []byte, in int) ([]byte, error) {
	r, err := d.Conn.Command(ctx, d.LUN, cdb, out, in)
	if err != nil {
		return nil, err
	}
	if r.Status != 0 {
		return r.Data, &SenseError{Opcode: cdb[0], Status: r.Status, Sense: r.Sense, Data: r.Data}
	}
	return r.Data, nil
}

// Ready waits until TEST UNIT READY succeeds, taking the unit attentions
// (power on, medium changed) and NOT READY, becoming ready (04/01) answers
// on the way; other answers (medium not present) are returned at once. It
// gives up after a minute.
func (d Device) Ready(ctx context.Context) error {
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		_, err = d.Command(ctx, make([]byte, 6), nil, 0)
		switch k := KeyOf(err); {
		case err == nil:
			return nil
		case k == KeyUnitAttention:
			continue
		case k == KeyNotReady && errors.As(err, new(*SenseError)) && err.(*SenseError).ASC() == 0x0401:
			time.Sleep(20 * time.Millisecond)
		default:
			return err
		}
	}
	return err
}

// Element is one element of a changer's READ ELEMENT STATUS answer.
type Element struct {
	Type    byte // 1 transport, 2 slot, 3 import/export, 4 drive
	Address uint16
	Full    bool
	Barcode string // primary volume tag, trailing spaces removed
}

// Changer is a medium changer LU.
type Changer struct{ Device }

// Elements returns the elements of one type (0: all types) with their
// volume tags. It asks for one type at a time when typ is 0, since some
// targets mis-state lengths in multi-type answers.
func (c Changer) Elements(ctx context.Context, typ byte) ([]Element, error) {
	if typ == 0 {
		var all []Element
		for _, t := range []byte{1, 2, 3, 4} {
			els, err := c.Elements(ctx, t)
			if err != nil {
				return nil, err
			}
			all = append(all, els...)
		}
		return all, nil
	}
	const alloc = 1<<16 - 1
	cdb := []byte{0xb8, 0x10 | typ, 0, 0, 0xff, 0xff, 0, byte(alloc >> 16), byte(alloc >> 8), byte(alloc & 0xff), 0, 0}
	var data []byte
	var err error
	for range 10 { // a pending unit attention first
		if data, err = c.Command(ctx, cdb, nil, alloc); KeyOf(err) != KeyUnitAttention {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("READ ELEMENT STATUS: %w", err)
	}
	if len(data) < 8 {
		return nil, errors.New("READ ELEMENT STATUS: short answer")
	}
	var out []Element
	data = data[8:min(len(data), 8+int(binary.BigEndian.Uint32(data[4:])&0xffffff))]
	for len(data) >= 8 {
		pt := data[0]
		voltag := data[1]&0x80 != 0
		descLen := int(binary.BigEndian.Uint16(data[2:]))
		page := data[8:min(len(data), 8+int(binary.BigEndian.Uint32(data[4:])&0xffffff))]
		data = data[8+len(page):]
		// A short last descriptor still has its address and flags.
		for descLen >= 3 && len(page) >= 3 {
			d := page[:min(descLen, len(page))]
			page = page[len(d):]
			e := Element{Type: pt, Address: binary.BigEndian.Uint16(d), Full: d[2]&0x01 != 0}
			if voltag && len(d) >= 12+32 {
				e.Barcode = trimSpaces(d[12 : 12+32])
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func trimSpaces(b []byte) string {
	n := len(b)
	for n > 0 && (b[n-1] == ' ' || b[n-1] == 0) {
		n--
	}
	return string(b[:n])
}

// Move moves the medium in src to dst with the first transport element.
func (c Changer) Move(ctx context.Context, src, dst uint16) error {
	els, err := c.Elements(ctx, 1)
	if err != nil {
		return err
	}
	if len(els) == 0 {
		return errors.New("changer has no transport element")
	}
	t := els[0].Address
	cdb := []byte{0xa5, 0, byte(t >> 8), byte(t), byte(src >> 8), byte(src), byte(dst >> 8), byte(dst), 0, 0, 0, 0}
	_, err = c.Command(ctx, cdb, nil, 0)
	return err
}

// Find returns the element holding barcode.
func (c Changer) Find(ctx context.Context, barcode string) (Element, error) {
	els, err := c.Elements(ctx, 0)
	if err != nil {
		return Element{}, err
	}
	for _, e := range els {
		if e.Full && e.Barcode == barcode {
			return e, nil
		}
	}
	return Element{}, fmt.Errorf("no element holds %s", barcode)
}

// FirstFull returns the first full element of a type; FirstEmpty the
// first empty one.
func (c Changer) FirstFull(ctx context.Context, typ byte) (Element, error) {
	return c.first(ctx, typ, true)
}

// FirstEmpty returns the first empty element of a type.
func (c Changer) FirstEmpty(ctx context.Context, typ byte) (Element, error) {
	return c.first(ctx, typ, false)
}

func (c Changer) first(ctx context.Context, typ byte, full bool) (Element, error) {
	els, err := c.Elements(ctx, typ)
	if err != nil {
		return Element{}, err
	}
	for _, e := range els {
		if e.Full == full {
			return e, nil
		}
	}
	return Element{}, fmt.Errorf("no element of type %d with full=%v", typ, full)
}

// Drive is a tape drive LU in variable-block mode.
type Drive struct{ Device }

// VariableMode sets block length 0 (variable) in the mode block
// descriptor, as st does for a variable-block device, in buffered mode 1.
func (d Drive) VariableMode(ctx context.Context) error { return d.SelectMode(ctx, 1, 0) }

// SelectMode sets the buffered mode (0: unbuffered, 1: buffered) and the
// block length (0: variable) with MODE SELECT(6).
func (d Drive) SelectMode(ctx context.Context, bufferedMode byte, blockLen uint32) error {
	param := make([]byte, 12)
	param[2] = bufferedMode << 4
	param[3] = 8 // block descriptor length
	param[9], param[10], param[11] = byte(blockLen>>16), byte(blockLen>>8), byte(blockLen)
	_, err := d.Command(ctx, []byte{0x15, 0x10, 0, 0, byte(len(param)), 0}, param, 0)
	return err
}

// BufferedMode returns the buffered mode the drive reports in the mode
// parameter header (MODE SENSE(6)).
func (d Drive) BufferedMode(ctx context.Context) (byte, error) {
	data, err := d.Command(ctx, []byte{0x1a, 0, 0, 0, 12, 0}, nil, 12)
	if err != nil {
		return 0, err
	}
	if len(data) < 4 {
		return 0, errors.New("MODE SENSE: short answer")
	}
	return data[2] >> 4 & 0x07, nil
}

// Write writes one record.
func (d Drive) Write(ctx context.Context, rec []byte) error {
	n := len(rec)
	_, err := d.Command(ctx, []byte{0x0a, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}, rec, 0)
	return err
}

// Read reads the next record with a buffer of max bytes, without SILI: a
// shorter record comes back with its data and a *SenseError with ILI.
func (d Drive) Read(ctx context.Context, max int) ([]byte, error) {
	return d.Command(ctx, []byte{0x08, 0, byte(max >> 16), byte(max >> 8), byte(max), 0}, nil, max)
}

// WriteFilemarks writes n filemarks; in buffered mode they and every
// record before them are written to the medium before it returns.
func (d Drive) WriteFilemarks(ctx context.Context, n int) error {
	_, err := d.Command(ctx, []byte{0x10, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}, nil, 0)
	return err
}

// WriteFilemarksImmed writes n filemarks with IMMED: in buffered mode the
// drive may answer before they are written to the medium.
func (d Drive) WriteFilemarksImmed(ctx context.Context, n int) error {
	_, err := d.Command(ctx, []byte{0x10, 1, byte(n >> 16), byte(n >> 8), byte(n), 0}, nil, 0)
	return err
}

// Rewind goes to the beginning of the tape.
func (d Drive) Rewind(ctx context.Context) error {
	_, err := d.Command(ctx, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0)
	return err
}

// Space codes for SPACE(6).
const (
	SpaceBlocks    = 0
	SpaceFilemarks = 1
	SpaceEOD       = 3
)

// Space moves count (negative: backwards) blocks or filemarks, or to
// end-of-data.
func (d Drive) Space(ctx context.Context, code byte, count int) error {
	c := uint32(int32(count)) & 0xffffff
	_, err := d.Command(ctx, []byte{0x11, code, byte(c >> 16), byte(c >> 8), byte(c), 0}, nil, 0)
	return err
}

// Position returns the current logical object number (READ POSITION,
// short form).
func (d Drive) Position(ctx context.Context) (uint32, error) {
	data, err := d.Command(ctx, []byte{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 20)
	if err != nil {
		return 0, err
	}
	if len(data) < 8 {
		return 0, errors.New("READ POSITION: short answer")
	}
	if data[0]&0x04 != 0 {
		return 0, errors.New("READ POSITION: position unknown")
	}
	return binary.BigEndian.Uint32(data[4:]), nil
}

// Locate goes to logical object pos (LOCATE(10)).
func (d Drive) Locate(ctx context.Context, pos uint32) error {
	_, err := d.Command(ctx, []byte{0x2b, 0, 0, byte(pos >> 24), byte(pos >> 16), byte(pos >> 8), byte(pos), 0, 0, 0}, nil, 0)
	return err
}

// Unload rewinds and unloads the tape (LOAD UNLOAD with LOAD=0).
func (d Drive) Unload(ctx context.Context) error {
	_, err := d.Command(ctx, []byte{0x1b, 0, 0, 0, 0, 0}, nil, 0)
	return err
}
