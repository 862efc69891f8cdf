package nfs

import (
	"bytes"
	"io"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/vfs"
)

// writeUnstable writes n blocks of size bytes (random, from seed on) one
// after the other from offset 0, UNSTABLE, checks each answer (UNSTABLE,
// the whole count, verf), and returns the blocks.
func writeUnstable(t *testing.T, v *nfsc.Target, fh []byte, verf [8]byte, seed uint64, n, size int) [][]byte {
	t.Helper()
	var data [][]byte
	for i := range n {
		d := testrand.Bytes(seed+uint64(i), size)
		r, err := nfstest.WriteStable(v, fh, uint64(i*size), d, nfstest.Unstable)
		if err != nil {
			t.Fatal(err)
		}
		if r.Committed != nfstest.Unstable || r.Count != uint32(size) || r.Verifier != verf {
			t.Fatalf("UNSTABLE WRITE %d answered %s, count %d, verifier %x (server's %x)", i, r.Committed, r.Count, r.Verifier, verf)
		}
		data = append(data, d)
	}
	return data
}

// A WRITE's data goes to the upload buffer's log from the call's own
// buffer, so an UNSTABLE WRITE's buffer is not read into again until the
// log has written its record, though the WRITE is answered before: with
// the log's writes held, every UNSTABLE WRITE is answered, then each
// record the log writes holds its own WRITE's data, and the file reads
// back as written, also after the calls' buffers are reused; the UNSTABLE
// bytes counted against maxUnsynced go back to none once all are written.
func TestUnstableWriteKeepsItsBufferUntilLogged(t *testing.T) {
	mem := vfs.NewMem()
	gate := &syncGate{op: vfs.OpWrite}
	const logDir = "/buffer"
	f := startOn(t, vfs.NewErrorFS(mem, gate.inject), logDir, fileshare.Config{Name: "s"})
	defer gate.release() // the fixture's cleanup closes the log
	v, fh := f.newFile("s", "f.bin")

	gate.close()
	const n, size = 24, 256 << 10
	data := writeUnstable(t, v, fh, f.srv.Verifier(), 300, n, size)
	want := bytes.Join(data, nil)
	gate.release()
	if _, err := nfstest.Commit(v, fh); err != nil {
		t.Fatal(err)
	}
	if k := holding(durable(t, mem, logDir), data); k != n {
		t.Fatalf("after COMMIT, the log holds %d of the %d UNSTABLE writes' data: a call's buffer was read into before its record was written", k, n)
	}
	// More writes, through the buffers handed back, over the first half.
	for i := range n / 2 {
		d := testrand.Bytes(uint64(400+i), size)
		if _, err := nfstest.WriteStable(v, fh, uint64(i*size), d, nfstest.Unstable); err != nil {
			t.Fatal(err)
		}
		copy(want[i*size:], d)
	}
	if _, err := nfstest.Commit(v, fh); err != nil {
		t.Fatal(err)
	}
	// Every buffer is handed back once its record is written: none
	// counts against the bound any more.
	for deadline := time.Now().Add(5 * time.Minute); f.srv.unsynced.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d UNSTABLE bytes still counted as not written after COMMIT", f.srv.unsynced.Load())
		}
	}
	r, err := v.Open("f.bin")
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(back, want) {
		t.Fatalf("read back %d bytes (%v), equal %v; want the %d written", len(back), err, bytes.Equal(back, want), len(want))
	}
}
