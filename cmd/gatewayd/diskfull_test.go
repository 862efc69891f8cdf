package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/faultproxy"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// mountTmpfs mounts a tmpfs of size on dir for the test (root only: the
// test fails, it is not skipped, without it).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs and needs root (CI runs as root)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v\n%s", dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// bufferFull reports whether status says the upload buffer's filesystem
// is full (status may exit non-zero while health is degraded).
func bufferFull(t *testing.T, dir string) bool {
	t.Helper()
	r := run(t, nil, "status", "--data-dir", dir)
	return strings.Contains(r.stdout, "upload buffer filesystem full")
}

// TestUploadBufferDiskFull: the upload buffer's filesystem fills while the
// store is away. The write that finds it full waits (it is not refused),
// and health says why; when the operator frees space (a filler file goes),
// and again when the store comes back and uploads trim the buffer, the
// held write lands and writes go on without a restart. Everything
// acknowledged reads back, uploads drain, and a kill -9 loses nothing.
func TestUploadBufferDiskFull(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "full")
	proxy, err := faultproxy.Start(srv.Endpoint, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir, "--store", "s3://full/gw", "--s3-endpoint", proxy.URL(), "--s3-path-style",
		"--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey)
	// The buffer may grow to 8 GiB by configuration; its filesystem holds
	// 40 MiB, 8 of them taken by a file the operator removes later.
	bufDir := filepath.Join(dir, "uploadbuffer")
	mountTmpfs(t, bufDir, "40m")
	filler := filepath.Join(bufDir, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d := serve(t, dir)
	g := &soakGateway{t: t, dir: dir, d: d}
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "full", "--size", "128M")
	ctx, cancel := testContext(t)
	defer cancel()
	c := g.attach(ctx, "full")
	proxy.SetOutage(true)

	model := make([]byte, 128<<20)
	type result struct {
		off int64
		err error
	}
	results := make(chan result)
	next := make(chan int64)
	go func() {
		for off := range next {
			_, err := scsiRW(ctx, c, true, off, testrand.Bytes(uint64(off), 1<<20), 0)
			results <- result{off, err}
		}
	}()
	acked := 0
	landed := func(r result) {
		if r.err != nil {
			t.Fatalf("write at %d MiB on a full upload buffer filesystem was refused instead of waiting: %v", r.off>>20, r.err)
		}
		copy(model[r.off:], testrand.Bytes(uint64(r.off), 1<<20))
		acked++
	}
	// fill writes 1 MiB at a time from off until a write is held back on
	// the full filesystem, and returns that write's offset.
	fill := func(off int64) int64 {
		for ; off < 128<<20; off += 1 << 20 {
			next <- off
		wait:
			for {
				select {
				case r := <-results:
					landed(r)
					break wait
				case <-time.After(time.Second):
					if bufferFull(t, dir) {
						return off
					}
				}
			}
		}
		t.Fatal("128 MiB went into a 40 MiB upload buffer filesystem with the store away")
		return 0
	}
	// awaitHeld waits for the held write to land once space returns.
	awaitHeld := func(why string) {
		select {
		case r := <-results:
			landed(r)
		case <-time.After(5 * time.Minute):
			t.Fatalf("the write held on a full filesystem did not land 5 minutes after %s", why)
		}
	}

	held := fill(0)
	t.Logf("%d MiB acknowledged before the buffer filesystem filled; the write at %d MiB waits", acked, held>>20)
	select {
	case r := <-results:
		landed(r) // fails the test if it was refused
		t.Fatalf("the write at %d MiB returned while the filesystem was full", r.off>>20)
	case <-time.After(5 * time.Second):
	}
	// The operator frees space: the held write lands, more writes fit.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	awaitHeld("the filler file was removed")
	held = fill(held + 1<<20)
	t.Logf("%d MiB acknowledged when the filesystem filled again; the write at %d MiB waits", acked, held>>20)
	// The store comes back: uploads trim the buffer, which frees its
	// filesystem, and the held write lands.
	proxy.SetOutage(false)
	awaitHeld("the store came back")
	close(next)
	deadline := time.Now().Add(5 * time.Minute)
	for bufferFull(t, dir) {
		if time.Now().After(deadline) {
			t.Fatalf("status still says the buffer filesystem is full after writes went on:\n%s", run(t, nil, "status", "--data-dir", dir).stdout)
		}
		time.Sleep(time.Second)
	}
	// Writes go on.
	for off := int64(100 << 20); off < 104<<20; off += 1 << 20 {
		data := testrand.Bytes(uint64(off), 1<<20)
		if _, err := scsiRW(ctx, c, true, off, data, 0); err != nil {
			t.Fatalf("write after space returned: %v", err)
		}
		copy(model[off:], data)
	}
	if _, lost := verifyVolume(t, ctx, c, model); lost > 0 {
		t.Fatalf("%d acknowledged bytes differ after the buffer filesystem filled", lost)
	}
	g.waitUploaded("full", "")
	c.Close()
	g.kill()
	g.d = serve(t, dir)
	c = g.attach(ctx, "full")
	if _, lost := verifyVolume(t, ctx, c, model); lost > 0 {
		t.Fatalf("%d acknowledged bytes differ after kill -9", lost)
	}
}
