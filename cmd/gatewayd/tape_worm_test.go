package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/tapeclient"
	"github.com/gatewayd/gatewayd/tapes"
)

// TestTapeWORMAndPools drives a WORM tape of a retention-locked pool
// through the daemon on MinIO with the project's initiator: the drive
// reports WORM media (medium type 5Ch, the Medium Configuration page's
// WORMM bit, READ ATTRIBUTE's MEDIUM TYPE 80h); records and filemarks
// append; after kill -9 and a restart, WRITE, WRITE FILEMARKS, ERASE and
// FORMAT MEDIUM at the beginning fail with DATA PROTECT, WORM MEDIUM -
// OVERWRITE ATTEMPTED, while appending at end-of-data works and every
// record reads back. Archived through the import/export element, the
// tape goes to its pool's class and is locked: tape delete and
// assign-pool are refused with the date the lock ends, until delete
// --bypass-governance.
func TestTapeWORMAndPools(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "worm")
	dir, d := serveTapes(t, srv, "worm", srv.Endpoint, nil)

	mustFailClearly(t, run(t, nil, "pool", "create", "--data-dir", dir, "bad", "--lock", "forever", "--lock-days", "3"), "governance or compliance")
	// MinIO knows no GLACIER class; REDUCED_REDUNDANCY shows the move.
	mustRun(t, "pool", "create", "--data-dir", dir, "vault", "--storage-class", "REDUCED_REDUNDANCY", "--lock", "governance", "--lock-days", "7")
	if out := mustRun(t, "pool", "list", "--data-dir", dir); !strings.Contains(out, "vault") || !strings.Contains(out, "governance, 7 days") {
		t.Fatalf("pool list:\n%s", out)
	}
	mustFailClearly(t, run(t, nil, "tape", "create", "--data-dir", dir, "--barcode-prefix", "NP", "--size", "1G", "--pool", "nope"), "no such pool")
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "WM", "--size", "1G", "--worm", "--pool", "vault")
	const bc = "WM0001L5"
	if in := tapeList(t, dir)[bc]; !in.WORM || in.Pool != "vault" {
		t.Fatalf("tape list: %+v", in)
	}

	ctx, cancel := testContext(t)
	defer cancel()
	changer, drive, driveEl, logout := loadTape(t, ctx, dir, bc)

	// MODE SENSE(6), no block descriptor, the Medium Configuration page.
	ms, err := drive.Command(ctx, []byte{0x1a, 0x08, 0x1d, 0, 0xff, 0}, nil, 0xff)
	must(t, err)
	if len(ms) < 4+32 || ms[1] != 0x5c || ms[4]&0x3f != 0x1d || ms[6]&0x01 == 0 {
		t.Fatalf("MODE SENSE of the WORM tape: % x", ms)
	}
	// READ ATTRIBUTE from MEDIUM TYPE (0408h).
	ra, err := drive.Command(ctx, []byte{0x8c, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x08, 0, 0, 0, 0xff, 0, 0}, nil, 0xff)
	must(t, err)
	if len(ra) < 10 || ra[4] != 0x04 || ra[5] != 0x08 || ra[9] != 0x80 {
		t.Fatalf("READ ATTRIBUTE of the WORM tape: % x", ra)
	}

	var written [][]byte // nil for a filemark
	writeObjects(t, ctx, drive, &written, 8, 4)
	d, changer, drive, logout = killAndRestart(t, d, dir, logout)
	defer func() { logout() }()
	must(t, drive.Ready(ctx))
	must(t, drive.Rewind(ctx))
	refused := func(label string, err error) {
		t.Helper()
		var se *tapeclient.SenseError
		if !errors.As(err, &se) || se.Key() != tapeclient.KeyDataProtect || se.ASC() != 0x300c {
			t.Fatalf("%s at the beginning of a WORM tape: %v, want DATA PROTECT, WORM MEDIUM - OVERWRITE ATTEMPTED", label, err)
		}
	}
	refused("WRITE", drive.Write(ctx, []byte("overwrite")))
	refused("WRITE FILEMARKS", drive.WriteFilemarks(ctx, 1))
	_, err = drive.Command(ctx, []byte{0x19, 0x01, 0, 0, 0, 0}, nil, 0)
	refused("ERASE", err)
	_, err = drive.Command(ctx, []byte{0x04, 0, 0, 0, 0, 0}, nil, 0)
	refused("FORMAT MEDIUM", err)
	must(t, drive.Space(ctx, tapeclient.SpaceEOD, 0))
	writeObjects(t, ctx, drive, &written, 6, 4)
	readBack(t, ctx, drive, written)

	// Archived by the changer: the pool's class, and its lock.
	must(t, drive.Unload(ctx))
	ies, err := changer.Elements(ctx, 3)
	must(t, err)
	must(t, changer.Move(ctx, driveEl.Address, ies[0].Address))
	in := tapeList(t, dir)[bc]
	if in.State != tapes.StateArchived || in.LockMode != tapes.LockGovernance || in.LockUntil.Before(time.Now().Add(6*24*time.Hour)) {
		t.Fatalf("archived WORM tape: %+v", in)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		classes := storageClasses(t, srv, "worm", "gw/tapes/"+bc+"/")
		if len(classes) > 0 && classes["REDUCED_REDUNDANCY"] == sum(classes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archived tape's objects by storage class: %v", classes)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustFailClearly(t, run(t, nil, "tape", "delete", "--data-dir", dir, bc), "until")
	mustFailClearly(t, run(t, nil, "tape", "assign-pool", "--data-dir", dir, bc, "--pool", ""), "retention-locked")
	mustFailClearly(t, run(t, nil, "pool", "delete", "--data-dir", dir, "vault"), "has tapes")
	var info tapeapi.TapeStatus
	must(t, json.Unmarshal([]byte(mustRun(t, "tape", "info", "--data-dir", dir, bc, "-o", "json")), &info))
	if info.LockUntil.IsZero() {
		t.Fatalf("tape info: %+v", info)
	}
	mustRun(t, "tape", "delete", "--data-dir", dir, bc, "--bypass-governance")

	// Spare tapes of a pool, and a tape in the library moved out of it.
	mustRun(t, "tape", "spares", "--data-dir", dir, "--count", "1", "--barcode-prefix", "SP", "--size", "1G", "--pool", "vault")
	if out := mustRun(t, "tape", "spares", "--data-dir", dir); !strings.Contains(out, "in pool vault") {
		t.Fatalf("tape spares: %s", out)
	}
	if in := tapeList(t, dir)["SP0001L5"]; in.Pool != "vault" || in.State != tapes.StateLibrary {
		t.Fatalf("spare tape: %+v", in)
	}
	mustRun(t, "tape", "spares", "--data-dir", dir, "--count", "0")
	mustFailClearly(t, run(t, nil, "pool", "delete", "--data-dir", dir, "vault"), "has tapes")
	mustRun(t, "tape", "assign-pool", "--data-dir", dir, "SP0001L5", "--pool", "")
	mustRun(t, "pool", "delete", "--data-dir", dir, "vault")
	d.stop(t)
}

// TestTapePoolObjectLock: on a MinIO bucket with Object Lock, a WORM tape
// archived from a compliance-locked pool has every object retained until
// its lock ends: a raw S3 client holding the gateway's own keys cannot
// delete any version of it, and tape delete is refused, with or without
// --bypass-governance.
func TestTapePoolObjectLock(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateLockedBucket(t, "locked")
	dir, d := serveTapes(t, srv, "locked", srv.Endpoint, nil)
	mustRun(t, "pool", "create", "--data-dir", dir, "keep", "--storage-class", "REDUCED_REDUNDANCY", "--lock", "compliance", "--lock-days", "1")
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "LK", "--size", "1G", "--worm", "--pool", "keep")
	const bc = "LK0001L5"
	ctx, cancel := testContext(t)
	defer cancel()
	changer, drive, driveEl, logout := loadTape(t, ctx, dir, bc)
	defer logout()
	var written [][]byte
	writeObjects(t, ctx, drive, &written, 10, 5)
	must(t, drive.Unload(ctx))
	ies, err := changer.Elements(ctx, 3)
	must(t, err)
	must(t, changer.Move(ctx, driveEl.Address, ies[0].Address))
	in := tapeList(t, dir)[bc]
	if in.State != tapes.StateArchived || in.ArchivePending || in.LockMode != tapes.LockCompliance {
		t.Fatalf("archived: %+v", in)
	}

	c := srv.Client()
	vs, err := c.ListObjectVersions(ctx, &awss3.ListObjectVersionsInput{Bucket: aws.String("locked"), Prefix: aws.String("gw/tapes/" + bc + "/")})
	must(t, err)
	current := 0
	for _, v := range vs.Versions {
		if !aws.ToBool(v.IsLatest) {
			continue
		}
		current++
		ret, err := c.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId})
		if err != nil || ret.Retention == nil || ret.Retention.Mode != "COMPLIANCE" || ret.Retention.RetainUntilDate.Before(in.LockUntil.Add(-time.Second)) {
			t.Fatalf("%s: retention %+v %v, want COMPLIANCE until %v", aws.ToString(v.Key), ret, err, in.LockUntil)
		}
		if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId}); err == nil {
			t.Fatalf("%s: a raw client deleted a retained version", aws.ToString(v.Key))
		}
		if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("locked"), Key: v.Key, VersionId: v.VersionId,
			BypassGovernanceRetention: aws.Bool(true)}); err == nil {
			t.Fatalf("%s: a raw client bypassing governance deleted a compliance version", aws.ToString(v.Key))
		}
	}
	if current < 2 {
		t.Fatalf("%d current objects of the archived tape", current)
	}
	mustFailClearly(t, run(t, nil, "tape", "delete", "--data-dir", dir, bc), "until")
	mustFailClearly(t, run(t, nil, "tape", "delete", "--data-dir", dir, bc, "--bypass-governance"), "compliance")
	d.stop(t)
}
