package tapes

import "errors"

// The types a tape library shares with the SCSI devices that serve it
// (frontends/vtl's Medium and Shelf interfaces are written in them).

// Object is one logical object on a tape: a record (a block of data as one
// WRITE delivered it) or a filemark. SSC numbers logical objects from 0 at
// beginning of partition; end-of-data is the position after the last one.
type Object struct {
	Filemark bool
	Size     int // record length in bytes; 0 for a filemark
}

// ErrEndOfMedium is returned by writes that do not fit on the tape.
var ErrEndOfMedium = errors.New("tapes: end of medium")

// ErrWORMOverwrite is returned by a write to a WORM tape that would
// overwrite or erase what it holds (anything but appending at end-of-data).
var ErrWORMOverwrite = errors.New("tapes: WORM tape: overwrite attempted")

// ErrWriteProtected is returned by writes to a read-only tape.
var ErrWriteProtected = errors.New("tapes: tape is write protected")

// ElementType is an SMC element type code (SMC-3 table 8).
type ElementType byte

// SMC element types.
const (
	ElementTransport ElementType = 1 // medium transport (the robot)
	ElementSlot      ElementType = 2 // storage element
	ElementIE        ElementType = 3 // import/export element
	ElementDrive     ElementType = 4 // data transfer element
)

// Element names one element of the library by type and index (0-based
// within its type); the changer maps indexes to element addresses.
type Element struct {
	Type  ElementType
	Index int
}

// Inventory is where every tape of the library is: for each slot, drive
// and import/export element, the barcode it holds or "" when empty.
type Inventory struct {
	Slots  []string
	Drives []string
	IE     []string
}

// Errors a Shelf returns from Move.
var (
	ErrSourceEmpty     = errors.New("tapes: source element is empty")
	ErrDestinationFull = errors.New("tapes: destination element is full")
)
