// Package keys owns gatewayd's keys and the bucket's repository config.
//
// The master key stays on the appliance: 32 random bytes in a key file
// (mode 0600), or derived from a passphrase with argon2id. It never goes to
// the object store. What goes there is
//
//   - "config": the repository config (format version, gateway id, default
//     chunk size, KDF parameters when a passphrase is used) with a key check
//     that tells a wrong master key apart from corrupt data;
//   - "keys/<id>": data keys, each wrapped (AES-256-GCM) by a key derived
//     from the master key.
//
// A data key holds two 32-byte keys: one encrypts chunks, pages and
// manifests, the other keys the hash that names chunks. docs/keys.md gives
// the byte-exact format.
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/gatewayd/gatewayd/errkind"
)

// MasterKey is the root secret of a repository.
type MasterKey [32]byte

// DataKey encrypts a repository's objects and keys its chunk ids.
type DataKey struct {
	ID         string
	Encryption [32]byte // AES-256-GCM key for chunks, map pages, manifests
	ChunkID    [32]byte // key of the keyed hash naming chunks
}

// Errors a caller must tell apart.
var (
	// ErrWrongKey: the master key is not this repository's.
	ErrWrongKey = errors.New("wrong master key for this bucket")
	// ErrNotInitialized: the store holds no repository config.
	ErrNotInitialized = errors.New("bucket is not initialised for gatewayd (no config object)")
	// ErrAlreadyInitialized: InitBucket on a store that has a config.
	ErrAlreadyInitialized = errors.New("bucket is already initialised for gatewayd")
)

// HKDF info strings: each use of the master key gets its own derived key.
const (
	infoKeyCheck = "gatewayd key check v1"
	infoKeyWrap  = "gatewayd key wrap v1"
)

func deriveKey(master MasterKey, info string) [32]byte {
	k, err := hkdf.Key(sha256.New, master[:], nil, info, 32)
	if err != nil {
		panic(err) // only for lengths HKDF-SHA256 cannot produce
	}
	return [32]byte(k)
}

func newGCM(key [32]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

func corrupt(format string, args ...any) error {
	return errkind.Mark(errkind.Corrupt, fmt.Errorf(format, args...))
}
