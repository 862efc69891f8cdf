package snapshots

import (
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
)

func TestPageAndManifestRoundTripAndTamper(t *testing.T) {
	c := testCodecForMap(t)
	p := Page{First: 2 * PageEntries, Entries: map[uint32]ChunkID{}}
	for _, o := range []uint32{0, 7, PageEntries - 1} {
		p.Entries[o] = c.ID([]byte{byte(o), byte(o >> 8)})
	}
	id, blob, err := c.SealPage(p)
	if err != nil {
		t.Fatal(err)
	}
	id2, _, _ := c.SealPage(p)
	if id != id2 {
		t.Fatal("equal pages got different ids")
	}
	got, err := c.OpenPage(id, blob)
	if err != nil || got.First != p.First || len(got.Entries) != 3 || got.Entries[7] != p.Entries[7] {
		t.Fatalf("page round trip: %+v %v", got, err)
	}
	for i := range blob {
		blob[i] ^= 0x40
		if _, err := c.OpenPage(id, blob); !errkind.IsCorrupt(err) {
			t.Fatalf("page byte %d flipped: %v", i, err)
		}
		blob[i] ^= 0x40
	}
	if _, err := EncodePage(Page{First: 5}); err == nil {
		t.Fatal("unaligned page accepted")
	}
	for _, bad := range [][]byte{nil, []byte("GWMP"), append([]byte("GWMP\x01\x00\x00\x00"), make([]byte, 12)...)[:19]} {
		if _, err := DecodePage(bad); !errkind.IsCorrupt(err) {
			t.Fatalf("bad page %q: %v", bad, err)
		}
	}

	m := Manifest{Version: 1, Kind: "recovery-point", VolumeID: "vol-1", Size: 1 << 30, ChunkSize: 1 << 20,
		Created: time.Unix(1700000000, 0).UTC(), Pages: []PageRef{{First: p.First, ID: id}}}
	mb, err := c.SealManifest("volumes/vol-1/head", m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := c.OpenManifest("volumes/vol-1/head", mb)
	if err != nil || back.Pages[0].ID != id || back.Size != m.Size || !back.Created.Equal(m.Created) {
		t.Fatalf("manifest round trip: %+v %v", back, err)
	}
	// Bound to its name: the same blob under another key does not open.
	if _, err := c.OpenManifest("volumes/vol-2/head", mb); !errkind.IsCorrupt(err) {
		t.Fatalf("manifest under another name: %v", err)
	}
	// A page blob is not a manifest, nor a chunk.
	if _, err := c.OpenManifest("volumes/vol-1/head", blob); err == nil {
		t.Fatal("a page opened as a manifest")
	}
	if _, err := c.Decode(id, blob); err == nil {
		t.Fatal("a page opened as a chunk")
	}
}

func FuzzDecodePage(f *testing.F) {
	good, _ := EncodePage(Page{First: PageEntries, Entries: map[uint32]ChunkID{3: {1}, 9: {2}}})
	f.Add(good)
	f.Add([]byte("GWMP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePage(b)
		if err != nil {
			return
		}
		again, err := EncodePage(p)
		if err != nil || string(again) != string(b) {
			t.Fatalf("a page that decodes must re-encode to the same bytes")
		}
	})
}

func testCodecForMap(t *testing.T) *Codec {
	var enc, idk [32]byte
	enc[0], idk[0] = 1, 2
	c, err := NewCodec(enc, idk, CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
