package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/tapeclient"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/tapes"
)

func tapeList(t *testing.T, dataDir string) map[string]tapeapi.TapeStatus {
	t.Helper()
	var list []tapeapi.TapeStatus
	if err := json.Unmarshal([]byte(mustRun(t, "tape", "list", "--data-dir", dataDir, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]tapeapi.TapeStatus{}
	for _, in := range list {
		out[in.Barcode] = in
	}
	return out
}

// library logs in to the daemon's tape library target.
func library(t *testing.T, dataDir string) (tapeclient.Changer, tapeclient.Drive, func()) {
	t.Helper()
	var in tapeapi.VTLInfo
	if err := json.Unmarshal([]byte(mustRun(t, "vtl", "info", "--data-dir", dataDir, "-o", "json")), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Targets) != 1 || len(in.Targets[0].LUNs) < 2 {
		t.Fatalf("vtl info: %+v", in)
	}
	c, err := initiator.Dial(context.Background(), in.Portal, initiator.Options{TargetName: in.Targets[0].Name,
		MaxBurstLength: 1 << 20, ImmediateData: true})
	if err != nil {
		t.Fatal(err)
	}
	return tapeclient.Changer{Device: tapeclient.Device{Conn: c, LUN: 0}},
		tapeclient.Drive{Device: tapeclient.Device{Conn: c, LUN: 1}}, func() { c.Close() }
}

// tapeRecord is record i of the test tape: sizes from 1 byte to 1 MiB.
func tapeRecord(i int) []byte {
	sizes := []int{65536, 1, 262144, 4096, 1 << 20, 777, 131072}
	b := testrand.Bytes(uint64(1000+i), sizes[i%len(sizes)])
	if len(b) >= 8 {
		copy(b, fmt.Sprintf("rec%05d", i))
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTapeLibraryEndToEnd drives the daemon's tape library on MinIO as a
// backup server would, through the project's initiator: tapes created by
// the CLI appear in the changer with their barcodes; records and
// filemarks written to a drive survive kill -9 of the daemon; a tape
// archived by moving it to the import/export element (and another by the
// CLI) leaves the library and its objects change storage class; retrieved,
// it reads back the same bytes and refuses writes.
func TestTapeLibraryEndToEnd(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "tapes")
	s3args := minioFlags(srv)
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://tapes/gw"}, s3args...)...)
	// MinIO knows no GLACIER class; REDUCED_REDUNDANCY shows the move.
	setConfig(t, dir, map[string]map[string]any{"vtl": {"slots": 20, "drives": 2, "archive_storage_class": "REDUCED_REDUNDANCY"}})
	d := serve(t, dir)

	out := mustRun(t, "tape", "create", "--data-dir", dir, "--count", "3", "--barcode-prefix", "E2E", "--size", "2G")
	for _, bc := range []string{"E2E0001L5", "E2E0002L5", "E2E0003L5"} {
		if !strings.Contains(out, bc) {
			t.Fatalf("tape create output lacks %s:\n%s", bc, out)
		}
	}
	mustFailClearly(t, run(t, nil, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "bad prefix", "--size", "2G"), "prefix")
	info := mustRun(t, "vtl", "info", "--data-dir", dir)
	for _, want := range []string{"iqn.2024-01.io.gatewayd:vtl", "STK", "L700", "ULT3580-TD5", "iscsiadm -m discovery"} {
		if !strings.Contains(info, want) {
			t.Fatalf("vtl info lacks %q:\n%s", want, info)
		}
	}

	ctx, cancel := testContext(t)
	defer cancel()
	changer, drive, logout := library(t, dir)
	must(t, changer.Ready(ctx))
	els, err := changer.Elements(ctx, 0)
	must(t, err)
	var slots, drives, ies []tapeclient.Element
	for _, e := range els {
		switch e.Type {
		case 2:
			slots = append(slots, e)
		case 3:
			ies = append(ies, e)
		case 4:
			drives = append(drives, e)
		}
	}
	if len(slots) != 20 || len(drives) != 2 || len(ies) != 1 {
		t.Fatalf("element status: %d slots, %d drives, %d import/export", len(slots), len(drives), len(ies))
	}
	if !slots[0].Full || slots[0].Barcode != "E2E0001L5" || slots[2].Barcode != "E2E0003L5" || slots[3].Full {
		t.Fatalf("slots after tape create: %+v", slots[:4])
	}

	// A tape into drive 1: records of mixed sizes and filemarks.
	must(t, changer.Move(ctx, slots[0].Address, drives[0].Address))
	must(t, drive.Ready(ctx))
	must(t, drive.VariableMode(ctx))
	var written [][]byte // nil for a filemark
	write := func(n int) { writeObjects(t, ctx, drive, &written, n, 5) }
	write(40)
	if pos, err := drive.Position(ctx); err != nil || pos != 40 {
		t.Fatalf("position after 40 objects: %d %v", pos, err)
	}
	// kill -9 right after the last acknowledged write.
	d, changer, drive, logout = killAndRestart(t, d, dir, logout)
	defer func() { logout() }()
	must(t, drive.Ready(ctx)) // the tape is still in the drive, at the beginning
	if in := tapeList(t, dir)["E2E0001L5"]; in.State != tapes.StateDrive {
		t.Fatalf("after restart the tape is %+v", in)
	}
	readAll := func(label string, want [][]byte) {
		t.Helper()
		t.Log("reading back " + label)
		readBack(t, ctx, drive, want)
	}
	readAll("after kill -9", written)

	// Append at end of data, then locate and space.
	must(t, drive.Space(ctx, tapeclient.SpaceEOD, 0))
	write(12)
	must(t, drive.Locate(ctx, 10))
	if pos, _ := drive.Position(ctx); pos != 10 {
		t.Fatalf("position after LOCATE 10: %d", pos)
	}
	must(t, drive.Space(ctx, tapeclient.SpaceFilemarks, 2)) // past the filemarks at 14 and 19
	if pos, _ := drive.Position(ctx); pos != 20 {
		t.Fatalf("position after SPACE 2 filemarks from 10: %d", pos)
	}
	readAll("after appending", written)

	// Unload and archive by moving the tape to the import/export element.
	must(t, drive.Unload(ctx))
	must(t, changer.Move(ctx, drives[0].Address, ies[0].Address))
	if e, err := changer.Find(ctx, "E2E0001L5"); err == nil {
		t.Fatalf("archived tape still in element %+v", e)
	}
	// And one by the CLI.
	mustRun(t, "tape", "archive", "--data-dir", dir, "E2E0002L5")
	list := tapeList(t, dir)
	for _, bc := range []string{"E2E0001L5", "E2E0002L5"} {
		if list[bc].State != tapes.StateArchived {
			t.Fatalf("%s after archive: %+v", bc, list[bc])
		}
	}
	// Every object of the archived tape moves to the archive class.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		classes := storageClasses(t, srv, "tapes", "gw/tapes/E2E0001L5/")
		if len(classes) > 0 && classes["REDUCED_REDUNDANCY"] == sum(classes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archived tape's objects by storage class: %v", classes)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Retrieve: back in a slot, read-only, same bytes.
	mustRun(t, "tape", "retrieve", "--data-dir", dir, "E2E0001L5")
	if in := tapeList(t, dir)["E2E0001L5"]; in.State != tapes.StateRetrieved || !in.ReadOnly {
		t.Fatalf("after retrieve: %+v", in)
	}
	e, err := changer.Find(ctx, "E2E0001L5")
	must(t, err)
	must(t, changer.Move(ctx, e.Address, drives[0].Address))
	must(t, drive.Ready(ctx))
	readAll("after archive and retrieve", written)
	must(t, drive.Rewind(ctx))
	if err := drive.Write(ctx, []byte("no")); tapeclient.KeyOf(err) != tapeclient.KeyDataProtect {
		t.Fatalf("write to a retrieved tape: %v, want DATA PROTECT", err)
	}
	mustFailClearly(t, run(t, nil, "tape", "delete", "--data-dir", dir, "E2E0001L5"), "drive")
	mustFailClearly(t, run(t, nil, "tape", "info", "--data-dir", dir, "NOPE0001L5"), "no such tape")
	d.stop(t)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// storageClasses counts the objects under prefix by storage class.
func storageClasses(t *testing.T, srv *miniotest.Server, bucket, prefix string) map[string]int {
	t.Helper()
	out := map[string]int{}
	p := awss3.NewListObjectsV2Paginator(srv.Client(), &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			head, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			class := string(head.StorageClass)
			if class == "" {
				class = "STANDARD"
			}
			out[class]++
		}
	}
	return out
}
