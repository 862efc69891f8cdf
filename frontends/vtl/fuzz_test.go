package vtl_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
)

// driveSeeds is one CDB of each command the drive answers, and a few
// malformed ones.
var driveSeeds = [][]byte{
	{0x00, 0, 0, 0, 0, 0},                                  // TEST UNIT READY
	{0x01, 0, 0, 0, 0, 0},                                  // REWIND
	{0x03, 0, 0, 0, 18, 0},                                 // REQUEST SENSE
	{0x05, 0, 0, 0, 0, 0},                                  // READ BLOCK LIMITS
	{0x08, 0, 0, 0x01, 0, 0},                               // READ(6) variable
	{0x08, 0x01, 0, 0, 2, 0},                               // READ(6) fixed
	{0x08, 0x02, 0, 0, 10, 0},                              // READ(6) SILI
	{0x0a, 0, 0, 0, 16, 0},                                 // WRITE(6) variable
	{0x0a, 0x01, 0, 0, 1, 0},                               // WRITE(6) fixed
	{0x10, 0, 0, 0, 1, 0},                                  // WRITE FILEMARKS(6)
	{0x11, 0, 0xff, 0xff, 0xfe, 0},                         // SPACE blocks back
	{0x11, 0x01, 0, 0, 1, 0},                               // SPACE filemarks
	{0x11, 0x03, 0, 0, 0, 0},                               // SPACE end-of-data
	{0x12, 0, 0, 0, 96, 0},                                 // INQUIRY
	{0x12, 1, 0x83, 0, 255, 0},                             // INQUIRY VPD 83
	{0x15, 0x10, 0, 0, 12, 0},                              // MODE SELECT(6)
	{0x19, 0x01, 0, 0, 0, 0},                               // ERASE long
	{0x1a, 0, 0x3f, 0, 255, 0},                             // MODE SENSE(6)
	{0x1a, 0, 0x00, 0, 12, 0},                              // MODE SENSE(6) page 0
	{0x1b, 0, 0, 0, 0, 0},                                  // UNLOAD
	{0x1b, 0, 0, 0, 1, 0},                                  // LOAD
	{0x1e, 0, 0, 0, 1, 0},                                  // PREVENT
	{0x2b, 0x04, 0, 0, 0, 0, 2, 0, 0, 0},                   // LOCATE(10)
	{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0},                      // READ POSITION short
	{0x34, 0x06, 0, 0, 0, 0, 0, 0, 32, 0},                  // READ POSITION long
	{0x34, 0x08, 0, 0, 0, 0, 0, 0, 32, 0},                  // READ POSITION extended
	{0x44, 0, 0, 0, 0, 0, 0, 1, 0, 0},                      // REPORT DENSITY SUPPORT
	{0x4d, 0, 0x40, 0, 0, 0, 0, 0, 255, 0},                 // LOG SENSE
	{0x4d, 0, 0x6e, 0, 0, 0, 0, 0, 255, 0},                 // LOG SENSE TapeAlert
	{0x55, 0x10, 0, 0, 0, 0, 0, 0, 16, 0},                  // MODE SELECT(10)
	{0x5a, 0, 0x0f, 0, 0, 0, 0, 0, 255, 0},                 // MODE SENSE(10)
	{0x92, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, // LOCATE(16) file
	{0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0},             // REPORT SUPPORTED OPERATION CODES
	{0x08, 0, 0xff, 0xff, 0xff, 0},                         // READ(6) of 16 MiB
	{0x0a, 0x01, 0xff, 0xff, 0xff, 0},                      // WRITE(6) of 16M blocks
	{0x34, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0},                   // bad service action
	{0x11},                                                 // SPACE cut short
	{0x04, 0, 0, 0, 0, 0},                                  // FORMAT MEDIUM (past beginning-of-partition)
	{0x04, 0x01, 0x0f, 0, 0, 0},                            // FORMAT MEDIUM, a format and parameter data
	{0x8c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},    // READ ATTRIBUTE values
	{0x8c, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, // READ ATTRIBUTE past the last, 4 GiB allocation
	{0x8c, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0},                // READ ATTRIBUTE list, 3 bytes
	{0x8c, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},                // READ ATTRIBUTE supported, no allocation
	{0x8c, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},                // READ ATTRIBUTE bad service action
	{0x8c, 0, 0}, // READ ATTRIBUTE cut short
}

// changerSeeds likewise for the changer (addresses: transport 1,
// import/export 10, drives 500-501, slots 1000-1003).
var changerSeeds = [][]byte{
	{0x00, 0, 0, 0, 0, 0},
	{0x07, 0, 0, 0, 0, 0},
	{0x12, 0, 0, 0, 96, 0},
	{0x1a, 0, 0x1d, 0, 255, 0},
	{0x1a, 0, 0x3f, 0, 255, 0},
	{0x1e, 0, 0, 0, 1, 0},
	{0x2b, 0, 0, 1, 0x01, 0xf4, 0, 0, 0, 0},
	{0x37, 0x01, 0x03, 0xe8, 0, 0, 0, 2, 0, 0},
	{0xa5, 0, 0, 0, 0x03, 0xe8, 0x01, 0xf4, 0, 0, 0, 0}, // slot to drive
	{0xa5, 0, 0, 0, 0x01, 0xf4, 0x03, 0xeb, 0, 0, 0, 0}, // drive to slot
	{0xa5, 0, 0, 0, 0x03, 0xe9, 0, 0x0a, 0, 0, 0, 0},    // archive
	{0xb8, 0x10, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0},
	{0xb8, 0x14, 0x01, 0xf4, 0, 2, 0x01, 0, 0, 0x30, 0, 0},
	{0xb8, 0x12, 0x03, 0xe9, 0, 1, 0, 0, 0, 9, 0, 0},
	{0xb8, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
}

// checkResult fails the test for an answer no device may give: a status
// other than GOOD, CHECK CONDITION or RESERVATION CONFLICT, unparseable
// sense, an internal target failure (a caught panic or an unclassified
// error), a MEDIUM ERROR from a healthy medium, or more data-in than the
// command may move, or (for READ, which reads only what the transport
// takes) than the transport's limit.
func checkResult(t *testing.T, cdb []byte, limit int, res scsi.Result) {
	t.Helper()
	switch res.Status {
	case scsi.StatusGood, scsi.StatusReservationConflict:
	case scsi.StatusCheckCondition:
		key, asc, ok := scsi.ParseSense(res.Sense)
		if !ok {
			t.Fatalf("CDB % x: CHECK CONDITION with unparseable sense % x", cdb, res.Sense)
		}
		if key == scsi.KeyHardwareError || key == scsi.KeyMediumError {
			t.Fatalf("CDB % x: sense key %#x asc %#04x", cdb, key, asc)
		}
	default:
		t.Fatalf("CDB % x: status %#x", cdb, res.Status)
	}
	if len(res.Data) > vtl.MaxTransferBytes || (cdb[0] == 0x08 && limit > 0 && len(res.Data) > limit) {
		t.Fatalf("CDB % x: %d bytes of data-in (limit %d)", cdb, len(res.Data), limit)
	}
}

var fuzzNexus = scsi.Nexus{InitiatorPort: "iqn.2024-01.io.gatewayd:fuzz,i,0x1"}

// fuzzLibrary is a library of 4 slots, 2 drives and an import/export
// element; tapes GW0001L5 (in drive 1, loaded: R100 R100 F R10 F) and
// GW0002L5-GW0003L5 in slots 1 and 2. Every device has seen the nexus.
func fuzzLibrary(t *testing.T) (*vtl.Library, *vtltest.Shelf) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(4, 2, 1)
	for i, bc := range []string{"GW0001L5", "GW0002L5", "GW0003L5"} {
		shelf.Put(i, vtltest.NewTape(bc, vtltest.TapeOptions{Capacity: 64 << 10, EarlyWarning: 4 << 10}))
	}
	lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf, Serial: "FUZZ"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(lu *scsi.LU, cdb, out []byte) {
		if res := lu.Execute(ctx, &scsi.Command{CDB: cdb, DataOut: out, Nexus: fuzzNexus}); res.Status != scsi.StatusGood {
			t.Fatalf("setup CDB % x: status %#x sense % x", cdb, res.Status, res.Sense)
		}
	}
	for _, lu := range lib.LUNs() {
		lu.Execute(ctx, &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}, Nexus: fuzzNexus})
	}
	run(lib.Changer().LU(), []byte{0xa5, 0, 0, 0, 0x03, 0xe8, 0x01, 0xf4, 0, 0, 0, 0}, nil)
	drive := lib.Drives()[0].LU()
	drive.Execute(ctx, &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}, Nexus: fuzzNexus}) // medium changed
	run(drive, []byte{0x0a, 0, 0, 0, 100, 0}, make([]byte, 100))
	run(drive, []byte{0x0a, 0, 0, 0, 100, 0}, make([]byte, 100))
	run(drive, []byte{0x10, 0, 0, 0, 1, 0}, nil)
	run(drive, []byte{0x0a, 0, 0, 0, 10, 0}, make([]byte, 10))
	run(drive, []byte{0x10, 0, 0, 0, 1, 0}, nil)
	run(drive, []byte{0x2b, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil)
	return lib, shelf
}

