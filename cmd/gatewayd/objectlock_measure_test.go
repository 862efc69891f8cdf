//go:build measure

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/volume"
)

// TestMeasureObjectLockRequests counts, on the wire between the daemon
// and MinIO, the retention requests (PutObjectRetention) that locked
// snapshots cost: a first snapshot, incremental ones whose lock ends at
// the same granule, and one whose lock ends later. Built with the measure
// tag and run by hand; BENCHMARKS.md has the figures and the command.
func TestMeasureObjectLockRequests(t *testing.T) {
	srv := miniotest.Start(t)
	srv.CreateLockedBucket(t, "locked")
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var retentions, lockedPuts, puts atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	count := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
			if _, ok := r.URL.Query()["retention"]; ok {
				retentions.Add(1)
			} else if r.Header.Get("X-Amz-Object-Lock-Mode") != "" {
				lockedPuts.Add(1)
			}
		}
		proxy.ServeHTTP(w, r) // the Host header stays the one the client signed
	}))
	defer count.Close()

	s3args := []string{"--s3-endpoint", count.URL, "--s3-path-style", "--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey}
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://locked/gw", "--object-lock"}, s3args...)...)
	serve(t, dir)
	ctx, cancel := testContext(t)
	defer cancel()
	const size = 128 << 20
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "db", "--size", "128M")
	disk := attach(t, ctx, dir, "db")
	disk.write(0, testrand.Bytes(5, size))

	snap := func(what, lock string) {
		t.Helper()
		r0, l0, p0 := retentions.Load(), lockedPuts.Load(), puts.Load()
		var si volume.SnapshotInfo
		if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dir, "db", "--lock", lock, "-o", "json")), &si); err != nil {
			t.Fatal(err)
		}
		r, l, p := retentions.Load()-r0, lockedPuts.Load()-l0, puts.Load()-p0
		if r != int64(si.Retained.Retained) {
			t.Fatalf("%s: %d PutObjectRetention on the wire, the gateway counted %d", what, r, si.Retained.Retained)
		}
		t.Logf("%s (--lock %s, until %s): %d chunks, %d objects needed, %d PutObjectRetention, %d retained PUTs, %d PUTs in all",
			what, lock, si.Lock.Until.Format(time.RFC3339), si.Chunks, si.Retained.Objects, r, l, p)
	}
	snap("first snapshot", "30d")
	for i := range 3 {
		disk.write(int64(i)*(8<<20), testrand.Bytes(uint64(10+i), 4<<20))
		snap("incremental snapshot, 4 MiB changed", "30d")
	}
	snap("snapshot of an unchanged volume", "30d")
	disk.write(0, testrand.Bytes(20, 4<<20))
	snap("incremental snapshot whose lock ends a day later", "31d")
}
