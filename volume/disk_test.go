package volume

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/internal/diskclaim"
	"github.com/gatewayd/gatewayd/internal/testdisk"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/vfs"
)

// mustRefuse checks that err is a disk-in-use refusal naming holder.
func mustRefuse(t *testing.T, what string, err error, holder string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errors.Is(err, ErrDiskInUse) || !strings.Contains(err.Error(), "volume "+holder) {
		t.Fatalf("%s: %v; want a disk-in-use error naming volume %s", what, err, holder)
	}
}

// A disk holds one volume, however it is named: by its path, through a
// symlink, with "..", or as another volume's own image file.
func TestDiskClaimedByOneVolume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 16*mib, 16*mib)
	e.start()
	dir := t.TempDir()
	img := filepath.Join(dir, "user.img")
	testdisk.Sparse(t, img, 4*mib)
	if _, err := e.m.Create(ctx, CreateOptions{Name: "c", Kind: Stored, Size: 4 * mib, Disk: img}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "by-id-link")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{img, link, filepath.Join(dir, "sub", "..", "user.img")} {
		if p == filepath.Join(dir, "sub", "..", "user.img") {
			_ = os.Mkdir(filepath.Join(dir, "sub"), 0o700)
		}
		_, err := e.m.Create(ctx, CreateOptions{Name: "d", Kind: Stored, Size: 4 * mib, Disk: p})
		mustRefuse(t, "second volume on "+p, err, "c")
	}

	// The image file the gateway made for a volume is that volume's too.
	a := e.create("a", Stored, 4*mib, 64*kib)
	_, err := e.m.Create(ctx, CreateOptions{Name: "d", Kind: Stored, Size: 4 * mib, Disk: a.Info().Disk})
	mustRefuse(t, "a volume on another volume's image", err, "a")

	// Restored from a snapshot onto a live volume's disk: refused before
	// anything is written.
	si, err := e.m.CreateSnapshot(ctx, "a", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Create(ctx, CreateOptions{Name: "d", Kind: Stored, Disk: link, FromSnapshot: si.ID})
	mustRefuse(t, "restore onto a live volume's disk", err, "c")

	// Other programs (gatewayd restore) cannot take a held disk.
	for _, p := range []string{img, a.Info().Disk} {
		if d, err := diskclaim.Open(p); !errors.Is(err, diskclaim.ErrBusy) {
			if d != nil {
				d.Close()
			}
			t.Fatalf("open %s while a volume holds it: %v; want ErrBusy", p, err)
		}
	}

	// After a restart the claims hold again.
	e.restart()
	_, err = e.m.Create(ctx, CreateOptions{Name: "d", Kind: Stored, Size: 4 * mib, Disk: link})
	mustRefuse(t, "second volume after a restart", err, "c")
	if d, err := diskclaim.Open(img); !errors.Is(err, diskclaim.ErrBusy) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("open after a restart: %v; want ErrBusy", err)
	}

	// Deleting the volume frees its disk.
	if err := e.m.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(ctx, CreateOptions{Name: "d", Kind: Stored, Size: 4 * mib, Disk: link}); err != nil {
		t.Fatalf("volume on a freed disk: %v", err)
	}

	if _, err := e.m.Create(ctx, CreateOptions{Name: "rel", Kind: Stored, Size: 4 * mib, Disk: "user.img"}); err == nil {
		t.Fatal("relative disk path accepted")
	}
}

// A disk file given by the user is never extended by grow; one the
// gateway created is.
func TestGrowStoredImageFile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 16*mib, 16*mib)
	e.start()
	img := filepath.Join(t.TempDir(), "user.img")
	testdisk.Sparse(t, img, 4*mib)
	if _, err := e.m.Create(ctx, CreateOptions{Name: "u", Kind: Stored, Size: 2 * mib, Disk: img}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Grow(ctx, "u", 4*mib); err != nil {
		t.Fatalf("grow within the file: %v", err)
	}
	err := e.m.Grow(ctx, "u", 8*mib)
	if err == nil || !strings.Contains(err.Error(), "extends only the files it created") {
		t.Fatalf("grow past a user's file: %v", err)
	}
	if fi, _ := os.Stat(img); fi.Size() != 4*mib {
		t.Fatalf("user's file is %d bytes after a refused grow, want %d", fi.Size(), 4*mib)
	}
	if got := e.vol("u").Size(); got != 4*mib {
		t.Fatalf("volume size %d after a refused grow", got)
	}
	// Extended by its owner, it can be used.
	if err := os.Truncate(img, 8*mib); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Grow(ctx, "u", 8*mib); err != nil {
		t.Fatalf("grow after the file was extended: %v", err)
	}

	g := e.create("g", Stored, 4*mib, 64*kib)
	if err := e.m.Grow(ctx, "g", 8*mib); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(g.Info().Disk); err != nil || fi.Size() != 8*mib {
		t.Fatalf("gateway's own disk file after grow: %v, %v", fi, err)
	}
}

