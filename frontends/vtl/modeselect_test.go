package vtl_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
)

// A MODE SELECT that changes the drive's mode is a synchronize point of
// buffered mode: if the buffered records cannot be written, it fails with
// MEDIUM ERROR / WRITE ERROR and the mode stays as it was.
func TestModeSelectFailsWhenItsSyncFails(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		mode byte // buffered mode asked for
	}{{"block length", 0x10}, {"unbuffered", 0x00}} {
		t.Run(c.name, func(t *testing.T) {
			shelf := vtltest.NewShelf(2, 1, 1)
			tape := vtltest.NewTape("GW0001L5", vtltest.TapeOptions{})
			shelf.PutDrive(0, tape)
			lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf, Serial: "MS"})
			if err != nil {
				t.Fatal(err)
			}
			d := lib.Drives()[0]
			exec := func(cdb, out []byte) scsi.Result {
				return d.LU().Execute(ctx, &scsi.Command{CDB: cdb, DataOut: out, Nexus: scsi.Nexus{InitiatorPort: "host"}})
			}
			// Clear the unit attention of the load, then write a record in
			// buffered mode (the drive's default).
			exec([]byte{0x00, 0, 0, 0, 0, 0}, nil)
			if res := exec([]byte{0x0a, 0, 0, 0, 16, 0}, bytes.Repeat([]byte{7}, 16)); res.Status != scsi.StatusGood {
				t.Fatalf("write: status %#x sense % x", res.Status, res.Sense)
			}
			if !tape.Buffered() {
				t.Fatal("the medium is not in buffered mode")
			}
			before := d.BlockDescriptor()
			tape.Fail(errors.New("injected medium failure"))
			// Header: buffered mode in the device-specific byte; a block
			// descriptor asking for fixed 512-byte blocks.
			param := []byte{0, 0, c.mode, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00}
			res := exec([]byte{0x15, 0x10, 0, 0, byte(len(param)), 0}, param)
			if res.Status != scsi.StatusCheckCondition {
				t.Fatalf("MODE SELECT with the buffered records unwritable: status %#x, want CHECK CONDITION", res.Status)
			}
			if key, asc, ok := scsi.ParseSense(res.Sense); !ok || key != scsi.KeyMediumError || asc != scsi.ASCWriteError {
				t.Fatalf("MODE SELECT sense % x, want MEDIUM ERROR / WRITE ERROR", res.Sense)
			}
			if after := d.BlockDescriptor(); !bytes.Equal(after, before) {
				t.Fatalf("block descriptor % x after the failed MODE SELECT, was % x", after, before)
			}
			if !tape.Buffered() {
				t.Fatal("the failed MODE SELECT took the medium out of buffered mode")
			}
		})
	}
}
