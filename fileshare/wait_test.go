package fileshare

import (
	"context"
	"testing"
	"time"

	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

func inStoreT(t *testing.T, e *env, key string) bool {
	t.Helper()
	_, err := e.store.Stat(context.Background(), key)
	if err != nil && !objstore.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestWaitFlushUnderPath: with the settle time far away, Wait with flush
// uploads what was written under the path, and only that.
func TestWaitFlushUnderPath(t *testing.T) {
	e := newEnv(t) // settle time: an hour
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s"}))
	s := e.share("s")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	for _, p := range []string{"a.txt", "d/b.txt", "d/c.txt"} {
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, false))
		must[Attr](t)(s.Write(ctx, p, []byte("data of "+p), 0, Durable))
	}
	n, err := s.Wait(ctx, "d", true)
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("waited for %d changes under d, want the 2 files at least", n)
	}
	for _, k := range []string{"s/d/b.txt", "s/d/c.txt"} {
		if !inStoreT(t, e, k) {
			t.Fatalf("%s not in the store after the wait", k)
		}
	}
	if inStoreT(t, e, "s/a.txt") {
		t.Fatal("a.txt, outside the path, was uploaded before its settle time")
	}
	if _, err := s.Wait(ctx, "", true); err != nil {
		t.Fatal(err)
	}
	if !inStoreT(t, e, "s/a.txt") {
		t.Fatal("a.txt not in the store after a wait of the whole share")
	}
	// A remove waits for its delete in the store.
	if err := s.Remove(ctx, "d/b.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(ctx, "d", true); err != nil {
		t.Fatal(err)
	}
	if inStoreT(t, e, "s/d/b.txt") {
		t.Fatal("d/b.txt removed still in the store after the wait")
	}
}

// TestWaitForTheUploader: without flush, Wait returns once the uploader
// has put the files written before the call.
func TestWaitForTheUploader(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New()}
	e.opts = func(o *Options) { o.SettleTime, o.UploadInterval = 50*time.Millisecond, 20*time.Millisecond }
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s"}))
	s := e.share("s")
	for i := range 20 {
		p := "f" + string(rune('a'+i))
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, false))
		must[Attr](t)(s.Write(ctx, p, []byte("data"), 0, Durable))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a bound for a wedged uploader
	defer cancel()
	if _, err := s.Wait(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if k := "s/f" + string(rune('a'+i)); !inStoreT(t, e, k) {
			t.Fatalf("%s not in the store after the wait", k)
		}
	}
}
