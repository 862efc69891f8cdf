package snapshots

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
)

// FuzzOpenManifest feeds arbitrary manifest plaintext, sealed as the
// gateway seals it, and arbitrary blobs to OpenManifest: the JSON decoder
// and the geometry checks behind the authentication. It must never panic,
// must mark every failure corrupt, and a manifest it accepts must seal and
// open again to the same value. Seeds: testdata/fuzz/FuzzOpenManifest.
func FuzzOpenManifest(f *testing.F) {
	good, _ := json.Marshal(Manifest{Version: 1, Kind: "snapshot", VolumeID: "vol-1", VolumeName: "db", Size: 1 << 30,
		ChunkSize: 1 << 20, Created: time.Unix(1700000000, 0).UTC(), Pages: []PageRef{{First: 0, ID: ChunkID{1}}, {First: PageEntries, ID: ChunkID{2}}}})
	f.Add("snapshots/snap-0123456789abcdef", good, false)
	f.Add("volumes/vol-1/head", []byte(`{"version":1,"chunk_size":65536,"size":0}`), false)
	f.Add("snapshots/x", []byte(`{"version":2}`), false)
	f.Add("snapshots/x", []byte("GWC1"), true)
	codec := newTestCodec(f, false)
	f.Fuzz(func(t *testing.T, key string, plain []byte, raw bool) {
		if len(key) > maxBindingLen {
			return
		}
		blob := plain
		if !raw {
			var err error
			if blob, err = codec.frame.seal(objectManifest, []byte(key), plain); err != nil {
				return
			}
		}
		m, err := codec.OpenManifest(key, blob)
		if err != nil {
			if !errkind.IsCorrupt(err) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		if m.Version != 1 || m.ChunkSize <= 0 || m.Size < 0 {
			t.Fatalf("accepted a manifest with version %d, chunk size %d, size %d", m.Version, m.ChunkSize, m.Size)
		}
		again, err := codec.SealManifest(key, m)
		if err != nil {
			return // too large to seal again once re-encoded
		}
		m2, err := codec.OpenManifest(key, again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("an accepted manifest does not survive sealing again: %v\n%+v\n%+v", err, m, m2)
		}
		if _, err := codec.OpenManifest(key+"x", again); err == nil {
			t.Fatal("a manifest opened under another key")
		}
	})
}
