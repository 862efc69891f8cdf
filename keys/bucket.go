package keys

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// Object keys owned by this package, relative to the store.
const (
	ConfigKey    = "config"
	keysPrefix   = "keys/"
	keyCheckText = "gatewayd key check"
)

// FormatVersion is the repository format this gatewayd writes and reads.
const FormatVersion = 1

// DefaultChunkSize is the volume chunk size recorded in new repositories.
const DefaultChunkSize = 1 << 20

// BucketConfig is the repository config object. It is plaintext JSON: it
// holds no secret, only what a gateway needs to check its key.
type BucketConfig struct {
	FormatVersion int        `json:"format_version"`
	GatewayID     string     `json:"gateway_id"`
	Created       time.Time  `json:"created"`
	ChunkSize     int        `json:"chunk_size"`
	DataKeyID     string     `json:"data_key_id"`
	KDF           *KDFParams `json:"kdf,omitempty"`
	KeyCheck      sealedBlob `json:"key_check"`
}

// sealedBlob is an AES-256-GCM nonce and ciphertext, base64 in JSON.
type sealedBlob struct {
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// wrappedKey is the object at keys/<id>.
type wrappedKey struct {
	Version int        `json:"version"`
	ID      string     `json:"id"`
	Created time.Time  `json:"created"`
	Wrapped sealedBlob `json:"wrapped"`
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Keyring is an opened repository: its config and its data keys.
type Keyring struct {
	cfg     BucketConfig
	current DataKey
}

// Config returns the repository config.
func (k *Keyring) Config() *BucketConfig { c := k.cfg; return &c }

// Current returns the data key new objects are written with. Format
// version 1 has exactly one data key per repository.
func (k *Keyring) Current() DataKey { return k.current }

// InitOptions tune a new repository; zero values take the defaults.
type InitOptions struct {
	ChunkSize int
	// KDF is set by InitBucketWithPassphrase; tests set cheaper parameters.
	KDF *KDFParams
}

// ReadConfig reads the repository config. A missing one is ErrNotInitialized.
func ReadConfig(ctx context.Context, store objstore.Store) (*BucketConfig, error) {
	b, err := objstore.GetAll(ctx, store, ConfigKey)
	if objstore.IsNotFound(err) {
		return nil, ErrNotInitialized
	}
	if err != nil {
		return nil, err
	}
	var cfg BucketConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, corrupt("bucket config object is not valid: %v", err)
	}
	if cfg.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("bucket config has format version %d, newer than this gatewayd reads (%d): upgrade gatewayd", cfg.FormatVersion, FormatVersion)
	}
	if cfg.FormatVersion < 1 || cfg.GatewayID == "" || !keyIDPattern.MatchString(cfg.DataKeyID) ||
		len(cfg.KeyCheck.Nonce) != 12 || cfg.ChunkSize <= 0 {
		return nil, corrupt("bucket config object is incomplete or malformed")
	}
	return &cfg, nil
}

