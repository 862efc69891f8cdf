package snapshots

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
)

// FuzzDecodePatch feeds arbitrary patch plaintext to DecodePatch, the
// parser behind OpenPatch's authentication. It must never panic, must mark
// every failure corrupt, and a patch it accepts must encode to the same
// bytes and apply inside its chunk.
func FuzzDecodePatch(f *testing.F) {
	good, err := EncodePatch(Patch{
		Target:  PatchTarget{Volume: "vol-0123456789abcdef", Index: 7, ChunkSize: 1 << 20, Base: ChunkID{9}, Seq: 3},
		Extents: []PatchExtent{{Off: 0, Data: []byte("ab")}, {Off: 4096, Data: []byte("cdef")}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	hole, _ := EncodePatch(Patch{Target: PatchTarget{Volume: "v", ChunkSize: 65536, BaseHole: true}, Extents: []PatchExtent{{Off: 65535, Data: []byte{1}}}})
	f.Add(hole)
	f.Add([]byte("GWPT"))
	f.Fuzz(func(t *testing.T, plain []byte) {
		p, err := DecodePatch(plain)
		if err != nil {
			if !errkind.IsCorrupt(err) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		again, err := EncodePatch(p)
		if err != nil {
			t.Fatalf("accepted patch does not encode: %v", err)
		}
		if !bytes.Equal(again, plain) {
			t.Fatalf("accepted patch encodes to other bytes")
		}
		chunk := make([]byte, p.Target.ChunkSize)
		p.Apply(chunk)
		q, err := DecodePatch(again)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
