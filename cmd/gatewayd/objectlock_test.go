package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/volume"
)

// TestObjectLockSnapshots drives the real daemon on MinIO: init
// --object-lock refuses a bucket without Object Lock and takes one with
// it; a snapshot taken with --lock has every object it needs retained
// until its lock ends, so a raw S3 client holding the gateway's own keys
// can neither delete nor replace any of them; snapshot delete is refused
// with the date it unlocks; GC runs without failing; restore of a locked
// snapshot works; and once a lock has ended, delete and GC proceed.
func TestObjectLockSnapshots(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "plain")
	srv.CreateLockedBucket(t, "locked")
	s3args := minioFlags(srv)
	r := run(t, nil, append([]string{"init", "--data-dir", t.TempDir(), "--store", "s3://plain/gw", "--object-lock"}, s3args...)...)
	mustFailClearly(t, r, "has no Object Lock")
	r = run(t, nil, append([]string{"init", "--data-dir", t.TempDir(), "--store", "s3://locked/gw", "--object-lock=forever"}, s3args...)...)
	mustFailClearly(t, r, "governance or compliance")

	dir := t.TempDir()
	out := mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://locked/gw", "--object-lock"}, s3args...)...)
	if !strings.Contains(out, "snapshots can be locked (governance mode)") {
		t.Fatalf("init --object-lock: %s", out)
	}
	serve(t, dir)
	ctx, cancel := testContext(t)
	defer cancel()
	const size = 8 << 20
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "db", "--size", "8M")
	want := testrand.Bytes(3, size)
	attach(t, ctx, dir, "db").write(0, want)

	var si volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dir, "db", "--lock", "30d", "-o", "json")), &si); err != nil {
		t.Fatal(err)
	}
	if si.Lock == nil || si.Lock.Mode != "GOVERNANCE" || si.Lock.Until.Before(si.Created.Add(30*24*time.Hour)) || si.Retained == nil {
		t.Fatalf("snapshot create --lock 30d: lock %v, retained %v", si.Lock, si.Retained)
	}
	var rep snapshots.VerifyReport
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "verify", "--data-dir", dir, si.ID, "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if si.Retained.Objects != rep.Pages+rep.Chunks {
		t.Fatalf("retained %d objects; the snapshot has %d pages and %d chunks", si.Retained.Objects, rep.Pages, rep.Chunks)
	}
	t.Logf("first snapshot: %d objects, %d retention requests", si.Retained.Objects, si.Retained.Retained)

	r = run(t, nil, "snapshot", "delete", "--data-dir", dir, si.ID)
	mustFailClearly(t, r, "locked until "+si.Lock.Until.Format(time.RFC3339))
	if out := mustRun(t, "snapshot", "info", "--data-dir", dir, si.ID); !strings.Contains(out, "locked until  "+si.Lock.Until.Format(time.RFC3339)+" (governance)") {
		t.Fatalf("snapshot info of a locked snapshot:\n%s", out)
	}
	for _, args := range [][]string{{"snapshot", "list", "--data-dir", dir}, append([]string{"snapshot", "list", "--data-dir", t.TempDir(), "--bucket-only",
		"--store", "s3://locked/gw", "--key-file", filepath.Join(dir, "master.key")}, s3args...)} {
		if out := mustRun(t, args...); !strings.Contains(out, si.Lock.Until.Format(time.RFC3339)+" G") {
			t.Fatalf("%v: no lock date:\n%s", args[:3], out)
		}
	}

	// Every object the snapshot needs, seen by a raw client with the
	// gateway's keys: retained until the lock ends; deleting a version
	// and shortening the retention are refused.
	raw := srv.Client()
	manifest := "gw/" + snapshots.SnapshotKey(si.ID)
	retained := lockedVersions(t, ctx, raw, si, types.ObjectLockRetentionModeGovernance)
	for _, v := range retained {
		if _, err := raw.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId}); err == nil {
			t.Fatalf("a raw client deleted %s of a locked snapshot", aws.ToString(v.Key))
		}
	}
	_, err := raw.PutObjectRetention(ctx, &awss3.PutObjectRetentionInput{Bucket: aws.String("locked"), Key: aws.String(manifest),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeGovernance, RetainUntilDate: aws.Time(time.Now().Add(time.Minute))}})
	if err == nil {
		t.Fatal("a raw client shortened the manifest's retention")
	}
	// Overwriting makes a new version above the retained one, which stays.
	orig := versionBytes(t, raw, manifest, "")
	if _, err := raw.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("locked"), Key: aws.String(manifest), Body: strings.NewReader("garbage")}); err != nil {
		t.Fatal(err)
	}
	for _, v := range retained {
		if aws.ToString(v.Key) == manifest && !bytes.Equal(versionBytes(t, raw, manifest, aws.ToString(v.VersionId)), orig) {
			t.Fatal("the retained manifest version changed under an overwrite")
		}
	}
	removeNewest(t, raw, manifest) // the garbage version is not retained: it goes

	// Restore of a locked snapshot, and GC beside locked objects.
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "db-restored", "--from-snapshot", si.ID)
	if got := attach(t, ctx, dir, "db-restored").read(0, size); !bytes.Equal(got, want) {
		t.Fatal("volume restored from a locked snapshot differs")
	}
	mustRun(t, "gc", "--data-dir", dir, "--grace", "0s")

	// A short lock, and what happens when it ends.
	attach(t, ctx, dir, "db").write(0, testrand.Bytes(4, 1<<20))
	var short volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dir, "db", "--lock", "5s", "-o", "json")), &short); err != nil {
		t.Fatal(err)
	}
	t.Logf("incremental snapshot: %d objects, %d retention requests", short.Retained.Objects, short.Retained.Retained)
	deadline := short.Lock.Until.Add(5 * time.Minute)
	for {
		r := run(t, nil, "snapshot", "delete", "--data-dir", dir, short.ID)
		if r.code == 0 {
			if time.Now().Before(short.Lock.Until) {
				t.Fatalf("snapshot deleted before its lock ended at %s", short.Lock.Until)
			}
			break
		}
		if !strings.Contains(r.stderr, "locked until") || time.Now().After(deadline) {
			t.Fatalf("delete after the lock ended at %s: %s", short.Lock.Until, r.stderr)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	if _, err := raw.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("locked"), Key: aws.String("gw/" + snapshots.SnapshotKey(short.ID))}); err == nil {
		t.Fatal("the deleted snapshot's manifest is still there")
	}
	mustRun(t, "gc", "--data-dir", dir, "--grace", "0s")
	if out := mustRun(t, "snapshot", "verify", "--data-dir", dir, si.ID); !strings.Contains(out, "0 problems") {
		t.Fatalf("the locked snapshot after GC: %s", out)
	}
}

