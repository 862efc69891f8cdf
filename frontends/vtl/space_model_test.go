package vtl_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
)

// spaceModel is SPACE(6) as SSC-4 describes it, one logical object at a
// time: the position after spacing and the sense ("" for GOOD).
func spaceModel(objs []bool, pos int, code byte, count int) (int, string) {
	eod := len(objs)
	switch {
	case code == 0 && count > 0:
		for i := 0; i < count; i++ {
			if pos == eod {
				return pos, fmt.Sprintf("BLANK CHECK %d", count-i)
			}
			pos++
			if objs[pos-1] {
				return pos, fmt.Sprintf("FILEMARK %d", count-i)
			}
		}
	case code == 0 && count < 0:
		for i := 0; i < -count; i++ {
			if pos == 0 {
				return pos, fmt.Sprintf("BOP %d", -count-i)
			}
			if objs[pos-1] {
				return pos - 1, fmt.Sprintf("FILEMARK %d", -count-i)
			}
			pos--
		}
	case code == 1 && count > 0:
		for i := 0; i < count; i++ {
			for pos < eod && !objs[pos] {
				pos++
			}
			if pos == eod {
				return pos, fmt.Sprintf("BLANK CHECK %d", count-i)
			}
			pos++
		}
	case code == 1 && count < 0:
		for i := 0; i < -count; i++ {
			for pos > 0 && !objs[pos-1] {
				pos--
			}
			if pos == 0 {
				return pos, fmt.Sprintf("BOP %d", -count-i)
			}
			pos--
		}
	}
	return pos, ""
}

// senseSummary names the condition of a SPACE answer as spaceModel does.
func senseSummary(res scsi.Result) string {
	if res.Status == scsi.StatusGood {
		return ""
	}
	key, asc, _ := scsi.ParseSense(res.Sense)
	info := int32(binary.BigEndian.Uint32(res.Sense[3:]))
	switch {
	case key == scsi.KeyBlankCheck && asc == scsi.ASCEndOfDataDetected:
		return fmt.Sprintf("BLANK CHECK %d", info)
	case key == scsi.KeyNoSense && asc == scsi.ASCFilemarkDetected && res.Sense[2]&0x80 != 0:
		return fmt.Sprintf("FILEMARK %d", info)
	case key == scsi.KeyNoSense && asc == scsi.ASCBeginningOfPartition && res.Sense[2]&0x40 != 0:
		return fmt.Sprintf("BOP %d", info)
	}
	return fmt.Sprintf("sense % x", res.Sense)
}

// TestSpaceAgainstModel spaces over random tapes from random positions
// and compares the drive's position and sense with the model.
func TestSpaceAgainstModel(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	nexus := scsi.Nexus{InitiatorPort: "model"}
	for tapeNo := 0; tapeNo < 20; tapeNo++ {
		shelf := vtltest.NewShelf(1, 1, 1)
		tape := vtltest.NewTape("M", vtltest.TapeOptions{})
		shelf.PutDrive(0, tape)
		lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf})
		if err != nil {
			t.Fatal(err)
		}
		lu := lib.Drives()[0].LU()
		run := func(cdb []byte, out []byte) scsi.Result {
			return lu.Execute(ctx, &scsi.Command{CDB: cdb, DataOut: out, Nexus: nexus})
		}
		run([]byte{0, 0, 0, 0, 0, 0}, nil) // power-on unit attention
		var objs []bool
		for i, n := 0, rng.IntN(30); i < n; i++ {
			if rng.IntN(3) == 0 {
				objs = append(objs, true)
				run([]byte{0x10, 0, 0, 0, 1, 0}, nil)
			} else {
				objs = append(objs, false)
				run([]byte{0x0a, 0, 0, 0, 1, 0}, []byte{byte(i)})
			}
		}
		if got := len(tape.Objects()); got != len(objs) {
			t.Fatalf("tape %d: %d objects written, want %d", tapeNo, got, len(objs))
		}
		for op := 0; op < 100; op++ {
			pos := rng.IntN(len(objs) + 1)
			code := byte(rng.IntN(2))
			count := rng.IntN(12) - 6
			if r := run([]byte{0x2b, 0, 0, 0, 0, byte(pos >> 8), byte(pos), 0, 0, 0}, nil); r.Status != scsi.StatusGood {
				t.Fatalf("LOCATE %d: % x", pos, r.Sense)
			}
			c := uint32(count) & 0xffffff
			res := run([]byte{0x11, code, byte(c >> 16), byte(c >> 8), byte(c), 0}, nil)
			wantPos, wantSense := spaceModel(objs, pos, code, count)
			rp := run([]byte{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil)
			gotPos := int(binary.BigEndian.Uint32(rp.Data[4:]))
			if got := senseSummary(res); got != wantSense || gotPos != wantPos {
				t.Fatalf("tape %v from %d SPACE code %d count %d: at %d %q, want at %d %q",
					objs, pos, code, count, gotPos, got, wantPos, wantSense)
			}
		}
	}
}
