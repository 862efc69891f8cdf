package nfs

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/stacks"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// WRITE answers with how durable the data is and the server's verifier;
// COMMIT with the same verifier; the data reads back whatever the
// stable_how. Another server (the daemon restarted) has another verifier.
func TestWriteStableHow(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	v, fh := f.newFile("s", "f.bin")
	verf := f.srv.Verifier()
	if verf == ([8]byte{}) {
		t.Fatal("write verifier is all zeroes")
	}
	var want []byte
	for i, c := range []struct {
		how, committed nfstest.Stable
		size           int
	}{
		{nfstest.Unstable, nfstest.Unstable, 100000},
		{nfstest.DataSync, nfstest.FileSync, 100001},
		{nfstest.FileSync, nfstest.FileSync, 100002},
		{nfstest.Unstable, nfstest.Unstable, maxTransfer}, // the most a WRITE carries (FSINFO's wtmax)
		{nfstest.Unstable, nfstest.Unstable, 100004},
	} {
		data := testrand.Bytes(uint64(i), c.size)
		r, err := nfstest.WriteStable(v, fh, uint64(len(want)), data, c.how)
		if err != nil {
			t.Fatal(err)
		}
		if r.Count != uint32(len(data)) || r.Committed != c.committed || r.Verifier != verf {
			t.Fatalf("WRITE %s: count %d committed %s verifier %x; want %d, %s, %x", c.how, r.Count, r.Committed, r.Verifier, len(data), c.committed, verf)
		}
		want = append(want, data...)
	}
	got, err := nfstest.Commit(v, fh)
	if err != nil || got != verf {
		t.Fatalf("COMMIT: verifier %x, %v; want %x", got, err, verf)
	}
	r, err := v.Open("f.bin")
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(back, want) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(back), err, len(want))
	}
	if again := New(f.shares, nil).Verifier(); again == verf {
		t.Fatalf("a second server has the same write verifier %x", verf)
	}
}

