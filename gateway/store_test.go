package gateway

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/retry"
)

// TestOpenedStoreGetAllRetriesBrokenBodies: whole-object reads through the
// store the gateway hands its subsystems (volumes read chunks this way)
// survive a body cut short, as reads through the retry decorator do.
func TestOpenedStoreGetAllRetriesBrokenBodies(t *testing.T) {
	inner := mem.New("")
	data := bytes.Repeat([]byte("chunk "), 2000)
	if err := objstore.PutBytes(t.Context(), inner, "chunks/k", data); err != nil {
		t.Fatal(err)
	}
	left := 2
	f := faulty.New(inner, faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpTruncate && left > 0 {
			left--
			return errkind.Mark(errkind.Retryable, fmt.Errorf("cut body"))
		}
		return nil
	}})
	s := &OpenedStore{Store: retry.New(f.Store(), retry.Options{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})}
	got, err := objstore.GetAll(t.Context(), s, "chunks/k")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetAll over two cut bodies: %d bytes, %v", len(got), err)
	}
}
