package iscsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"
)

// RFC 3720 appendix B.4 CRC32C examples, as the bytes go on the wire.
func TestCRC32CVectorsWireOrder(t *testing.T) {
	inc := make([]byte, 32)
	for i := range inc {
		inc[i] = byte(i)
	}
	for name, c := range map[string]struct {
		data []byte
		wire []byte
	}{
		"zeroes":       {make([]byte, 32), []byte{0xaa, 0x36, 0x91, 0x8a}},
		"ones":         {bytes.Repeat([]byte{0xff}, 32), []byte{0x43, 0xab, 0xa8, 0x62}},
		"incrementing": {inc, []byte{0x4e, 0x79, 0xdd, 0x46}},
	} {
		got := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(c.data, castagnoli))
		if !bytes.Equal(got, c.wire) {
			t.Errorf("%s: digest on the wire %x, RFC says %x", name, got, c.wire)
		}
	}
}

func samplePDU() *PDU {
	p := &PDU{}
	p.SetOpcode(OpSCSICommand, true)
	p.SetFinal(true)
	p.SetLUN(0x0001000000000000)
	p.SetTaskTag(0xdeadbeef)
	p.SetUint32(24, 7) // CmdSN
	p.AHS = []byte{0, 4, 1, 0, 1, 2, 3, 4}
	p.Data = []byte("hello, iscsi") // 12 bytes... padded below
	p.Data = append(p.Data, 'x')    // 13: needs 3 bytes of padding
	return p
}

func TestPDURoundTripWithAndWithoutDigests(t *testing.T) {
	for _, dg := range []Digests{{}, {Header: true}, {Data: true}, {Header: true, Data: true}} {
		p := samplePDU()
		wire, err := p.Marshal(dg)
		if err != nil {
			t.Fatal(err)
		}
		want := 48 + 8 + 13 + 3
		if dg.Header {
			want += 4
		}
		if dg.Data {
			want += 4
		}
		if len(wire) != want {
			t.Fatalf("%+v: %d bytes on the wire, want %d", dg, len(wire), want)
		}
		got, err := ReadPDU(bytes.NewReader(wire), dg, 8192)
		if err != nil {
			t.Fatalf("%+v: %v", dg, err)
		}
		if got.Opcode() != OpSCSICommand || !got.Immediate() || !got.Final() || got.TaskTag() != 0xdeadbeef ||
			got.LUN() != 0x0001000000000000 || got.Uint32(24) != 7 || !bytes.Equal(got.AHS, p.AHS) || !bytes.Equal(got.Data, p.Data) {
			t.Fatalf("%+v: round trip changed the PDU: %+v", dg, got)
		}
	}
}

func TestDigestErrors(t *testing.T) {
	dg := Digests{Header: true, Data: true}
	wire, _ := samplePDU().Marshal(dg)

	bad := append([]byte(nil), wire...)
	bad[20] ^= 1 // in the BHS
	if _, err := ReadPDU(bytes.NewReader(bad), dg, 8192); !errors.Is(err, ErrHeaderDigest) {
		t.Fatalf("flipped header byte: %v", err)
	}
	bad = append([]byte(nil), wire...)
	bad[48+8+4+2] ^= 1 // in the data segment
	p, err := ReadPDU(bytes.NewReader(bad), dg, 8192)
	if !errors.Is(err, ErrDataDigest) || p == nil || p.TaskTag() != 0xdeadbeef {
		t.Fatalf("flipped data byte: %v (the PDU must come back for the Reject)", err)
	}
	bad = append([]byte(nil), wire...)
	bad[len(bad)-5] ^= 1 // in the padding, which the data digest covers
	if _, err := ReadPDU(bytes.NewReader(bad), dg, 8192); !errors.Is(err, ErrDataDigest) {
		t.Fatalf("flipped padding byte: %v", err)
	}
}

func TestReadPDUBounds(t *testing.T) {
	wire, _ := samplePDU().Marshal(Digests{})
	if _, err := ReadPDU(bytes.NewReader(wire), Digests{}, 12); !errors.Is(err, ErrDataTooLong) {
		t.Fatalf("data over the declared limit: %v", err)
	}
	for cut := 1; cut < len(wire); cut++ {
		_, err := ReadPDU(bytes.NewReader(wire[:cut]), Digests{}, 8192)
		if err == nil {
			t.Fatalf("truncated at %d: no error", cut)
		}
		if cut > 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	if _, err := ReadPDU(bytes.NewReader(nil), Digests{}, 8192); err != io.EOF {
		t.Fatalf("clean end of stream: %v", err)
	}
}

func TestTextParameters(t *testing.T) {
	in := []KV{{"InitiatorName", "iqn.2026-11.org.example:host1"}, {"SessionType", "Normal"}, {"HeaderDigest", "CRC32C,None"}}
	enc := EncodeText(in)
	out, err := ParseText(append(enc, 0, 0)) // padding NULs
	if err != nil || len(out) != 3 || out[2] != in[2] {
		t.Fatalf("round trip: %v %v", out, err)
	}
	for name, bad := range map[string]string{
		"no equals":  "InitiatorName\x00",
		"empty key":  "=x\x00",
		"long key":   strings.Repeat("K", 64) + "=x\x00",
		"long value": "CHAP_R=" + strings.Repeat("a", 8193) + "\x00",
		"bad char":   "Key Name=x\x00",
		"duplicate":  "A=1\x00A=2\x00",
		"too many":   strings.Repeat("K=1\x00", 1) + manyPairs(600),
	} {
		if _, err := ParseText([]byte(bad)); !errors.Is(err, ErrText) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if kv, err := ParseText(nil); err != nil || kv != nil {
		t.Fatalf("empty text: %v %v", kv, err)
	}
}

func manyPairs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("X-k")
		b.WriteString(strings.Repeat("a", i%10))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + i/26%26)))
		b.WriteString("=v\x00")
	}
	return b.String()
}

func FuzzReadPDU(f *testing.F) {
	for _, dg := range []Digests{{}, {Header: true, Data: true}} {
		w, _ := samplePDU().Marshal(dg)
		f.Add(w, dg.Header, dg.Data)
	}
	f.Add(make([]byte, 48), false, false)
	f.Fuzz(func(t *testing.T, b []byte, hd, dd bool) {
		dg := Digests{Header: hd, Data: dd}
		p, err := ReadPDU(bytes.NewReader(b), dg, 64<<10)
		if err != nil {
			return
		}
		// What reads must survive a write and a read unchanged (padding,
		// which receivers ignore, aside).
		w, err := p.Marshal(dg)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		q, err := ReadPDU(bytes.NewReader(w), dg, 64<<10)
		if err != nil || q.BHS != p.BHS || !bytes.Equal(q.AHS, p.AHS) || !bytes.Equal(q.Data, p.Data) {
			t.Fatalf("write then read changed the PDU: %v", err)
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.x\x00SessionType=Normal\x00"))
	f.Add([]byte("A=1\x00A=2\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kv, err := ParseText(b)
		if err != nil {
			return
		}
		again, err := ParseText(EncodeText(kv))
		if err != nil || len(again) != len(kv) {
			t.Fatalf("encode of parsed text does not parse back: %v", err)
		}
	})
}
