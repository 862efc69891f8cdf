package main

import (
	"bytes"
	"testing"

	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// TestNFSStableHowKill: on the real daemon, UNSTABLE writes followed by
// an answered COMMIT, and FILE_SYNC writes without one, survive kill -9;
// the write verifier is the same for every WRITE and COMMIT of the
// daemon's life and another after the restart, so a client would send
// uncommitted data again.
func TestNFSStableHowKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv, dir, d := shareOnMinIO(t, "stable", "w")
	v, done := nfsMount(t, nfsAddr(t, dir), "w")
	fh, err := v.Create("f.bin", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	const unstable, fileSync, size = 64, 16, 256 << 10
	var want []byte
	var verf [8]byte
	write := func(i int, how nfstest.Stable) {
		t.Helper()
		data := testrand.Bytes(uint64(i), size)
		r, err := nfstest.WriteStable(v, fh, uint64(len(want)), data, how)
		if err != nil {
			t.Fatal(err)
		}
		committed := nfstest.FileSync
		if how == nfstest.Unstable {
			committed = nfstest.Unstable
		}
		if i == 0 {
			verf = r.Verifier
		}
		if r.Count != size || r.Committed != committed || r.Verifier != verf {
			t.Fatalf("WRITE %d (%s): count %d, committed %s, verifier %x (first %x)", i, how, r.Count, r.Committed, r.Verifier, verf)
		}
		want = append(want, data...)
	}
	for i := range unstable {
		write(i, nfstest.Unstable)
	}
	if got, err := nfstest.Commit(v, fh); err != nil || got != verf {
		t.Fatalf("COMMIT: verifier %x, %v; the writes' %x", got, err, verf)
	}
	for i := range fileSync {
		write(unstable+i, nfstest.FileSync)
	}
	done()
	d.kill(t)

	serve(t, dir)
	v, done = nfsMount(t, nfsAddr(t, dir), "w")
	defer done()
	after, err := nfstest.Commit(v, fh) // the handle from before the kill
	if err != nil {
		t.Fatal(err)
	}
	if after == verf {
		t.Fatalf("write verifier %x unchanged after a restart: a client would not send uncommitted data again", verf)
	}
	got := readNFS(t, v, "f.bin")
	if len(got) != len(want) {
		t.Fatalf("after kill -9: %d bytes, want the %d committed or written FILE_SYNC", len(got), len(want))
	}
	for i := range unstable + fileSync {
		if !bytes.Equal(got[i*size:(i+1)*size], want[i*size:(i+1)*size]) {
			t.Fatalf("write %d differs after kill -9", i)
		}
	}
	waitObject(t, srv, "stable", "gw/w/f.bin", want)
}
