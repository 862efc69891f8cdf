package nfs

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testrand"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

type fixture struct {
	t      testing.TB
	store  objstore.Store
	shares *fileshare.Manager
	addr   string
	port   int
	calls  *calls
	srv    *Server
	log    *uploadbuffer.Log
}

func start(t testing.TB, configs ...fileshare.Config) *fixture {
	t.Helper()
	return startOn(t, vfs.Default, filepath.Join(t.TempDir(), "log"), configs...)
}

// startOn is start with the share's upload buffer in logDir on logFS.
func startOn(t testing.TB, logFS vfs.FS, logDir string, configs ...fileshare.Config) *fixture {
	t.Helper()
	return startStore(t, mem.New("nfs"), logFS, logDir, configs...)
}

// startStore is startOn with the shares' object store.
func startStore(t testing.TB, store objstore.Store, logFS vfs.FS, logDir string, configs ...fileshare.Config) *fixture {
	t.Helper()
	return startServer(t, store, logFS, logDir, nil, configs...)
}

// startServer is startStore with setup called on the server before it
// serves.
func startServer(t testing.TB, store objstore.Store, logFS vfs.FS, logDir string, setup func(*Server), configs ...fileshare.Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	log, err := uploadbuffer.Open(logFS, logDir, uploadbuffer.Options{Capacity: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(vfs.Default, filepath.Join(dir, "cache"), cache.Options{Capacity: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	m, err := fileshare.New(context.Background(), fileshare.Options{Meta: metamem.New(), Store: store, Cache: c, Log: log,
		SettleTime: 50 * time.Millisecond, UploadInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range configs {
		if _, err := m.Create(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(m, nil)
	calls := &calls{n: map[string]int{}}
	srv.Latency = calls.observe
	if setup != nil {
		setup(srv)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		m.Close()
		c.Close()
		log.Close()
	})
	return &fixture{t: t, store: store, shares: m, addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port, calls: calls, srv: srv, log: log}
}

// url is the libnfs URL of a path in a share (go-nfs has no portmapper).
func (f *fixture) url(share, p string) string {
	return fmt.Sprintf("nfs://127.0.0.1/%s/%s?nfsport=%d&mountport=%d&auto-traverse-mounts=0", share, p, f.port, f.port)
}

func libnfs(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install Debian's libnfs-utils (.ci/run does)", tool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func (f *fixture) mount(share string) (*nfsc.Target, func()) {
	f.t.Helper()
	return nfstest.MustMount(f.t, f.addr, share)
}

// The libnfs tools copy files in and out (a 64 MiB one: 1 MiB WRITEs and
// READs, the sizes FSINFO offers), list them, and the files are objects in
// the store with the same bytes.
func TestLibnfsTools(t *testing.T) {
	f := start(t, fileshare.Config{Name: "docs"})
	local := filepath.Join(t.TempDir(), "in.bin")
	want := testrand.Bytes(1, 64<<20+777)
	if err := os.WriteFile(local, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := libnfs(t, "nfs-cp", local, f.url("docs", "in.bin")); err != nil {
		t.Fatalf("nfs-cp in: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "out.bin")
	if out, err := libnfs(t, "nfs-cp", f.url("docs", "in.bin"), back); err != nil {
		t.Fatalf("nfs-cp out: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, want) {
		t.Fatal("file copied out differs")
	}
	out, err := libnfs(t, "nfs-ls", f.url("docs", ""))
	if err != nil || !strings.Contains(out, "in.bin") {
		t.Fatalf("nfs-ls: %v\n%s", err, out)
	}
	if err := f.shares.Flush(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	obj, err := objstore.GetAll(context.Background(), f.store, "docs/in.bin")
	if err != nil || !bytes.Equal(obj, want) {
		t.Fatalf("object docs/in.bin: %d bytes, %v", len(obj), err)
	}
	small := filepath.Join(t.TempDir(), "note.txt")
	os.WriteFile(small, []byte("hello from nfs\n"), 0o644)
	if out, err := libnfs(t, "nfs-cp", small, f.url("docs", "note.txt")); err != nil {
		t.Fatalf("nfs-cp: %v\n%s", err, out)
	}
	if out, err := libnfs(t, "nfs-cat", f.url("docs", "note.txt")); err != nil || out != "hello from nfs\n" {
		t.Fatalf("nfs-cat: %q %v", out, err)
	}
	// An unknown export is refused.
	if out, err := libnfs(t, "nfs-ls", f.url("nope", "")); err == nil {
		t.Fatalf("nfs-ls of an unknown share succeeded:\n%s", out)
	}
}

// The Go client drives every namespace operation; handles survive renames.
func TestOperations(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	v, done := f.mount("s")
	defer done()
	nfstest.Operations(t, v)
}

// Export options: a read-only share refuses writes; a share open only to
// another address refuses this client's mount.
func TestExportOptions(t *testing.T) {
	f := start(t, fileshare.Config{Name: "ro", ReadOnly: true}, fileshare.Config{Name: "other", Clients: []string{"127.0.0.2/32"}})
	v, done := f.mount("ro")
	defer done()
	if _, err := v.Create("x", 0o644); err == nil {
		t.Fatal("create on a read-only share succeeded")
	}
	if _, _, err := nfstest.Mount(t, f.addr, "other", rpc.AuthNull); err == nil || !strings.Contains(err.Error(), "ACCES") {
		t.Fatalf("mount from a client not allowed: %v", err)
	}
}
