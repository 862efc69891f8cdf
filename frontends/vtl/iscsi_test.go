package vtl_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
)

// TestThroughISCSI serves a library as one target (changer at LUN 0,
// drives at LUNs 1-2) on loopback and drives it with the project's
// initiator: REPORT LUNS, a move into a drive, records and filemarks
// written with WRITE(6), rewind, reading back, a short record's ILI
// with its data, a move back out.
func TestThroughISCSI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	shelf := vtltest.NewShelf(4, 2, 1)
	shelf.Put(0, vtltest.NewTape("GW0001L5", vtltest.TapeOptions{}))
	lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf, Serial: "E2E"})
	if err != nil {
		t.Fatal(err)
	}
	const name = "iqn.2024-01.io.gatewayd:vtl"
	srv := iscsi.NewServer(iscsi.Config{})
	if err := srv.SetTarget(&iscsi.Target{Name: name, LUNs: lib.LUNs()}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := initiator.Dial(ctx, ln.Addr().String(), initiator.Options{TargetName: name})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer c.Close()

	do := func(lun uint64, cdb, out []byte, readLen int) *initiator.Response {
		t.Helper()
		r, err := c.Command(ctx, lun, cdb, out, readLen)
		if err != nil {
			t.Fatalf("LUN %d CDB % x: %v", lun, cdb, err)
		}
		return r
	}
	good := func(lun uint64, cdb, out []byte, readLen int) *initiator.Response {
		t.Helper()
		r := do(lun, cdb, out, readLen)
		if r.Status != byte(scsi.StatusGood) {
			t.Fatalf("LUN %d CDB % x: status %#x sense % x", lun, cdb, r.Status, r.Sense)
		}
		return r
	}
	expectSense := func(r *initiator.Response, key scsi.SenseKey, asc scsi.ASC) {
		t.Helper()
		k, a, ok := scsi.ParseSense(r.Sense)
		if r.Status != byte(scsi.StatusCheckCondition) || !ok || k != key || a != asc {
			t.Fatalf("status %#x sense % x, want CHECK CONDITION key %#x asc %#04x", r.Status, r.Sense, key, asc)
		}
	}

	r := good(0, []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, nil, 256)
	if n := binary.BigEndian.Uint32(r.Data); n != 24 {
		t.Fatalf("REPORT LUNS lists %d bytes, want 3 LUNs: % x", n, r.Data)
	}
	for i := 0; i < 3; i++ {
		if lun := r.Data[8+8*i+1]; lun != byte(i) {
			t.Fatalf("REPORT LUNS entry %d is LUN %d: % x", i, lun, r.Data)
		}
	}
	// The power-on unit attentions, then each device's type.
	for lun := uint64(0); lun < 3; lun++ {
		expectSense(do(lun, []byte{0, 0, 0, 0, 0, 0}, nil, 0), scsi.KeyUnitAttention, scsi.ASCPowerOnReset)
		inq := good(lun, []byte{0x12, 0, 0, 0, 36, 0}, nil, 36)
		want := byte(0x01)
		if lun == 0 {
			want = 0x08
		}
		if inq.Data[0] != want {
			t.Fatalf("LUN %d is peripheral type %#x, want %#x", lun, inq.Data[0], want)
		}
	}
	expectSense(do(1, []byte{0, 0, 0, 0, 0, 0}, nil, 0), scsi.KeyNotReady, scsi.ASCMediumNotPresent)

	// Slot 1000 to drive 500 (LUN 1).
	good(0, []byte{0xa5, 0, 0, 0, 0x03, 0xe8, 0x01, 0xf4, 0, 0, 0, 0}, nil, 0)
	expectSense(do(1, []byte{0, 0, 0, 0, 0, 0}, nil, 0), scsi.KeyUnitAttention, scsi.ASCMediumMayHaveChanged)
	good(1, []byte{0, 0, 0, 0, 0, 0}, nil, 0)

	// Records of mixed sizes (one larger than the first burst, so it
	// goes on R2T) and filemarks.
	records := [][]byte{pattern(10000, 1), pattern(200<<10, 2), pattern(300, 3)}
	write6 := func(data []byte) {
		n := len(data)
		good(1, []byte{0x0a, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}, data, 0)
	}
	for _, rec := range records {
		write6(rec)
	}
	good(1, []byte{0x10, 0, 0, 0, 1, 0}, nil, 0)
	last := pattern(50, 4)
	write6(last)
	good(1, []byte{0x10, 0, 0, 0, 1, 0}, nil, 0)
	if got := shelf.Tape("GW0001L5").Objects(); len(got) != 6 {
		t.Fatalf("tape holds %v", got)
	}

	good(1, []byte{0x01, 0, 0, 0, 0, 0}, nil, 0)
	read6 := func(n int) *initiator.Response {
		return do(1, []byte{0x08, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}, nil, n)
	}
	for i, rec := range records[:2] {
		r := read6(len(rec))
		if r.Status != byte(scsi.StatusGood) || !bytes.Equal(r.Data, rec) {
			t.Fatalf("record %d: status %#x, %d bytes", i, r.Status, len(r.Data))
		}
	}
	// The 300-byte record read with 400 asked: its data, then CHECK
	// CONDITION with ILI and the residual, and the transport's
	// underflow.
	r = read6(400)
	expectSense(r, scsi.KeyNoSense, scsi.ASCNoAdditionalSense)
	if r.Sense[2]&0x20 == 0 || binary.BigEndian.Uint32(r.Sense[3:]) != 100 {
		t.Fatalf("short record: sense % x, want ILI and information 100", r.Sense)
	}
	if !bytes.Equal(r.Data, records[2]) || !r.Underflow || r.Residual != 100 {
		t.Fatalf("short record: %d bytes, underflow %v residual %d", len(r.Data), r.Underflow, r.Residual)
	}
	r = read6(1000)
	expectSense(r, scsi.KeyNoSense, scsi.ASCFilemarkDetected)
	if r.Sense[2]&0x80 == 0 {
		t.Fatalf("filemark: sense % x lacks FILEMARK", r.Sense)
	}
	if r := read6(len(last)); r.Status != byte(scsi.StatusGood) || !bytes.Equal(r.Data, last) {
		t.Fatalf("last record: status %#x, %d bytes", r.Status, len(r.Data))
	}
	expectSense(read6(10), scsi.KeyNoSense, scsi.ASCFilemarkDetected)
	expectSense(read6(10), scsi.KeyBlankCheck, scsi.ASCEndOfDataDetected)
	pos := good(1, []byte{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 20)
	if p := binary.BigEndian.Uint32(pos.Data[4:]); p != 6 {
		t.Fatalf("READ POSITION: object %d, want 6", p)
	}

	// Back to slot 1001: the drive unloads and is empty.
	good(0, []byte{0xa5, 0, 0, 0, 0x01, 0xf4, 0x03, 0xe9, 0, 0, 0, 0}, nil, 0)
	expectSense(do(1, []byte{0, 0, 0, 0, 0, 0}, nil, 0), scsi.KeyNotReady, scsi.ASCMediumNotPresent)
	if shelf.Tape("GW0001L5").Open() {
		t.Fatal("the tape's medium is still open after the move out")
	}
}

// pattern is n bytes that differ between records and along each one.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}
