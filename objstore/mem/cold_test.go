package mem_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// TestColdModel: an object moved to GLACIER is neither read, copied nor
// moved out until restored; a restore is under way for the delay, then
// readable for the days asked, then gone; asking again while one runs
// changes nothing; a STANDARD object is not restored.
func TestColdModel(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := mem.NewCold(mem.New("cold"), mem.ColdOptions{Delay: time.Hour, Now: clock})
	for _, k := range []string{"a", "b"} {
		if err := c.Put(ctx, k, bytes.NewReader([]byte("data "+k)), 6); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Restore(ctx, "a", 1, objstore.TierStandard); !errors.Is(err, objstore.ErrNotArchived) {
		t.Fatalf("restore of a STANDARD object: %v", err)
	}
	if err := c.SetStorageClass(ctx, "a", "GLACIER"); err != nil {
		t.Fatal(err)
	}
	archived := func(label string) {
		t.Helper()
		if _, err := c.Get(ctx, "a", 0, -1); !errors.Is(err, objstore.ErrArchived) {
			t.Fatalf("%s: get: %v", label, err)
		}
		if err := c.Copy(ctx, "a", "x"); !errors.Is(err, objstore.ErrArchived) {
			t.Fatalf("%s: copy: %v", label, err)
		}
		if err := c.SetStorageClass(ctx, "a", "STANDARD"); !errors.Is(err, objstore.ErrArchived) {
			t.Fatalf("%s: set storage class: %v", label, err)
		}
	}
	status := func() objstore.RestoreStatus {
		t.Helper()
		st, err := c.RestoreStatus(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	archived("archived")
	if st := status(); !st.Archived || st.Ongoing || st.Readable() {
		t.Fatalf("archived: %+v", st)
	}
	if err := c.Restore(ctx, "a", 1, "Slow"); err == nil {
		t.Fatal("restore at tier Slow")
	}
	if err := c.Restore(ctx, "a", 1, objstore.TierBulk); err != nil {
		t.Fatal(err)
	}
	advance(30 * time.Minute)
	if err := c.Restore(ctx, "a", 1, objstore.TierBulk); err != nil { // again while under way
		t.Fatal(err)
	}
	archived("restoring")
	if st := status(); !st.Ongoing || st.Readable() {
		t.Fatalf("restoring: %+v", st)
	}
	advance(30 * time.Minute)
	st := status()
	if !st.Readable() || st.Ongoing || !st.Expiry.Equal(clock().Add(24*time.Hour)) {
		t.Fatalf("restored: %+v (now %v)", st, clock())
	}
	rc, err := c.Get(ctx, "a", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "data a" {
		t.Fatalf("read %q", b)
	}
	advance(24 * time.Hour)
	archived("expired")
	// Restored again, then moved back to STANDARD: readable for good.
	if err := c.Restore(ctx, "a", 1, objstore.TierExpedited); err != nil {
		t.Fatal(err)
	}
	advance(time.Hour)
	if err := c.SetStorageClass(ctx, "a", "STANDARD"); err != nil {
		t.Fatal(err)
	}
	advance(48 * time.Hour)
	if st := status(); st.Archived || !st.Readable() {
		t.Fatalf("back in STANDARD: %+v", st)
	}
	if c.Requests() != 4 {
		t.Fatalf("%d restore requests counted", c.Requests())
	}
}
