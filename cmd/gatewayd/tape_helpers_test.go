package main

import (
	"bytes"
	"context"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/tapeclient"
)

// writeObjects writes n objects to the drive at its position: every
// every-th one (counting all written so far) a filemark, the others
// tapeRecord's; written gets each (nil for a filemark).
func writeObjects(t *testing.T, ctx context.Context, drive tapeclient.Drive, written *[][]byte, n, every int) {
	t.Helper()
	for range n {
		i := len(*written)
		if i%every == every-1 {
			must(t, drive.WriteFilemarks(ctx, 1))
			*written = append(*written, nil)
			continue
		}
		rec := tapeRecord(i)
		must(t, drive.Write(ctx, rec))
		*written = append(*written, rec)
	}
}

// loadTape logs in to the library, moves the tape barcode into the first
// empty drive and sets variable-block mode; it returns the drive's
// element too.
func loadTape(t *testing.T, ctx context.Context, dir, barcode string) (tapeclient.Changer, tapeclient.Drive, tapeclient.Element, func()) {
	t.Helper()
	changer, drive, logout := library(t, dir)
	must(t, changer.Ready(ctx))
	slot, err := changer.Find(ctx, barcode)
	must(t, err)
	driveEl, err := changer.FirstEmpty(ctx, 4)
	must(t, err)
	must(t, changer.Move(ctx, slot.Address, driveEl.Address))
	must(t, drive.Ready(ctx))
	must(t, drive.VariableMode(ctx))
	return changer, drive, driveEl, logout
}

// readBack rewinds and reads every object: want's records (nil for a
// filemark), then end-of-data.
func readBack(t *testing.T, ctx context.Context, drive tapeclient.Drive, want [][]byte) {
	t.Helper()
	must(t, drive.Rewind(ctx))
	for i, w := range want {
		got, err := drive.Read(ctx, 1<<20)
		if w == nil {
			if se, ok := err.(*tapeclient.SenseError); !ok || !se.Filemark() {
				t.Fatalf("object %d: want a filemark, got %d bytes, %v", i, len(got), err)
			}
			continue
		}
		if se, ok := err.(*tapeclient.SenseError); ok && se.ILI() && int(se.Information()) == (1<<20)-len(w) {
			err = nil // a shorter record than asked for: ILI and the residual
		}
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("record %d: %d bytes (want %d), %v", i, len(got), len(w), err)
		}
	}
	if _, err := drive.Read(ctx, 1<<20); tapeclient.KeyOf(err) != tapeclient.KeyBlankCheck {
		t.Fatalf("read past end of data: %v, want BLANK CHECK", err)
	}
}

// killAndRestart logs out, kills the daemon with SIGKILL, serves the data
// directory again and logs in to its library.
func killAndRestart(t *testing.T, d *daemon, dir string, logout func()) (*daemon, tapeclient.Changer, tapeclient.Drive, func()) {
	t.Helper()
	logout()
	must(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	d = serve(t, dir)
	changer, drive, logout := library(t, dir)
	return d, changer, drive, logout
}

// serveTapes initialises a data directory on bucket (through endpoint:
// MinIO's, or a proxy's in front of it) with a library of 10 slots and a
// drive, and the vtl settings in vtl besides, and serves it.
func serveTapes(t *testing.T, srv *miniotest.Server, bucket, endpoint string, vtl map[string]any) (string, *daemon) {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir, "--store", "s3://"+bucket+"/gw", "--s3-endpoint", endpoint, "--s3-path-style",
		"--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey)
	cfg := map[string]any{"slots": 10, "drives": 1}
	for k, v := range vtl {
		cfg[k] = v
	}
	setConfig(t, dir, map[string]map[string]any{"vtl": cfg})
	return dir, serve(t, dir)
}
