package vtl_test

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

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/frontends/vtl/vtltest"
)

// TestGolden runs the command sequences in testdata/golden: each file is
// a story told to one library (a changer and its drives over an
// in-memory shelf), with the answers SSC-4, SMC-3 and SPC-4 call for
// written under each command. Regenerate with -rewrite only after checking
// every changed answer against the standards.
//
//	library slots=N drives=N ie=N [vendor=V product=P]
//	                                     a fresh library of empty elements
//	tape slot=N barcode=B [capacity=S] [ew=S] [readonly] [worm]
//	                                     a tape in slot N (0-based)
//	cmd dev=changer|driveN [nexus=A] [out=<hex>|fill=<byte>x<count>,...] [limit=N]
//	<CDB in hex; spaces and '.' ignored>  limit: the transport's data-in limit;
//	                                     elements: decode READ ELEMENT STATUS data
//	contents barcode=B                   a tape's objects: R<size> or F
//	crash barcode=B                      drop the tape's writes not yet durable
//	                                     (buffered since its last sync)
//	compressed barcode=B                 how many records asked for compression
//	inventory                            where the tapes are
//	reset dev=D                          LUN reset
//	lost dev=D [nexus=A]                 the nexus's session ended
//	fail barcode=B [off]                 make a tape's medium fail (or heal)
//	shelf fail=none|open|move            make the shelf's Open or Move fail
func TestGolden(t *testing.T) {
	datadriven.Walk(t, "testdata/golden", func(t *testing.T, path string) {
		var shelf *vtltest.Shelf
		var lib *vtl.Library
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			ctx := context.Background()
			switch d.Cmd {
			case "library":
				slots, drives, ie := 8, 2, 1
				scanInt(t, d, "slots", &slots)
				scanInt(t, d, "drives", &drives)
				scanInt(t, d, "ie", &ie)
				shelf = vtltest.NewShelf(slots, drives, ie)
				opts := vtl.LibraryOptions{Shelf: shelf, Serial: "GOLDEN"}
				if d.HasArg("vendor") {
					d.ScanArgs(t, "vendor", &opts.ChangerVendor)
					d.ScanArgs(t, "product", &opts.ChangerProduct)
				}
				var err error
				lib, err = vtl.NewLibrary(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				return ""
			case "tape":
				var slot int
				var barcode string
				d.ScanArgs(t, "slot", &slot)
				d.ScanArgs(t, "barcode", &barcode)
				o := vtltest.TapeOptions{ReadOnly: d.HasArg("readonly"), WORM: d.HasArg("worm")}
				if d.HasArg("capacity") {
					o.Capacity = scanSize(t, d, "capacity")
				}
				if d.HasArg("ew") {
					o.EarlyWarning = scanSize(t, d, "ew")
				}
				shelf.Put(slot, vtltest.NewTape(barcode, o))
				return ""
			case "cmd":
				var dev string
				d.ScanArgs(t, "dev", &dev)
				cmd := &scsi.Command{CDB: parseHex(t, d.Input), Nexus: goldenNexus(t, d)}
				if d.HasArg("out") {
					var s string
					d.ScanArgs(t, "out", &s)
					cmd.DataOut = parseHex(t, s)
				}
				if d.HasArg("fill") {
					var s string
					d.ScanArgs(t, "fill", &s)
					cmd.DataOut = parseFill(t, s)
				}
				scanInt(t, d, "limit", &cmd.DataInLimit)
				res := device(t, lib, dev).Execute(ctx, cmd)
				if d.HasArg("elements") && len(res.Data) > 0 {
					data := res.Data
					res.Data = nil
					return render(res) + elementStatus(data)
				}
				return render(res)
			case "contents":
				var barcode string
				d.ScanArgs(t, "barcode", &barcode)
				objs := shelf.Tape(barcode).Objects()
				if len(objs) == 0 {
					return "empty\n"
				}
				return strings.Join(objs, " ") + "\n"
			case "crash":
				var barcode string
				d.ScanArgs(t, "barcode", &barcode)
				tp := shelf.Tape(barcode)
				tp.Crash()
				return fmt.Sprintf("%d syncs; buffered %v\n", tp.Syncs(), tp.Buffered())
			case "compressed":
				var barcode string
				d.ScanArgs(t, "barcode", &barcode)
				return fmt.Sprintf("%d records written compressed\n", shelf.Tape(barcode).Compressed())
			case "inventory":
				inv, err := shelf.Inventory(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				list := func(name string, l []string) {
					fmt.Fprintf(&b, "%s:", name)
					for i, bc := range l {
						if bc != "" {
							fmt.Fprintf(&b, " %d=%s", i, bc)
						}
					}
					b.WriteString("\n")
				}
				list("slots", inv.Slots)
				list("drives", inv.Drives)
				list("ie", inv.IE)
				list("archived", shelf.Archived())
				return b.String()
			case "lost":
				var dev string
				d.ScanArgs(t, "dev", &dev)
				device(t, lib, dev).NexusLost(goldenNexus(t, d).InitiatorPort)
				return ""
			case "reset":
				var dev string
				d.ScanArgs(t, "dev", &dev)
				device(t, lib, dev).Reset(scsi.ASCBusDeviceResetOccurred)
				return ""
			case "shelf":
				var mode string
				d.ScanArgs(t, "fail", &mode)
				injected := fmt.Errorf("injected shelf failure")
				shelf.FailMove(nil)
				shelf.FailOpen(nil)
				switch mode {
				case "open":
					shelf.FailOpen(injected)
				case "move":
					shelf.FailMove(injected)
				}
				return ""
			case "fail":
				var barcode string
				d.ScanArgs(t, "barcode", &barcode)
				var err error
				if !d.HasArg("off") {
					err = fmt.Errorf("injected medium failure")
				}
				shelf.Tape(barcode).Fail(err)
				return ""
			}
			t.Fatalf("unknown command %q", d.Cmd)
			return ""
		})
	})
}

