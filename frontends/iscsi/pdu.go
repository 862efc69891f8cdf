package iscsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Opcode is the iSCSI PDU opcode (RFC 7143 section 11.2.1.2).
type Opcode byte

// Initiator opcodes.
const (
	OpNOPOut      Opcode = 0x00
	OpSCSICommand Opcode = 0x01
	OpTaskMgmt    Opcode = 0x02
	OpLogin       Opcode = 0x03
	OpText        Opcode = 0x04
	OpDataOut     Opcode = 0x05
	OpLogout      Opcode = 0x06
	OpSNACK       Opcode = 0x10
)

// Target opcodes.
const (
	OpNOPIn              Opcode = 0x20
	OpSCSIResponse       Opcode = 0x21
	OpTaskMgmtResp       Opcode = 0x22
	OpLoginResp          Opcode = 0x23
	OpTextResp           Opcode = 0x24
	OpDataIn             Opcode = 0x25
	OpLogoutResp         Opcode = 0x26
	OpR2T                Opcode = 0x31
	OpAsyncMessage       Opcode = 0x32
	OpReject             Opcode = 0x3f
	opcodeMask                  = 0x3f
	immediateBit                = 0x40
	finalBit                    = 0x80
	bhsLen                      = 48
	digestLen                   = 4
	maxDataSegmentLength        = 1<<24 - 1
)

var opcodeNames = map[Opcode]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI Command", OpTaskMgmt: "Task Management Request", OpLogin: "Login Request",
	OpText: "Text Request", OpDataOut: "SCSI Data-Out", OpLogout: "Logout Request", OpSNACK: "SNACK Request",
	OpNOPIn: "NOP-In", OpSCSIResponse: "SCSI Response", OpTaskMgmtResp: "Task Management Response", OpLoginResp: "Login Response",
	OpTextResp: "Text Response", OpDataIn: "SCSI Data-In", OpLogoutResp: "Logout Response", OpR2T: "R2T",
	OpAsyncMessage: "Asynchronous Message", OpReject: "Reject",
}

func (o Opcode) String() string {
	if n, ok := opcodeNames[o]; ok {
		return n
	}
	return fmt.Sprintf("opcode 0x%02x", byte(o))
}

// Known reports whether o is an opcode RFC 7143 defines.
func (o Opcode) Known() bool { _, ok := opcodeNames[o]; return ok }

// PDU is one iSCSI PDU: the 48-byte basic header segment, additional header
// segments and the data segment (without padding or digests). Fields whose
// position is common to all PDUs have accessors; the rest are read and set
// at their RFC 7143 offsets by the code handling each opcode.
type PDU struct {
	BHS  [bhsLen]byte
	AHS  []byte // a multiple of 4 bytes
	Data []byte

	// dataRef, when set, returns Data's storage to its pool (see
	// buffers.go): whoever takes Data over takes this with it.
	dataRef *[]byte
}

func (p *PDU) Opcode() Opcode        { return Opcode(p.BHS[0] & opcodeMask) }
func (p *PDU) Immediate() bool       { return p.BHS[0]&immediateBit != 0 }
func (p *PDU) Final() bool           { return p.BHS[1]&finalBit != 0 }
func (p *PDU) TaskTag() uint32       { return binary.BigEndian.Uint32(p.BHS[16:]) }
func (p *PDU) LUN() uint64           { return binary.BigEndian.Uint64(p.BHS[8:]) }
func (p *PDU) Uint32(off int) uint32 { return binary.BigEndian.Uint32(p.BHS[off:]) }

// SetOpcode sets the opcode and the immediate bit.
func (p *PDU) SetOpcode(o Opcode, immediate bool) {
	p.BHS[0] = byte(o) & opcodeMask
	if immediate {
		p.BHS[0] |= immediateBit
	}
}

// SetFinal sets or clears the F bit.
func (p *PDU) SetFinal(f bool) {
	if f {
		p.BHS[1] |= finalBit
	} else {
		p.BHS[1] &^= finalBit
	}
}

func (p *PDU) SetTaskTag(t uint32)         { binary.BigEndian.PutUint32(p.BHS[16:], t) }
func (p *PDU) SetLUN(l uint64)             { binary.BigEndian.PutUint64(p.BHS[8:], l) }
func (p *PDU) SetUint32(off int, v uint32) { binary.BigEndian.PutUint32(p.BHS[off:], v) }

