package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/gateway"
	"github.com/gatewayd/gatewayd/internal/miniotest"
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

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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
	var in gateway.TapeStatus
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
	changer, drive, logout = library(t, dir)
	defer logout()
	e, err := changer.Find(ctx, bc)
	must(t, err)
	must(t, changer.Move(ctx, e.Address, driveEl.Address))
	must(t, drive.Ready(ctx))
	readBack(t, ctx, drive, written)
	d.stop(t)
}