func device(t *testing.T, lib *vtl.Library, name string) *scsi.LU {
	t.Helper()
	if name == "changer" {
		return lib.Changer().LU()
	}
	n, err := strconv.Atoi(strings.TrimPrefix(name, "drive"))
	if err != nil || n < 1 || n > len(lib.Drives()) {
		t.Fatalf("no device %q", name)
	}
	return lib.Drives()[n-1].LU()
}

func scanInt(t *testing.T, d *datadriven.TestData, key string, v *int) {
	if d.HasArg(key) {
		d.ScanArgs(t, key, v)
	}
}

func goldenNexus(t *testing.T, d *datadriven.TestData) scsi.Nexus {
	name := "A"
	if d.HasArg("nexus") {
		d.ScanArgs(t, "nexus", &name)
	}
	return scsi.Nexus{InitiatorPort: "iqn.2024-01.io.gatewayd:" + strings.ToLower(name) + ",i,0x1"}
}

// scanSize reads a size such as 4096, 64KiB or 1MiB.
func scanSize(t *testing.T, d *datadriven.TestData, key string) int64 {
	var s string
	d.ScanArgs(t, key, &s)
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				t.Fatalf("%s=%s: %v", key, s, err)
			}
			return n * u.mult
		}
	}
	return 0
}

func parseHex(t *testing.T, s string) []byte {
	t.Helper()
	clean := strings.NewReplacer(" ", "", "\n", "", "\t", "", ".", "").Replace(s)
	b, err := hex.DecodeString(clean)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// parseFill expands "0xaax3,0x01x2" into aa aa aa 01 01.
func parseFill(t *testing.T, spec string) []byte {
	var out []byte
	for _, part := range strings.Split(spec, ",") {
		val, cnt, ok := strings.Cut(strings.TrimPrefix(part, "0x"), "x")
		v, err1 := strconv.ParseUint(val, 16, 8)
		n, err2 := strconv.Atoi(cnt)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("fill=%s: want 0x<byte>x<count>,...", spec)
		}
		out = append(out, bytes.Repeat([]byte{byte(v)}, n)...)
	}
	return out
}

