package fileshare

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// countedEnv is an env whose store counts its calls (faulty with no
// faults), on a clock that moves only when the test moves it.
func countedEnv(t *testing.T) (*env, *faulty.Injector, *clock.Fake) {
	inj := faulty.New(mem.New("fs"), faulty.Options{})
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	e := &env{t: t, dir: t.TempDir(), store: inj.Store(), md: metamem.New()}
	e.opts = func(o *Options) { o.Clock, o.AttrTTL = fake, time.Minute }
	t.Cleanup(e.close)
	e.start()
	return e, inj, fake
}

// storeCalls counts the listings and stats the store was asked for.
func storeCalls(inj *faulty.Injector) (lists, heads int) {
	return inj.Calls(faulty.OpList), inj.Calls(faulty.OpStat)
}

// TestCreatesInAListedDirectoryDoNotListIt: once a directory of M
// entries is listed, N creates in it (each as a client makes it: a lookup
// of the new name, the create, a write, the times set at close, a look
// at the directory the way Samba's case-insensitive scan does), with
// uploads among them, removes and renames, ask the store for no listing
// and for no stat of a name the listing lacks.
func TestCreatesInAListedDirectoryDoNotListIt(t *testing.T) {
	const M, N = 300, 60
	e, inj, _ := countedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "big", 0o755, 0, 0))
	for i := range M {
		must[Attr](t)(s.Create(ctx, fmt.Sprintf("big/old%04d", i), 0o644, 0, 0, true))
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, "big"))); got != M {
		t.Fatalf("listing: %d entries, want %d", got, M)
	}
	lists0, heads0 := storeCalls(inj)
	for i := range N {
		p := fmt.Sprintf("big/new%04d", i)
		if _, err := s.Stat(ctx, p); !isNotExist(err) {
			t.Fatalf("lookup of %s before its create: %v", p, err)
		}
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
		must[Attr](t)(s.WriteAt(ctx, p, []byte("hello"), 0))
		mt := time.Unix(1_600_000_000, 0)
		must[Attr](t)(s.SetAttr(ctx, p, SetAttr{Mtime: &mt}))
		if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, "big"))); got != M+i+1 {
			t.Fatalf("listing after %d creates: %d entries, want %d", i+1, got, M+i+1)
		}
		if i%10 == 9 {
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 5 {
		if err := s.Remove(ctx, fmt.Sprintf("big/old%04d", i)); err != nil {
			t.Fatal(err)
		}
		if err := s.Rename(ctx, fmt.Sprintf("big/new%04d", i), fmt.Sprintf("big/moved%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, "big"))); got != M+N-5 {
		t.Fatalf("listing after removes and renames: %d entries, want %d", got, M+N-5)
	}
	lists, heads := storeCalls(inj)
	t.Logf("%d creates in a directory of %d: %d listings, %d stats of the store", N, M, lists-lists0, heads-heads0)
	if lists != lists0 {
		t.Errorf("%d creates in a listed directory of %d entries listed the store %d times, want 0", N, M, lists-lists0)
	}
}
