package snapshots

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"

	"github.com/gatewayd/gatewayd/errkind"
)

// Chunk size limits. A volume's chunk size lies between MinChunkSize and
// MaxChunkSize; the codec refuses plaintexts above its configured maximum.
const (
	MinChunkSize     = 64 << 10
	DefaultChunkSize = 1 << 20
	MaxChunkSize     = 4 << 20
)

// hardMaxPlain bounds CodecOptions.MaxPlaintext so that a misconfigured
// codec cannot be told to accept (and allocate for) absurd lengths.
const hardMaxPlain = 64 << 20

// ChunkID names a chunk: the BLAKE3 keyed hash of its plaintext under the
// chunk-id key. Equal plaintext under the same key has the same id, which
// is what deduplicates chunks across volumes and snapshots.
type ChunkID [32]byte

// String returns the id as 64 lower-case hex digits.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// ObjectKey returns the object-store key of the chunk, relative to the
// repository prefix: "chunks/<first 2 hex digits>/<64 hex digits>".
func (id ChunkID) ObjectKey() string {
	s := id.String()
	return "chunks/" + s[:2] + "/" + s
}

// ErrInvalidChunkID is returned by ParseChunkID for text that is not a
// chunk id.
var ErrInvalidChunkID = errors.New("invalid chunk id")

// ParseChunkID parses the form String returns: exactly 64 lower-case hex
// digits. Upper case is refused because object keys are case-sensitive and
// one id must have one key.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	if len(s) != 2*len(id) {
		return id, errkind.Mark(errkind.Permanent, fmt.Errorf("%w: %q: want %d hex digits", ErrInvalidChunkID, s, 2*len(id)))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return id, errkind.Mark(errkind.Permanent, fmt.Errorf("%w: %q: not lower-case hex", ErrInvalidChunkID, s))
		}
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ChunkID{}, errkind.Mark(errkind.Permanent, fmt.Errorf("%w: %q: %v", ErrInvalidChunkID, s, err))
	}
	return id, nil
}

// zeroBlock is compared against in IsZero; bytes.Equal runs at vector
// speed, and a block this size stays in L1.
var zeroBlock [4096]byte

// IsZero reports whether buf holds only zero bytes (an empty buf does).
// An all-zero chunk is a hole: the volume layer never stores it.
func IsZero(buf []byte) bool {
	for len(buf) >= len(zeroBlock) {
		if !bytes.Equal(buf[:len(zeroBlock)], zeroBlock[:]) {
			return false
		}
		buf = buf[len(zeroBlock):]
	}
	return bytes.Equal(buf, zeroBlock[:len(buf)])
}

// CodecOptions configures a Codec.
type CodecOptions struct {
	// Compress stores a chunk as zstd (fastest level) when that is smaller
	// than the plaintext. Decoding handles both forms whatever this says.
	Compress bool
	// MaxPlaintext is the largest plaintext Encode accepts and Decode
	// believes a header about. Zero means MaxChunkSize.
	MaxPlaintext int
}

// Codec turns chunk plaintext into the stored object and back. It is safe
// for concurrent use.
type Codec struct {
	frame   *framer
	hashers sync.Pool // *blake3.Hasher keyed with the chunk-id key, reset
}

// NewCodec returns a codec that encrypts with encryptionKey (AES-256-GCM)
// and names chunks with chunkIDKey (BLAKE3 keyed hash). The two keys must
// differ and neither may be all zero: both mistakes point at a caller that
// lost its keys, and a codec built from them would write unreadable or
// guessable data.
func NewCodec(encryptionKey, chunkIDKey [32]byte, opts CodecOptions) (*Codec, error) {
	if IsZero(encryptionKey[:]) || IsZero(chunkIDKey[:]) {
		return nil, errkind.Mark(errkind.Permanent, errors.New("chunk codec: all-zero key"))
	}
	if subtle.ConstantTimeCompare(encryptionKey[:], chunkIDKey[:]) == 1 {
		return nil, errkind.Mark(errkind.Permanent, errors.New("chunk codec: encryption key and chunk-id key are the same"))
	}
	maxPlain := opts.MaxPlaintext
	if maxPlain == 0 {
		maxPlain = MaxChunkSize
	}
	if maxPlain < 0 || maxPlain > hardMaxPlain {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("chunk codec: MaxPlaintext %d outside 1..%d", maxPlain, hardMaxPlain))
	}
	frame, err := newFramer(encryptionKey, opts.Compress, maxPlain)
	if err != nil {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("chunk codec: %w", err))
	}
	c := &Codec{frame: frame}
	c.hashers.New = func() any {
		h, err := blake3.NewKeyed(chunkIDKey[:])
		if err != nil {
			panic(err) // unreachable: the key is 32 bytes by type
		}
		return h
	}
	return c, nil
}

// MaxPlaintext returns the largest plaintext the codec encodes or decodes.
func (c *Codec) MaxPlaintext() int { return c.frame.maxPlain }

// ID returns the chunk id of plain.
func (c *Codec) ID(plain []byte) ChunkID {
	h := c.hashers.Get().(*blake3.Hasher)
	_, _ = h.Write(plain)
	var id ChunkID
	h.Sum(id[:0])
	h.Reset()
	c.hashers.Put(h)
	return id
}

// Encode returns the id of plain and the object to store under
// id.ObjectKey(). The blob is newly allocated; plain is not retained.
func (c *Codec) Encode(plain []byte) (ChunkID, []byte, error) {
	if len(plain) > c.frame.maxPlain {
		// Checked before hashing so an oversize chunk costs nothing.
		return ChunkID{}, nil, errkind.Mark(errkind.Permanent,
			fmt.Errorf("encode chunk: %d bytes exceeds the limit of %d", len(plain), c.frame.maxPlain))
	}
	id := c.ID(plain)
	blob, err := c.EncodeWithID(id, plain)
	return id, blob, err
}

// EncodeWithID is Encode for a caller that already computed id = c.ID(plain)
// (to look it up before paying for encryption). It trusts id: a wrong one
// yields a blob that Decode rejects as corrupt.
func (c *Codec) EncodeWithID(id ChunkID, plain []byte) ([]byte, error) {
	blob, err := c.frame.seal(objectChunk, id[:], plain)
	if err != nil {
		return nil, fmt.Errorf("encode chunk %v: %w", id, err)
	}
	return blob, nil
}

// Decode authenticates blob as the chunk named id and returns its
// plaintext in a new buffer. Any blob that is not exactly what Encode
// produced for id under this codec's keys (tampered, truncated, stored
// under another id, another object type, an unknown version or flag, a
// length beyond the codec's limit) is an error marked errkind.Corrupt,
// never data. As a second line of defence, the decoded plaintext must hash
// to id.
func (c *Codec) Decode(id ChunkID, blob []byte) ([]byte, error) {
	plain, err := c.frame.open(objectChunk, id[:], blob)
	if err != nil {
		return nil, fmt.Errorf("decode chunk %v: %w", id, err)
	}
	if got := c.ID(plain); subtle.ConstantTimeCompare(got[:], id[:]) != 1 {
		return nil, fmt.Errorf("decode chunk %v: %w", id, corruptf(objectChunk, "plaintext hashes to %v", got))
	}
	return plain, nil
}