var senseKeys = map[scsi.SenseKey]string{
	scsi.KeyNoSense: "NO SENSE", scsi.KeyRecoveredError: "RECOVERED ERROR", scsi.KeyNotReady: "NOT READY",
	scsi.KeyMediumError: "MEDIUM ERROR", scsi.KeyHardwareError: "HARDWARE ERROR",
	scsi.KeyIllegalRequest: "ILLEGAL REQUEST", scsi.KeyUnitAttention: "UNIT ATTENTION",
	scsi.KeyDataProtect: "DATA PROTECT", scsi.KeyBlankCheck: "BLANK CHECK",
	scsi.KeyAbortedCommand: "ABORTED COMMAND", scsi.KeyVolumeOverflow: "VOLUME OVERFLOW",
}

// render shows a result: status, decoded sense, data-in.
func render(r scsi.Result) string {
	var b strings.Builder
	status := map[scsi.Status]string{scsi.StatusGood: "GOOD", scsi.StatusCheckCondition: "CHECK CONDITION",
		scsi.StatusReservationConflict: "RESERVATION CONFLICT"}[r.Status]
	if status == "" {
		status = fmt.Sprintf("status %#x", byte(r.Status))
	}
	b.WriteString(status)
	if r.DataOutLen >= 0 {
		fmt.Fprintf(&b, " (data-out wanted %d)", r.DataOutLen)
	}
	if r.DataInLen > len(r.Data) {
		fmt.Fprintf(&b, " (data-in %d, cut to the limit)", r.DataInLen)
	}
	b.WriteString("\n")
	if len(r.Sense) > 0 {
		b.WriteString(senseText(r.Sense) + "\n")
	}
	if len(r.Data) > 0 {
		b.WriteString(dump(r.Data))
	}
	return b.String()
}

// senseText decodes fixed-format sense (the devices' default) and the
// descriptor format: key, tape flags, ASC/ASCQ, INFORMATION as a signed
// residual, the field pointer.
func senseText(s []byte) string {
	key, asc, ok := scsi.ParseSense(s)
	if !ok {
		return fmt.Sprintf("unparseable sense % x", s)
	}
	out := "sense " + senseKeys[key]
	var flags byte
	var info *int64
	var sks []byte
	if s[0]&0x7f == 0x70 {
		flags = s[2]
		if s[0]&0x80 != 0 {
			v := int64(int32(binary.BigEndian.Uint32(s[3:])))
			info = &v
		}
		sks = s[15:18]
	} else {
		for rest := s[8:]; len(rest) >= 2 && len(rest) >= 2+int(rest[1]); rest = rest[2+int(rest[1]):] {
			switch rest[0] {
			case 0x00:
				v := int64(binary.BigEndian.Uint64(rest[4:12]))
				info = &v
			case 0x02:
				sks = rest[4:7]
			case 0x04:
				flags = rest[3]
			}
		}
	}
	for _, f := range []struct {
		bit  byte
		name string
	}{{0x80, "FILEMARK"}, {0x40, "EOM"}, {0x20, "ILI"}} {
		if flags&f.bit != 0 {
			out += " " + f.name
		}
	}
	out += fmt.Sprintf(" asc 0x%02x/0x%02x", byte(asc>>8), byte(asc))
	if s[0]&0x7f != 0x70 {
		out += " (descriptor)"
	}
	if info != nil {
		out += fmt.Sprintf(", information %d", *info)
	}
	if len(sks) == 3 && sks[0]&0x80 != 0 {
		in := "parameter list"
		if sks[0]&0x40 != 0 {
			in = "CDB"
		}
		out += fmt.Sprintf(", invalid %s byte %d", in, binary.BigEndian.Uint16(sks[1:]))
		if sks[0]&0x08 != 0 {
			out += fmt.Sprintf(" bit %d", sks[0]&7)
		}
	}
	return out
}

