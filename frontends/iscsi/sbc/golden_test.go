package sbc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/gatewayd/gatewayd/frontends/iscsi/sbc"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// TestGolden runs the command sequences in testdata/golden: each file is a
// story told to one disk LU (unit attentions, reservations, mode pages,
// reads and writes at the edges), with the answers SPC-4 and SBC-3 call
// for written under each command. Regenerate with -rewrite only after
// checking every changed answer against the standards.
//
//	new size=1MiB [writecache=true]  a fresh LU on an in-memory volume (with a write cache)
//	writecache on=true|false   the volume's write cache set by its administrator
//	cmd nexus=A out=<hex, '.' between groups>|fill=<byte>x<count>[,<byte>x<count>...]
//	<CDB in hex; spaces ignored>
//	reset                      LUN reset
//	lost nexus=A               the nexus's session ended
//	backend fail=true|false    make the volume's reads and writes fail
//	peek offset=N len=N [durable=true]  the volume's bytes, bypassing SCSI
//	                           (durable: what a crash would leave)
func TestGolden(t *testing.T) {
	datadriven.Walk(t, "testdata/golden", func(t *testing.T, path string) {
		var lu *scsi.LU
		var backend *memBackend
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "new":
				size := int64(1 << 20)
				if d.HasArg("size") {
					var s string
					d.ScanArgs(t, "size", &s)
					size = parseSize(t, s)
				}
				var wc bool
				if d.HasArg("writecache") {
					d.ScanArgs(t, "writecache", &wc)
				}
				backend = &memBackend{b: make([]byte, size), durable: make([]byte, size), cached: wc}
				lu = sbc.NewLU(backend, sbc.Options{Name: "golden", Serial: "vol-golden", WriteCache: wc}, nil)
				return ""
			case "writecache":
				var on bool
				d.ScanArgs(t, "on", &on)
				backend.mu.Lock()
				backend.cached = on
				backend.mu.Unlock()
				if !on {
					backend.Flush(context.Background())
				}
				lu.Device().(*sbc.Device).SetWriteCache(on)
				return ""
			case "cmd":
				cmd := &scsi.Command{CDB: mustHex(t, d.Input), Nexus: nexus(t, d)}
				if d.HasArg("out") {
					var s string
					d.ScanArgs(t, "out", &s)
					cmd.DataOut = mustHex(t, s)
				}
				if d.HasArg("fill") {
					var s string
					d.ScanArgs(t, "fill", &s)
					cmd.DataOut = fill(t, s)
				}
				res := lu.Execute(context.Background(), cmd)
				if backend.bad != nil {
					t.Fatalf("%v", backend.bad)
				}
				return describe(res)
			case "reset":
				lu.Reset(scsi.ASCBusDeviceResetOccurred)
				return ""
			case "lost":
				lu.NexusLost(nexus(t, d).InitiatorPort)
				return ""
			case "backend":
				var fail bool
				d.ScanArgs(t, "fail", &fail)
				backend.fail = nil
				if fail {
					backend.fail = fmt.Errorf("injected failure")
				}
				return ""
			case "peek":
				var off, n int
				d.ScanArgs(t, "offset", &off)
				d.ScanArgs(t, "len", &n)
				if d.HasArg("durable") {
					backend.mu.Lock()
					defer backend.mu.Unlock()
					return hexdump(backend.durable[off : off+n])
				}
				return hexdump(backend.b[off : off+n])
			}
			t.Fatalf("unknown command %q", d.Cmd)
			return ""
		})
	})
}

func nexus(t *testing.T, d *datadriven.TestData) scsi.Nexus {
	name := "A"
	if d.HasArg("nexus") {
		d.ScanArgs(t, "nexus", &name)
	}
	return scsi.Nexus{InitiatorPort: "iqn.2024-01.io.gatewayd:" + strings.ToLower(name) + ",i,0x1"}
}

