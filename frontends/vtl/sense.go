package vtl

import (
	"context"
	"errors"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/tapes"
)

// Sense data the tape devices report beyond what package scsi names.
const (
	ascLogicalUnitNotReady = scsi.ASCNotReadyCauseNotReportable
	ascInvalidElement      = scsi.ASCInvalidElementAddress
	// ascWORMOverwrite is WORM MEDIUM - OVERWRITE ATTEMPTED (SPC-4's
	// table of additional sense codes, 30h/0Ch, for sequential devices).
	ascWORMOverwrite scsi.ASC = 0x300c
	// ascPositionPastBOM is POSITION PAST BEGINNING OF MEDIUM (3Bh/0Ch).
	ascPositionPastBOM scsi.ASC = 0x3b0c
)

// errWORMOverwrite is a write, erase or format that would overwrite what
// a WORM tape holds: DATA PROTECT, WORM MEDIUM - OVERWRITE ATTEMPTED.
func errWORMOverwrite() *scsi.Error { return scsi.Sense(scsi.KeyDataProtect, ascWORMOverwrite) }

// withInfo sets the INFORMATION field of e to v: a residual, negative for
// an overlength record (two's complement, sign-extended to the 8 bytes of
// descriptor-format sense).
func withInfo(e *scsi.Error, v int64) *scsi.Error {
	e.InfoValid, e.Info = true, uint64(v)
	return e
}

// errNoMedium is NOT READY, MEDIUM NOT PRESENT.
func errNoMedium() *scsi.Error { return scsi.Sense(scsi.KeyNotReady, scsi.ASCMediumNotPresent) }

// errFilemark is a read or space that stopped at a filemark: NO SENSE,
// FILEMARK, FILEMARK DETECTED, with the residual.
func errFilemark(residual int64) *scsi.Error {
	e := withInfo(scsi.Sense(scsi.KeyNoSense, scsi.ASCFilemarkDetected), residual)
	e.Filemark = true
	return e
}

// errEOD is end-of-data met by a read or space: BLANK CHECK,
// END-OF-DATA DETECTED, with the residual, and EOM when end-of-data lies
// past early warning.
func errEOD(residual int64, eom bool) *scsi.Error {
	return withInfo(errEODLocate(eom), residual)
}

// errEODLocate is end-of-data met by a locate: no residual.
func errEODLocate(eom bool) *scsi.Error {
	e := scsi.Sense(scsi.KeyBlankCheck, scsi.ASCEndOfDataDetected)
	e.EOM = eom
	return e
}

// errBOP is beginning-of-partition met while moving backward: NO SENSE,
// EOM, BEGINNING-OF-PARTITION/MEDIUM DETECTED, with the residual.
func errBOP(residual int64) *scsi.Error {
	e := withInfo(scsi.Sense(scsi.KeyNoSense, scsi.ASCBeginningOfPartition), residual)
	e.EOM = true
	return e
}

// errEarlyWarning is a write that succeeded inside the early-warning zone:
// NO SENSE, EOM, END-OF-PARTITION/MEDIUM DETECTED, nothing left undone.
func errEarlyWarning() *scsi.Error {
	e := withInfo(scsi.Sense(scsi.KeyNoSense, scsi.ASCEndOfPartitionDetected), 0)
	e.EOM = true
	return e
}

// errOverflow is a write that did not fit: VOLUME OVERFLOW, EOM,
// END-OF-PARTITION/MEDIUM DETECTED, with what was not written.
func errOverflow(residual int64) *scsi.Error {
	e := withInfo(scsi.Sense(scsi.KeyVolumeOverflow, scsi.ASCEndOfPartitionDetected), residual)
	e.EOM = true
	return e
}

// errILI is an incorrect-length read: NO SENSE, ILI, with the residual.
func errILI(residual int64) *scsi.Error {
	e := withInfo(scsi.Sense(scsi.KeyNoSense, scsi.ASCNoAdditionalSense), residual)
	e.ILI = true
	return e
}

func errInvalidElement() *scsi.Error { return scsi.Sense(scsi.KeyIllegalRequest, ascInvalidElement) }

func errRemovalPrevented() *scsi.Error {
	return scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCMediumRemovalPrevented)
}

// mediumError maps a failure of the medium or shelf to sense: write
// protection and end of medium to theirs, cancellation through, anything
// else a MEDIUM ERROR with asc (the initiator may retry).
func mediumError(err error, asc scsi.ASC) error {
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, tapes.ErrWriteProtected):
		e := scsi.ErrWriteProtected()
		e.Msg = err.Error()
		return e
	case errors.Is(err, tapes.ErrWORMOverwrite):
		e := errWORMOverwrite()
		e.Msg = err.Error()
		return e
	}
	var se *scsi.Error
	if errors.As(err, &se) {
		return se
	}
	e := scsi.Sense(scsi.KeyMediumError, asc)
	e.Msg = err.Error()
	return e
}
