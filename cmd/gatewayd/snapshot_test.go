package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/internal/testrand"

	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/volume"
)

// lun is one volume reached through the daemon's iSCSI portal.
type lun struct {
	t   *testing.T
	ctx context.Context
	c   *initiator.Conn
}

func attach(t *testing.T, ctx context.Context, dataDir, volume string) *lun {
	t.Helper()
	iqn := "iqn.2024-01.io.gatewayd:" + volume
	c, err := initiator.Dial(ctx, iscsiPortal(t, dataDir), initiator.Options{TargetName: iqn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Command(ctx, 0, make([]byte, 6), nil, 0) // the power-on unit attention
	return &lun{t, ctx, c}
}

func (l *lun) rw(write bool, off int64, data []byte, n int) []byte {
	l.t.Helper()
	b, err := scsiRW(l.ctx, l.c, write, off, data, n)
	if err != nil {
		l.t.Fatalf("iSCSI write=%v at %d: %v", write, off, err)
	}
	return b
}

func (l *lun) write(off int64, data []byte) {
	l.t.Helper()
	for done := 0; done < len(data); done += 1 << 20 {
		l.rw(true, off+int64(done), data[done:min(done+1<<20, len(data))], 0)
	}
}

func (l *lun) read(off int64, n int) []byte {
	l.t.Helper()
	var out []byte
	for done := 0; done < n; done += 1 << 20 {
		out = append(out, l.rw(false, off+int64(done), nil, min(1<<20, n-done))...)
	}
	return out
}

// TestSnapshotsEndToEnd drives the real daemon on MinIO: snapshot a volume
// written over iSCSI, verify it, list it from the bucket alone, restore it
// to new volumes of both kinds and, on a second gateway with a fresh data
// directory and the same key, to a volume and to a file with no daemon at
// all; a wrong key is refused.
func TestSnapshotsEndToEnd(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "snaps")
	s3args := minioFlags(srv)
	dirA := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dirA, "--store", "s3://snaps/site1"}, s3args...)...)
	a := serve(t, dirA)
	ctx, cancel := testContext(t)
	defer cancel()

	const size = 24 << 20
	mustRun(t, "volume", "create", "--data-dir", dirA, "--name", "db", "--size", "24M")
	want := testrand.Bytes(1, size)
	clear(want[4<<20 : 8<<20]) // holes
	disk := attach(t, ctx, dirA, "db")
	disk.write(0, want)

	var si volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dirA, "db", "--description", "before upgrade", "-o", "json")), &si); err != nil {
		t.Fatal(err)
	}
	disk.write(0, testrand.Bytes(2, 1<<20)) // the volume moves on
	if n, ok := metric(t, dirA, `gatewayd_volume_snapshots{volume="db"}`); !ok || n != 1 {
		t.Fatalf("gatewayd_volume_snapshots for db: %v %v", n, ok)
	}
	if age, ok := metric(t, dirA, `gatewayd_volume_time_since_last_snapshot_seconds{volume="db"}`); !ok || age < 0 || age > 600 {
		t.Fatalf("time since the last snapshot: %v %v", age, ok)
	}

	out := mustRun(t, "snapshot", "verify", "--data-dir", dirA, si.ID)
	if !strings.Contains(out, "0 problems") {
		t.Fatalf("verify: %s", out)
	}
	if out := mustRun(t, "snapshot", "list", "--data-dir", dirA, "--volume", "db"); !strings.Contains(out, si.ID) || !strings.Contains(out, "before upgrade") {
		t.Fatalf("snapshot list: %s", out)
	}
	if out := mustRun(t, "snapshot", "list", "--data-dir", dirA, "--bucket-only"); !strings.Contains(out, si.ID) {
		t.Fatalf("snapshot list --bucket-only: %s", out)
	}
	mustRun(t, "volume", "create", "--data-dir", dirA, "--name", "db-stored", "--kind", "stored", "--from-snapshot", si.ID)
	if got := attach(t, ctx, dirA, "db-stored").read(0, size); !bytes.Equal(got, want) {
		t.Fatal("stored volume restored from the snapshot differs")
	}
	if out := mustRun(t, "volume", "info", "--data-dir", dirA, "db-stored"); !strings.Contains(out, "from snapshot "+si.ID) || !strings.Contains(out, "hydration") {
		t.Fatalf("volume info of a restored volume:\n%s", out)
	}
	if _, ok := metric(t, dirA, `gatewayd_volume_hydration_chunks_remaining{volume="db-stored"}`); !ok {
		t.Fatal("no hydration metric for a restored stored volume")
	}
	a.stop(t)

	// A second gateway: fresh data directory, same bucket and key.
	dirB := t.TempDir()
	key := filepath.Join(dirA, "master.key")
	mustRun(t, append([]string{"init", "--data-dir", dirB, "--store", "s3://snaps/site1", "--master-key-file", key}, s3args...)...)
	serve(t, dirB)
	mustRun(t, "volume", "create", "--data-dir", dirB, "--name", "db-dr", "--from-snapshot", si.ID)
	if got := attach(t, ctx, dirB, "db-dr").read(0, size); !bytes.Equal(got, want) {
		t.Fatal("volume restored on the second gateway differs")
	}

	// Disaster recovery with no daemon and no data directory.
	empty := t.TempDir()
	img := filepath.Join(t.TempDir(), "db.img")
	out = mustRun(t, append([]string{"restore", "--data-dir", empty, si.ID, "--to", img, "--store", "s3://snaps/site1", "--key-file", key, "--quiet"}, s3args...)...)
	got, err := os.ReadFile(img)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored image differs (%v); %s", err, out)
	}
	if !strings.Contains(out, "holes skipped") {
		t.Fatalf("restore output: %s", out)
	}
	other := t.TempDir()
	mustRun(t, "init", "--data-dir", other)
	r := run(t, nil, append([]string{"restore", "--data-dir", empty, si.ID, "--to", img + "2", "--store", "s3://snaps/site1",
		"--key-file", filepath.Join(other, "master.key")}, s3args...)...)
	mustFailClearly(t, r, "wrong master key")
	r = run(t, nil, append([]string{"snapshot", "list", "--bucket-only", "--data-dir", empty, "--store", "s3://snaps/site1",
		"--key-file", filepath.Join(other, "master.key")}, s3args...)...)
	mustFailClearly(t, r, "wrong master key")
}

