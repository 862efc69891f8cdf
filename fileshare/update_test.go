package fileshare

import (
	"context"
	"errors"
	"testing"
)

// TestUpdate: a served share's read-only flag and SMB options change at
// once (a write is refused the moment the share turns read-only), are
// kept across a restart, and nothing else may change.
func TestUpdate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.Create(ctx, Config{Name: "s", Protocols: []string{"nfs", "smb"}}); err != nil {
		t.Fatal(err)
	}
	s := e.share("s")
	if _, err := s.Create(ctx, "a", 0o644, 0, 0, false); err != nil {
		t.Fatal(err)
	}
	c, err := e.m.Update(ctx, "s", func(c *Config) error {
		c.ReadOnly = true
		c.SMBValidUsers = []string{`DOM\alice`, "@staff"}
		c.SMBAccessBasedEnum = true
		return nil
	})
	if err != nil || !c.ReadOnly || len(c.SMBValidUsers) != 2 || !c.SMBAccessBasedEnum {
		t.Fatalf("update: %+v, %v", c, err)
	}
	if got := s.Config(); !got.ReadOnly || len(got.SMBValidUsers) != 2 {
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
	if _, err := e.m.Update(ctx, "s", func(c *Config) error { c.Protocols = []string{"nfs"}; c.SMBAdminUsers = []string{"x"}; return nil }); err == nil {
		t.Fatal("SMB options on a share without smb accepted")
	}
	if _, err := e.m.Update(ctx, "nope", func(*Config) error { return nil }); !errors.Is(err, ErrNoShare) {
		t.Fatalf("update of a missing share: %v", err)
	}
	e.restart()
	if got := e.share("s").Config(); !got.ReadOnly || len(got.SMBValidUsers) != 2 || !got.SMBAccessBasedEnum {
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
