package tapes_test

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// versionStats is what the bucket keeps of one tape: its objects' current
// versions, the versions a later write or delete left (noncurrent), the
// delete markers, and how many of the kept versions are retained now.
type versionStats struct {
	current, noncurrent, markers, retained int
	currentBytes, noncurrentBytes          int64
	unretained                             []string // keys of versions not retained, oldest last
}

func tapeVersions(t *testing.T, srv *miniotest.Server, bucket, prefix string) versionStats {
	t.Helper()
	var st versionStats
	p := awss3.NewListObjectVersionsPaginator(srv.Client(), &awss3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	now := time.Now()
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.markers += len(out.DeleteMarkers)
		for _, v := range out.Versions {
			if aws.ToBool(v.IsLatest) {
				st.current++
				st.currentBytes += aws.ToInt64(v.Size)
			} else {
				st.noncurrent++
				st.noncurrentBytes += aws.ToInt64(v.Size)
			}
			r, err := srv.Client().GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: v.Key, VersionId: v.VersionId})
			if err == nil && r.Retention != nil && aws.ToTime(r.Retention.RetainUntilDate).After(now) {
				st.retained++
			} else {
				st.unretained = append(st.unretained, strings.TrimPrefix(aws.ToString(v.Key), prefix))
			}
		}
	}
	return st
}

// requestCounter counts a store's puts and retention calls by tape.
type requestCounter struct {
	mu            sync.Mutex
	puts, retains map[string]int
}

func (c *requestCounter) hook(op faulty.Op, key string) error {
	bc, _, ok := strings.Cut(strings.TrimPrefix(key, "tapes/"), "/")
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch op {
	case faulty.OpPut:
		c.puts[bc]++
	case faulty.OpRetain:
		c.retains[bc]++
	}
	return nil
}

// TestWORMVersionCost measures what a WORM tape of a retention-locked
// pool keeps in a bucket with Object Lock (versioned), beside a plain
// tape of the same pool given the same writes: every version of the WORM
// tape is retained from its write (its root's, the index pages a later
// generation replaced), and the archive's class move, a copy onto
// itself, leaves each object's version of before, which for the WORM
// tape stays retained for the pool's days from the write; the plain
// tape's old versions are not retained (a lifecycle rule may expire
// them). It logs the figures docs/tapes.md quotes (run with -v).
func TestWORMVersionCost(t *testing.T) {
	srv := miniotest.Shared(t)
	srv.CreateLockedBucket(t, "wormcost")
	dir := t.TempDir()
	st := minioStore(t, srv, "wormcost")
	counter := &requestCounter{puts: map[string]int{}, retains: map[string]int{}}
	store := faulty.New(st, faulty.Options{Hook: counter.hook}).Store()
	md, err := metabadger.Open(filepath.Join(dir, "meta"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	log, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	// The daemon's segment size and flush interval; MinIO has no archive
	// class, REDUCED_REDUNDANCY stands for one.
	lib, err := tapes.New(ctx, tapes.Options{Store: store, Meta: md, Log: log, Key: testKey(), Clock: clock.Real{},
		Slots: 10, Drives: 2, ArchiveClass: "REDUCED_REDUNDANCY"})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close(ctx)
	if _, err := lib.CreatePool(ctx, tapes.Pool{Name: "vault", StorageClass: "REDUCED_REDUNDANCY", Lock: tapes.LockGovernance, LockDays: 1}); err != nil {
		t.Fatal(err)
	}
	worm, err := lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: "WM", Size: 1 << 30, WORM: true, Pool: "vault"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := lib.CreateTapes(ctx, tapes.CreateOptions{Count: 1, Prefix: "PL", Size: 1 << 30, Pool: "vault"})
	if err != nil {
		t.Fatal(err)
	}
	// 192 MiB of 256 KiB records, a filemark after every 16 MiB, written
	// as st does (buffered mode, a sync at each filemark).
	const records, every = 768, 64
	data := record(1, 256<<10)
	var written int64
	for _, bc := range []string{worm[0], plain[0]} {
		tp, err := lib.Open(ctx, bc)
		if err != nil {
			t.Fatal(err)
		}
		tp.SetBuffered(true)
		for i := range records {
			if err := tp.WriteRecord(ctx, tp.EOD(), data, false); err != nil {
				t.Fatal(err)
			}
			if i%every == every-1 {
				if err := tp.WriteFilemarks(ctx, tp.EOD(), 1); err != nil {
					t.Fatal(err)
				}
				if err := tp.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		written = tp.Used()
		if err := tp.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	report := func(when string) (w, p versionStats) {
		w = tapeVersions(t, srv, "wormcost", "gw/tapes/"+worm[0]+"/")
		p = tapeVersions(t, srv, "wormcost", "gw/tapes/"+plain[0]+"/")
		for _, r := range []struct {
			name string
			s    versionStats
			bc   string
		}{{"WORM", w, worm[0]}, {"plain", p, plain[0]}} {
			counter.mu.Lock()
			puts, retains := counter.puts[r.bc], counter.retains[r.bc]
			counter.mu.Unlock()
			t.Logf("%s, %s tape (%d MiB written): %d current versions (%.1f MiB), %d noncurrent (%.2f MiB, %.2f%% of the data), %d delete markers, %d versions retained; %d puts, %d retention calls",
				when, r.name, written>>20, r.s.current, float64(r.s.currentBytes)/(1<<20), r.s.noncurrent, float64(r.s.noncurrentBytes)/(1<<20),
				100*float64(r.s.noncurrentBytes)/float64(written), r.s.markers, r.s.retained, puts, retains)
		}
		return w, p
	}
	w, p := report("written")
	if w.noncurrent == 0 || w.retained != w.current+w.noncurrent {
		t.Errorf("written: of the WORM tape's %d versions %d are retained; not: %v", w.current+w.noncurrent, w.retained, w.unretained)
	}
	if p.retained != 0 {
		t.Errorf("written: %d versions of the plain tape retained before its archive", p.retained)
	}
	for _, bc := range []string{worm[0], plain[0]} {
		if err := lib.Archive(ctx, bc); err != nil {
			t.Fatal(err)
		}
	}
	w2, p2 := report("archived")
	// The copy into the archive class keeps each object's version of
	// before: the whole tape twice, the WORM tape's retained.
	if w2.noncurrentBytes < w.noncurrentBytes+w.currentBytes || w2.retained != w2.current+w2.noncurrent {
		t.Errorf("archived WORM tape: %+v, before %+v", w2, w)
	}
	if p2.current != p.current || p2.retained != p2.current {
		t.Errorf("archived plain tape: %+v, before %+v", p2, p)
	}
	// Nobody removes a version of the WORM tape before its lock ends,
	// gatewayd included.
	if err := lib.Delete(ctx, worm[0]); !errors.Is(err, tapes.ErrLocked) {
		t.Errorf("delete of the archived WORM tape: %v", err)
	}
}
