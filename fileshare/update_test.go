package fileshare

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gatewayd/gatewayd/meta"
)

// TestUpdate: a served share's read-only flag and a frontend's options
// change at once (a write is refused the moment the share turns read-only), are
// kept across a restart, and nothing else may change.
func TestUpdate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, Config{Name: "s", Protocols: []string{"nfs", "smb"}}); err != nil {
		t.Fatal(err)
	}
	const smbOpts = `{"valid_users":["DOM\\alice","@staff"],"access_based_enum":true}`
	s := e.share("s")
	if _, err := s.Create(ctx, "a", 0o644, 0, 0, false); err != nil {
		t.Fatal(err)
	}
	c, err := e.m.Update(ctx, "s", func(c *Config) error {
		c.ReadOnly = true
		c.Frontends = map[string]json.RawMessage{"smb": json.RawMessage(smbOpts)}
		return nil
	})
	if err != nil || !c.ReadOnly || string(c.Frontends["smb"]) != smbOpts {
		t.Fatalf("update: %+v, %v", c, err)
	}
	if got := s.Config(); !got.ReadOnly || string(got.Frontends["smb"]) != smbOpts {
		t.Fatalf("the served share's configuration: %+v", got)
	}
	if _, err := s.Create(ctx, "b", 0o644, 0, 0, false); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("create on a share made read-only: %v", err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Prefix = "other/" },
		func(c *Config) { c.Squash = "all" },
		func(c *Config) { c.UID = 7 },
	} {
		if _, err := e.m.Update(ctx, "s", func(c *Config) error { bad(c); return nil }); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a change of a fixed field: %v", err)
		}
	}
	if _, err := e.m.Update(ctx, "s", func(c *Config) error { c.Protocols = []string{"nfs"}; return nil }); err == nil {
		t.Fatal("SMB options on a share without smb accepted")
	}
	if _, err := e.m.Update(ctx, "s", func(c *Config) error { c.Frontends["smb"] = json.RawMessage(`[1]`); return nil }); err == nil {
		t.Fatal("options that are no JSON object accepted")
	}
	if _, err := e.m.Update(ctx, "nope", func(*Config) error { return nil }); !errors.Is(err, ErrNoShare) {
		t.Fatalf("update of a missing share: %v", err)
	}
	e.restart()
	if got := e.share("s").Config(); !got.ReadOnly || string(got.Frontends["smb"]) != smbOpts {
		t.Fatalf("after a restart: %+v", got)
	}
	if got := e.m.List(); len(got) != 1 || !got[0].ReadOnly {
		t.Fatalf("list: %+v", got)
	}
	if _, err := e.m.Update(ctx, "s", func(c *Config) error { c.ReadOnly = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.share("s").Create(ctx, "b", 0o644, 0, 0, false); err != nil {
		t.Fatalf("create after read-only is off: %v", err)
	}
}

// TestStoredFrontendOptionsMigrate: a share stored when a frontend's
// options were top-level keys named for the protocol ("smb_valid_users")
// comes back with them as that frontend's options, so its access lists
// are kept; options stored the new way win over old keys.
func TestStoredFrontendOptionsMigrate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := e.m.Create(ctx, Config{Name: "old", Protocols: []string{"nfs", "smb"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.marshal()
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatal(err)
	}
	keys["smb_valid_users"] = []string{"alice", "@staff"}
	keys["smb_encrypt"] = true
	keys["smb_guest"] = true
	keys["frontends"] = map[string]any{"smb": map[string]any{"guest": false}}
	legacy, err := json.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.md.Update(ctx, func(tx meta.Txn) error { return tx.Set(shareKey("old"), legacy) }); err != nil {
		t.Fatal(err)
	}
	e.restart()
	got := e.share("old").Config()
	var opts map[string]any
	if err := json.Unmarshal(got.Frontends["smb"], &opts); err != nil {
		t.Fatalf("smb options %q: %v", got.Frontends["smb"], err)
	}
	if len(opts) != 3 || opts["encrypt"] != true || opts["guest"] != false || len(opts["valid_users"].([]any)) != 2 {
		t.Fatalf("smb options after the restart: %v", opts)
	}
	// The next update stores them the new way, and they stay.
	if _, err := e.m.Update(ctx, "old", func(c *Config) error { c.ReadOnly = true; return nil }); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if again := e.share("old").Config(); string(again.Frontends["smb"]) != string(got.Frontends["smb"]) || !again.ReadOnly {
		t.Fatalf("after an update and a restart: %+v", again)
	}
}
