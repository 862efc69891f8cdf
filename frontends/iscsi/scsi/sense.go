package scsi

import (
	"encoding/binary"
	"fmt"
)

// Status is the SCSI status byte (SAM-5).
type Status byte

const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusReservationConflict Status = 0x18
	StatusTaskSetFull         Status = 0x28
	StatusTaskAborted         Status = 0x40
)

// SenseKey is the sense key of CHECK CONDITION (SPC-4 table 48).
type SenseKey byte

const (
	KeyNoSense        SenseKey = 0x0
	KeyRecoveredError SenseKey = 0x1
	KeyNotReady       SenseKey = 0x2
	KeyMediumError    SenseKey = 0x3
	KeyHardwareError  SenseKey = 0x4
	KeyIllegalRequest SenseKey = 0x5
	KeyUnitAttention  SenseKey = 0x6
	KeyDataProtect    SenseKey = 0x7
	KeyBlankCheck     SenseKey = 0x8
	KeyAbortedCommand SenseKey = 0xb
	KeyVolumeOverflow SenseKey = 0xd
	KeyMiscompare     SenseKey = 0xe
)

// ASC is an additional sense code (high byte) and qualifier (low byte).
type ASC uint16

const (
	ASCNoAdditionalSense            ASC = 0x0000
	ASCFilemarkDetected             ASC = 0x0001
	ASCEndOfPartitionDetected       ASC = 0x0002
	ASCSetmarkDetected              ASC = 0x0003
	ASCBeginningOfPartition         ASC = 0x0004
	ASCEndOfDataDetected            ASC = 0x0005
	ASCNotReadyCauseNotReportable   ASC = 0x0400
	ASCNotReadyBecomingReady        ASC = 0x0401
	ASCWriteError                   ASC = 0x0c00
	ASCInvalidFieldInIU             ASC = 0x0e03
	ASCUnrecoveredReadError         ASC = 0x1100
	ASCParameterListLengthError     ASC = 0x1a00
	ASCMiscompareDuringVerify       ASC = 0x1d00
	ASCInvalidCommandOpcode         ASC = 0x2000
	ASCLBAOutOfRange                ASC = 0x2100
	ASCInvalidElementAddress        ASC = 0x2101
	ASCInvalidFieldInCDB            ASC = 0x2400
	ASCLUNNotSupported              ASC = 0x2500
	ASCInvalidFieldInParameterList  ASC = 0x2600
	ASCWriteProtected               ASC = 0x2700
	ASCMediumMayHaveChanged         ASC = 0x2800
	ASCPowerOnReset                 ASC = 0x2900
	ASCBusDeviceResetOccurred       ASC = 0x2903
	ASCITNexusLoss                  ASC = 0x2907
	ASCParametersChanged            ASC = 0x2a00
	ASCModeParametersChanged        ASC = 0x2a01
	ASCReservationsPreempted        ASC = 0x2a03
	ASCReservationsReleased         ASC = 0x2a04
	ASCRegistrationsPreempted       ASC = 0x2a05
	ASCCapacityDataChanged          ASC = 0x2a09
	ASCCommandSequenceError         ASC = 0x2c00
	ASCCommandsClearedByAnother     ASC = 0x2f00
	ASCIncompatibleMedium           ASC = 0x3000
	ASCSavingParametersUnsupported  ASC = 0x3900
	ASCMediumNotPresent             ASC = 0x3a00
	ASCMediumRemovalPrevented       ASC = 0x5302
	ASCInternalTargetFailure        ASC = 0x4400
	ASCInsufficientRegistrationRes  ASC = 0x5504
	ASCReportedLUNsDataChanged      ASC = 0x3f0e
	ASCSequentialPositioningError   ASC = 0x3b00
	ASCMediumDestinationElementFull ASC = 0x3b0d
	ASCMediumSourceElementEmpty     ASC = 0x3b0e
	ASCLogicalUnitCommFailure       ASC = 0x0800
	ASCInvalidFieldInCommandIU      ASC = 0x0e03
)

