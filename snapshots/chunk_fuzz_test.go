package snapshots

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/gatewayd/gatewayd/errkind"
)

// FuzzDecode feeds arbitrary (id, blob) pairs to Decode. Decode must never
// panic, must mark every failure corrupt, and may only return plaintext
// that hashes to id. The committed corpus under testdata/fuzz/FuzzDecode
// holds valid blobs ("valid-*") and single mutations of them ("mut-*").
func FuzzDecode(f *testing.F) {
	codec := newTestCodec(f, false)
	f.Fuzz(func(t *testing.T, idBytes, blob []byte) {
		var id ChunkID
		copy(id[:], idBytes)
		plain, err := codec.Decode(id, blob)
		if err != nil {
			if !errkind.IsCorrupt(err) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			if plain != nil {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		if codec.ID(plain) != id {
			t.Fatal("decoded plaintext does not hash to its id")
		}
		if len(plain) > codec.MaxPlaintext() {
			t.Fatalf("decoded %d bytes, above the limit", len(plain))
		}
	})
}

// FuzzDecodeAuthenticated reaches past authentication: it seals arbitrary
// header fields and payloads with the test key, as a key holder could, so
// the length checks and the zstd decoder see hostile input that GCM would
// otherwise stop first.
func FuzzDecodeAuthenticated(f *testing.F) {
	codec := newTestCodec(f, false)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		f.Fatal(err)
	}
	text := textData(3000, 30)
	compressed := enc.EncodeAll(text, nil)
	textID := codec.ID(text)
	f.Add(textID[:], byte(1), byte(1), byte(0), uint16(0), uint32(len(text)), text)
	f.Add(textID[:], byte(1), byte(1), byte(1), uint16(0), uint32(len(text)), compressed)
	f.Add(textID[:], byte(1), byte(1), byte(1), uint16(0), uint32(len(text)-1), compressed)
	f.Add(textID[:], byte(1), byte(1), byte(1), uint16(0), uint32(len(text)), append(bytes.Clone(compressed), compressed...))
	f.Add(textID[:], byte(1), byte(1), byte(1), uint16(0), uint32(MaxChunkSize), enc.EncodeAll(make([]byte, MaxChunkSize+1), nil))
	f.Add([]byte{}, byte(1), byte(1), byte(1), uint16(0), uint32(100), []byte{0x28, 0xb5, 0x2f, 0xfd})

	f.Fuzz(func(t *testing.T, idBytes []byte, version, typ, flags byte, reserved uint16, plainLen uint32, payload []byte) {
		var id ChunkID
		copy(id[:], idBytes)
		blob := sealRaw(t, "GWD", version, typ, flags, reserved, plainLen, id, payload)

		opened, err := codec.frame.open(objectChunk, id[:], blob)
		if err != nil {
			if !errkind.IsCorrupt(err) {
				t.Fatalf("open error not marked corrupt: %v", err)
			}
		} else {
			if version != 1 || typ != 1 || flags&^flagZstd != 0 || reserved != 0 {
				t.Fatalf("opened a blob with version %d type %d flags %#x reserved %d", version, typ, flags, reserved)
			}
			if len(opened) != int(plainLen) || len(opened) > codec.MaxPlaintext() {
				t.Fatalf("opened %d bytes, header says %d", len(opened), plainLen)
			}
		}

		plain, err := codec.Decode(id, blob)
		if err != nil {
			if !errkind.IsCorrupt(err) {
				t.Fatalf("decode error not marked corrupt: %v", err)
			}
			return
		}
		if codec.ID(plain) != id || !bytes.Equal(plain, opened) {
			t.Fatal("decoded plaintext does not hash to its id")
		}
	})
}

var updateFuzzCorpus = flag.Bool("update-fuzz-corpus", false,
	"rewrite the committed seed corpus in testdata/fuzz/FuzzDecode")

const fuzzCorpusDir = "testdata/fuzz/FuzzDecode"

// fuzzSeeds builds the seed corpus: valid blobs and mutations of them.
func fuzzSeeds(t *testing.T) map[string][2][]byte {
	raw, zstdCodec := newTestCodec(t, false), newTestCodec(t, true)
	seeds := map[string][2][]byte{}
	add := func(name string, id ChunkID, blob []byte) { seeds[name] = [2][]byte{bytes.Clone(id[:]), blob} }

	type valid struct {
		name  string
		codec *Codec
		plain []byte
	}
	for _, v := range []valid{
		{"empty", raw, nil},
		{"raw-1", raw, []byte{0x5a}},
		{"raw-200", raw, randomData(200, 40)},
		{"zstd-4KiB", zstdCodec, textData(4<<10, 41)},
		{"zstd-zeros", zstdCodec, make([]byte, 8<<10)},
	} {
		id, blob, err := v.codec.Encode(v.plain)
		if err != nil {
			t.Fatal(err)
		}
		add("valid-"+v.name, id, blob)
	}

	base := seeds["valid-zstd-4KiB"]
	var baseID ChunkID
	copy(baseID[:], base[0])
	baseBlob := base[1]
	mutate := func(name string, edit func(b []byte) []byte) {
		add("mut-"+name, baseID, edit(bytes.Clone(baseBlob)))
	}
	mutate("magic", func(b []byte) []byte { b[0] = 'X'; return b })
	mutate("version", func(b []byte) []byte { b[offVersion] = 2; return b })
	mutate("type", func(b []byte) []byte { b[offType] = byte(objectMapPage); return b })
	mutate("flags", func(b []byte) []byte { b[offFlags] = 0; return b })
	mutate("reserved", func(b []byte) []byte { b[offReserved+1] = 1; return b })
	mutate("length-huge", func(b []byte) []byte { binary.BigEndian.PutUint32(b[offPlainLen:], 0xffffffff); return b })
	mutate("length-minus-1", func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[offPlainLen:], binary.BigEndian.Uint32(b[offPlainLen:])-1)
		return b
	})
	mutate("nonce", func(b []byte) []byte { b[offNonce] ^= 1; return b })
	mutate("ciphertext", func(b []byte) []byte { b[frameHeaderLen+10] ^= 0x80; return b })
	mutate("tag", func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	mutate("truncated-header", func(b []byte) []byte { return b[:frameHeaderLen-1] })
	mutate("truncated-tag", func(b []byte) []byte { return b[:len(b)-1] })
	mutate("extended", func(b []byte) []byte { return append(b, 0) })
	wrongID := baseID
	wrongID[31] ^= 1
	add("mut-wrong-id", wrongID, bytes.Clone(baseBlob))
	add("mut-zero-id", ChunkID{}, bytes.Clone(baseBlob))
	return seeds
}

