package snapshots

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// The codec benchmarks and the primitives they are built from, side by
// side in one run so the ratios in BENCHMARKS.md compare like with like.
// All work on 1 MiB, the default chunk size, unless the name says otherwise.

const benchChunkSize = 1 << 20

var benchData = []struct {
	name  string
	bytes func() []byte
}{
	{"random", func() []byte { return randomData(benchChunkSize, 100) }},
	{"text", func() []byte { return textData(benchChunkSize, 100) }},
}

func BenchmarkChunkEncode(b *testing.B) {
	for _, compress := range []bool{false, true} {
		codec := newTestCodec(b, compress)
		for _, d := range benchData {
			b.Run(zstdName(compress)+"/"+d.name, func(b *testing.B) {
				plain := d.bytes()
				var blob []byte
				b.SetBytes(int64(len(plain)))
				for b.Loop() {
					var err error
					if _, blob, err = codec.Encode(plain); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(plain))/float64(len(blob)), "ratio")
			})
		}
	}
}

func BenchmarkChunkDecode(b *testing.B) {
	for _, compress := range []bool{false, true} {
		codec := newTestCodec(b, compress)
		for _, d := range benchData {
			b.Run(zstdName(compress)+"/"+d.name, func(b *testing.B) {
				plain := d.bytes()
				id, blob, err := codec.Encode(plain)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(plain)))
				for b.Loop() {
					if _, err := codec.Decode(id, blob); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func zstdName(compress bool) string {
	if compress {
		return "zstd=on"
	}
	return "zstd=off"
}

func BenchmarkRawAESGCM(b *testing.B) {
	block, err := aes.NewCipher(testEncryptionKey[:])
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	plain := randomData(benchChunkSize, 101)
	nonce := make([]byte, aead.NonceSize())
	ad := make([]byte, frameHeaderLen+32)
	out := make([]byte, 0, len(plain)+aead.Overhead())
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			out = aead.Seal(out[:0], nonce, plain, ad)
		}
	})
	sealed := aead.Seal(nil, nonce, plain, ad)
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			if out, err = aead.Open(out[:0], nonce, sealed, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRawHash compares the two candidates for the chunk id at both
// ends of the chunk-size range.
func BenchmarkRawHash(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1MiB", 1 << 20}, {"64KiB", 64 << 10}} {
		data := randomData(size.n, 102)
		b.Run("BLAKE3-keyed/"+size.name, func(b *testing.B) {
			h, err := blake3.NewKeyed(testChunkIDKey[:])
			if err != nil {
				b.Fatal(err)
			}
			var sum [32]byte
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				h.Reset()
				_, _ = h.Write(data)
				h.Sum(sum[:0])
			}
		})
		b.Run("HMAC-SHA256/"+size.name, func(b *testing.B) {
			h := hmac.New(sha256.New, testChunkIDKey[:])
			var sum [32]byte
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				h.Reset()
				_, _ = h.Write(data)
				h.Sum(sum[:0])
			}
		})
	}
}

// BenchmarkRawZstd is the codec's zstd configuration alone.
func BenchmarkRawZstd(b *testing.B) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(4<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range benchData {
		plain := d.bytes()
		compressed := enc.EncodeAll(plain, nil)
		buf := make([]byte, 0, 2*len(plain))
		b.Run("compress/"+d.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				buf = enc.EncodeAll(plain, buf[:0])
			}
			b.ReportMetric(float64(len(plain))/float64(len(compressed)), "ratio")
		})
		b.Run("decompress/"+d.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				if buf, err = dec.DecodeAll(compressed, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIsZero(b *testing.B) {
	buf := make([]byte, benchChunkSize)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if !IsZero(buf) {
			b.Fatal("zero buffer reported non-zero")
		}
	}
}