// TestSnapshotCommandsFailClearly checks the errors a user meets first.
func TestSnapshotCommandsFailClearly(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	serve(t, dir)
	mustFailClearly(t, run(t, nil, "snapshot", "create", "--data-dir", dir, "nope"), "no such volume")
	mustFailClearly(t, run(t, nil, "snapshot", "verify", "--data-dir", dir, "snap-0000000000000000"), "no manifest")
	mustFailClearly(t, run(t, nil, "snapshot", "verify", "--data-dir", dir, "x"), "not a snapshot id")
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "r", "--from-snapshot", "snap-0000000000000000"), "no such snapshot")
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "r"), "--size")
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "v", "--size", "8M")
	mustFailClearly(t, run(t, nil, "snapshot", "schedule", "--data-dir", dir, "v", "--every", "10s", "--keep", "3"), "at least 1m")
	mustRun(t, "snapshot", "schedule", "--data-dir", dir, "v", "--every", "1h", "--keep", "3")
	if out := mustRun(t, "snapshot", "schedules", "--data-dir", dir); !strings.Contains(out, "1h0m0s") {
		t.Fatalf("schedules: %s", out)
	}
	out := mustRun(t, "snapshot", "create", "--data-dir", dir, "v")
	id := strings.Fields(out)[1]
	mustRun(t, "snapshot", "delete", "--data-dir", dir, id)
	if out := mustRun(t, "gc", "--data-dir", dir, "--grace", "0s"); !strings.Contains(out, "deleted") {
		t.Fatalf("gc: %s", out)
	}
	mustFailClearly(t, run(t, nil, "snapshot", "info", "--data-dir", dir, id), "no such snapshot")
}