// Bad WRITE and COMMIT calls get an NFS error, not a crash: a stale
// handle, a directory, a read-only share, an offset past the largest file.
func TestWriteErrors(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"}, fileshare.Config{Name: "ro", ReadOnly: true})
	v, done := f.mount("s")
	defer done()
	dir, err := v.Mkdir("d", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := v.Create("f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	stale := append([]byte(nil), fh...)
	stale[len(stale)-1] ^= 0xff
	for _, c := range []struct {
		name string
		fh   []byte
		off  uint64
		want string
	}{
		{"stale handle", stale, 0, "STALE"},
		{"directory", dir, 0, "ISDIR"},
		{"past the largest file", fh, fileshare.MaxFileSize, "FBIG"},
		{"short handle", []byte{1, 2, 3}, 0, "STALE"},
	} {
		if _, err := nfstest.WriteStable(v, c.fh, c.off, []byte("x"), nfstest.Unstable); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WRITE to a %s: %v, want %s", c.name, err, c.want)
		}
	}
	if _, err := nfstest.Commit(v, stale); err == nil || !strings.Contains(err.Error(), "STALE") {
		t.Errorf("COMMIT of a stale handle: %v", err)
	}
	ro, rodone := f.mount("ro")
	defer rodone()
	_, rootFH, err := ro.Lookup(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nfstest.WriteStable(ro, rootFH, 0, []byte("x"), nfstest.FileSync); err == nil || !strings.Contains(err.Error(), "ROFS") {
		t.Errorf("WRITE on a read-only share: %v", err)
	}
	// The connection still serves.
	if _, err := nfstest.WriteStable(v, fh, 0, []byte("ok"), nfstest.FileSync); err != nil {
		t.Fatal(err)
	}
}

// newFile mounts share (until the test's end) and creates a file in it.
func (f *fixture) newFile(share, name string) (*nfsc.Target, []byte) {
	f.t.Helper()
	v, done := f.mount(share)
	f.t.Cleanup(done)
	fh, err := v.Create(name, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	return v, fh
}

// syncGate holds every sync of the upload buffer's files (every op, when
// set) while it is shut.
type syncGate struct {
	mu   sync.Mutex
	shut bool
	open chan struct{}
	op   vfs.Op
}

func (g *syncGate) inject(op vfs.Op, path string) error {
	if op != vfs.OpSync && (g.op == "" || op != g.op) {
		return nil
	}
	g.mu.Lock()
	shut, open := g.shut, g.open
	g.mu.Unlock()
	if shut {
		<-open
	}
	return nil
}

func (g *syncGate) close() {
	g.mu.Lock()
	g.shut, g.open = true, make(chan struct{})
	g.mu.Unlock()
}

func (g *syncGate) release() {
	g.mu.Lock()
	if g.shut {
		g.shut = false
		close(g.open)
	}
	g.mu.Unlock()
}

func (g *syncGate) isShut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shut
}

// durable returns the records of the upload buffer in logDir that survive
// a power loss now.
func durable(t *testing.T, mem *vfs.MemFS, logDir string) [][]byte {
	t.Helper()
	l, err := uploadbuffer.Open(mem.Crash(), logDir, uploadbuffer.Options{Capacity: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recs [][]byte
	if err := l.Replay(func(_ uploadbuffer.LSN, rec []byte) error {
		recs = append(recs, append([]byte(nil), rec...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// holding counts which of data the records hold.
func holding(recs [][]byte, data [][]byte) int {
	n := 0
	for _, d := range data {
		for _, r := range recs {
			if bytes.Contains(r, d) {
				n++
				break
			}
		}
	}
	return n
}

// waitsForSync says whether a goroutine serving a call in fn (of
// rpcConn: "commit", "write") waits in the upload buffer's Sync.
func waitsForSync(fn string) bool {
	return stacks.Has("(*rpcConn)."+fn+"(", "uploadbuffer.(*Log).Sync")
}

// UNSTABLE writes are answered while no sync of the upload buffer can
// complete (none waits for one), and are not durable then; COMMIT is not
// answered until they are: a power loss after its answer keeps them all.
// FILE_SYNC writes are durable when answered.
func TestCommitMakesUnstableWritesDurable(t *testing.T) {
	mem := vfs.NewMem()
	gate := &syncGate{}
	const logDir = "/buffer"
	f := startOn(t, vfs.NewErrorFS(mem, gate.inject), logDir, fileshare.Config{Name: "s"})
	defer gate.release() // the fixture's cleanup closes the log
	v, fh := f.newFile("s", "f.bin")
	verf := f.srv.Verifier()

	gate.close()
	const n, size = 8, 64 << 10
	data := writeUnstable(t, v, fh, verf, 100, n, size)
	if k := holding(durable(t, mem, logDir), data); k != 0 {
		t.Fatalf("%d of %d UNSTABLE writes durable while every sync was held", k, n)
	}

	type answer struct {
		verf [8]byte
		err  error
	}
	commit := make(chan answer, 1)
	go func() {
		verf, err := nfstest.Commit(v, fh)
		commit <- answer{verf, err}
	}()
	// Release the syncs once the COMMIT waits for one; a COMMIT answered
	// before, while they are held, did not wait for the writes.
	deadline := time.Now().Add(5 * time.Minute)
	var a answer
wait:
	for {
		select {
		case a = <-commit:
			break wait
		case <-time.After(10 * time.Millisecond):
		}
		if gate.isShut() && waitsForSync("commit") {
			gate.release()
		}
		if time.Now().After(deadline) {
			t.Fatal("COMMIT neither answered nor waiting for a sync")
		}
	}
	if gate.isShut() {
		t.Fatal("COMMIT answered while every sync of the upload buffer was held: its writes were not durable")
	}
	if a.err != nil || a.verf != verf {
		t.Fatalf("COMMIT: verifier %x, %v; want %x", a.verf, a.err, verf)
	}
	if k := holding(durable(t, mem, logDir), data); k != n {
		t.Fatalf("after COMMIT, %d of %d UNSTABLE writes survive a power loss", k, n)
	}

	// FILE_SYNC: durable when answered, no COMMIT.
	d := testrand.Bytes(200, size)
	r, err := nfstest.WriteStable(v, fh, uint64(n*size), d, nfstest.FileSync)
	if err != nil || r.Committed != nfstest.FileSync || r.Verifier != verf {
		t.Fatalf("FILE_SYNC WRITE: %+v %v", r, err)
	}
	if k := holding(durable(t, mem, logDir), [][]byte{d}); k != 1 {
		t.Fatal("a FILE_SYNC write answered is not durable")
	}
}

// UNSTABLE writes pile up unwritten only up to maxUnsynced: the WRITE past
// it waits until the log has written its record (the records stay in
// memory until then), and is answered, UNSTABLE, once it is written; it
// never waits for a sync, which stays held throughout.
func TestUnstableBytesBounded(t *testing.T) {
	defer maxUnsynced.Store(maxUnsynced.Load())
	maxUnsynced.Store(8 << 20)
	bound := maxUnsynced.Load()
	// The disk stalls (writes and syncs held): the log cannot write the
	// records, so the calls' buffers pile up until the bound makes a
	// WRITE wait. Holding syncs alone would not: a group of UNSTABLE
	// records is written without a sync of its own. The writes are let
	// go first, the syncs only at the end.
	writes, syncs := &syncGate{op: vfs.OpWrite}, &syncGate{}
	f := startOn(t, vfs.NewErrorFS(vfs.NewErrorFS(vfs.NewMem(), syncs.inject), writes.inject), "/buffer", fileshare.Config{Name: "s"})
	defer syncs.release()
	defer writes.release()
	v, fh := f.newFile("s", "f.bin")
	writes.close()
	syncs.close()
	const size = 1 << 20
	answered := make(chan error, 1)
	var n int
	go func() {
		for n = 0; ; n++ {
			r, err := nfstest.WriteStable(v, fh, uint64(n*size), testrand.Bytes(uint64(n), size), nfstest.Unstable)
			if err == nil && r.Committed != nfstest.Unstable {
				err = fmt.Errorf("answered %s", r.Committed)
			}
			if err != nil || !writes.isShut() {
				answered <- err
				return
			}
		}
	}()
	waitsForLog := func() bool { return stacks.Has("(*rpcConn).write(", "nfs.awaitLogged(") }
	deadline := time.Now().Add(5 * time.Minute)
	for !waitsForLog() {
		if waitsForSync("write") {
			t.Fatal("an UNSTABLE WRITE waits for the upload buffer's sync")
		}
		select {
		case err := <-answered:
			t.Fatalf("writes answered while every write of the log was held ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no WRITE waits for the log")
		}
	}
	writes.release()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("the writes were not answered once the log's writes were let go, its syncs still held (a WRITE waits for a sync: %v)", waitsForSync("write"))
	}
	if mib := int64(n + 1); mib*size <= bound || mib*size > bound+maxServed*size {
		t.Fatalf("the WRITE that waited for the log was number %d of 1 MiB; the bound is %d MiB", mib, bound>>20)
	}
}
