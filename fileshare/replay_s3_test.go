package fileshare

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/retry"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

// TestReplayOfCreatesAsksTheStorePerDirectory: a start whose log holds the
// creations of many files not uploaded yet (a tree being copied when the
// daemon was killed) asks the store, on MinIO, a number of times that
// grows with the directories, not with the files: whether each file was
// uploaded before the stop comes from one listing of its directory. The
// files and directories that were uploaded, and changed in the store since
// without a log record (a chmod), keep what the store says; every file
// reads back as written, and uploads whole. GATEWAYD_REPLAY_FILES sets how
// many files (default 1,000, in 20 directories); the time the start took
// is logged, not checked.
func TestReplayOfCreatesAsksTheStorePerDirectory(t *testing.T) {
	const dirs = 20
	files := 1000
	if v := os.Getenv("GATEWAYD_REPLAY_FILES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < dirs {
			t.Fatalf("GATEWAYD_REPLAY_FILES=%q: want a number of files, at least %d", v, dirs)
		}
		files = n
	}
	perDir := files / dirs
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "replay")
	st, err := s3.Open(t.Context(), s3.Config{Bucket: "replay", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	under := retry.New(st, retry.Options{})
	inj := faulty.New(under, faulty.Options{}) // counts the calls
	// A cache the replayed files fill less than half of: a fuller one is
	// under pressure, and uploads (with their own store calls) start as
	// soon as the replay ends, while the start is being counted.
	e := &env{t: t, dir: t.TempDir(), store: inj.Store(), md: metamem.New(), cacheCap: int64(2*(files+4*dirs)+256) * BlockSize}
	s := e.startHeld()
	ctx := context.Background()

	// Uploaded before the stop, then changed in the store alone.
	dir := func(d int) string { return fmt.Sprintf("d%02d", d) }
	for d := range dirs {
		must[Attr](t)(s.Mkdir(ctx, dir(d), 0o755, 0, 0))
		must[Attr](t)(s.Mkdir(ctx, dir(d)+"/up-dir", 0o755, 0, 0))
		must[Attr](t)(s.Create(ctx, dir(d)+"/up-file", 0o644, 0, 0, true))
		must[Attr](t)(s.WriteAt(ctx, dir(d)+"/up-file", []byte("uploaded"), 0))
	}
	if err := e.m.Flush(ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	mode := func(m uint32) *uint32 { return &m }
	for d := range dirs {
		must[Attr](t)(s.SetAttr(ctx, dir(d)+"/up-file", SetAttr{Mode: mode(0o600)}))
		must[Attr](t)(s.SetAttr(ctx, dir(d)+"/up-dir", SetAttr{Mode: mode(0o700)}))
	}

	// Made and written, not uploaded: half with their inodes in the table
	// (an upload round's start writes them, as a running daemon's does
	// each second), half only in the log.
	content := func(d, i int) []byte { return []byte(fmt.Sprintf("file %d of directory %d", i, d)) }
	name := func(d, i int) string { return fmt.Sprintf("%s/f%05d", dir(d), i) }
	for half := range 2 {
		for d := range dirs {
			for i := half * perDir / 2; i < (half+1)*perDir/2; i++ {
				must[Attr](t)(s.Create(ctx, name(d, i), 0o644, 0, 0, true))
				must[Attr](t)(s.Write(ctx, name(d, i), content(d, i), 0, Buffered))
			}
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if half == 0 {
			if err := e.m.round(ctx, false, nil); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The stop and the start.
	e.close()
	lists, stats := inj.Calls(faulty.OpList), inj.Calls(faulty.OpStat)
	began := time.Now()
	e.start()
	took := time.Since(began)
	lists, stats = inj.Calls(faulty.OpList)-lists, inj.Calls(faulty.OpStat)-stats
	t.Logf("start replaying the creations of %d files not uploaded in %d directories: %v, %d listings and %d stats of the store",
		dirs*(perDir/2*2), dirs, took.Round(time.Millisecond), lists, stats)
	// A listing of each directory made, one of the share's root (hold's
	// file), a stat of each uploaded file with a write in the log.
	if lists+stats > 4*dirs+4 {
		t.Errorf("the start asked the store %d times (%d listings, %d stats) for %d files in %d directories, want at most %d",
			lists+stats, lists, stats, files, dirs, 4*dirs+4)
	}

	s = e.share("docs")
	check := func(what string) {
		t.Helper()
		for d := range dirs {
			if a, err := s.Stat(ctx, dir(d)+"/up-file"); err != nil || a.Mode != 0o600 || string(readFile(t, s, dir(d)+"/up-file")) != "uploaded" {
				t.Fatalf("%s: %s/up-file: %+v, %v, want mode 600 and its content", what, dir(d), a, err)
			}
			if a, err := s.Stat(ctx, dir(d)+"/up-dir"); err != nil || a.Type != TypeDir || a.Mode != 0o700 {
				t.Fatalf("%s: %s/up-dir: %+v, %v, want a directory of mode 700", what, dir(d), a, err)
			}
			for i := range perDir / 2 * 2 {
				if got := readFile(t, s, name(d, i)); string(got) != string(content(d, i)) {
					t.Fatalf("%s: %s reads %q, want %q", what, name(d, i), got, content(d, i))
				}
			}
		}
	}
	check("after the start")
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for d := range dirs {
		sizes := map[string]int64{}
		err := objstore.ListDir(ctx, under, "docs/"+dir(d)+"/", func(oi objstore.ObjectInfo, _ bool) error {
			sizes[oi.Key] = oi.Size
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range perDir / 2 * 2 {
			if size, ok := sizes["docs/"+name(d, i)]; !ok || size != int64(len(content(d, i))) {
				t.Fatalf("after the uploads: object %s: %d bytes (there: %v), want %d", name(d, i), size, ok, len(content(d, i)))
			}
		}
	}
	e.restart()
	s = e.share("docs")
	check("after the uploads and a restart")
}

// TestReplayListingsBounded: with the replay's listings bounded below the
// directories' sizes, a directory too big is asked about key by key and
// listings held are dropped for new ones; either way the files uploaded
// before the stop keep what the store says (a chmod made there alone),
// and the others read back as written.
func TestReplayListingsBounded(t *testing.T) {
	defer func(n int) { replayListedMax = n }(replayListedMax)
	replayListedMax = 8
	e, inj, _ := countedEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "hold"}))
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	hold := e.share("hold")
	must[Attr](t)(hold.Create(ctx, "first", 0o644, 0, 0, true)) // keeps the log from being trimmed
	s := e.share("docs")
	dirs := []struct {
		name     string
		uploaded int
	}{{"small", 2}, {"mid", 6}, {"big", 12}}
	mode := uint32(0o600)
	for _, d := range dirs {
		must[Attr](t)(s.Mkdir(ctx, d.name, 0o755, 0, 0))
		for i := range d.uploaded {
			p := fmt.Sprintf("%s/up%02d", d.name, i)
			must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
			must[Attr](t)(s.WriteAt(ctx, p, []byte("uploaded"), 0))
		}
	}
	if err := e.m.Flush(ctx, "docs"); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		for i := range d.uploaded {
			must[Attr](t)(s.SetAttr(ctx, fmt.Sprintf("%s/up%02d", d.name, i), SetAttr{Mode: &mode}))
		}
		for i := range 5 {
			p := fmt.Sprintf("%s/new%02d", d.name, i)
			must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
			must[Attr](t)(s.WriteAt(ctx, p, []byte(p), 0))
		}
	}
	lists, stats := storeCalls(inj)
	e.restart()
	lists2, stats2 := storeCalls(inj)
	t.Logf("start: %d listings, %d stats of the store", lists2-lists, stats2-stats)
	s = e.share("docs")
	for _, d := range dirs {
		for i := range d.uploaded {
			p := fmt.Sprintf("%s/up%02d", d.name, i)
			if a, err := s.Stat(ctx, p); err != nil || a.Mode != mode || string(readFile(t, s, p)) != "uploaded" {
				t.Fatalf("%s after the start: %+v, %v, want mode %o and its content", p, a, err, mode)
			}
		}
		for i := range 5 {
			p := fmt.Sprintf("%s/new%02d", d.name, i)
			if got := string(readFile(t, s, p)); got != p {
				t.Fatalf("%s after the start reads %q", p, got)
			}
		}
	}
}
