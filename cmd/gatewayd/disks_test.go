package main

// Stored volumes' disks, driven through the real daemon: one disk holds one
// volume however it is named, `restore --to` keeps off a disk the daemon
// serves and off data unless --force, grow stops at the disk, and a failed
// local write shows in status and /healthz.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/internal/testdisk"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/volume"
)

func TestStoredVolumeDisks(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	serve(t, dir)
	ctx, cancel := testContext(t)
	defer cancel()
	disks := t.TempDir()
	img := filepath.Join(disks, "user.img")
	testdisk.Sparse(t, img, 16<<20)
	link := filepath.Join(disks, "by-id-link")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "first", "--kind", "stored", "--size", "16M", "--disk", img)

	// A second volume on the disk, by its name, a symlink, or a relative
	// path, is refused, naming the first.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{img, link, rel} {
		mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "second", "--kind", "stored", "--size", "16M", "--disk", p), "in use by volume first")
	}
	// So is one on another volume's own image file.
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "own", "--kind", "stored", "--size", "4M")
	var own volume.Info
	if err := json.Unmarshal([]byte(mustRun(t, "volume", "info", "--data-dir", dir, "own", "-o", "json")), &own); err != nil {
		t.Fatal(err)
	}
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "second", "--kind", "stored", "--size", "4M", "--disk", own.Disk), "in use by volume own")

	// A snapshot with data in it.
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "src", "--size", "4M")
	want := testrand.Bytes(7, 4<<20)
	attach(t, ctx, dir, "src").write(0, want)
	var si volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dir, "src", "-o", "json")), &si); err != nil {
		t.Fatal(err)
	}
	// Restoring a new volume onto a live volume's disk is refused.
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "second", "--kind", "stored", "--from-snapshot", si.ID, "--disk", link), "in use by volume first")

	// `restore --to` a disk the daemon serves: refused, even with --force.
	restore := func(to string, extra ...string) result {
		return run(t, nil, append([]string{"restore", "--data-dir", dir, si.ID, "--to", to, "--quiet"}, extra...)...)
	}
	for _, p := range []string{img, link, own.Disk} {
		mustFailClearly(t, restore(p), "in use")
		mustFailClearly(t, restore(p, "--force"), "in use")
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got, make([]byte, 16<<20)) {
		t.Fatal("a refused restore wrote a served volume's disk")
	}

	// A target holding data: refused without --force, written with it.
	other := filepath.Join(disks, "other.img")
	old := testrand.Bytes(8, 4<<20)
	if err := os.WriteFile(other, old, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFailClearly(t, restore(other), "--force")
	if got, _ := os.ReadFile(other); !bytes.Equal(got, old) {
		t.Fatal("a refused restore changed the target")
	}
	if r := restore(other, "--force"); r.code != 0 {
		t.Fatalf("restore --force: %+v", r)
	}
	if got, _ := os.ReadFile(other); !bytes.Equal(got, want) {
		t.Fatal("restored image differs from the snapshot")
	}

	// grow never extends a file the user gave; it does the gateway's own.
	mustFailClearly(t, run(t, nil, "volume", "grow", "--data-dir", dir, "first", "--size", "32M"), "extend the file first")
	if fi, _ := os.Stat(img); fi.Size() != 16<<20 {
		t.Fatalf("user's image is %d bytes after a refused grow", fi.Size())
	}
	mustRun(t, "volume", "grow", "--data-dir", dir, "own", "--size", "8M")

	// Deleting the volume frees the disk.
	mustRun(t, "volume", "delete", "--data-dir", dir, "first")
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "second", "--kind", "stored", "--size", "16M", "--disk", link)
}

// A stored volume on a 64MiB block device does not grow past it, and the
// device is the volume's alone while the daemon serves it.
func TestStoredVolumeOnLoopDevice(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	testdisk.NeedRoot(t)
	dev := testdisk.Loop(t, 64<<20) // before serve: detached after the daemon is gone
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	d := serve(t, dir)
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "big", "--kind", "stored", "--size", "128M", "--disk", dev), "smaller than the volume")
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "lo", "--kind", "stored", "--size", "32M", "--disk", dev)
	mustFailClearly(t, run(t, nil, "volume", "grow", "--data-dir", dir, "lo", "--size", "128M"), "grow the device first")
	mustRun(t, "volume", "grow", "--data-dir", dir, "lo", "--size", "64M")
	mustFailClearly(t, run(t, nil, "volume", "create", "--data-dir", dir, "--name", "lo2", "--kind", "stored", "--size", "32M", "--disk", dev), "in use by volume lo")
	// restore reads the snapshot before it opens the target: take one.
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "src", "--size", "1M")
	var si volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", dir, "src", "-o", "json")), &si); err != nil {
		t.Fatal(err)
	}
	mustFailClearly(t, run(t, nil, "restore", "--data-dir", dir, si.ID, "--to", dev, "--force", "--quiet"), "in use")
	// After a restart the daemon holds the device again.
	d.stop(t)
	serve(t, dir)
	mustFailClearly(t, run(t, nil, "restore", "--data-dir", dir, si.ID, "--to", dev, "--force", "--quiet"), "in use")
	if out := mustRun(t, "volume", "info", "--data-dir", dir, "lo"); !strings.Contains(out, "64MiB") {
		t.Fatalf("volume info after a restart:\n%s", out)
	}
}

// A write the local disk fails (a stored volume's sparse image on a file
// system that fills up) fails at the initiator, and status and /healthz
// say the gateway is degraded and why.
func TestFailedLocalWriteDegradesHealth(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	testdisk.NeedRoot(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { // after the daemon is gone (cleanups run last first)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	img := filepath.Join(mnt, "thin.img")
	testdisk.Sparse(t, img, 16<<20) // promises more than the file system holds
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	serve(t, dir)
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "thin", "--kind", "stored", "--size", "16M", "--disk", img)
	if r := run(t, nil, "status", "--data-dir", dir); strings.Contains(r.stdout, "local disk write failed") {
		t.Fatalf("status before any failure: %+v", r)
	}
	ctx, cancel := testContext(t)
	defer cancel()
	l := attach(t, ctx, dir, "thin")
	data := testrand.Bytes(9, 1<<20)
	failed := false
	for off := int64(0); off < 16<<20 && !failed; off += 1 << 20 {
		_, err := scsiRW(ctx, l.c, true, off, data, 0)
		failed = err != nil
	}
	if !failed {
		t.Fatal("16MiB written to a 4MiB file system without an error")
	}
	r := run(t, nil, "status", "--data-dir", dir)
	if !strings.Contains(r.stdout, "local disk write failed") || !strings.Contains(r.stdout, "volume thin") {
		t.Fatalf("status after a failed local write:\n%s\n%s", r.stdout, r.stderr)
	}
	resp, err := (&http.Client{Transport: unixTransport(filepath.Join(dir, "admin.sock"))}).Get("http://gatewayd/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var hz struct {
		Overall    string
		Subsystems []struct{ Subsystem, Level, Message string }
	}
	if err := json.Unmarshal(body, &hz); err != nil {
		t.Fatalf("/healthz: %v: %s", err, body)
	}
	found := false
	for _, s := range hz.Subsystems {
		found = found || s.Subsystem == "volumes" && s.Level == "warning" && strings.Contains(s.Message, "local disk write failed")
	}
	if hz.Overall == "ok" || !found {
		t.Fatalf("/healthz after a failed local write: %s", body)
	}
}