func versionBytes(t *testing.T, c *awss3.Client, key, version string) []byte {
	t.Helper()
	in := &awss3.GetObjectInput{Bucket: aws.String("locked"), Key: aws.String(key)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	out, err := c.GetObject(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// removeNewest deletes key's latest version by its id.
func removeNewest(t *testing.T, c *awss3.Client, key string) {
	t.Helper()
	out, err := c.ListObjectVersions(t.Context(), &awss3.ListObjectVersionsInput{Bucket: aws.String("locked"), Prefix: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key && aws.ToBool(v.IsLatest) {
			if _, err := c.DeleteObject(t.Context(), &awss3.DeleteObjectInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId}); err != nil {
				t.Fatalf("delete the unretained newest version of %s: %v", key, err)
			}
			return
		}
	}
	t.Fatalf("no latest version of %s", key)
}

// TestObjectLockSnapshotsCompliance: in compliance mode nobody removes a
// locked snapshot's objects before the lock ends, not even a raw client
// with the gateway's own keys that asks to bypass governance, and
// snapshot delete is refused as in governance mode.
func TestObjectLockSnapshotsCompliance(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateLockedBucket(t, "locked")
	s3args := minioFlags(srv)
	dir := t.TempDir()
	out := mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://locked/gw", "--object-lock=compliance"}, s3args...)...)
	if !strings.Contains(out, "compliance mode") {
		t.Fatalf("init --object-lock=compliance: %s", out)
	}
	serve(t, dir)
	ctx, cancel := testContext(t)
	defer cancel()
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "db", "--size", "4M")
	attach(t, ctx, dir, "db").write(0, testrand.Bytes(5, 4<<20))
	var si volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dir, "db", "--lock", "1d", "-o", "json")), &si); err != nil {
		t.Fatal(err)
	}
	if si.Lock == nil || si.Lock.Mode != "COMPLIANCE" {
		t.Fatalf("snapshot create --lock 1d in compliance mode: lock %v", si.Lock)
	}
	r := run(t, nil, "snapshot", "delete", "--data-dir", dir, si.ID)
	mustFailClearly(t, r, "locked until "+si.Lock.Until.Format(time.RFC3339))

	raw := srv.Client()
	for _, v := range lockedVersions(t, ctx, raw, si, types.ObjectLockRetentionModeCompliance) {
		if _, err := raw.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId,
			BypassGovernanceRetention: aws.Bool(true)}); err == nil {
			t.Fatalf("a raw client bypassing governance deleted %s of a snapshot locked in compliance mode", aws.ToString(v.Key))
		}
	}
}

// lockedVersions returns the object versions under gw/ that a raw client
// sees retained, failing unless each is retained in mode at least until
// si's lock ends and they are exactly the objects si needs and its
// manifest.
func lockedVersions(t *testing.T, ctx context.Context, raw *awss3.Client, si volume.SnapshotInfo, mode types.ObjectLockRetentionMode) []types.ObjectVersion {
	t.Helper()
	var retained []types.ObjectVersion
	manifest := "gw/" + snapshots.SnapshotKey(si.ID)
	pager := awss3.NewListObjectVersionsPaginator(raw, &awss3.ListObjectVersionsInput{Bucket: aws.String("locked"), Prefix: aws.String("gw/")})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions {
			got, err := raw.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId})
			if err != nil || got.Retention == nil {
				if aws.ToString(v.Key) == manifest {
					t.Fatalf("the manifest has no retention: %v", err)
				}
				continue // not the snapshot's: the volume's recovery points, the repository's config
			}
			if until := aws.ToTime(got.Retention.RetainUntilDate); until.Before(si.Lock.Until) || got.Retention.Mode != mode {
				t.Fatalf("%s retained %s until %s; the snapshot is locked in %s mode until %s", aws.ToString(v.Key), got.Retention.Mode, until, mode, si.Lock.Until)
			}
			retained = append(retained, v)
		}
	}
	if len(retained) != si.Retained.Objects+1 {
		t.Fatalf("%d objects retained; the snapshot needs %d and its manifest", len(retained), si.Retained.Objects)
	}
	return retained
}
