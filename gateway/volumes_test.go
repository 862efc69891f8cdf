package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
	"github.com/gatewayd/gatewayd/volume"
)

// Turning a volume's write cache off stores the setting before the flush
// of the writes acknowledged with it on; if that flush fails, the request
// fails, but the setting is stored all the same, so the volume's LU
// must show it (WCE in the Caching mode page, with the unit attention
// MODE PARAMETERS CHANGED that setting it raises).
func TestWriteCacheOffWithFailedFlushStillTellsInitiators(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var failing atomic.Bool
	logDir := filepath.Join(dir, "log")
	fs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) error {
		if failing.Load() && (op == vfs.OpWrite || op == vfs.OpSync) && strings.HasPrefix(path, logDir) {
			return errors.New("injected log I/O error")
		}
		return nil
	})
	lg, err := uploadbuffer.Open(fs, logDir, uploadbuffer.Options{Capacity: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	c, err := cache.Open(fs, filepath.Join(dir, "cache"), cache.Options{Capacity: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var key, id [32]byte
	key[0], id[0] = 1, 2
	codec, err := snapshots.NewCodec(key, id, snapshots.CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	md := metamem.New()
	vm, err := volume.New(ctx, volume.Options{Meta: md, Store: mem.New("mem"), Codec: codec, Log: lg, Cache: c, FS: fs,
		DiskDir: filepath.Join(dir, "disks"), UploadInterval: time.Hour, SettleTime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	info, err := vm.Create(ctx, volume.CreateOptions{Name: "v", Kind: volume.Cached, Size: 4 << 20, ChunkSize: 64 << 10, WriteCache: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Get(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fe := &iscsiFrontend{srv: iscsi.NewServer(iscsi.Config{Logger: log}), vm: vm, md: md, prefix: "iqn.2026-01.test", log: log,
		luns: map[string]*scsi.LU{}, reserved: map[string]bool{}}
	if err := fe.Serve(ctx, v); err != nil {
		t.Fatal(err)
	}
	wce := func() bool { return fe.luns[info.ID].Page(0x08, 0)[2]&0x04 != 0 }
	if !wce() {
		t.Fatal("the LU shows the write cache off on a volume created with it on")
	}

	srv, err := admin.Listen(admin.Options{SocketPath: filepath.Join(dir, "admin.sock")})
	if err != nil {
		t.Fatal(err)
	}
	volumeapi.Register(srv, vm, fe)
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-served:
		case <-time.After(2 * time.Minute):
			t.Error("the admin server did not stop")
		}
	})

	// Acknowledged with the write cache on; the log cannot write it.
	failing.Store(true)
	if err := v.WriteAt(ctx, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	off := false
	err = admin.NewUnixClient(filepath.Join(dir, "admin.sock")).Do(ctx, http.MethodPatch, "/v1/volumes/v", volumeapi.UpdateVolumeRequest{WriteCache: &off}, nil)
	if err == nil {
		t.Fatal("turning the write cache off succeeded though the flush of the writes before could not be written")
	}
	if v.Info().WriteCache {
		t.Fatal("the write cache setting was not stored")
	}
	if wce() {
		t.Fatal("the volume's write cache is off, but its LU still shows it on (initiators were not told)")
	}
}
