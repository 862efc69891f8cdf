package fileshare

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore/faulty"
)

// A read of a file whose rename waits in the log, when the rename is
// settled in the store between the share finding the object's old key
// and the read of it, reads the object at its new key.
func TestReadWhileItsMoveSettles(t *testing.T) {
	var away, armed atomic.Bool
	var oldKey string
	var settle func()
	e, fake, under := hookedEnv(t, func(op faulty.Op, key string) error {
		if away.Load() {
			return errkind.Mark(errkind.Retryable, fmt.Errorf("store away"))
		}
		if op == faulty.OpGet && key == oldKey && armed.CompareAndSwap(true, false) {
			settle()
		}
		return nil
	})
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	want := bytes.Repeat([]byte("put by another application\n"), 100)
	oldKey = s.key("ext")
	if err := under.Put(ctx, oldKey, bytes.NewReader(want), int64(len(want))); err != nil {
		t.Fatal(err)
	}
	must[[]DirEntry](t)(s.ReadDir(ctx, ""))
	must[Attr](t)(s.Stat(ctx, "ext"))
	fake.Advance(2 * time.Minute)
	away.Store(true)
	must[error](t)(nil, s.Rename(ctx, "ext", "moved"))
	away.Store(false)
	settled := make(chan error, 1)
	settle = func() { settled <- e.m.settleDeletes(context.Background(), "docs") }
	armed.Store(true)
	got := make([]byte, len(want))
	n, err := s.ReadAt(ctx, "moved", got, 0)
	select {
	case err := <-settled:
		if err != nil {
			t.Fatalf("settle: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the move never settled during the read")
	}
	if err != nil || !bytes.Equal(got[:n], want) {
		t.Fatalf("read of the moved file while its move settled: %d bytes, %v", n, err)
	}
}
