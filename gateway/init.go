package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/internal/fsutil"
	"github.com/gatewayd/gatewayd/keys"
	"github.com/gatewayd/gatewayd/lease"
	"github.com/gatewayd/gatewayd/objstore"
)

// InitOptions are the choices of `gatewayd init` that are not config options.
type InitOptions struct {
	// ExistingKeyFile attaches the gateway to a bucket initialised before,
	// with that bucket's master key (copied into the data directory).
	ExistingKeyFile string
	// ObjectLock, "governance" or "compliance", makes snapshots lockable
	// in that mode (snapshots.object_lock); the bucket must have been
	// created with Object Lock.
	ObjectLock string
}

// InitResult says what Init did.
type InitResult struct {
	GatewayID     string
	Store         string
	BucketState   string // "new repository" or "joined existing repository"
	MasterKeyFile string // empty with a passphrase
}

// Init prepares cfg.DataDir: it checks the object store, creates or loads
// the master key, initialises the bucket's repository config (or verifies the
// key against an existing one) and writes gatewayd.yaml last, so a failed
// init leaves no half-initialised data directory behind.
func Init(ctx context.Context, cfg *config.Config, opts InitOptions) (*InitResult, error) {
	cfgPath := filepath.Join(cfg.DataDir, config.FileName)
	if _, err := os.Stat(cfgPath); err == nil {
		return nil, fmt.Errorf("data directory %s is already initialised (%s exists)", cfg.DataDir, cfgPath)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	logger := NewLogger(os.Stderr, "warn")
	store, err := OpenStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	if opts.ObjectLock != "" {
		mode, err := objstore.ParseRetentionMode(opts.ObjectLock)
		if err != nil {
			return nil, fmt.Errorf("--object-lock: %w", err)
		}
		if err := CheckObjectLock(ctx, store); err != nil {
			return nil, fmt.Errorf("--object-lock: %w", err)
		}
		cfg.Snapshots.ObjectLock = strings.ToLower(string(mode))
	}

	existing, err := keys.ReadConfig(ctx, store)
	fresh := errors.Is(err, keys.ErrNotInitialized)
	if err != nil && !fresh {
		return nil, fmt.Errorf("%s: %w", store, err)
	}
	if !fresh {
		// Joining a prefix a live gateway serves would make two writers.
		if err := lease.Check(ctx, store.Lease, time.Now()); err != nil {
			return nil, err
		}
	}

	res := &InitResult{Store: store.String(), BucketState: "new repository"}
	var keyring *keys.Keyring
	var cleanup func()
	switch {
	case cfg.Keys.PassphraseEnv != "":
		pass := os.Getenv(cfg.Keys.PassphraseEnv)
		if pass == "" {
			return nil, fmt.Errorf("--passphrase-env: environment variable %s is empty or unset", cfg.Keys.PassphraseEnv)
		}
		if fresh {
			keyring, err = keys.InitBucketWithPassphrase(ctx, store, pass, keys.InitOptions{})
		} else {
			var master keys.MasterKey
			if master, err = keys.DeriveMasterKey(pass, existing); err == nil {
				keyring, err = keys.OpenBucket(ctx, store, master)
			}
		}
	default:
		keyPath := cfg.Path(cfg.Keys.MasterKeyFile)
		var master keys.MasterKey
		master, cleanup, err = installMasterKey(keyPath, opts.ExistingKeyFile, fresh, existing, store.String())
		if err != nil {
			return nil, err
		}
		res.MasterKeyFile = keyPath
		if fresh {
			keyring, err = keys.InitBucket(ctx, store, master, keys.InitOptions{})
		} else {
			keyring, err = keys.OpenBucket(ctx, store, master)
		}
	}
	if err == nil {
		err = writeConfig(cfgPath, cfg)
	}
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, fmt.Errorf("%s: %w", store, err)
	}
	if !fresh {
		res.BucketState = "joined existing repository"
	}
	res.GatewayID = keyring.Config().GatewayID
	return res, nil
}

// CheckObjectLock makes sure store's bucket has Object Lock, with a clear
// error when it has not.
func CheckObjectLock(ctx context.Context, store objstore.Store) error {
	lc, err := objstore.ObjectLock(ctx, store)
	if err != nil {
		return fmt.Errorf("%s: reading the bucket's Object Lock configuration: %w", store, err)
	}
	if !lc.Enabled {
		return fmt.Errorf("%s has no Object Lock: locked snapshots need a bucket with Object Lock enabled "+
			"(create it with aws s3api create-bucket --object-lock-enabled-for-bucket, or mc mb --with-lock on MinIO)", store)
	}
	return nil
}

// installMasterKey puts the master key at keyPath: a copy of existingFile
// when given, else a new random key (only for a fresh bucket: a bucket
// already holding a repository can only be joined with its key). cleanup
// removes a key file this call created.
func installMasterKey(keyPath, existingFile string, fresh bool, existing *keys.BucketConfig, store string) (keys.MasterKey, func(), error) {
	if existingFile == "" {
		if !fresh {
			return keys.MasterKey{}, nil, fmt.Errorf("%s is already initialised by gateway %s: pass --master-key-file with its master key to attach this gateway",
				store, existing.GatewayID)
		}
		master, err := keys.GenerateMasterKeyFile(keyPath)
		if err != nil {
			return keys.MasterKey{}, nil, err
		}
		return master, func() { os.Remove(keyPath) }, nil
	}
	master, err := keys.LoadMasterKeyFile(existingFile)
	if err != nil {
		return keys.MasterKey{}, nil, err
	}
	if abs, _ := filepath.Abs(existingFile); abs == keyPath {
		return master, nil, nil
	}
	if err := keys.WriteMasterKeyFile(keyPath, master); err != nil {
		return keys.MasterKey{}, nil, err
	}
	return master, func() { os.Remove(keyPath) }, nil
}

// writeConfig writes gatewayd.yaml atomically with mode 0600 (it may hold S3
// credentials).
func writeConfig(path string, cfg *config.Config) error {
	b, err := config.Marshal(cfg)
	if err != nil {
		return err
	}
	b = append([]byte("# gatewayd configuration: `gatewayd config print` shows every option.\n"), b...)
	return fsutil.WriteFileAtomic(path, b, 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