// A stored volume on a block device: claimed by major:minor (through a
// symlink too) and O_EXCL, and never grown past the device.
func TestStoredVolumeOnBlockDevice(t *testing.T) {
	ctx := context.Background()
	dev := testdisk.Loop(t, 64*mib)
	e := newEnv(t, 16*mib, 16*mib)
	e.start()
	if _, err := e.m.Create(ctx, CreateOptions{Name: "big", Kind: Stored, Size: 128 * mib, Disk: dev}); err == nil {
		t.Fatal("a 128MiB volume on a 64MiB device accepted")
	}
	if _, err := e.m.Create(ctx, CreateOptions{Name: "b", Kind: Stored, Size: 32 * mib, Disk: dev}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "disk-by-id")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Create(ctx, CreateOptions{Name: "b2", Kind: Stored, Size: 32 * mib, Disk: link})
	mustRefuse(t, "second volume on the device through a symlink", err, "b")
	if d, err := diskclaim.Open(link); !errors.Is(err, diskclaim.ErrBusy) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("exclusive open of a served device: %v; want ErrBusy", err)
	}

	if err := e.m.Grow(ctx, "b", 64*mib); err != nil {
		t.Fatalf("grow to the device's size: %v", err)
	}
	err = e.m.Grow(ctx, "b", 128*mib)
	if err == nil || !strings.Contains(err.Error(), "block device") || !strings.Contains(err.Error(), "64MiB") {
		t.Fatalf("grow past the device: %v", err)
	}
	if got := e.vol("b").Size(); got != 64*mib {
		t.Fatalf("volume size %d after a refused grow", got)
	}
	d, err := diskclaim.Open(filepath.Join(t.TempDir(), "..", filepath.Base(t.TempDir())))
	if err == nil {
		d.Close()
		t.Fatal("a directory opened as a disk")
	}

	if err := e.m.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	d, err = diskclaim.Open(link)
	if err != nil {
		t.Fatalf("device after its volume was deleted: %v", err)
	}
	if size, err := d.Size(); err != nil || size != 64*mib {
		t.Fatalf("BLKGETSIZE64: %d, %v", size, err)
	}
	d.Close()
}

// A failed write to local disk is logged, fails the write and turns the
// volumes' health degraded, and an upload round that succeeds afterwards
// does not hide it. A cached volume's write goes to the upload buffer
// only: the cache writes its chunk file after the upload, and a failure
// then degrades health all the same (the chunk is in the store).
func TestLocalWriteFailureDegradesHealth(t *testing.T) {
	for _, kind := range []Kind{Stored, Cached} {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			var failing atomic.Bool
			e := newEnv(t, 16*mib, 16*mib)
			target := filepath.Join(e.dir, "disks")
			if kind == Cached {
				target = filepath.Join(e.dir, "cache")
			}
			e.fs = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) error {
				if failing.Load() && op == vfs.OpWrite && strings.HasPrefix(path, target) {
					return errors.New("injected I/O error")
				}
				return nil
			})
			reg := health.New(nil)
			e.opts = func(o *Options) { o.Health = reg.Register("volumes") }
			e.start()
			v := e.create("v", kind, 4*mib, 64*kib)
			if err := v.WriteAt(ctx, pattern(1, 4096), 0); err != nil {
				t.Fatal(err)
			}
			if err := e.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if _, lvl := reg.Snapshot(); lvl != health.OK {
				t.Fatalf("health %v before any failure", lvl)
			}
			failing.Store(true)
			if err := v.WriteAt(ctx, pattern(2, 4096), 1*mib); kind == Stored && err == nil {
				t.Fatal("write acknowledged though the local disk failed it")
			} else if kind == Cached {
				if err != nil {
					t.Fatalf("write to a cached volume, which the cache's disk does not hold: %v", err)
				}
				if err := e.m.Drain(ctx); err != nil {
					t.Fatalf("upload with the cache's disk failing: %v", err)
				}
			}
			failing.Store(false)
			states, lvl := reg.Snapshot()
			if lvl != health.Warning || !strings.Contains(states[0].Message, "local disk write failed") {
				t.Fatalf("health after a failed local write: %v %+v", lvl, states)
			}
			if n := v.Stats(ctx).LocalWriteErrors; n != 1 {
				t.Fatalf("local write errors %d, want 1", n)
			}
			got := make([]byte, 4096)
			if err := v.ReadAt(ctx, got, 1*mib); kind == Cached && (err != nil || !bytes.Equal(got, pattern(2, 4096))) {
				t.Fatalf("read of the write whose chunk the cache failed to keep: %v", err)
			}
			if err := e.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if states, lvl := reg.Snapshot(); lvl != health.Warning || !strings.Contains(states[0].Message, "local disk write failed") {
				t.Fatalf("health after a good upload round: %v %+v", lvl, states)
			}
		})
	}
}

