package fileshare

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/meta"
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

	// A lookup of a name the listing lacks asks the store nothing.
	lists0, heads0 = storeCalls(inj)
	for i := range 100 {
		if _, err := s.Stat(ctx, fmt.Sprintf("big/none%04d", i)); !isNotExist(err) {
			t.Fatalf("lookup of a missing name: %v", err)
		}
	}
	if lists, heads := storeCalls(inj); lists != lists0 || heads != heads0 {
		t.Errorf("100 lookups of missing names: %d listings and %d stats of the store, want none", lists-lists0, heads-heads0)
	}

	// A restart keeps the listing: creates after it do not list either.
	e.restart()
	s = e.share("docs")
	lists0, _ = storeCalls(inj)
	for i := range 10 {
		p := fmt.Sprintf("big/after%04d", i)
		if _, err := s.Stat(ctx, p); !isNotExist(err) {
			t.Fatalf("lookup of %s before its create, after a restart: %v", p, err)
		}
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
	}
	if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, "big"))); got != M+N-5+10 {
		t.Fatalf("listing after a restart and 10 creates: %d entries, want %d", got, M+N-5+10)
	}
	if lists, _ := storeCalls(inj); lists != lists0 {
		t.Errorf("creates in a listed directory after a restart listed the store %d times, want 0", lists-lists0)
	}
}

// TestListingsBoundedAndKept: a listing over bigListing entries, and the
// least recently used ones once memory holds more than maxListedInMemory
// entries, go to the metadata store; lookups, creates, removes and
// listings keep working from there without listing the store again, also
// after a restart; a start after a crash (no clean stop) drops them.
func TestListingsBoundedAndKept(t *testing.T) {
	oldMax, oldBig := maxListedInMemory, bigListing
	maxListedInMemory, bigListing = 400, 300
	t.Cleanup(func() { maxListedInMemory, bigListing = oldMax, oldBig })
	e, inj, fake := countedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	// Made by another application: objects only.
	put := func(key string) {
		t.Helper()
		if err := e.store.Put(ctx, key, bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	const big, small, smalls = 1000, 50, 20
	for i := range big {
		put(fmt.Sprintf("docs/big/f%05d", i))
	}
	for d := range smalls {
		for i := range small {
			put(fmt.Sprintf("docs/s%02d/f%03d", d, i))
		}
	}
	listAll := func(when string, wantLists int) {
		t.Helper()
		lists0, _ := storeCalls(inj)
		if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, ""))); got != 1+smalls {
			t.Fatalf("%s: the root lists %d entries, want %d", when, got, 1+smalls)
		}
		if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, "big"))); got != big {
			t.Fatalf("%s: big lists %d entries, want %d", when, got, big)
		}
		for d := range smalls {
			if got := len(must[[]DirEntry](t)(s.ReadDir(ctx, fmt.Sprintf("s%02d", d)))); got != small {
				t.Fatalf("%s: s%02d lists %d entries, want %d", when, d, got, small)
			}
		}
		if lists, _ := storeCalls(inj); lists-lists0 != wantLists {
			t.Errorf("%s: %d listings of the store, want %d", when, lists-lists0, wantLists)
		}
	}
	listAll("first listing", 2+smalls)
	if err := s.dirs.save(ctx, false); err != nil { // as after an upload round
		t.Fatal(err)
	}
	s.attrMu.Lock()
	n, _, kept := s.dirs.n, len(s.dirs.mem), len(s.dirs.kept)
	s.attrMu.Unlock()
	if n > maxListedInMemory || kept < 2 {
		t.Errorf("after saving: %d entries in memory (bound %d), %d listings in the metadata store", n, maxListedInMemory, kept)
	}
	listAll("listed again", 0)

	// Changes in a kept listing.
	lists0, heads0 := storeCalls(inj)
	if _, err := s.Stat(ctx, "big/none"); !isNotExist(err) {
		t.Fatalf("lookup of a missing name in a kept listing: %v", err)
	}
	if _, err := s.Stat(ctx, "big/f00007"); err != nil {
		t.Fatalf("lookup of a listed name in a kept listing: %v", err)
	}
	must[Attr](t)(s.Create(ctx, "big/new", 0o644, 0, 0, true))
	if err := s.Remove(ctx, "big/f00003"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "big/f00003"); !isNotExist(err) {
		t.Fatalf("lookup of a removed name in a kept listing: %v", err)
	}
	names := map[string]bool{}
	for _, de := range must[[]DirEntry](t)(s.ReadDir(ctx, "big")) {
		names[de.Name] = true
	}
	if len(names) != big || !names["new"] || names["f00003"] {
		t.Fatalf("kept listing after a create and a remove: %d names, new %v, f00003 %v", len(names), names["new"], names["f00003"])
	}
	if lists, heads := storeCalls(inj); lists != lists0 || heads-heads0 > 2 {
		t.Errorf("changes in a kept listing: %d listings, %d stats of the store; want 0 and at most 2", lists-lists0, heads-heads0)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}

	// A clean restart keeps every listing.
	e.restart()
	s = e.share("docs")
	listAll("after a restart", 0)
	lists0, _ = storeCalls(inj)
	if _, err := s.Stat(ctx, "big/f00003"); !isNotExist(err) {
		t.Fatalf("after a restart, lookup of a removed name: %v", err)
	}
	if lists, _ := storeCalls(inj); lists != lists0 {
		t.Errorf("after a restart, a lookup listed the store")
	}

	// Read again after the TTL, with changes made beside the share: the
	// kept listing is what the store holds now.
	if err := e.store.Delete(ctx, "docs/big/f00010"); err != nil {
		t.Fatal(err)
	}
	put("docs/big/zz-ext")
	fake.Advance(2 * time.Minute)
	names = map[string]bool{}
	for _, de := range must[[]DirEntry](t)(s.ReadDir(ctx, "big")) {
		names[de.Name] = true
	}
	if len(names) != big || !names["zz-ext"] || names["f00010"] || names["f00003"] || !names["new"] {
		t.Fatalf("kept listing read again: %d names, zz-ext %v, f00010 %v, f00003 %v, new %v", len(names), names["zz-ext"], names["f00010"], names["f00003"], names["new"])
	}
	lists0, heads0 = storeCalls(inj)
	if _, err := s.Stat(ctx, "big/f00010"); !isNotExist(err) {
		t.Fatalf("lookup of a name removed beside the share, after the listing was read again: %v", err)
	}
	if lists, heads := storeCalls(inj); lists != lists0 || heads != heads0 {
		t.Errorf("lookup of a name the listing read again lacks: %d listings, %d stats of the store; want none", lists-lists0, heads-heads0)
	}

	// A crash: the listings may lack changes made before it; dropped.
	e.close()
	if err := e.md.Update(ctx, func(tx meta.Txn) error { return tx.Delete(listCleanKey("docs")) }); err != nil {
		t.Fatal(err)
	}
	e.start()
	s = e.share("docs")
	listAll("after a crash", 2+smalls)
}
