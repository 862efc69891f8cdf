package vtltest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
	"github.com/gatewayd/gatewayd/tapes"
)

// The twins keep the contracts of vtl.Medium and vtl.Shelf: these tests
// pin the parts devices rely on.

func TestTapeContract(t *testing.T) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(1, 1, 1)
	tape := vtltest.NewTape("T1", vtltest.TapeOptions{Capacity: 100, EarlyWarning: 10})
	shelf.Put(0, tape)
	if _, err := shelf.Open(ctx, "T1"); err == nil {
		t.Fatal("a tape in a slot opened")
	}
	if err := shelf.Move(ctx, tapes.Element{Type: tapes.ElementSlot}, tapes.Element{Type: tapes.ElementDrive}); err != nil {
		t.Fatal(err)
	}
	m, err := shelf.Open(ctx, "T1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shelf.Open(ctx, "T1"); err == nil {
		t.Fatal("a tape opened twice")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.WriteRecord(ctx, 0, make([]byte, 60), false))
	must(m.WriteFilemarks(ctx, 1, 2))
	must(m.WriteRecord(ctx, 3, make([]byte, 40), true)) // compressed: 20 bytes
	if m.Used() != 80 || m.EOD() != 4 {
		t.Fatalf("used %d, EOD %d; want 80, 4", m.Used(), m.EOD())
	}
	if err := m.WriteRecord(ctx, 4, make([]byte, 21), false); !errors.Is(err, tapes.ErrEndOfMedium) {
		t.Fatalf("write past capacity: %v", err)
	}
	if fmt.Sprint(tape.Objects()) != "[R60 F F R40]" {
		t.Fatalf("a write past capacity changed the tape: %v", tape.Objects())
	}
	if fm, ok, err := m.NextFilemark(ctx, 0); err != nil || !ok || fm != 1 {
		t.Fatalf("NextFilemark(0) = %d %v %v", fm, ok, err)
	}
	if fm, ok, err := m.PrevFilemark(ctx, 2); err != nil || !ok || fm != 1 {
		t.Fatalf("PrevFilemark(2) = %d %v %v", fm, ok, err)
	}
	if _, ok, _ := m.PrevFilemark(ctx, 1); ok {
		t.Fatal("PrevFilemark(1) found one")
	}
	p := make([]byte, 10)
	if n, err := m.ReadRecord(ctx, 0, p); err != nil || n != 60 {
		t.Fatalf("ReadRecord into 10 bytes = %d, %v; want the record's length 60", n, err)
	}
	if _, err := m.ReadRecord(ctx, 1, p); err == nil {
		t.Fatal("a filemark read as a record")
	}
	must(m.WriteRecord(ctx, 1, make([]byte, 5), false)) // truncates
	if fmt.Sprint(tape.Objects()) != "[R60 R5]" {
		t.Fatalf("a write in the middle kept what followed: %v", tape.Objects())
	}
	must(m.Erase(ctx, 0))
	if m.EOD() != 0 || m.Used() != 0 {
		t.Fatalf("erase left EOD %d, used %d", m.EOD(), m.Used())
	}
	// The tape cannot leave the drive while its medium is open.
	ie := tapes.Element{Type: tapes.ElementIE}
	if err := shelf.Move(ctx, tapes.Element{Type: tapes.ElementDrive}, ie); err == nil {
		t.Fatal("an open tape moved")
	}
	must(m.Close(ctx))
	if _, err := m.Stat(ctx, 0); !errors.Is(err, vtltest.ErrClosed) {
		t.Fatalf("Stat after Close: %v", err)
	}
	// To the import/export element: archived.
	must(shelf.Move(ctx, tapes.Element{Type: tapes.ElementDrive}, ie))
	inv, _ := shelf.Inventory(ctx)
	if inv.IE[0] != "" || inv.Drives[0] != "" || fmt.Sprint(shelf.Archived()) != "[T1]" {
		t.Fatalf("after archive: %+v, archived %v", inv, shelf.Archived())
	}
	if err := shelf.Move(ctx, ie, tapes.Element{Type: tapes.ElementSlot}); !errors.Is(err, tapes.ErrSourceEmpty) {
		t.Fatalf("move from the empty import/export element: %v", err)
	}
}

func TestReadOnlyTape(t *testing.T) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(1, 1, 1)
	shelf.PutDrive(0, vtltest.NewTape("RO", vtltest.TapeOptions{ReadOnly: true}))
	m, err := shelf.Open(ctx, "RO")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WriteRecord(ctx, 0, []byte{1}, false); !errors.Is(err, tapes.ErrWriteProtected) {
		t.Fatalf("write to a read-only tape: %v", err)
	}
	if err := m.WriteFilemarks(ctx, 0, 1); !errors.Is(err, tapes.ErrWriteProtected) {
		t.Fatalf("filemark on a read-only tape: %v", err)
	}
}
