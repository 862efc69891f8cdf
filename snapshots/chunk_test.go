package snapshots

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/gatewayd/gatewayd/errkind"
)

// Fixed keys so that committed fuzz seeds stay decodable.
var (
	testEncryptionKey = [32]byte{
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
		0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20,
	}
	testChunkIDKey = [32]byte{
		0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
		0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
	}
)

func newTestCodec(tb testing.TB, compress bool) *Codec {
	tb.Helper()
	c, err := NewCodec(testEncryptionKey, testChunkIDKey, CodecOptions{Compress: compress})
	if err != nil {
		tb.Fatalf("NewCodec: %v", err)
	}
	return c
}

// randomData returns n bytes that zstd cannot compress.
func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textData returns n bytes of log-like text: the compressible case.
func textData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	levels := []string{"INFO", "WARN", "DEBUG", "ERROR"}
	verbs := []string{"write", "read", "flush", "unmap", "snapshot", "upload", "evict"}
	var sb strings.Builder
	sb.Grow(n + 200)
	for sb.Len() < n {
		fmt.Fprintf(&sb, "2025-03-%02dT%02d:%02d:%02d.%03dZ %s volume=vol-%d op=%s offset=%d length=%d latency_us=%d\n",
			1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000),
			levels[r.IntN(len(levels))], r.IntN(16), verbs[r.IntN(len(verbs))],
			r.IntN(1<<30)&^4095, 4096<<r.IntN(8), r.IntN(20000))
	}
	return []byte(sb.String()[:n])
}

func requireCorrupt(tb testing.TB, err error, what string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s: decoded without error", what)
	}
	if !errkind.IsCorrupt(err) {
		tb.Fatalf("%s: error not marked corrupt (kind %v): %v", what, errkind.Of(err), err)
	}
}

func TestChunkRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 4 << 10, 1 << 20, 4 << 20}
	for _, compress := range []bool{false, true} {
		codec := newTestCodec(t, compress)
		for _, kind := range []string{"random", "text"} {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("compress=%v/%s/%d", compress, kind, size), func(t *testing.T) {
					plain := randomData(size, uint64(size))
					if kind == "text" {
						plain = textData(size, uint64(size))
					}
					id, blob, err := codec.Encode(plain)
					if err != nil {
						t.Fatalf("Encode: %v", err)
					}
					if id != codec.ID(plain) {
						t.Fatalf("Encode id %v, ID says %v", id, codec.ID(plain))
					}
					if string(blob[:3]) != "GWD" || blob[3] != 1 || blob[4] != byte(objectChunk) {
						t.Fatalf("header % x", blob[:8])
					}
					if got := binary.BigEndian.Uint32(blob[8:]); got != uint32(size) {
						t.Fatalf("header plaintext length %d, want %d", got, size)
					}
					// Compressible text of any real size must be stored compressed
					// when asked; random data never is, nor anything when not asked.
					wantZstd := compress && kind == "text" && size >= 4<<10
					if gotZstd := blob[5]&flagZstd != 0; gotZstd != wantZstd {
						t.Fatalf("zstd flag %v, want %v (blob %d bytes)", gotZstd, wantZstd, len(blob))
					}
					if !wantZstd && len(blob) != size+FrameOverhead {
						t.Fatalf("blob %d bytes, want %d", len(blob), size+FrameOverhead)
					}
					if wantZstd && len(blob) >= size {
						t.Fatalf("compressed blob %d bytes for %d bytes of text", len(blob), size)
					}
					got, err := codec.Decode(id, blob)
					if err != nil {
						t.Fatalf("Decode: %v", err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("Decode returned different bytes")
					}
				})
			}
		}
	}
}

// A codec reads what any codec with the same keys wrote, whatever its own
// compression setting: compression can be turned on or off on a live repository.
func TestChunkDecodeIndependentOfCompressSetting(t *testing.T) {
	plain := textData(256<<10, 1)
	writer, reader := newTestCodec(t, true), newTestCodec(t, false)
	id, blob, err := writer.Encode(plain)
	if err != nil {
		t.Fatal(err)
	}
	if blob[5]&flagZstd == 0 {
		t.Fatal("text was not stored compressed")
	}
	got, err := reader.Decode(id, blob)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("non-compressing codec: err %v, equal %v", err, bytes.Equal(got, plain))
	}
}