// Error is a command failure the LU reports as CHECK CONDITION.
type Error struct {
	Key SenseKey
	ASC ASC
	// Field, when FieldValid, is the byte offset of the offending field in
	// the CDB (InData false) or the parameter list (InData true), with Bit
	// the bit (0-7) when BitValid; it becomes the sense-key-specific field
	// pointer.
	FieldValid, InData, BitValid bool
	Field                        uint16
	Bit                          uint8
	// Info, when InfoValid, is the INFORMATION field (for example the
	// offset of a miscompare or the residue of a tape read).
	InfoValid bool
	Info      uint64
	// Tape flags in fixed-format sense byte 2.
	Filemark, EOM, ILI bool
	// Msg is for logs only; initiators see key and ASC.
	Msg string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("scsi: sense key 0x%x asc 0x%04x", byte(e.Key), uint16(e.ASC))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Sense builds an Error with no field pointer.
func Sense(key SenseKey, asc ASC) *Error { return &Error{Key: key, ASC: asc} }

// InvalidCDBField is ILLEGAL REQUEST, INVALID FIELD IN CDB pointing at
// byte (and bit, when bit >= 0) of the CDB.
func InvalidCDBField(byteOff int, bit int) *Error {
	e := &Error{Key: KeyIllegalRequest, ASC: ASCInvalidFieldInCDB, FieldValid: true, Field: uint16(byteOff)}
	if bit >= 0 {
		e.BitValid, e.Bit = true, uint8(bit)
	}
	return e
}

// InvalidParamField is ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST
// pointing at byte (and bit, when bit >= 0) of the data-out buffer.
func InvalidParamField(byteOff int, bit int) *Error {
	e := &Error{Key: KeyIllegalRequest, ASC: ASCInvalidFieldInParameterList, FieldValid: true, InData: true, Field: uint16(byteOff)}
	if bit >= 0 {
		e.BitValid, e.Bit = true, uint8(bit)
	}
	return e
}

// Common errors.
var (
	ErrInvalidOpcode = func() *Error { return Sense(KeyIllegalRequest, ASCInvalidCommandOpcode) }
	ErrLBAOutOfRange = func() *Error { return Sense(KeyIllegalRequest, ASCLBAOutOfRange) }
	ErrParamLength   = func() *Error { return Sense(KeyIllegalRequest, ASCParameterListLengthError) }
)

// Bytes formats the sense data: fixed format, or descriptor format when
// descriptor is set.
func (e *Error) Bytes(descriptor bool) []byte { return e.bytes(descriptor) }

// fixed-format sense is 18 bytes; descriptor-format carries the same facts
// in descriptors (information 0x00, sense key specific 0x02, stream
// commands 0x04).
func (e *Error) bytes(descriptor bool) []byte {
	var sks [3]byte
	if e.FieldValid {
		sks[0] = 0x80
		if !e.InData {
			sks[0] |= 0x40
		}
		if e.BitValid {
			sks[0] |= 0x08 | e.Bit&7
		}
		binary.BigEndian.PutUint16(sks[1:], e.Field)
	}
	if !descriptor {
		b := make([]byte, 18)
		b[0] = 0x70
		if e.InfoValid {
			b[0] |= 0x80
			binary.BigEndian.PutUint32(b[3:], uint32(e.Info))
		}
		b[2] = byte(e.Key) & 0x0f
		if e.Filemark {
			b[2] |= 0x80
		}
		if e.EOM {
			b[2] |= 0x40
		}
		if e.ILI {
			b[2] |= 0x20
		}
		b[7] = 10
		b[12], b[13] = byte(e.ASC>>8), byte(e.ASC)
		copy(b[15:], sks[:])
		return b
	}
	b := make([]byte, 8, 8+12+8+4)
	b[0] = 0x72
	b[1] = byte(e.Key) & 0x0f
	b[2], b[3] = byte(e.ASC>>8), byte(e.ASC)
	if e.InfoValid {
		d := make([]byte, 12)
		d[0], d[1], d[2] = 0x00, 0x0a, 0x80
		binary.BigEndian.PutUint64(d[4:], e.Info)
		b = append(b, d...)
	}
	if e.FieldValid {
		b = append(b, 0x02, 0x06, 0, 0, sks[0], sks[1], sks[2], 0)
	}
	if e.Filemark || e.EOM || e.ILI {
		var f byte
		if e.Filemark {
			f |= 0x80
		}
		if e.EOM {
			f |= 0x40
		}
		if e.ILI {
			f |= 0x20
		}
		b = append(b, 0x04, 0x02, 0, f)
	}
	b[7] = byte(len(b) - 8)
	return b
}

// ParseSense reads the key and ASC of fixed or descriptor sense data; it
// is for initiators and tests.
func ParseSense(b []byte) (SenseKey, ASC, bool) {
	if len(b) < 1 {
		return 0, 0, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 14 {
			return 0, 0, false
		}
		return SenseKey(b[2] & 0x0f), ASC(uint16(b[12])<<8 | uint16(b[13])), true
	case 0x72, 0x73:
		if len(b) < 4 {
			return 0, 0, false
		}
		return SenseKey(b[1] & 0x0f), ASC(uint16(b[2])<<8 | uint16(b[3])), true
	}
	return 0, 0, false
}
