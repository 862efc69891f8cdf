package tapes

import (
	"bytes"
	"testing"

	"github.com/gatewayd/gatewayd/keys"
)

// FuzzDecode feeds arbitrary bytes to every decoder of stored and logged
// tape structures: none may panic or allocate from an unchecked length,
// and whatever one accepts must encode back to the same bytes (the
// formats have one encoding).
func FuzzDecode(f *testing.F) {
	r := &root{keyID: "k1", id: 77, capacity: 1 << 30, seq: 9, gen: 3, nextSeg: 5, eod: 3, used: 300,
		pages: []pageInfo{{gen: 3, count: 3, filemarks: 1, used: 300}}, runs: []segRun{{1, 2}, {4, 4}}}
	f.Add(byte(0), encodeRoot(r))
	r.flags = rootWORM
	f.Add(byte(0), encodeRoot(r))
	f.Add(byte(1), encodePage([]entry{{size: 100, stored: 100, seg: 1}, {flags: entFilemark, seg: 1, off: 140}, {flags: entZstd, size: 900, stored: 200, seg: 4}}))
	f.Add(byte(2), encodeLogOp(logOp{op: opRecord, flags: entZstd, barcode: "GW0001L5", tapeID: 77, seq: 4, at: 7, size: 3, payload: []byte("abc")}))
	f.Add(byte(2), encodeLogOp(logOp{op: opFilemarks, barcode: "GW0001L5", seq: 5, at: 8, size: 2}))
	var dk keys.DataKey
	dk.Encryption[0] = 1
	s, err := newSealer(dk)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(byte(3), s.seal(kindBlock, sealFlagZstd, []byte("b"), []byte("payload")))
	f.Fuzz(func(t *testing.T, which byte, b []byte) {
		switch which % 4 {
		case 0:
			if r, err := decodeRoot(b); err == nil && !bytes.Equal(encodeRoot(r), b) {
				t.Fatalf("root %x re-encodes as %x", b, encodeRoot(r))
			}
		case 1:
			if len(b) >= 4 {
				n := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
				if es, err := decodePage(b, n); err == nil && !bytes.Equal(encodePage(es), b) {
					t.Fatalf("page %x re-encodes differently", b)
				}
			}
		case 2:
			if o, err := decodeLogOp(b); err == nil && !bytes.Equal(encodeLogOp(o), b) {
				t.Fatalf("log record %x re-encodes differently", b)
			}
		case 3:
			if p, _, err := s.open(kindBlock, []byte("b"), b); err == nil && len(p) != len(b)-sealOverhead {
				t.Fatalf("opened %d bytes from a %d-byte object", len(p), len(b))
			}
		}
	})
}
