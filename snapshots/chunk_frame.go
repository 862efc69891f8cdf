package snapshots

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/gatewayd/gatewayd/errkind"
)

// The sealed-object framing shared by chunks, map pages and manifests.
// docs/format.md specifies it byte by byte; keep the two in step.
//
//	offset size field
//	0      3    magic "GWD"
//	3      1    format version (1)
//	4      1    object type (objectChunk, objectMapPage, objectManifest)
//	5      1    flags (flagZstd; every other bit must be zero)
//	6      2    reserved, must be zero
//	8      4    plaintext length, uint32 big-endian
//	12     12   AES-GCM nonce, random
//	24     n    ciphertext (of the payload: plaintext, or its zstd frame)
//	24+n   16   GCM tag
//
// Associated data = the 24 header bytes as stored || the object's binding
// (for a chunk, its 32-byte id), so every header field and the name the
// object is stored under are authenticated along with the payload.
const (
	frameMagic     = "GWD"
	frameVersion   = 1
	frameHeaderLen = 24
	frameNonceLen  = 12
	frameTagLen    = 16
	// FrameOverhead is how many bytes a sealed object adds to its payload.
	FrameOverhead = frameHeaderLen + frameTagLen

	offVersion  = 3
	offType     = 4
	offFlags    = 5
	offReserved = 6
	offPlainLen = 8
	offNonce    = 12

	// flagZstd: the payload is one or more zstd frames whose decoded
	// length is the header's plaintext length.
	flagZstd   byte = 0x01
	knownFlags      = flagZstd

	// maxBindingLen bounds the associated data appended after the header.
	maxBindingLen = 64
)

// objectType is the header's type byte: what a sealed object holds. It is
// authenticated, so a blob of one type never opens as another.
type objectType byte

const (
	objectChunk    objectType = 1
	objectMapPage  objectType = 2
	objectManifest objectType = 3
	objectPatch    objectType = 4
)

func (t objectType) String() string {
	switch t {
	case objectChunk:
		return "chunk"
	case objectMapPage:
		return "map page"
	case objectManifest:
		return "manifest"
	case objectPatch:
		return "patch"
	}
	return fmt.Sprintf("object type %d", byte(t))
}

// framer seals and opens objects: AES-256-GCM over an optionally
// zstd-compressed payload. It is safe for concurrent use: the AEAD is
// stateless once built, and the zstd encoder and decoder hand out one
// internal state per concurrent EncodeAll/DecodeAll call.
type framer struct {
	aead     cipher.AEAD
	encoder  *zstd.Encoder // nil when compression is off
	decoder  *zstd.Decoder // always set: objects written compressed stay readable
	maxPlain int

	// scratch holds payload-sized buffers: the compressed payload before
	// sealing, the decrypted compressed payload before decoding.
	scratch sync.Pool
}

func newFramer(encryptionKey [32]byte, compress bool, maxPlain int) (*framer, error) {
	block, err := aes.NewCipher(encryptionKey[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	window := zstd.MinWindowSize
	for window < maxPlain && window < zstd.MaxWindowSize {
		window <<= 1
	}
	// The decoder never needs more than maxPlain of output or window; the
	// limits also hold against frames crafted by a key holder.
	decoder, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(uint64(maxPlain)),
		zstd.WithDecoderMaxWindow(uint64(window)),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	f := &framer{aead: aead, decoder: decoder, maxPlain: maxPlain}
	if compress {
		// No zstd checksum: GCM authenticates the payload and the chunk id
		// check covers the decoded plaintext.
		f.encoder, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderCRC(false),
			zstd.WithWindowSize(window),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		)
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
	}
	return f, nil
}

func (f *framer) getScratch(n int) *[]byte {
	if p, ok := f.scratch.Get().(*[]byte); ok && cap(*p) >= n {
		return p
	}
	b := make([]byte, 0, max(n, 64<<10))
	return &b
}

func (f *framer) putScratch(p *[]byte, b []byte) {
	// Keep a buffer a call grew only if it stays within bounds, so the pool
	// never pins more than a payload's worth per entry.
	if cap(b) <= f.maxPlain+f.maxPlain/8+1024 {
		*p = b[:0]
	}
	f.scratch.Put(p)
}

// seal returns a new blob holding plain as an object of type t bound to
// binding. It compresses when the framer compresses and the zstd frame is
// smaller than plain.
func (f *framer) seal(t objectType, binding, plain []byte) ([]byte, error) {
	if len(plain) > f.maxPlain {
		return nil, errkind.Mark(errkind.Permanent,
			fmt.Errorf("seal %v: plaintext of %d bytes exceeds the limit of %d", t, len(plain), f.maxPlain))
	}
	if len(binding) > maxBindingLen {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("seal %v: binding of %d bytes", t, len(binding)))
	}
	var flags byte
	payload := plain
	if f.encoder != nil && len(plain) > 0 {
		sp := f.getScratch(len(plain))
		compressed := f.encoder.EncodeAll(plain, (*sp)[:0])
		defer f.putScratch(sp, compressed)
		if len(compressed) < len(plain) {
			flags |= flagZstd
			payload = compressed
		}
	}

	blob := make([]byte, frameHeaderLen, frameHeaderLen+len(payload)+frameTagLen)
	copy(blob, frameMagic)
	blob[offVersion] = frameVersion
	blob[offType] = byte(t)
	blob[offFlags] = flags
	binary.BigEndian.PutUint32(blob[offPlainLen:], uint32(len(plain)))
	nonce := blob[offNonce : offNonce+frameNonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal %v: nonce: %w", t, err)
	}
	var adBuf [frameHeaderLen + maxBindingLen]byte
	ad := append(append(adBuf[:0], blob[:frameHeaderLen]...), binding...)
	return f.aead.Seal(blob, nonce, payload, ad), nil
}