func parseSize(t *testing.T, s string) int64 {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "MiB"):
		mult, s = 1<<20, strings.TrimSuffix(s, "MiB")
	case strings.HasSuffix(s, "KiB"):
		mult, s = 1<<10, strings.TrimSuffix(s, "KiB")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("size %q", s)
	}
	return n * mult
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	s = strings.ReplaceAll(strings.Join(strings.Fields(s), ""), ".", "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

var keyNames = map[scsi.SenseKey]string{
	scsi.KeyNoSense: "NO SENSE", scsi.KeyNotReady: "NOT READY", scsi.KeyMediumError: "MEDIUM ERROR",
	scsi.KeyHardwareError: "HARDWARE ERROR", scsi.KeyIllegalRequest: "ILLEGAL REQUEST", scsi.KeyUnitAttention: "UNIT ATTENTION",
	scsi.KeyDataProtect: "DATA PROTECT", scsi.KeyAbortedCommand: "ABORTED COMMAND", scsi.KeyMiscompare: "MISCOMPARE",
}

// describe renders a result: status, then the sense (key, ASC, field
// pointer, INFORMATION) and the data-in.
func describe(r scsi.Result) string {
	var b strings.Builder
	switch r.Status {
	case scsi.StatusGood:
		b.WriteString("GOOD")
	case scsi.StatusCheckCondition:
		b.WriteString("CHECK CONDITION")
	case scsi.StatusReservationConflict:
		b.WriteString("RESERVATION CONFLICT")
	default:
		fmt.Fprintf(&b, "status %#x", byte(r.Status))
	}
	if r.DataOutLen >= 0 {
		fmt.Fprintf(&b, " (data-out wanted %d)", r.DataOutLen)
	}
	b.WriteString("\n")
	if len(r.Sense) > 0 {
		b.WriteString(describeSense(r.Sense) + "\n")
	}
	if len(r.Data) > 0 {
		b.WriteString(hexdump(r.Data))
	}
	return b.String()
}

func describeSense(s []byte) string {
	key, asc, ok := scsi.ParseSense(s)
	if !ok {
		return fmt.Sprintf("unparseable sense %x", s)
	}
	out := fmt.Sprintf("sense %s asc 0x%04x", keyNames[key], uint16(asc))
	var sks []byte
	var info []byte
	if s[0]&0x7f == 0x70 {
		out += " (fixed)"
		sks = s[15:18]
		if s[0]&0x80 != 0 {
			info = s[3:7]
		}
	} else {
		out += " (descriptor)"
		for d := s[8:]; len(d) >= 2 && len(d) >= 2+int(d[1]); d = d[2+int(d[1]):] {
			switch d[0] {
			case 0x00:
				info = d[4:12]
			case 0x02:
				sks = d[4:7]
			}
		}
	}
	if len(sks) == 3 && sks[0]&0x80 != 0 {
		where := "data"
		if sks[0]&0x40 != 0 {
			where = "CDB"
		}
		out += fmt.Sprintf(", field %s byte %d", where, binary.BigEndian.Uint16(sks[1:]))
		if sks[0]&0x08 != 0 {
			out += fmt.Sprintf(" bit %d", sks[0]&7)
		}
	}
	if info != nil {
		var v uint64
		for _, c := range info {
			v = v<<8 | uint64(c)
		}
		out += fmt.Sprintf(", information %d", v)
	}
	return out
}

// hexdump shows up to 64 bytes; longer data shows its length and start.
func hexdump(b []byte) string {
	var out strings.Builder
	shown := b
	if len(shown) > 64 {
		shown = shown[:64]
	}
	fmt.Fprintf(&out, "data %d bytes:\n", len(b))
	for i := 0; i < len(shown); i += 16 {
		end := min(i+16, len(shown))
		fmt.Fprintf(&out, "  %04x  % x\n", i, shown[i:end])
	}
	if len(b) > len(shown) {
		out.WriteString("  ...\n")
	}
	return out.String()
}

// fill expands "0x00x512,0x55x512" into 512 zero bytes then 512 0x55 bytes.
func fill(t *testing.T, spec string) []byte {
	var out []byte
	for _, seg := range strings.Split(spec, ",") {
		i := strings.LastIndex(seg, "x")
		if i <= 0 {
			t.Fatalf("fill=%s: want <byte>x<count>", spec)
		}
		v, err1 := strconv.ParseUint(seg[:i], 0, 8)
		count, err2 := strconv.Atoi(seg[i+1:])
		if err1 != nil || err2 != nil {
			t.Fatalf("fill=%s: want <byte>x<count>", spec)
		}
		out = append(out, bytes.Repeat([]byte{byte(v)}, count)...)
	}
	return out
}
