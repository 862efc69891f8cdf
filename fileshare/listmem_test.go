//go:build measure

// A measurement, not a check: built only with the measure tag
// (BENCHMARKS.md has the command), so the test suite never skips it.

package fileshare

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// manyStore is a store with n generated objects in the directory dir
// (empty files named f0000000 on), besides what is put in it: a directory
// of a million entries whose objects take no memory of the process, so
// that what the process holds is the share's.
type manyStore struct {
	*mem.Store
	dir   string
	n     int
	lists atomic.Int64
}

func (m *manyStore) generated(key string) bool {
	name, ok := strings.CutPrefix(key, m.dir)
	if !ok || len(name) != 8 || name[0] != 'f' {
		return false
	}
	i, err := strconv.Atoi(name[1:])
	return err == nil && i < m.n
}

func (m *manyStore) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if m.generated(key) {
		return objstore.ObjectInfo{Key: key, ModTime: time.Unix(1_700_000_000, 0)}, nil
	}
	return m.Store.Stat(ctx, key)
}

func (m *manyStore) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	m.lists.Add(1)
	if prefix != m.dir && strings.HasPrefix(m.dir, prefix) && m.n > 0 {
		// A listing above: one key shows the directory.
		if err := fn(objstore.ObjectInfo{Key: m.dir + "f0000000", ModTime: time.Unix(1_700_000_000, 0)}); err != nil {
			return err
		}
	}
	if prefix == m.dir {
		// Before the others: the names made by the test start with "n".
		for i := range m.n {
			if err := fn(objstore.ObjectInfo{Key: fmt.Sprintf("%sf%07d", m.dir, i), ModTime: time.Unix(1_700_000_000, 0)}); err != nil {
				return err
			}
		}
	}
	return m.Store.List(ctx, prefix, fn)
}

// residentKiB is the process's resident set size (VmRSS).
func residentKiB(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// settledMemory returns, after a garbage collection that gives memory
// back to the system, the resident set (MiB) and the live heap (MiB).
func settledMemory(t *testing.T) (rss, heap float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(residentKiB(t)) / 1024, float64(ms.HeapInuse) / (1 << 20)
}

// TestListingMemoryOfAHugeDirectory measures what a directory of
// GATEWAYD_LISTING_ENTRIES entries costs the share in memory: its listing
// read from the store, then 1,000 lookups of new names and creates in it,
// then the same after a restart. GATEWAYD_LISTING_MEMORY=all holds every
// listing in memory, as the share did before listings went to the
// metadata store. BENCHMARKS.md has the figures and the command.
func TestListingMemoryOfAHugeDirectory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GATEWAYD_LISTING_ENTRIES"))
	if n <= 0 {
		t.Fatal("GATEWAYD_LISTING_ENTRIES must give the number of entries (BENCHMARKS.md)")
	}
	if os.Getenv("GATEWAYD_LISTING_MEMORY") == "all" {
		oldMax, oldBig := maxListedInMemory, bigListing
		maxListedInMemory, bigListing = 1<<40, 1<<40
		t.Cleanup(func() { maxListedInMemory, bigListing = oldMax, oldBig })
	}
	ctx := context.Background()
	dir := t.TempDir()
	md, err := metabadger.Open(filepath.Join(dir, "meta"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	st := &manyStore{Store: mem.New("fs"), dir: "docs/big/", n: n}
	e := &env{t: t, dir: dir, store: st, md: md}
	e.opts = func(o *Options) { o.AttrTTL = time.Hour }
	t.Cleanup(e.close)
	e.start()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[[]DirEntry](t)(s.ReadDir(ctx, "")) // the root: big is a directory
	rss0, heap0 := settledMemory(t)

	start := time.Now()
	names, err := s.listing(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n {
		t.Fatalf("listing: %d names, want %d", len(names), n)
	}
	names = nil
	took := time.Since(start)
	rss1, heap1 := settledMemory(t)

	creates := func(from int) {
		t.Helper()
		lists := st.lists.Load()
		for i := from; i < from+1000; i++ {
			p := fmt.Sprintf("big/n%06d", i)
			if _, err := s.Stat(ctx, p); !isNotExist(err) {
				t.Fatalf("lookup of %s: %v", p, err)
			}
			must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
		}
		if got := st.lists.Load() - lists; got != 0 {
			t.Errorf("1,000 lookups and creates in the listed directory listed the store %d times", got)
		}
	}
	creates(0)
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	rss2, heap2 := settledMemory(t)

	start = time.Now()
	e.restart()
	restart := time.Since(start)
	s = e.share("docs")
	creates(1000)
	rss3, heap3 := settledMemory(t)
	// Read again (as after the attribute TTL, or share refresh): what the
	// metadata store holds is compared, not written again.
	if err := s.Refresh("big", false); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if names, err = s.listing(ctx, "big"); err != nil || len(names) != n+2000 {
		t.Fatalf("listing read again: %d names (%v), want %d", len(names), err, n+2000)
	}
	names = nil
	again := time.Since(start)
	s.attrMu.Lock()
	inMem := s.dirs.n
	s.attrMu.Unlock()
	t.Logf("a directory of %d entries: listing read in %v, again in %v; resident MiB (live heap MiB): before %.0f (%.0f), after the listing %.0f (%.0f), after 1,000 lookups and creates %.0f (%.0f), after a restart (%v) and 1,000 more %.0f (%.0f); %d listed entries in memory",
		n, took.Round(time.Millisecond), again.Round(time.Millisecond), rss0, heap0, rss1, heap1, rss2, heap2, restart.Round(time.Millisecond), rss3, heap3, inMem)
}