// The id is BLAKE3 in keyed mode, checked against the official BLAKE3 test
// vectors (key "whats the Elvish word for friend", input byte i = i mod 251).
func TestChunkIDKnownAnswers(t *testing.T) {
	var key [32]byte
	copy(key[:], "whats the Elvish word for friend")
	codec, err := NewCodec(testEncryptionKey, key, CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"},
		{1, "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"},
		{1023, "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e"},
		{1024, "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"},
		{2048, "879cf1fa2ea0e79126cb1063617a05b6ad9d0b696d0d757cf053439f60a99dd1"},
	} {
		in := make([]byte, tc.n)
		for i := range in {
			in[i] = byte(i % 251)
		}
		if got := codec.ID(in).String(); got != tc.want {
			t.Errorf("ID of %d bytes = %s, want %s", tc.n, got, tc.want)
		}
	}
}

func TestChunkIDDeterminism(t *testing.T) {
	plain := randomData(64<<10, 3)
	a, b := newTestCodec(t, false), newTestCodec(t, true)

	idA, blobA, err := a.Encode(plain)
	if err != nil {
		t.Fatal(err)
	}
	idB, blobB, err := b.Encode(plain)
	if err != nil {
		t.Fatal(err)
	}
	if idA != idB {
		t.Fatalf("same plaintext and key, ids %v and %v", idA, idB)
	}
	if bytes.Equal(blobA, blobB) {
		t.Fatal("two encodings of one plaintext are byte-identical: nonce not random")
	}

	otherIDKey := testChunkIDKey
	otherIDKey[31] ^= 1
	other, err := NewCodec(testEncryptionKey, otherIDKey, CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if other.ID(plain) == idA {
		t.Fatal("different chunk-id key gives the same id")
	}
	if a.ID(randomData(64<<10, 4)) == idA {
		t.Fatal("different plaintext gives the same id")
	}

	// The id depends on the chunk-id key only, not on the encryption key.
	otherEnc := testEncryptionKey
	otherEnc[0] ^= 1
	sameIDs, err := NewCodec(otherEnc, testChunkIDKey, CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sameIDs.ID(plain) != idA {
		t.Fatal("id changed with the encryption key")
	}
}

func TestChunkIDTextForms(t *testing.T) {
	var id ChunkID
	for i := range id {
		id[i] = byte(0xa0 + i)
	}
	const hexID = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
	if id.String() != hexID {
		t.Fatalf("String = %s", id.String())
	}
	if got := id.ObjectKey(); got != "chunks/a0/"+hexID {
		t.Fatalf("ObjectKey = %s", got)
	}
	parsed, err := ParseChunkID(hexID)
	if err != nil || parsed != id {
		t.Fatalf("ParseChunkID = %v, %v", parsed, err)
	}
	for _, bad := range []string{
		"",
		hexID[:63],
		hexID + "0",
		strings.ToUpper(hexID),
		"g" + hexID[1:],
		hexID[:62] + " 0",
	} {
		_, err := ParseChunkID(bad)
		if err == nil {
			t.Errorf("ParseChunkID(%q) accepted", bad)
			continue
		}
		if !errkind.IsPermanent(err) || !strings.Contains(err.Error(), "invalid chunk id") {
			t.Errorf("ParseChunkID(%q): %v (kind %v)", bad, err, errkind.Of(err))
		}
	}
}

// Every single-byte change anywhere in a blob (header, nonce, ciphertext,
// tag) must be refused as corrupt: exhaustively for small chunks, sampled
// for a large one.
func TestChunkDecodeRejectsEveryByteFlip(t *testing.T) {
	cases := []struct {
		name     string
		compress bool
		plain    []byte
		exhaust  bool
	}{
		{"small-raw", false, randomData(100, 5), true},
		{"small-zstd", true, textData(2000, 5), true},
		{"empty", false, nil, true},
		{"1MiB-zstd", true, textData(1<<20, 6), false},
		{"1MiB-raw", false, randomData(1<<20, 6), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			codec := newTestCodec(t, tc.compress)
			id, blob, err := codec.Encode(tc.plain)
			if err != nil {
				t.Fatal(err)
			}
			if tc.compress && blob[5]&flagZstd == 0 {
				t.Fatal("expected a compressed blob")
			}
			positions := make([]int, 0, len(blob))
			if tc.exhaust {
				for i := range blob {
					positions = append(positions, i)
				}
			} else {
				r := rand.New(rand.NewPCG(1, 2))
				for i := 0; i < 64; i++ { // header, start of payload
					positions = append(positions, i)
				}
				for i := len(blob) - 32; i < len(blob); i++ { // end of payload, tag
					positions = append(positions, i)
				}
				for i := 0; i < 200; i++ {
					positions = append(positions, r.IntN(len(blob)))
				}
			}
			for _, pos := range positions {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					orig := blob[pos]
					blob[pos] ^= mask
					_, err := codec.Decode(id, blob)
					blob[pos] = orig
					requireCorrupt(t, err, fmt.Sprintf("byte %d ^ %#02x", pos, mask))
				}
			}
			// The blob itself is untouched by the loop and still good.
			if _, err := codec.Decode(id, blob); err != nil {
				t.Fatalf("original blob: %v", err)
			}
		})
	}
}

