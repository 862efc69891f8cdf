package smb

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/objstore/retry"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

// TestReaddirDuringUploadsS3 lists a directory through the view, as smbd
// does, while 700 files are made in it and uploaded to MinIO at once (no
// settle time) and with listings and attributes trusted for 50 ms (most
// listings ask the store): files go from not yet uploaded to in the store while a
// listing is read, paged, rewound and opened again. Every listing has
// each file made before it opened exactly once, and nothing else.
func TestReaddirDuringUploadsS3(t *testing.T) {
	smbtest.Require(t)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "view")
	st, err := s3.Open(t.Context(), s3.Config{Bucket: "view", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _, mnt := mountView(t, fileshare.Options{Store: retry.New(st, retry.Options{}),
		SettleTime: time.Nanosecond, UploadInterval: time.Millisecond, AttrTTL: 50 * time.Millisecond})
	many := filepath.Join(mnt, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}

	const files = 700
	var (
		mu      sync.Mutex
		made    = map[string]bool{} // created
		started = map[string]bool{} // created or being created
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := files - 1; i >= 0; i-- {
			name := fmt.Sprintf("t%03d-%d.txt", i, i)
			mu.Lock()
			started[name] = true
			mu.Unlock()
			if err := os.WriteFile(filepath.Join(many, name), []byte(name), 0o644); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			made[name] = true
			mu.Unlock()
		}
	}()
	// Each listing holds every file made before it opened, and may hold
	// those made while it was read.
	check := func(what string, before map[string]bool, names []string) {
		t.Helper()
		mu.Lock()
		after := maps.Clone(started)
		mu.Unlock()
		seen := map[string]int{}
		for _, n := range names {
			seen[n]++
		}
		var missing, twice, extra []string
		for n := range before {
			if seen[n] == 0 {
				missing = append(missing, n)
			}
		}
		for n, k := range seen {
			if k > 1 {
				twice = append(twice, n)
			}
			if !after[n] {
				extra = append(extra, n)
			}
		}
		if len(missing)+len(twice)+len(extra) > 0 {
			t.Fatalf("%s: %d names for %d files made before: missing %q, more than once %q, never made %q",
				what, len(names), len(before), missing, twice, extra)
		}
	}
	listings := 0
	for round := 0; ; round++ {
		finished := false
		select {
		case <-done:
			finished = true
		default:
		}
		if !finished && round == 3 {
			// Enough listings beside the making; the last round lists
			// beside the last uploads.
			select {
			case <-done:
			case <-time.After(10 * time.Minute):
				t.Fatal("700 files not made in 10 minutes")
			}
			finished = true
		}
		if finished {
			// The last uploads go on while the last rounds list.
			go func() { _ = m.Flush(context.Background(), "v") }()
		}
		for _, c := range []struct {
			perReply, rewindAt int
		}{{34, 0}, {120, 350}} {
			mu.Lock()
			before := maps.Clone(made)
			mu.Unlock()
			names := searchAll(t, many, c.perReply, c.rewindAt)
			check(fmt.Sprintf("round %d, %d names a reply, rewound after %d", round, c.perReply, c.rewindAt), before, names)
			listings++
		}
		if finished {
			break
		}
	}
	if err := m.Flush(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	names := searchAll(t, many, 34, 0)
	check("after every upload", made, names)
	if len(names) != files {
		t.Fatalf("%d names after every upload, want %d", len(names), files)
	}
	t.Logf("%d listings while files were made and uploaded", listings)
}