func encodeCorpusFile(id, blob []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%s)\n[]byte(%s)\n",
		strconv.Quote(string(id)), strconv.Quote(string(blob)))
}

func decodeCorpusFile(t *testing.T, name string, data []byte) (ChunkID, []byte) {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a two-argument corpus file", name)
	}
	var vals [2][]byte
	for i, line := range lines[1:] {
		quoted, ok := strings.CutPrefix(line, "[]byte(")
		quoted, ok2 := strings.CutSuffix(quoted, ")")
		if !ok || !ok2 {
			t.Fatalf("%s line %d: %q", name, i+2, line)
		}
		s, err := strconv.Unquote(quoted)
		if err != nil {
			t.Fatalf("%s line %d: %v", name, i+2, err)
		}
		vals[i] = []byte(s)
	}
	var id ChunkID
	copy(id[:], vals[0])
	return id, vals[1]
}

// TestFuzzDecodeSeedCorpus keeps the committed corpus meaningful: every
// valid seed still decodes (so the format has not drifted under it) and
// every mutation is still refused as corrupt. With -update-fuzz-corpus it
// first rewrites the corpus.
func TestFuzzDecodeSeedCorpus(t *testing.T) {
	if *updateFuzzCorpus {
		if err := os.MkdirAll(fuzzCorpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, seed := range fuzzSeeds(t) {
			if err := os.WriteFile(filepath.Join(fuzzCorpusDir, name), encodeCorpusFile(seed[0], seed[1]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(fuzzCorpusDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var valid, mutated int
	codec := newTestCodec(t, false)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(fuzzCorpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		id, blob := decodeCorpusFile(t, name, data)
		_, err = codec.Decode(id, blob)
		switch {
		case strings.HasPrefix(name, "valid-"):
			valid++
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case strings.HasPrefix(name, "mut-"):
			mutated++
			if err == nil || !errkind.IsCorrupt(err) {
				t.Errorf("%s: want a corrupt error, got %v", name, err)
			}
		}
	}
	if valid < 5 || mutated < 10 {
		t.Fatalf("corpus has %d valid and %d mutated seeds; regenerate with -update-fuzz-corpus", valid, mutated)
	}
}
