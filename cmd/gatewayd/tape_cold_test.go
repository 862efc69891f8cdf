package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/tapeclient"
	"github.com/gatewayd/gatewayd/tapes"
)

// TestTapeRetrieveColdStorage retrieves a tape archived to GLACIER
// through a proxy that gives MinIO S3's cold storage (coldProxy): the
// archive puts every object of the tape in GLACIER, where it cannot be
// read; tape retrieve asks a restore of each at the tier given and shows
// the tape retrieving with its counts; kill -9 of the daemon in the
// middle loses neither the retrieval nor asks again for the restores
// under way; once they are done the tape is in a slot, read-only, its
// objects back in STANDARD, and reads back what was written.
func TestTapeRetrieveColdStorage(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "cold")
	proxy := startColdProxy(t, srv, "cold")
	dir, d := serveTapes(t, srv, "cold", proxy.URL, map[string]any{"archive_storage_class": "GLACIER"})
	const bc = "CS0001L5"
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "CS", "--size", "1G")

	ctx, cancel := testContext(t)
	defer cancel()
	changer, drive, driveEl, logout := loadTape(t, ctx, dir, bc)
	var written [][]byte
	writeObjects(t, ctx, drive, &written, 60, 61) // several segments (16 MiB each)
	must(t, drive.WriteFilemarks(ctx, 1))
	written = append(written, nil)
	must(t, drive.Unload(ctx))
	ies, err := changer.Elements(ctx, 3)
	must(t, err)
	must(t, changer.Move(ctx, driveEl.Address, ies[0].Address))
	logout()
	if in := tapeList(t, dir)[bc]; in.State != tapes.StateArchived || in.ArchivePending {
		t.Fatalf("archived: %+v", in)
	}
	objects, _ := proxy.counts("gw/tapes/" + bc + "/")
	if objects < 3 {
		t.Fatalf("%d objects of the archived tape in GLACIER", objects)
	}

	out := mustRun(t, "tape", "retrieve", "--data-dir", dir, bc, "--tier", "Bulk")
	if !strings.Contains(out, "retrieving") {
		t.Fatalf("tape retrieve: %s", out)
	}
	check := func(label string) {
		t.Helper()
		in := tapeList(t, dir)[bc]
		if r := in.Retrieval; in.State != tapes.StateRetrieving || r == nil || r.Objects != objects || r.Restoring != objects || r.Readable != 0 || r.Tier != "Bulk" {
			t.Fatalf("%s: %+v %+v", label, in, in.Retrieval)
		}
		if _, accepted := proxy.counts(""); accepted != objects {
			t.Fatalf("%s: %d restores accepted for %d objects", label, accepted, objects)
		}
		if st := mustRun(t, "status", "--data-dir", dir); !strings.Contains(st, "1 retrieving") || !strings.Contains(st, fmt.Sprintf("0 of %d objects readable", objects)) {
			t.Fatalf("%s: status:\n%s", label, st)
		}
		m := scrape(t, dir)
		if m[`gatewayd_tape_retrieval_objects{state="total"}`] != float64(objects) || m[`gatewayd_tape_retrieval_objects{state="restoring"}`] != float64(objects) ||
			m[`gatewayd_tape_retrieval_objects{state="readable"}`] != 0 || m[`gatewayd_tapes{state="retrieving"}`] != 1 {
			t.Fatalf("%s: metrics %v", label, m)
		}
	}
	check("after tape retrieve")
	must(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	d = serve(t, dir)
	check("after kill -9")
	mustRun(t, "tape", "retrieve", "--data-dir", dir, bc) // looks again: nothing restored yet
	check("looked at again")

	proxy.release()
	out = mustRun(t, "tape", "retrieve", "--data-dir", dir, bc)
	var in tapeapi.TapeStatus
	must(t, json.Unmarshal([]byte(mustRun(t, "tape", "info", "--data-dir", dir, bc, "-o", "json")), &in))
	if in.State != tapes.StateRetrieved || !in.ReadOnly || in.Location == "" {
		t.Fatalf("after the restores: %s\n%+v", out, in)
	}
	if m := scrape(t, dir); m[`gatewayd_tape_retrieval_objects{state="total"}`] != 0 || m[`gatewayd_tapes{state="retrieved"}`] != 1 {
		t.Fatalf("metrics after the retrieval: %v", m)
	}
	if left, _ := proxy.counts("gw/tapes/" + bc + "/"); left != 0 {
		t.Fatalf("%d objects still in GLACIER after the retrieval", left)
	}
	readRetrieved(t, ctx, dir, bc, driveEl, written)
	d.stop(t)
}