// A restore never writes a disk a volume holds, even with Force, and
// writes over data only with Force.
func TestRestoreRefusesHeldOrUsedTarget(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 16*mib, 16*mib)
	e.start()
	src := e.create("src", Cached, 1*mib, 64*kib)
	writeAll(t, src, pattern(3, 1*mib), 64*kib)
	si, err := e.m.CreateSnapshot(ctx, "src", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "served.img")
	testdisk.Sparse(t, img, 1*mib)
	if _, err := e.m.Create(ctx, CreateOptions{Name: "served", Kind: Stored, Size: 1 * mib, Disk: img}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	own := e.create("own", Stored, 1*mib, 64*kib).Info().Disk
	for _, p := range []string{img, link, own} {
		_, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, p, snapshots.RestoreOptions{Force: true})
		if !errors.Is(err, diskclaim.ErrBusy) || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("restore onto %s while a volume holds it: %v", p, err)
		}
	}
	if _, err := os.Stat(img + snapshots.RestoreStateSuffix); err == nil {
		t.Fatal("a refused restore left a state file")
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got, make([]byte, 1*mib)) {
		t.Fatal("a refused restore wrote the volume's disk")
	}

	// A pre-sized, all-zero file is empty; a file with data at its end is not.
	sized := filepath.Join(dir, "sized.img")
	testdisk.Sparse(t, sized, 4*mib)
	if _, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, sized, snapshots.RestoreOptions{}); err != nil {
		t.Fatalf("restore onto an all-zero file: %v", err)
	}
	tail := filepath.Join(dir, "tail.img")
	testdisk.Sparse(t, tail, 4*mib)
	f, err := os.OpenFile(tail, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("GPT backup header"), 4*mib-512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, tail, snapshots.RestoreOptions{}); !errors.Is(err, snapshots.ErrTargetNotEmpty) {
		t.Fatalf("restore onto a file with data at its end: %v", err)
	}
}

// The same rules on a block device: O_EXCL keeps a restore off a served
// device; an unused one is written, and then holds data.
func TestRestoreToBlockDevice(t *testing.T) {
	ctx := context.Background()
	dev := testdisk.Loop(t, 64*mib)
	e := newEnv(t, 16*mib, 16*mib)
	e.start()
	src := e.create("src", Cached, 1*mib, 64*kib)
	want := pattern(4, 1*mib)
	writeAll(t, src, want, 64*kib)
	si, err := e.m.CreateSnapshot(ctx, "src", SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(ctx, CreateOptions{Name: "b", Kind: Stored, Size: 64 * mib, Disk: dev}); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, dev, snapshots.RestoreOptions{Force: true}); !errors.Is(err, diskclaim.ErrBusy) {
		t.Fatalf("restore onto a served device: %v", err)
	}
	if err := e.m.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	// The state file goes beside the target; keep it out of /dev.
	link := filepath.Join(t.TempDir(), "dev")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, link, snapshots.RestoreOptions{}); err != nil {
		t.Fatalf("restore onto an unused, zeroed device: %v", err)
	}
	got := make([]byte, len(want))
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "restored device", got, want)
	if _, err := snapshots.RestoreToFile(ctx, e.store, e.codec, si.ID, link, snapshots.RestoreOptions{}); !errors.Is(err, snapshots.ErrTargetNotEmpty) {
		t.Fatalf("second restore onto the device without Force: %v", err)
	}
}

// A chunk fetched for a read that the cache fails to keep is served all
// the same, and the failing cache disk shows in health.
func TestFailedCacheFillDegradesHealth(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	e := newEnv(t, 16*mib, 16*mib)
	cacheDir := filepath.Join(e.dir, "cache")
	e.fs = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) error {
		if failing.Load() && (op == vfs.OpWrite || op == vfs.OpCreate) && strings.HasPrefix(path, cacheDir) {
			return errors.New("injected I/O error")
		}
		return nil
	})
	reg := health.New(nil)
	e.opts = func(o *Options) { o.Health = reg.Register("volumes") }
	e.start()
	v := e.create("v", Cached, 1*mib, 64*kib)
	want := pattern(5, 64*kib)
	if err := v.WriteAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Drop(cache.Key{Volume: v.Info().ID, Index: 0}); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	got := make([]byte, 64*kib)
	if err := v.ReadAt(ctx, got, 0); err != nil {
		t.Fatalf("read with a failing cache disk: %v", err)
	}
	mustEqual(t, "read through a failing cache", got, want)
	if states, lvl := reg.Snapshot(); lvl != health.Warning || !strings.Contains(states[0].Message, "local disk write failed") {
		t.Fatalf("health after a failed cache fill: %v %+v", lvl, states)
	}
}