// InitBucket creates a repository in store with master: a data key, then the
// config. The config is written last: a store that has it is complete.
// Two gateways initialising one prefix at the same moment is not detected
// (S3 has no portable create-if-absent); give each gateway its own prefix.
func InitBucket(ctx context.Context, store objstore.Store, master MasterKey, opts InitOptions) (*Keyring, error) {
	if _, err := ReadConfig(ctx, store); err == nil {
		return nil, ErrAlreadyInitialized
	} else if !errors.Is(err, ErrNotInitialized) {
		return nil, err
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	now := time.Now().UTC().Truncate(time.Second)
	dk := DataKey{ID: hex.EncodeToString(randomBytes(16))}
	copy(dk.Encryption[:], randomBytes(32))
	copy(dk.ChunkID[:], randomBytes(32))

	wk := wrappedKey{Version: 1, ID: dk.ID, Created: now, Wrapped: seal(deriveKey(master, infoKeyWrap), dataKeyBytes(dk), wrapAD(dk.ID))}
	b, err := json.Marshal(wk)
	if err != nil {
		return nil, err
	}
	if err := objstore.PutBytes(ctx, store, path.Join(keysPrefix, dk.ID), b); err != nil {
		return nil, fmt.Errorf("write data key: %w", err)
	}

	cfg := BucketConfig{
		FormatVersion: FormatVersion,
		GatewayID:     hex.EncodeToString(randomBytes(8)),
		Created:       now,
		ChunkSize:     opts.ChunkSize,
		DataKeyID:     dk.ID,
		KDF:           opts.KDF,
	}
	cfg.KeyCheck = seal(deriveKey(master, infoKeyCheck), []byte(keyCheckText), []byte(cfg.GatewayID))
	b, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := objstore.PutBytes(ctx, store, ConfigKey, b); err != nil {
		return nil, fmt.Errorf("write bucket config: %w", err)
	}
	return &Keyring{cfg: cfg, current: dk}, nil
}

// InitBucketWithPassphrase creates a repository whose master key is derived
// from passphrase; the KDF parameters go into the config.
func InitBucketWithPassphrase(ctx context.Context, store objstore.Store, passphrase string, opts InitOptions) (*Keyring, error) {
	if opts.KDF == nil {
		p := DefaultKDF()
		opts.KDF = &p
	}
	master, err := deriveWith(passphrase, *opts.KDF)
	if err != nil {
		return nil, err
	}
	return InitBucket(ctx, store, master, opts)
}

// OpenBucket reads the repository config, checks master against its key
// check (ErrWrongKey) and unwraps the data key.
func OpenBucket(ctx context.Context, store objstore.Store, master MasterKey) (*Keyring, error) {
	cfg, err := ReadConfig(ctx, store)
	if err != nil {
		return nil, err
	}
	if _, err := open(deriveKey(master, infoKeyCheck), cfg.KeyCheck, []byte(cfg.GatewayID)); err != nil {
		return nil, ErrWrongKey
	}
	b, err := objstore.GetAll(ctx, store, path.Join(keysPrefix, cfg.DataKeyID))
	if objstore.IsNotFound(err) {
		return nil, corrupt("data key %s named by the bucket config is missing", cfg.DataKeyID)
	}
	if err != nil {
		return nil, err
	}
	var wk wrappedKey
	if err := json.Unmarshal(b, &wk); err != nil || wk.Version != 1 || wk.ID != cfg.DataKeyID {
		return nil, corrupt("data key %s is malformed", cfg.DataKeyID)
	}
	plain, err := open(deriveKey(master, infoKeyWrap), wk.Wrapped, wrapAD(wk.ID))
	if err != nil || len(plain) != 64 {
		// The key check passed, so the master key is right: the wrapped key was altered.
		return nil, corrupt("data key %s failed to authenticate", cfg.DataKeyID)
	}
	dk := DataKey{ID: wk.ID}
	copy(dk.Encryption[:], plain[:32])
	copy(dk.ChunkID[:], plain[32:])
	return &Keyring{cfg: *cfg, current: dk}, nil
}

func dataKeyBytes(dk DataKey) []byte {
	return append(append(make([]byte, 0, 64), dk.Encryption[:]...), dk.ChunkID[:]...)
}

func wrapAD(id string) []byte { return []byte("gatewayd data key " + id) }

func seal(key [32]byte, plain, ad []byte) sealedBlob {
	nonce := randomBytes(12)
	return sealedBlob{Nonce: nonce, Ciphertext: newGCM(key).Seal(nil, nonce, plain, ad)}
}

func open(key [32]byte, s sealedBlob, ad []byte) ([]byte, error) {
	if len(s.Nonce) != 12 {
		return nil, errors.New("bad nonce length")
	}
	return newGCM(key).Open(nil, s.Nonce, s.Ciphertext, ad)
}
