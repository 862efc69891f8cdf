package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"

	"github.com/gatewayd/gatewayd/internal/fsutil"
)

// GenerateMasterKeyFile creates a new random master key at path (mode
// 0600). It never overwrites an existing file.
func GenerateMasterKeyFile(path string) (MasterKey, error) {
	var k MasterKey
	copy(k[:], randomBytes(len(k)))
	return k, WriteMasterKeyFile(path, k)
}

// WriteMasterKeyFile writes k to a new file at path (mode 0600), durably.
func WriteMasterKeyFile(path string, k MasterKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("master key file %s already exists; refusing to overwrite it", path)
	}
	if err != nil {
		return fmt.Errorf("master key file: %w", err)
	}
	if _, err = f.Write(k[:]); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("master key file %s: %w", path, err)
	}
	return nil
}

// LoadMasterKeyFile reads a master key file. A file other users can read is
// refused: the key protects everything in the bucket.
func LoadMasterKeyFile(path string) (MasterKey, error) {
	var k MasterKey
	fi, err := os.Stat(path)
	if err != nil {
		return k, fmt.Errorf("master key file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return k, fmt.Errorf("master key file %s is readable by others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return k, fmt.Errorf("master key file: %w", err)
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("master key file %s holds %d bytes, a master key is %d", path, len(b), len(k))
	}
	copy(k[:], b)
	return k, nil
}

// KDFParams are the argon2id parameters a passphrase-derived master key was
// made with; they live in the bucket config so any gateway can derive it again.
type KDFParams struct {
	Algorithm string `json:"algorithm"` // "argon2id"
	Salt      []byte `json:"salt"`      // 16 random bytes
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF are the parameters for new repositories: about a second and
// 64 MiB on an appliance core.
func DefaultKDF() KDFParams {
	return KDFParams{Algorithm: "argon2id", Salt: randomBytes(16), Time: 3, MemoryKiB: 64 << 10, Threads: 2}
}

// Limits on KDF parameters read from a bucket, so a hostile config cannot
// make a gateway allocate without bound.
const (
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
	maxKDFTime      = 100
)

// DeriveMasterKey derives the master key from passphrase with the KDF
// parameters of cfg.
func DeriveMasterKey(passphrase string, cfg *BucketConfig) (MasterKey, error) {
	var k MasterKey
	if cfg.KDF == nil {
		return k, errors.New("this bucket's master key is a key file, not a passphrase: use keys.master_key_file")
	}
	return deriveWith(passphrase, *cfg.KDF)
}

func deriveWith(passphrase string, p KDFParams) (MasterKey, error) {
	var k MasterKey
	if passphrase == "" {
		return k, errors.New("empty passphrase")
	}
	if p.Algorithm != "argon2id" || len(p.Salt) < 16 || p.Time < 1 || p.Time > maxKDFTime ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB || p.Threads < 1 {
		return k, corrupt("bucket config: invalid KDF parameters %s t=%d m=%dKiB p=%d salt=%d bytes",
			p.Algorithm, p.Time, p.MemoryKiB, p.Threads, len(p.Salt))
	}
	copy(k[:], argon2.IDKey([]byte(passphrase), p.Salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(k))))
	return k, nil
}