// Digests says which digests a connection negotiated (CRC32C or None).
type Digests struct {
	Header, Data bool
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors a connection must tell apart (RFC 7143 section 7.8).
var (
	// ErrHeaderDigest: the header cannot be trusted, not even its length,
	// so the connection must be dropped.
	ErrHeaderDigest = errors.New("iscsi: header digest mismatch")
	// ErrDataDigest: the PDU must be rejected (Reject reason 0x02) and the
	// command recovered; the connection may go on.
	ErrDataDigest = errors.New("iscsi: data digest mismatch")
	// ErrDataTooLong: the data segment exceeds what this side declared.
	ErrDataTooLong = errors.New("iscsi: data segment longer than MaxRecvDataSegmentLength")
)

func pad4(n int) int { return (4 - n%4) % 4 }

// ReadPDU reads one PDU. maxData bounds the data segment (the connection's
// declared MaxRecvDataSegmentLength); nothing is allocated from a length the
// peer sent beyond that bound. A data digest error still returns the PDU,
// so the caller can reject it by its task tag.
func ReadPDU(r io.Reader, dg Digests, maxData int) (*PDU, error) {
	return readPDU(r, dg, maxData, &PDU{}, false)
}

// pooledData says whether the data segment of a PDU with opcode op is
// read into a pooled buffer: for SCSI Command and Data-Out PDUs, whose
// data the session copies or hands to the command.
func pooledData(op Opcode) bool { return op == OpSCSICommand || op == OpDataOut }

// readPDU is ReadPDU into p; with pool set, a SCSI Command's or
// Data-Out's data segment is read into a pooled buffer (p.dataRef).
func readPDU(r io.Reader, dg Digests, maxData int, p *PDU, pool bool) (*PDU, error) {
	*p = PDU{}
	if _, err := io.ReadFull(r, p.BHS[:]); err != nil {
		return nil, err
	}
	ahsLen := int(p.BHS[4]) * 4
	dataLen := int(p.BHS[5])<<16 | int(p.BHS[6])<<8 | int(p.BHS[7])
	if ahsLen > 0 {
		p.AHS = make([]byte, ahsLen)
		if _, err := io.ReadFull(r, p.AHS); err != nil {
			return nil, unexpected(err)
		}
	}
	if dg.Header {
		var d [digestLen]byte
		if _, err := io.ReadFull(r, d[:]); err != nil {
			return nil, unexpected(err)
		}
		sum := crc32.Update(crc32.Checksum(p.BHS[:], castagnoli), castagnoli, p.AHS)
		if binary.LittleEndian.Uint32(d[:]) != sum {
			return nil, ErrHeaderDigest
		}
	}
	if dataLen > maxData {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrDataTooLong, dataLen, maxData)
	}
	if dataLen == 0 {
		return p, nil
	}
	var buf []byte
	if pool && pooledData(p.Opcode()) {
		buf, p.dataRef = getBuf(dataLen + pad4(dataLen))
	} else {
		buf = make([]byte, dataLen+pad4(dataLen))
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, unexpected(err)
	}
	p.Data = buf[:dataLen]
	if dg.Data {
		var d [digestLen]byte
		if _, err := io.ReadFull(r, d[:]); err != nil {
			return nil, unexpected(err)
		}
		// The digest covers the data and its padding.
		if binary.LittleEndian.Uint32(d[:]) != crc32.Checksum(buf, castagnoli) {
			return p, ErrDataDigest
		}
	}
	return p, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Marshal renders p for the wire with the negotiated digests, filling in
// the AHS and data segment lengths.
func (p *PDU) Marshal(dg Digests) ([]byte, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS)/4 > 255 {
		return nil, fmt.Errorf("iscsi: AHS of %d bytes", len(p.AHS))
	}
	if len(p.Data) > maxDataSegmentLength {
		return nil, fmt.Errorf("iscsi: data segment of %d bytes", len(p.Data))
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	n := len(p.Data)
	p.BHS[5], p.BHS[6], p.BHS[7] = byte(n>>16), byte(n>>8), byte(n)
	size := bhsLen + len(p.AHS) + n + pad4(n)
	if dg.Header {
		size += digestLen
	}
	if dg.Data && n > 0 {
		size += digestLen
	}
	b := make([]byte, 0, size)
	b = append(b, p.BHS[:]...)
	b = append(b, p.AHS...)
	if dg.Header {
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	}
	if n > 0 {
		start := len(b)
		b = append(b, p.Data...)
		b = append(b, make([]byte, pad4(n))...)
		if dg.Data {
			b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
		}
	}
	return b, nil
}

// writeTo writes p to w with the negotiated digests without copying its
// data segment.
func (p *PDU) writeTo(w io.Writer, dg Digests) error {
	if len(p.AHS)%4 != 0 || len(p.AHS)/4 > 255 || len(p.Data) > maxDataSegmentLength {
		return fmt.Errorf("iscsi: PDU too large to send")
	}
	p.BHS[4] = byte(len(p.AHS) / 4)
	n := len(p.Data)
	p.BHS[5], p.BHS[6], p.BHS[7] = byte(n>>16), byte(n>>8), byte(n)
	var hdr [bhsLen + digestLen]byte
	copy(hdr[:], p.BHS[:])
	if _, err := w.Write(hdr[:bhsLen]); err != nil {
		return err
	}
	if len(p.AHS) > 0 {
		if _, err := w.Write(p.AHS); err != nil {
			return err
		}
	}
	if dg.Header {
		sum := crc32.Update(crc32.Checksum(p.BHS[:], castagnoli), castagnoli, p.AHS)
		var d [digestLen]byte
		binary.LittleEndian.PutUint32(d[:], sum)
		if _, err := w.Write(d[:]); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	var padding [4]byte
	if _, err := w.Write(p.Data); err != nil {
		return err
	}
	if k := pad4(n); k > 0 {
		if _, err := w.Write(padding[:k]); err != nil {
			return err
		}
	}
	if dg.Data {
		sum := crc32.Update(crc32.Checksum(p.Data, castagnoli), castagnoli, padding[:pad4(n)])
		var d [digestLen]byte
		binary.LittleEndian.PutUint32(d[:], sum)
		if _, err := w.Write(d[:]); err != nil {
			return err
		}
	}
	return nil
}
