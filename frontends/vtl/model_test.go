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

// modelDrive is a drive with an empty tape loaded and the power-on unit
// attention taken; run executes one command on it.
func modelDrive(t *testing.T) (*vtltest.Tape, func(cdb, out []byte) scsi.Result) {
	ctx := context.Background()
	shelf := vtltest.NewShelf(1, 1, 1)
	tape := vtltest.NewTape("M", vtltest.TapeOptions{})
	shelf.PutDrive(0, tape)
	lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf})
	if err != nil {
		t.Fatal(err)
	}
	lu := lib.Drives()[0].LU()
	nexus := scsi.Nexus{InitiatorPort: "model"}
	run := func(cdb, out []byte) scsi.Result {
		return lu.Execute(ctx, &scsi.Command{CDB: cdb, DataOut: out, Nexus: nexus})
	}
	run([]byte{0, 0, 0, 0, 0, 0}, nil)
	return tape, run
}

// TestSpaceAgainstModel spaces over random tapes from random positions
// and compares the drive's position and sense with the model.
func TestSpaceAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for tapeNo := 0; tapeNo < 20; tapeNo++ {
		tape, run := modelDrive(t)
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

// readModel is READ(6) as SSC-4 describes it over records of sizes
// (-1: a filemark), in variable-block mode (fixed false) or with FIXED
// and block length blockLen: the position after, the data length and
// the sense ("" for GOOD).
func readModel(sizes []int, pos, n int, sili, fixed bool, blockLen int) (int, int, string) {
	if n == 0 {
		return pos, 0, ""
	}
	if !fixed {
		switch {
		case pos == len(sizes):
			return pos, 0, fmt.Sprintf("BLANK CHECK %d", n)
		case sizes[pos] < 0:
			return pos + 1, 0, fmt.Sprintf("FILEMARK %d", n)
		}
		l := sizes[pos]
		if l == n || l < n && sili || l > n && sili && blockLen == 0 {
			return pos + 1, min(l, n), ""
		}
		return pos + 1, min(l, n), fmt.Sprintf("ILI %d", n-l)
	}
	for i := 0; i < n; i++ {
		switch {
		case pos == len(sizes):
			return pos, i * blockLen, fmt.Sprintf("BLANK CHECK %d", n-i)
		case sizes[pos] < 0:
			return pos + 1, i * blockLen, fmt.Sprintf("FILEMARK %d", n-i)
		case sizes[pos] != blockLen:
			return pos + 1, i*blockLen + min(sizes[pos], blockLen), fmt.Sprintf("ILI %d", n-i)
		}
		pos++
	}
	return pos, n * blockLen, ""
}

// TestReadAgainstModel reads random tapes with random lengths, SILI,
// fixed and variable modes, and compares position, data and sense with
// the model.
func TestReadAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for tapeNo := 0; tapeNo < 20; tapeNo++ {
		_, run := modelDrive(t)
		var sizes []int
		for i, n := 0, rng.IntN(30); i < n; i++ {
			if rng.IntN(4) == 0 {
				sizes = append(sizes, -1)
				run([]byte{0x10, 0, 0, 0, 1, 0}, nil)
				continue
			}
			size := []int{4, 8, 1 + rng.IntN(12)}[rng.IntN(3)]
			sizes = append(sizes, size)
			run([]byte{0x0a, 0, 0, 0, byte(size), 0}, make([]byte, size))
		}
		for op := 0; op < 100; op++ {
			blockLen := []int{0, 4, 8}[rng.IntN(3)]
			sel := run([]byte{0x15, 0x10, 0, 0, 12, 0}, []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, byte(blockLen)})
			if sel.Status != scsi.StatusGood {
				t.Fatalf("MODE SELECT: % x", sel.Sense)
			}
			pos := rng.IntN(len(sizes) + 1)
			run([]byte{0x2b, 0, 0, 0, 0, byte(pos >> 8), byte(pos), 0, 0, 0}, nil)
			fixed := blockLen > 0 && rng.IntN(2) == 0
			sili := !fixed && rng.IntN(2) == 0
			n := rng.IntN(16)
			var b1 byte
			if fixed {
				b1 |= 0x01
				n = rng.IntN(4)
			}
			if sili {
				b1 |= 0x02
			}
			res := run([]byte{0x08, b1, 0, 0, byte(n), 0}, nil)
			wantPos, wantLen, wantSense := readModel(sizes, pos, n, sili, fixed, blockLen)
			got := ""
			if res.Status != scsi.StatusGood {
				key, asc, _ := scsi.ParseSense(res.Sense)
				info := int32(binary.BigEndian.Uint32(res.Sense[3:]))
				switch {
				case key == scsi.KeyNoSense && asc == scsi.ASCNoAdditionalSense && res.Sense[2]&0x20 != 0:
					got = fmt.Sprintf("ILI %d", info)
				default:
					got = senseSummary(res)
				}
			}
			rp := run([]byte{0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil)
			gotPos := int(binary.BigEndian.Uint32(rp.Data[4:]))
			if got != wantSense || gotPos != wantPos || len(res.Data) != wantLen {
				t.Fatalf("tape %v from %d READ fixed=%v sili=%v n=%d block %d: at %d, %d bytes, %q; want at %d, %d bytes, %q",
					sizes, pos, fixed, sili, n, blockLen, gotPos, len(res.Data), got, wantPos, wantLen, wantSense)
			}
		}
	}
}
