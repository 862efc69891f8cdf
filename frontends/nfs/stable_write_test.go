package nfs

import (
	"bytes"
	"io"
	"testing"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/vfs"
)

// A WRITE's data goes to the upload buffer's log from the call's own
// buffer, so an UNSTABLE WRITE's buffer is not read into again until the
// log has written its record, though the WRITE is answered before: with
// the log's writes held, every UNSTABLE WRITE is answered, then each
// record the log writes holds its own WRITE's data, and the file reads
// back as written, also after the calls' buffers are reused.
func TestUnstableWriteKeepsItsBufferUntilLogged(t *testing.T) {
	mem := vfs.NewMem()
	gate := &syncGate{op: vfs.OpWrite}
	const logDir = "/buffer"
	f := startOn(t, vfs.NewErrorFS(mem, gate.inject), logDir, fileshare.Config{Name: "s"})
	defer gate.release() // the fixture's cleanup closes the log
	v, fh := f.newFile("s", "f.bin")

	gate.close()
	const n, size = 24, 256 << 10
	var data [][]byte
	var want []byte
	for i := range n {
		d := testrand.Bytes(uint64(300+i), size)
		r, err := nfstest.WriteStable(v, fh, uint64(i*size), d, nfstest.Unstable)
		if err != nil {
			t.Fatal(err)
		}
		if r.Committed != nfstest.Unstable || r.Count != size {
			t.Fatalf("UNSTABLE WRITE %d answered %s, count %d", i, r.Committed, r.Count)
		}
		data, want = append(data, d), append(want, d...)
	}
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