func TestChunkDecodeRejectsTruncationAndExtension(t *testing.T) {
	for _, compress := range []bool{false, true} {
		codec := newTestCodec(t, compress)
		plain := textData(3000, 9)
		id, blob, err := codec.Encode(plain)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(blob); n++ {
			_, err := codec.Decode(id, blob[:n])
			requireCorrupt(t, err, fmt.Sprintf("compress=%v truncated to %d of %d", compress, n, len(blob)))
		}
		for _, tail := range [][]byte{{0}, make([]byte, 16), []byte("x")} {
			_, err := codec.Decode(id, append(bytes.Clone(blob), tail...))
			requireCorrupt(t, err, fmt.Sprintf("compress=%v extended by %d", compress, len(tail)))
		}
	}
}

func TestChunkDecodeRejectsWrongIDAndKeys(t *testing.T) {
	codec := newTestCodec(t, true)
	plain := textData(10000, 11)
	id, blob, err := codec.Encode(plain)
	if err != nil {
		t.Fatal(err)
	}

	wrongID := id
	wrongID[0] ^= 1
	_, err = codec.Decode(wrongID, blob)
	requireCorrupt(t, err, "wrong id")
	_, err = codec.Decode(ChunkID{}, blob)
	requireCorrupt(t, err, "zero id")

	otherEnc := testEncryptionKey
	otherEnc[5] ^= 0x40
	wrongEnc, err := NewCodec(otherEnc, testChunkIDKey, CodecOptions{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrongEnc.Decode(id, blob)
	requireCorrupt(t, err, "wrong encryption key")

	// Right encryption key, wrong chunk-id key: GCM accepts the blob, the
	// id check behind it must not.
	otherIDKey := testChunkIDKey
	otherIDKey[5] ^= 0x40
	wrongIDKey, err := NewCodec(testEncryptionKey, otherIDKey, CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrongIDKey.Decode(id, blob)
	requireCorrupt(t, err, "wrong chunk-id key")
	if !strings.Contains(err.Error(), "plaintext hashes to") {
		t.Fatalf("wrong chunk-id key rejected for another reason: %v", err)
	}

	// EncodeWithID trusts its caller; a wrong id there is caught on decode.
	lying, err := codec.EncodeWithID(wrongID, plain)
	if err != nil {
		t.Fatal(err)
	}
	_, err = codec.Decode(wrongID, lying)
	requireCorrupt(t, err, "blob encoded under a wrong id")
}

// sealRaw builds a blob by hand from the layout in docs/format.md, with
// arbitrary header fields, authenticated with the test key. It lets tests
// reach the checks that stand behind authentication.
func sealRaw(t testing.TB, magic string, version, typ, flags byte, reserved uint16, plainLen uint32, id ChunkID, payload []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(testEncryptionKey[:])
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 24)
	copy(hdr, magic)
	hdr[3], hdr[4], hdr[5] = version, typ, flags
	binary.BigEndian.PutUint16(hdr[6:], reserved)
	binary.BigEndian.PutUint32(hdr[8:], plainLen)
	copy(hdr[12:], "fixed nonce!") // 12 bytes; fine for a test
	ad := append(bytes.Clone(hdr), id[:]...)
	return aead.Seal(hdr, hdr[12:24], payload, ad)
}

func TestChunkDecodeHandBuiltBlob(t *testing.T) {
	codec := newTestCodec(t, false)
	plain := textData(5000, 12)
	id := codec.ID(plain)

	got, err := codec.Decode(id, sealRaw(t, "GWD", 1, 1, 0, 0, uint32(len(plain)), id, plain))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("documented raw layout: err %v, equal %v", err, bytes.Equal(got, plain))
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	compressed := enc.EncodeAll(plain, nil)
	got, err = codec.Decode(id, sealRaw(t, "GWD", 1, 1, 1, 0, uint32(len(plain)), id, compressed))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("documented zstd layout (default level, with checksum): err %v, equal %v", err, bytes.Equal(got, plain))
	}
}

// Authenticated blobs with headers Encode never writes are still refused,
// each for its own reason.
func TestChunkDecodeRejectsBadHeaders(t *testing.T) {
	codec := newTestCodec(t, false)
	plain := textData(5000, 13)
	id := codec.ID(plain)
	n := uint32(len(plain))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	compressed := enc.EncodeAll(plain, nil)
	doubled := enc.EncodeAll(append(bytes.Clone(plain), plain...), nil)
	twoFrames := append(bytes.Clone(compressed), compressed...)

	for _, tc := range []struct {
		name string
		blob []byte
		want string
	}{
		{"magic", sealRaw(t, "GWX", 1, 1, 0, 0, n, id, plain), "bad magic"},
		{"version 0", sealRaw(t, "GWD", 0, 1, 0, 0, n, id, plain), "unknown format version 0"},
		{"version 2", sealRaw(t, "GWD", 2, 1, 0, 0, n, id, plain), "unknown format version 2"},
		{"map page type", sealRaw(t, "GWD", 1, byte(objectMapPage), 0, 0, n, id, plain), "header type is map page"},
		{"manifest type", sealRaw(t, "GWD", 1, byte(objectManifest), 0, 0, n, id, plain), "header type is manifest"},
		{"unknown type", sealRaw(t, "GWD", 1, 9, 0, 0, n, id, plain), "header type is object type 9"},
		{"unknown flag", sealRaw(t, "GWD", 1, 1, 0x02, 0, n, id, plain), "unknown flags"},
		{"high flag", sealRaw(t, "GWD", 1, 1, 0x81, 0, n, id, compressed), "unknown flags"},
		{"reserved", sealRaw(t, "GWD", 1, 1, 0, 1, n, id, plain), "reserved bytes"},
		{"length 4 GiB-1", sealRaw(t, "GWD", 1, 1, 0, 0, 0xffffffff, id, plain), "exceeds the limit"},
		{"length limit+1", sealRaw(t, "GWD", 1, 1, 1, 0, MaxChunkSize+1, id, compressed), "exceeds the limit"},
		{"length short", sealRaw(t, "GWD", 1, 1, 0, 0, n-1, id, plain), "header says"},
		{"length long", sealRaw(t, "GWD", 1, 1, 0, 0, n+1, id, plain), "header says"},
		{"zstd not smaller", sealRaw(t, "GWD", 1, 1, 1, 0, uint32(len(compressed)), id, compressed), "not smaller"},
		{"zstd garbage", sealRaw(t, "GWD", 1, 1, 1, 0, n, id, []byte("definitely not a zstd frame")), "zstd"},
		{"zstd decodes longer", sealRaw(t, "GWD", 1, 1, 1, 0, n, id, doubled), "zstd"},
		{"zstd two frames", sealRaw(t, "GWD", 1, 1, 1, 0, n, id, twoFrames), "zstd"},
		{"zstd decodes shorter", sealRaw(t, "GWD", 1, 1, 1, 0, n+1, id, compressed), "decompressed to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codec.Decode(id, tc.blob)
			requireCorrupt(t, err, tc.name)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestNewCodecRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		enc    [32]byte
		idKey  [32]byte
		opts   CodecOptions
		reason string
	}{
		{"zero encryption key", [32]byte{}, testChunkIDKey, CodecOptions{}, "all-zero key"},
		{"zero id key", testEncryptionKey, [32]byte{}, CodecOptions{}, "all-zero key"},
		{"same keys", testEncryptionKey, testEncryptionKey, CodecOptions{}, "are the same"},
		{"negative max", testEncryptionKey, testChunkIDKey, CodecOptions{MaxPlaintext: -1}, "outside"},
		{"huge max", testEncryptionKey, testChunkIDKey, CodecOptions{MaxPlaintext: 1 << 30}, "outside"},
	} {
		_, err := NewCodec(tc.enc, tc.idKey, tc.opts)
		if err == nil || !errkind.IsPermanent(err) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestChunkMaxPlaintext(t *testing.T) {
	codec, err := NewCodec(testEncryptionKey, testChunkIDKey, CodecOptions{MaxPlaintext: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if codec.MaxPlaintext() != 64<<10 || newTestCodec(t, false).MaxPlaintext() != MaxChunkSize {
		t.Fatalf("MaxPlaintext %d / default %d", codec.MaxPlaintext(), newTestCodec(t, false).MaxPlaintext())
	}
	if _, _, err := codec.Encode(make([]byte, 64<<10)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, _, err = codec.Encode(make([]byte, 64<<10+1))
	if err == nil || !errkind.IsPermanent(err) {
		t.Fatalf("over the limit: %v", err)
	}

	// A bigger chunk written by a more permissive codec is refused on read
	// from its header, before any allocation for it.
	big := newTestCodec(t, false)
	plain := randomData(64<<10+1, 14)
	id, blob, err := big.Encode(plain)
	if err != nil {
		t.Fatal(err)
	}
	_, err = codec.Decode(id, blob)
	requireCorrupt(t, err, "chunk above the reader's limit")
	if !strings.Contains(err.Error(), "exceeds the limit") {
		t.Fatalf("refused for another reason: %v", err)
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 4095, 4096, 4097, 64 << 10, 1<<20 + 3} {
		buf := make([]byte, n)
		if !IsZero(buf) {
			t.Fatalf("%d zero bytes: IsZero false", n)
		}
		positions := []int{0, n / 2, n - 1}
		if n <= 4097 {
			positions = positions[:0]
			for i := 0; i < n; i++ {
				positions = append(positions, i)
			}
		}
		for _, pos := range positions {
			if pos < 0 {
				continue
			}
			buf[pos] = 0x10
			if IsZero(buf) {
				t.Fatalf("%d bytes, non-zero at %d: IsZero true", n, pos)
			}
			buf[pos] = 0
		}
	}
}

// Many goroutines share one codec per setting, encoding and decoding
// overlapping and distinct data; run with -race.
func TestChunkCodecConcurrentUse(t *testing.T) {
	codecs := []*Codec{newTestCodec(t, false), newTestCodec(t, true)}
	shared := textData(128<<10, 20)
	sharedID := codecs[0].ID(shared)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 12; i++ {
				codec := codecs[(g+i)%2]
				var plain []byte
				switch i % 3 {
				case 0:
					plain = shared
				case 1:
					plain = textData(64<<10+g*1000+i, uint64(g*100+i))
				default:
					plain = randomData(64<<10+i, uint64(g*100+i))
				}
				id, blob, err := codec.Encode(plain)
				if err != nil {
					errs <- err
					return
				}
				if i%3 == 0 && id != sharedID {
					errs <- fmt.Errorf("goroutine %d: shared plaintext got id %v", g, id)
					return
				}
				// Decode with the other codec: both must read both forms.
				got, err := codecs[(g+i+1)%2].Decode(id, blob)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, plain) {
					errs <- fmt.Errorf("goroutine %d iteration %d: round trip changed data", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The worked example in docs/format.md, byte for byte: an independent
// implementation can check itself against it, and this test keeps the
// document and the code in step.
func TestChunkFormatExample(t *testing.T) {
	const (
		plain   = "gatewayd chunk 1"
		wantID  = "4af13efb61373f4dd56e638e90dd39e3ceb82eb747b0e51636220ff5fa04666d"
		wantHex = "475744010100000000000010000102030405060708090a0b" +
			"165175f2bfbc186f2f48da340af3d7bc5a7b611464c209dd9b81d55e162a74cb"
	)
	codec := newTestCodec(t, false)
	id := codec.ID([]byte(plain))
	if id.String() != wantID {
		t.Fatalf("id %s, document says %s", id, wantID)
	}
	blob, err := hex.DecodeString(wantHex)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.Decode(id, blob)
	if err != nil || string(got) != plain {
		t.Fatalf("Decode of the documented blob: %q, %v", got, err)
	}

	// Rebuild it from the document's recipe alone.
	block, err := aes.NewCipher(testEncryptionKey[:])
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte{'G', 'W', 'D', 1, 1, 0, 0, 0, 0, 0, 0, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	rebuilt := aead.Seal(bytes.Clone(header), header[12:], []byte(plain), append(bytes.Clone(header), id[:]...))
	if !bytes.Equal(rebuilt, blob) {
		t.Fatalf("recipe gives %x", rebuilt)
	}
}