// FuzzDrive runs an arbitrary CDB and data-out on a drive with a tape
// loaded at object 1, then checks the answer and that the drive's
// position is still on the tape.
func FuzzDrive(f *testing.F) {
	for _, cdb := range driveSeeds {
		f.Add(cdb, make([]byte, 512), uint16(0))
	}
	f.Add([]byte{0x15, 0x10, 0, 0, 12, 0}, []byte{0, 0, 0, 8, 0x58, 0, 0, 0, 0, 0, 0, 100}, uint16(0))
	f.Add([]byte{0x08, 0, 0, 0, 100, 0}, []byte(nil), uint16(7))
	f.Fuzz(func(t *testing.T, cdb, dataOut []byte, limit uint16) {
		if len(cdb) == 0 || len(cdb) > 16 || len(dataOut) > 1<<20 {
			return
		}
		ctx := context.Background()
		lib, shelf := fuzzLibrary(t)
		lu := lib.Drives()[0].LU()
		res := lu.Execute(ctx, &scsi.Command{CDB: cdb, DataOut: dataOut, Nexus: fuzzNexus, DataInLimit: int(limit)})
		checkResult(t, cdb, int(limit), res)
		tape := shelf.Tape("GW0001L5")
		if !tape.Open() {
			return // unloaded
		}
		pos := lu.Execute(ctx, &scsi.Command{CDB: []byte{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Nexus: fuzzNexus})
		if pos.Status != scsi.StatusGood {
			return // a unit attention the command raised
		}
		if p := binary.BigEndian.Uint32(pos.Data[4:]); uint64(p) > tape.EOD() {
			t.Fatalf("CDB % x: position %d past end-of-data %d", cdb, p, tape.EOD())
		}
	})
}

// FuzzChanger runs an arbitrary CDB and data-out on the changer, then
// checks the answer and the library's consistency: no tape lost or
// duplicated, each drive knowing the tape the inventory puts in it, and
// exactly the tapes in drives open.
func FuzzChanger(f *testing.F) {
	for _, cdb := range changerSeeds {
		f.Add(cdb, []byte(nil), uint16(0))
	}
	f.Add([]byte{0xb8, 0x10, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0}, []byte(nil), uint16(100))
	f.Fuzz(func(t *testing.T, cdb, dataOut []byte, limit uint16) {
		if len(cdb) == 0 || len(cdb) > 16 || len(dataOut) > 1<<16 {
			return
		}
		ctx := context.Background()
		lib, shelf := fuzzLibrary(t)
		res := lib.Changer().LU().Execute(ctx, &scsi.Command{CDB: cdb, DataOut: dataOut, Nexus: fuzzNexus, DataInLimit: int(limit)})
		checkResult(t, cdb, int(limit), res)
		inv, err := shelf.Inventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, bc := range append(append(append([]string(nil), inv.Slots...), inv.IE...), append(inv.Drives, shelf.Archived()...)...) {
			if bc == "" {
				continue
			}
			if seen[bc] {
				t.Fatalf("CDB % x: tape %s twice", cdb, bc)
			}
			seen[bc] = true
		}
		if len(seen) != 3 {
			t.Fatalf("CDB % x: %d tapes, want 3", cdb, len(seen))
		}
		inDrive := map[string]bool{}
		for i, d := range lib.Drives() {
			if d.Barcode() != inv.Drives[i] {
				t.Fatalf("CDB % x: drive %d holds %q, the inventory says %q", cdb, i, d.Barcode(), inv.Drives[i])
			}
			inDrive[inv.Drives[i]] = true
		}
		for bc := range seen {
			if open := shelf.Tape(bc).Open(); open != inDrive[bc] {
				t.Fatalf("CDB % x: tape %s open=%v, in a drive=%v", cdb, bc, open, inDrive[bc])
			}
		}
		if err := lib.Close(ctx); err != nil && !errors.Is(err, vtltest.ErrClosed) {
			t.Fatal(err)
		}
	})
}
