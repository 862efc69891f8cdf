package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// TestUploadBufferDiskFull: the upload buffer's filesystem fills while the
// store is away. Writes fail clearly (the buffer then refuses writes until
// a restart) or wait; none is acknowledged and then lost; when space and
// the store return, writes go on, everything acknowledged reads back,
// uploads drain, and a kill -9 loses nothing.
func TestUploadBufferDiskFull(t *testing.T) {
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
	// The buffer may grow to 8 GiB by configuration; its filesystem holds 40 MiB.
	mountTmpfs(t, filepath.Join(dir, "uploadbuffer"), "40m")
	d := serve(t, dir)
	g := &soakGateway{t: t, dir: dir, d: d}
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "full", "--size", "128M")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
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
	// Write 1 MiB at a time until a write fails, or the filesystem is full
	// and a write is held back.
	var failed, waiting bool
	var acked int
	for off := int64(0); off < 128<<20 && !failed && !waiting; off += 1 << 20 {
		next <- off
		for {
			select {
			case r := <-results:
				if r.err != nil {
					t.Logf("write at %d MiB on a full buffer: %v", off>>20, r.err)
					failed = true
				} else {
					copy(model[r.off:], testrand.Bytes(uint64(r.off), 1<<20))
					acked++
				}
			case <-time.After(time.Second):
				if freeBytes(t, filepath.Join(dir, "uploadbuffer")) < 1<<20 {
					waiting = true // full, and the write is held back
				}
				continue
			}
			break
		}
	}
	if !failed && !waiting {
		t.Fatal("128 MiB went into a 40 MiB upload buffer filesystem with the store away")
	}
	t.Logf("%d MiB acknowledged before the buffer filesystem filled (failed %v, waiting %v)", acked, failed, waiting)

	// Space and the store come back.
	if out, err := exec.Command("mount", "-o", "remount,size=512m", filepath.Join(dir, "uploadbuffer")).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v\n%s", err, out)
	}
	proxy.SetOutage(false)
	if waiting {
		r := <-results
		if r.err != nil {
			t.Logf("the held-back write ended with %v", r.err)
		} else {
			copy(model[r.off:], testrand.Bytes(uint64(r.off), 1<<20))
			acked++
		}
	}
	close(next)
	c.Close()
	if failed {
		// The buffer is fail-stop after a failed write (the file's state
		// is unknown until it is replayed): status says so, and a
		// restart, here a kill -9, brings it back.
		if st := run(t, nil, "status", "--data-dir", dir).stdout; !strings.Contains(st, "refuses writes until gatewayd restarts") {
			t.Fatalf("status after the buffer filesystem filled does not say why writes fail:\n%s", st)
		}
		g.kill()
		g.d = serve(t, dir)
	}
	c = g.attach(ctx, "full")
	// Writes go on once there is room.
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