// dump shows data as hex, 16 bytes a line; past 128 bytes only the first
// 64 and a note.
func dump(b []byte) string {
	var out strings.Builder
	fmt.Fprintf(&out, "data %d bytes:\n", len(b))
	show := b
	if len(b) > 128 {
		show = b[:64]
	}
	for off := 0; off < len(show); off += 16 {
		fmt.Fprintf(&out, "  %04x  % x\n", off, show[off:min(off+16, len(show))])
	}
	if len(show) < len(b) {
		out.WriteString("  ...\n")
	}
	return out.String()
}

var elementTypes = map[byte]string{1: "transport", 2: "slot", 3: "import/export", 4: "drive"}

// elementStatus decodes READ ELEMENT STATUS data as far as it goes (an
// allocation length may cut it anywhere): the header's counts, each
// page's header, each descriptor's address, flags, source, volume tag
// and identifier.
func elementStatus(b []byte) string {
	var out strings.Builder
	fmt.Fprintf(&out, "data %d bytes:\n", len(b))
	if len(b) < 8 {
		fmt.Fprintf(&out, "  % x (cut)\n", b)
		return out.String()
	}
	fmt.Fprintf(&out, "  header: first address %d, %d elements, %d bytes of pages\n",
		binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), uint32(b[5])<<16|uint32(b[6])<<8|uint32(b[7]))
	for p := b[8:]; len(p) > 0; {
		if len(p) < 8 {
			fmt.Fprintf(&out, "  % x (cut)\n", p)
			break
		}
		descLen := int(binary.BigEndian.Uint16(p[2:]))
		n := int(uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7]))
		tags := ""
		if p[1]&0x80 != 0 {
			tags += " PVOLTAG"
		}
		if p[1]&0x40 != 0 {
			tags += " AVOLTAG"
		}
		fmt.Fprintf(&out, "  page %s%s: descriptors of %d bytes, %d bytes\n", elementTypes[p[0]], tags, descLen, n)
		p = p[8:]
		for i := 0; i < n && len(p) > 0; i += descLen {
			if descLen < 16 || len(p) < descLen {
				fmt.Fprintf(&out, "    % x (cut)\n", p[:min(len(p), max(descLen, 1))])
				p = nil
				break
			}
			out.WriteString("    " + descriptorText(p[:descLen], strings.Contains(tags, "PVOLTAG")) + "\n")
			p = p[descLen:]
		}
	}
	return out.String()
}

// descriptorText is one element descriptor: address, flags, ASC, source,
// medium type, primary volume tag, identifier.
func descriptorText(d []byte, voltag bool) string {
	s := fmt.Sprintf("%d:", binary.BigEndian.Uint16(d))
	for _, f := range []struct {
		bit  byte
		name string
	}{{0x01, "full"}, {0x02, "impexp"}, {0x04, "except"}, {0x08, "access"}, {0x10, "exenab"}, {0x20, "inenab"}} {
		if d[2]&f.bit != 0 {
			s += " " + f.name
		}
	}
	if d[2]&0x01 == 0 {
		s += " empty"
	}
	if d[4] != 0 || d[5] != 0 {
		s += fmt.Sprintf(" asc 0x%02x/0x%02x", d[4], d[5])
	}
	if d[9]&0x07 != 0 {
		s += fmt.Sprintf(" medium %d", d[9]&0x07)
	}
	if d[9]&0x80 != 0 {
		s += fmt.Sprintf(" source %d", binary.BigEndian.Uint16(d[10:]))
	}
	rest := d[12:]
	if voltag {
		tag := rest[:36]
		if bytes.Equal(tag, make([]byte, 36)) {
			s += " tag (zeros)"
		} else {
			s += fmt.Sprintf(" tag %q seq %d", tag[:32], binary.BigEndian.Uint16(tag[34:]))
		}
		rest = rest[36:]
	}
	if n := int(rest[3]); n > 0 {
		s += fmt.Sprintf(" ident codeset %d type %d %q", rest[0]&0x0f, rest[1]&0x0f, rest[4:min(len(rest), 4+n)])
	} else if !bytes.Equal(rest[:4], make([]byte, 4)) {
		s += fmt.Sprintf(" ident header % x", rest[:4])
	}
	return s
}
