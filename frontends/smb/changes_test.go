package smb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// TestBucketChangeInvalidatesKernel: a change made in the bucket and
// applied to the share (its bucket events) is seen through the view at
// once, though the kernel holds the name as absent, the old size, or the
// name as present, for attrTimeout: the share's change hook tells the
// kernel. (On a machine so slow that attrTimeout passes between the steps
// this passes without the hook; it never fails with it.)
func TestBucketChangeInvalidatesKernel(t *testing.T) {
	store := mem.New("smb")
	m, _, mnt := mountView(t, fileshare.Options{Store: store, SettleTime: time.Hour, UploadInterval: time.Hour})
	ctx := context.Background()
	p := filepath.Join(mnt, "from-s3", "a.txt")
	missing(t, p) // the kernel now holds "from-s3" as absent
	put := func(data string) {
		t.Helper()
		if err := objstore.PutBytes(ctx, store, "v/from-s3/a.txt", []byte(data)); err != nil {
			t.Fatal(err)
		}
		if out := m.ApplyObjectChange(fileshare.ObjectChange{Key: "v/from-s3/a.txt"}); out != fileshare.ChangeApplied {
			t.Fatalf("change: %v", out)
		}
	}
	put("first")
	if got, err := os.ReadFile(p); err != nil || string(got) != "first" {
		t.Fatalf("object put in the bucket, through the view: %q, %v", got, err)
	}
	put("second, longer than the first")
	if got, err := os.ReadFile(p); err != nil || string(got) != "second, longer than the first" {
		t.Fatalf("object overwritten in the bucket, through the view: %q, %v", got, err)
	}
	if err := store.Delete(ctx, "v/from-s3/a.txt"); err != nil {
		t.Fatal(err)
	}
	if out := m.ApplyObjectChange(fileshare.ObjectChange{Key: "v/from-s3/a.txt", Removed: true}); out != fileshare.ChangeApplied {
		t.Fatalf("change: %v", out)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("object deleted in the bucket, through the view: %v", err)
	}
}