// TestTapePoolMoveColdStorage moves an archived tape from a GLACIER pool
// to a DEEP_ARCHIVE one through the cold-storage proxy, as AWS documents
// a class change of an archived object: restore it, then copy it onto
// itself with the new class. tape assign-pool asks one Bulk restore per
// object and leaves the tape archived with its move pending; kill -9 in
// the middle asks no restore twice; once the restores are done the next
// look (assign-pool again) copies every object into DEEP_ARCHIVE, and the
// tape, retrieved from there, reads back what was written.
func TestTapePoolMoveColdStorage(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "coldmove")
	proxy := startColdProxy(t, srv, "coldmove")
	dir, d := serveTapes(t, srv, "coldmove", proxy.URL, nil)
	const bc = "PM0001L5"
	prefix := "gw/tapes/" + bc + "/"
	mustRun(t, "pool", "create", "--data-dir", dir, "flexible", "--storage-class", "GLACIER")
	mustRun(t, "pool", "create", "--data-dir", dir, "deep", "--storage-class", "DEEP_ARCHIVE")
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "PM", "--size", "1G", "--pool", "flexible")

	ctx, cancel := testContext(t)
	defer cancel()
	changer, drive, driveEl, logout := loadTape(t, ctx, dir, bc)
	var written [][]byte
	writeObjects(t, ctx, drive, &written, 24, 7)
	must(t, drive.Unload(ctx))
	ies, err := changer.Elements(ctx, 3)
	must(t, err)
	must(t, changer.Move(ctx, driveEl.Address, ies[0].Address))
	logout()
	if in := tapeList(t, dir)[bc]; in.State != tapes.StateArchived || in.ArchivePending {
		t.Fatalf("archived: %+v", in)
	}
	classes, _ := proxy.classes(prefix)
	objects := classes["GLACIER"]
	if objects < 2 || len(classes) != 1 {
		t.Fatalf("archived tape's objects by class: %v", classes)
	}

	out := mustRun(t, "tape", "assign-pool", "--data-dir", dir, bc, "--pool", "deep")
	check := func(label string) {
		t.Helper()
		in := tapeList(t, dir)[bc]
		if in.State != tapes.StateArchived || !in.ArchivePending || in.Pool != "deep" {
			t.Fatalf("%s: %+v", label, in)
		}
		classes, tiers := proxy.classes(prefix)
		if classes["GLACIER"] != objects || len(classes) != 1 || tiers["Bulk"] != objects {
			t.Fatalf("%s: objects by class %v, restores by tier %v", label, classes, tiers)
		}
		if _, accepted := proxy.counts(""); accepted != objects {
			t.Fatalf("%s: %d restores accepted for %d objects", label, accepted, objects)
		}
		if info := mustRun(t, "tape", "info", "--data-dir", dir, bc); !strings.Contains(info, "still moving") {
			t.Fatalf("%s: tape info:\n%s", label, info)
		}
	}
	check("after assign-pool: " + out)
	must(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	d = serve(t, dir)
	check("after kill -9")
	mustRun(t, "tape", "assign-pool", "--data-dir", dir, bc, "--pool", "deep") // looks again: nothing restored yet
	check("looked at again")

	proxy.release()
	mustRun(t, "tape", "assign-pool", "--data-dir", dir, bc, "--pool", "deep")
	if in := tapeList(t, dir)[bc]; in.State != tapes.StateArchived || in.ArchivePending {
		t.Fatalf("after the restores: %+v", in)
	}
	if classes, _ := proxy.classes(prefix); classes["DEEP_ARCHIVE"] != objects || len(classes) != 1 {
		t.Fatalf("moved tape's objects by class: %v", classes)
	}

	// Retrieved from DEEP_ARCHIVE (restores are done at once now), it
	// reads back.
	mustRun(t, "tape", "retrieve", "--data-dir", dir, bc)
	deadline := time.Now().Add(5 * time.Minute)
	for tapeList(t, dir)[bc].State != tapes.StateRetrieved {
		if time.Now().After(deadline) {
			t.Fatalf("not retrieved: %+v", tapeList(t, dir)[bc])
		}
		mustRun(t, "tape", "retrieve", "--data-dir", dir, bc)
	}
	readRetrieved(t, ctx, dir, bc, driveEl, written)
	d.stop(t)
}

// readRetrieved logs in to the library, moves the retrieved tape bc from
// its slot into the drive driveEl and reads it back.
func readRetrieved(t *testing.T, ctx context.Context, dir, bc string, driveEl tapeclient.Element, written [][]byte) {
	t.Helper()
	changer, drive, logout := library(t, dir)
	defer logout()
	e, err := changer.Find(ctx, bc)
	must(t, err)
	must(t, changer.Move(ctx, e.Address, driveEl.Address))
	must(t, drive.Ready(ctx))
	readBack(t, ctx, drive, written)
}