// errFrame is the root of every error open reports; all of them are also
// marked errkind.Corrupt.
var errFrame = errors.New("corrupt object")

func corruptf(t objectType, format string, args ...any) error {
	return errkind.Mark(errkind.Corrupt,
		fmt.Errorf("%w: %v: %s", errFrame, t, fmt.Sprintf(format, args...)))
}

// open authenticates blob as an object of type t bound to binding and
// returns its plaintext in a new buffer. Every failure is errkind.Corrupt.
// Lengths read from the blob are checked against maxPlain and against each
// other before anything is allocated from them.
func (f *framer) open(t objectType, binding, blob []byte) ([]byte, error) {
	if len(blob) < FrameOverhead {
		return nil, corruptf(t, "%d bytes, shorter than the %d-byte frame", len(blob), FrameOverhead)
	}
	if !bytes.Equal(blob[:len(frameMagic)], []byte(frameMagic)) {
		return nil, corruptf(t, "bad magic %q", blob[:len(frameMagic)])
	}
	if v := blob[offVersion]; v != frameVersion {
		return nil, corruptf(t, "unknown format version %d", v)
	}
	if got := objectType(blob[offType]); got != t {
		return nil, corruptf(t, "header type is %v", got)
	}
	flags := blob[offFlags]
	if flags&^knownFlags != 0 {
		return nil, corruptf(t, "unknown flags %#02x", flags)
	}
	if blob[offReserved] != 0 || blob[offReserved+1] != 0 {
		return nil, corruptf(t, "reserved bytes are not zero")
	}
	if len(binding) > maxBindingLen {
		return nil, corruptf(t, "binding of %d bytes", len(binding))
	}
	plainLen := binary.BigEndian.Uint32(blob[offPlainLen:])
	if uint64(plainLen) > uint64(f.maxPlain) {
		return nil, corruptf(t, "declared plaintext length %d exceeds the limit of %d", plainLen, f.maxPlain)
	}
	payloadLen := len(blob) - FrameOverhead
	compressed := flags&flagZstd != 0
	switch {
	case !compressed && payloadLen != int(plainLen):
		return nil, corruptf(t, "payload of %d bytes, header says %d", payloadLen, plainLen)
	case compressed && payloadLen >= int(plainLen):
		// seal stores a zstd frame only when it is smaller than the plaintext.
		return nil, corruptf(t, "compressed payload of %d bytes not smaller than the %d-byte plaintext", payloadLen, plainLen)
	}

	nonce := blob[offNonce : offNonce+frameNonceLen]
	sealed := blob[frameHeaderLen:]
	var adBuf [frameHeaderLen + maxBindingLen]byte
	ad := append(append(adBuf[:0], blob[:frameHeaderLen]...), binding...)

	if !compressed {
		plain, err := f.aead.Open(make([]byte, 0, payloadLen), nonce, sealed, ad)
		if err != nil {
			return nil, corruptf(t, "authentication failed")
		}
		return plain, nil
	}

	sp := f.getScratch(payloadLen)
	defer f.scratch.Put(sp)
	payload, err := f.aead.Open((*sp)[:0], nonce, sealed, ad)
	if err != nil {
		return nil, corruptf(t, "authentication failed")
	}
	// The cap limit makes the decoder refuse to produce more than the
	// declared length, whatever the frames inside claim.
	plain, err := f.decoder.DecodeAll(payload, make([]byte, 0, plainLen))
	if err != nil {
		return nil, corruptf(t, "zstd: %v", err)
	}
	if len(plain) != int(plainLen) {
		return nil, corruptf(t, "decompressed to %d bytes, header says %d", len(plain), plainLen)
	}
	return plain, nil
}
