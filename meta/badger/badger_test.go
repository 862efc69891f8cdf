package badger

import (
	"context"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/meta/metatest"
)

func TestConformance(t *testing.T) {
	metatest.Run(t, func(t *testing.T) meta.Store {
		s, err := Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestReopenKeepsDataAndLockIsExclusive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte("volume/1"), []byte("cached 10GiB")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "in use by another gatewayd") {
		t.Fatalf("second open of a live directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(ctx, func(tx meta.Txn) error {
		v, err := tx.Get([]byte("volume/1"))
		if err != nil {
			return err
		}
		if string(v) != "cached 10GiB" {
			t.Fatalf("after reopen: %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
