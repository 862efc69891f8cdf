package vtl_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
)

func TestLibraryLayoutsAndRestart(t *testing.T) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(8, 3, 1)
	inDrive := vtltest.NewTape("GW0001L5", vtltest.TapeOptions{})
	shelf.PutDrive(1, inDrive)
	lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf, Serial: "LIB"})
	if err != nil {
		t.Fatal(err)
	}
	// A tape the inventory has in a drive is loaded at start.
	if !inDrive.Open() || lib.Drives()[1].Barcode() != "GW0001L5" {
		t.Fatalf("tape in drive 2 at start: open %v, drive holds %q", inDrive.Open(), lib.Drives()[1].Barcode())
	}
	luns := lib.LUNs()
	if len(luns) != 4 || luns[0] != lib.Changer().LU() || luns[2] != lib.Drives()[1].LU() {
		t.Fatalf("LUNs: %v", luns)
	}
	var suffixes []string
	for _, d := range lib.DeviceTargets() {
		suffixes = append(suffixes, d.Suffix)
	}
	if fmt.Sprint(suffixes) != "[changer drive01 drive02 drive03]" {
		t.Fatalf("device targets %v", suffixes)
	}
	if got := lib.Drives()[2].Serial(); got != "LIB-03" {
		t.Fatalf("drive 3 serial %q", got)
	}
	if err := lib.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if inDrive.Open() {
		t.Fatal("Close left the medium open")
	}
}

func TestChangerRefusesBadConfigurations(t *testing.T) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(4, 2, 1)
	one := []*vtl.Drive{vtl.NewDrive(vtl.DriveOptions{Shelf: shelf})}
	if _, err := vtl.NewChanger(ctx, vtl.ChangerOptions{Shelf: shelf, Drives: one}); err == nil {
		t.Fatal("a changer with fewer drives than the inventory was built")
	}
	two := append(one, vtl.NewDrive(vtl.DriveOptions{Shelf: shelf}))
	overlap := vtl.Addresses{Transport: 1, IE: 10, Drive: 1001, Slot: 1000}
	if _, err := vtl.NewChanger(ctx, vtl.ChangerOptions{Shelf: shelf, Drives: two, Addresses: &overlap}); err == nil {
		t.Fatal("overlapping element addresses were accepted")
	}
	high := vtl.Addresses{Transport: 1, IE: 10, Drive: 500, Slot: 65534}
	if _, err := vtl.NewChanger(ctx, vtl.ChangerOptions{Shelf: shelf, Drives: two, Addresses: &high}); err == nil {
		t.Fatal("element addresses past 65535 were accepted")
	}
}

// TestConcurrentMovesAndCommands runs moves, element status reads and
// drive commands at once (the iSCSI target runs commands concurrently):
// with the race detector it checks the locking, and at the end that the
// library is consistent.
func TestConcurrentMovesAndCommands(t *testing.T) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(4, 2, 1)
	for i := 0; i < 4; i++ {
		shelf.Put(i, vtltest.NewTape(fmt.Sprintf("GW%04dL5", i+1), vtltest.TapeOptions{}))
	}
	lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf, Serial: "RACE"})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(lu *scsi.LU, nexus string, cdb, out []byte) scsi.Result {
		return lu.Execute(ctx, &scsi.Command{CDB: cdb, DataOut: out, Nexus: scsi.Nexus{InitiatorPort: nexus}})
	}
	valid := func(res scsi.Result) error {
		if res.Status != scsi.StatusGood && res.Status != scsi.StatusCheckCondition {
			return fmt.Errorf("status %#x", res.Status)
		}
		if res.Status == scsi.StatusCheckCondition {
			if key, _, ok := scsi.ParseSense(res.Sense); !ok || key == scsi.KeyHardwareError || key == scsi.KeyMediumError {
				return fmt.Errorf("sense % x", res.Sense)
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	// The robot: each drive's tape back and forth between slot i and drive i.
	for d := 0; d < 2; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slot, drive := uint16(1000+d), uint16(500+d)
			in := []byte{0xa5, 0, 0, 0, byte(slot >> 8), byte(slot), byte(drive >> 8), byte(drive), 0, 0, 0, 0}
			out := []byte{0xa5, 0, 0, 0, byte(drive >> 8), byte(drive), byte(slot >> 8), byte(slot), 0, 0, 0, 0}
			for i := 0; i < 50; i++ {
				for _, cdb := range [][]byte{in, out} {
					if err := valid(exec(lib.Changer().LU(), "robot", cdb, nil)); err != nil {
						errs <- fmt.Errorf("move: %w", err)
						return
					}
				}
			}
		}()
	}
	// Initiators on the drives and the changer.
	driveCDBs := [][]byte{
		{0x00, 0, 0, 0, 0, 0},
		{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0x1a, 0, 0x3f, 0, 0xff, 0},
		{0x0a, 0, 0, 0, 16, 0},
		{0x01, 0, 0, 0, 0, 0},
		{0x08, 0, 0, 0, 16, 0},
		{0x15, 0x10, 0, 0, 12, 0},
	}
	for d := 0; d < 2; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode := []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}
			for i := 0; i < 300; i++ {
				cdb := driveCDBs[i%len(driveCDBs)]
				if err := valid(exec(lib.Drives()[d].LU(), "host", cdb, append(mode, make([]byte, 4)...))); err != nil {
					errs <- fmt.Errorf("drive CDB % x: %w", cdb, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			res := exec(lib.Changer().LU(), "host", []byte{0xb8, 0x10, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0}, nil)
			if err := valid(res); err != nil {
				errs <- fmt.Errorf("element status: %w", err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	inv, err := shelf.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if want := fmt.Sprintf("GW%04dL5", i+1); inv.Slots[i] != want || shelf.Tape(want).Open() {
			t.Errorf("slot %d holds %q (want %s), open %v", i, inv.Slots[i], want, shelf.Tape(want).Open())
		}
	}
}
