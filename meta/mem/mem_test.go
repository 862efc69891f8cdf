package mem

import (
	"context"
	"strconv"
	"testing"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/meta/metatest"
)

func TestConformance(t *testing.T) {
	metatest.Run(t, func(t *testing.T) meta.Store { return New() })
}

// Old versions are kept only while a transaction may read them, so memory
// follows the live data, not the number of commits.
func TestOldVersionsArePruned(t *testing.T) {
	ctx := context.Background()
	s := New()
	defer s.Close()
	write := func(key string, value []byte) {
		t.Helper()
		err := s.Update(ctx, func(tx meta.Txn) error {
			if value == nil {
				return tx.Delete([]byte(key))
			}
			return tx.Set([]byte(key), value)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	versions := func(key string) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.versions[key])
	}

	for i := 0; i < 100; i++ {
		write("k", []byte(strconv.Itoa(i)))
	}
	if n := versions("k"); n > 2 {
		t.Fatalf("k has %d versions after 100 commits and no open transaction", n)
	}

	// An open view pins the versions it can see.
	inView, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- s.View(ctx, func(tx meta.Txn) error {
			close(inView)
			<-release
			v, err := tx.Get([]byte("k"))
			if err == nil && string(v) != "99" {
				t.Errorf("pinned view read %q, want 99", v)
			}
			return err
		})
	}()
	<-inView
	for i := 0; i < 10; i++ {
		write("k", []byte("later"))
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	write("k", []byte("last"))
	if n := versions("k"); n > 2 {
		t.Fatalf("k has %d versions once the view ended", n)
	}

	write("other", []byte("x"))
	write("k", nil)
	write("k2", []byte("y"))
	write("k2", nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.versions) != 1 || len(s.keys) != 1 || s.keys[0] != "other" {
		t.Fatalf("deleted keys linger: keys %q", s.keys)
	}
}
