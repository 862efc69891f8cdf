package vtl

import (
	"context"

	"github.com/gatewayd/gatewayd/tapes"
)

// The seams between the SCSI devices of this package and the tape
// library that keeps tapes and inventory (package tapes implements both
// interfaces; tests use in-memory twins).

// Medium is one virtual tape as a loaded drive sees it. Positions are
// logical object identifiers; the drive keeps the current position, the
// medium keeps the objects. Writing at a position discards every object
// from there on, as on a real tape. A write is durable when it returns,
// unless the medium is buffered (the drive's buffered mode 1): then it is
// durable once Sync returns, or once a later unbuffered write or Close
// returns, and a crash may lose the buffered writes made since, the tape
// then ending at its last durable write.
type Medium interface {
	Barcode() string
	// ReadOnly is true for a write-protected tape (one retrieved from the
	// archive).
	ReadOnly() bool
	// WORM is true for a write-once tape: writes append at end-of-data;
	// overwriting what it holds fails with tapes.ErrWORMOverwrite (only
	// filemarks just before end-of-data, after the first filemark of the
	// tape, may be written over).
	WORM() bool
	// Capacity is the tape's native capacity in bytes; EarlyWarning how
	// many bytes before it writes start reporting EOM (PEWZ / early
	// warning), still succeeding until Capacity.
	Capacity() int64
	EarlyWarning() int64
	// Used is the bytes the tape holds up to end-of-data, after
	// compression: what counts against Capacity.
	Used() int64
	// EOD is the number of logical objects on the tape: the position of
	// end-of-data.
	EOD() uint64
	// Stat describes object i (i < EOD()).
	Stat(ctx context.Context, i uint64) (tapes.Object, error)
	// ReadRecord copies record i into p (at most len(p) bytes) and returns
	// the record's full length. Reading a filemark is an error.
	ReadRecord(ctx context.Context, i uint64, p []byte) (int, error)
	// NextFilemark returns the position of the first filemark at or after
	// from, or ok=false if there is none before end-of-data.
	NextFilemark(ctx context.Context, from uint64) (pos uint64, ok bool, err error)
	// PrevFilemark returns the position of the last filemark before
	// before, or ok=false if there is none.
	PrevFilemark(ctx context.Context, before uint64) (pos uint64, ok bool, err error)
	// WriteRecord makes data the object at position at (at <= EOD()) and
	// end-of-data at+1. compress asks for hardware compression (the data
	// compression mode page's DCE bit). A write that would pass Capacity
	// returns tapes.ErrEndOfMedium and writes nothing.
	WriteRecord(ctx context.Context, at uint64, data []byte, compress bool) error
	// WriteFilemarks writes n filemarks at position at; end-of-data
	// becomes at+n. n == 0 only truncates at at.
	WriteFilemarks(ctx context.Context, at uint64, n int) error
	// Erase makes at end-of-data, discarding everything after it.
	Erase(ctx context.Context, at uint64) error
	// SetBuffered switches the medium's writes between durable when they
	// return (off) and durable at the next Sync (on).
	SetBuffered(on bool)
	// Sync makes every write made before it durable.
	Sync(ctx context.Context) error
	// Close makes every write durable and releases the medium when the
	// drive unloads it.
	Close(ctx context.Context) error
}

// Shelf keeps the library's tapes and their places; the changer moves
// tapes through it and drives open the tape they were given.
type Shelf interface {
	// Inventory returns the current places of all tapes. The number of
	// slots, drives and import/export elements never changes while the
	// library runs.
	Inventory(ctx context.Context) (tapes.Inventory, error)
	// Move records that the tape in from is now in to. from must hold a
	// tape and to be empty (tapes.ErrSourceEmpty, tapes.ErrDestinationFull). Moving a
	// tape into an import/export element archives it: the tape leaves the
	// library (the element reads empty once Move returns) and its data
	// goes to the archive storage class.
	Move(ctx context.Context, from, to tapes.Element) error
	// Open returns the medium of a tape, for the drive it was moved into.
	Open(ctx context.Context, barcode string) (Medium, error)
}
