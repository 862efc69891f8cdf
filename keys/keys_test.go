package keys

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// cheapKDF keeps argon2id fast in tests; the parameters are still real.
func cheapKDF() *KDFParams {
	p := DefaultKDF()
	p.Time, p.MemoryKiB, p.Threads = 1, 1024, 1
	return &p
}

func newMaster(t *testing.T) MasterKey {
	t.Helper()
	k, err := GenerateMasterKeyFile(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestInitOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	store := mem.New("mem")
	master := newMaster(t)

	if _, err := ReadConfig(ctx, store); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("empty bucket: %v", err)
	}
	kr, err := InitBucket(ctx, store, master, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if kr.Config().ChunkSize != DefaultChunkSize || kr.Config().GatewayID == "" {
		t.Fatalf("config = %+v", kr.Config())
	}
	if kr.Current().Encryption == kr.Current().ChunkID || kr.Current().Encryption == [32]byte{} {
		t.Fatal("data key halves are not independent random keys")
	}
	if _, err := InitBucket(ctx, store, master, InitOptions{}); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second init: %v", err)
	}

	again, err := OpenBucket(ctx, store, master)
	if err != nil {
		t.Fatal(err)
	}
	if again.Current() != kr.Current() || again.Config().GatewayID != kr.Config().GatewayID {
		t.Fatal("reopened keyring differs")
	}

	// Nothing in the bucket holds the master key or the data key in clear.
	dk := kr.Current()
	err = store.List(ctx, "", func(oi objstore.ObjectInfo) error {
		b, err := objstore.GetAll(ctx, store, oi.Key)
		if err != nil {
			return err
		}
		for _, secret := range [][]byte{master[:], dk.Encryption[:], dk.ChunkID[:]} {
			if strings.Contains(string(b), string(secret)) ||
				strings.Contains(string(b), base64.StdEncoding.EncodeToString(secret)) ||
				strings.Contains(string(b), hex.EncodeToString(secret)) {
				t.Errorf("%s holds a key in clear", oi.Key)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWrongKeyIsNotCorruption(t *testing.T) {
	ctx := context.Background()
	store := mem.New("mem")
	if _, err := InitBucket(ctx, store, newMaster(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := OpenBucket(ctx, store, newMaster(t))
	if !errors.Is(err, ErrWrongKey) || errkind.IsCorrupt(err) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestTamperedDataKeyIsCorrupt(t *testing.T) {
	ctx := context.Background()
	store := mem.New("mem")
	master := newMaster(t)
	kr, err := InitBucket(ctx, store, master, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := "keys/" + kr.Current().ID
	b, err := objstore.GetAll(ctx, store, key)
	if err != nil {
		t.Fatal(err)
	}
	var wk wrappedKey
	if err := json.Unmarshal(b, &wk); err != nil {
		t.Fatal(err)
	}
	for i := range wk.Wrapped.Ciphertext {
		wk.Wrapped.Ciphertext[i] ^= 0x01
		b, _ := json.Marshal(wk)
		if err := objstore.PutBytes(ctx, store, key, b); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBucket(ctx, store, master)
		if !errkind.IsCorrupt(err) || errors.Is(err, ErrWrongKey) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
		wk.Wrapped.Ciphertext[i] ^= 0x01
	}
	if err := store.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBucket(ctx, store, master); !errkind.IsCorrupt(err) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing data key: %v", err)
	}
}

func TestPassphrase(t *testing.T) {
	ctx := context.Background()
	store := mem.New("mem")
	kr, err := InitBucketWithPassphrase(ctx, store, "correct horse", InitOptions{KDF: cheapKDF()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadConfig(ctx, store)
	if err != nil || cfg.KDF == nil || len(cfg.KDF.Salt) != 16 {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
	master, err := DeriveMasterKey("correct horse", cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenBucket(ctx, store, master)
	if err != nil || got.Current() != kr.Current() {
		t.Fatalf("open with passphrase: %v", err)
	}
	other, err := DeriveMasterKey("battery staple", cfg)
	if err != nil || other == master {
		t.Fatalf("different passphrase gave the same key (%v)", err)
	}
	if _, err := OpenBucket(ctx, store, other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}

	// A hostile config cannot ask for unbounded memory.
	cfg.KDF.MemoryKiB = 1 << 30
	if _, err := DeriveMasterKey("correct horse", cfg); err == nil {
		t.Fatal("huge KDF memory accepted")
	}
	// A key-file bucket has no KDF.
	plain := mem.New("plain")
	if _, err := InitBucket(ctx, plain, newMaster(t), InitOptions{}); err != nil {
		t.Fatal(err)
	}
	pcfg, _ := ReadConfig(ctx, plain)
	if _, err := DeriveMasterKey("x", pcfg); err == nil {
		t.Fatal("passphrase accepted for a key-file bucket")
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	k, err := GenerateMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	if _, err := GenerateMasterKeyFile(path); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := LoadMasterKeyFile(path)
	if err != nil || got != k {
		t.Fatalf("load: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMasterKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMasterKeyFile(short); err == nil || !strings.Contains(err.Error(), "3 bytes") {
		t.Fatalf("short key: %v", err)
	}
}

func TestBadConfigObjects(t *testing.T) {
	ctx := context.Background()
	store := mem.New("mem")
	master := newMaster(t)
	if _, err := InitBucket(ctx, store, master, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	good, err := objstore.GetAll(ctx, store, ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(good, &m); err != nil {
		t.Fatal(err)
	}
	newer := map[string]any{}
	for k, v := range m {
		newer[k] = v
	}
	newer["format_version"] = FormatVersion + 1
	newerJSON, _ := json.Marshal(newer)

	cases := map[string]struct {
		body        []byte
		wantCorrupt bool
		want        string
	}{
		"garbage":       {[]byte("\x00\xffnot json"), true, "not valid"},
		"empty object":  {[]byte("{}"), true, "malformed"},
		"newer version": {newerJSON, false, "upgrade gatewayd"},
		"truncated":     {good[:len(good)/2], true, "not valid"},
	}
	for name, c := range cases {
		if err := objstore.PutBytes(ctx, store, ConfigKey, c.body); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBucket(ctx, store, master)
		if err == nil || errkind.IsCorrupt(err) != c.wantCorrupt || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
