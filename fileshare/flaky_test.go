package fileshare

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/testrand"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/retry"
)

// TestReadSurvivesCutBodies: a file's object read through a store whose
// bodies break mid-transfer is read again, not failed with EIO (an NFS
// client saw NFS3ERR_IO behind a flaky network).
func TestReadSurvivesCutBodies(t *testing.T) {
	inner := mem.New("fs")
	cuts := 0
	f := faulty.New(inner, faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpTruncate && strings.HasSuffix(key, "big.bin") && cuts < 3 {
			cuts++
			return errkind.Mark(errkind.Retryable, errors.New("cut body"))
		}
		return nil
	}})
	e := &env{t: t, dir: t.TempDir(), md: metamem.New(),
		store: retry.New(f.Store(), retry.Options{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})}
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	want := testrand.Bytes(3, 3*BlockSize+100)
	if err := objstore.PutBytes(ctx, inner, "docs/big.bin", want); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, e.share("docs"), "big.bin"); !bytes.Equal(got, want) {
		t.Fatalf("read over cut bodies: %d bytes, want %d", len(got), len(want))
	}
	if cuts != 3 {
		t.Fatalf("%d bodies cut, want 3: the test did not exercise the fault", cuts)
	}
}
