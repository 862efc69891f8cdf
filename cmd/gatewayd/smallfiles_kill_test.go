package main

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testrand"
)

// TestShareKillDuringSmallFiles: kill -9 while a client creates small
// files one after the other (create, write, close with its COMMIT); every
// file whose close returned is there after the restart, whole, under the
// same file handle, and then in S3.
func TestShareKillDuringSmallFiles(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv, dir, d := shareOnMinIO(t, "smallcrash", "s")
	v, done := nfsMount(t, nfsAddr(t, dir), "s")
	if _, err := v.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 4 << 10
	type file struct {
		i  int
		fh []byte
	}
	acked := make(chan file, 1<<16) // files closed, in order
	go func() {
		defer close(acked)
		for i := 0; ; i++ {
			name := fmt.Sprintf("d/small.%d", i)
			f, err := v.OpenFile(name, 0o644)
			if err != nil {
				return
			}
			if _, err := f.Write(testrand.Bytes(uint64(i), size)); err != nil {
				return
			}
			if err := f.Close(); err != nil {
				return
			}
			_, fh, err := v.Lookup(name)
			if err != nil {
				return
			}
			acked <- file{i, fh}
		}
	}()
	// Enough files for the kill to land among creates, uploads and the
	// inode table's saves; the deadline bounds a wedged daemon, it is not
	// a speed check (a loaded machine closes a file in seconds).
	const before = 40
	var files []file
	timeout := time.After(20 * time.Minute)
	for len(files) < before {
		select {
		case f, ok := <-acked:
			if !ok {
				t.Fatal("creates failed before the kill")
			}
			files = append(files, f)
		case <-timeout:
			t.Fatalf("%d files closed in 20 minutes, want %d before the kill", len(files), before)
		}
	}
	d.kill(t)
	done() // the writer's next call fails at once
	for ended := false; !ended; {
		select {
		case f, ok := <-acked:
			if ok {
				files = append(files, f)
			}
			ended = !ok
		case <-time.After(5 * time.Minute):
			t.Fatal("the writer did not stop 5 minutes after its server was killed")
		}
	}
	serve(t, dir)
	v, done = nfsMount(t, nfsAddr(t, dir), "s")
	defer done()
	for _, f := range files {
		name := fmt.Sprintf("d/small.%d", f.i)
		if got := readNFS(t, v, name); !bytes.Equal(got, testrand.Bytes(uint64(f.i), size)) {
			t.Fatalf("after kill -9: %s holds %d bytes, not the %d written", name, len(got), size)
		}
		if _, fh, err := v.Lookup(name); err != nil || !bytes.Equal(fh, f.fh) {
			t.Fatalf("after kill -9: %s has handle %x (%v), had %x", name, fh, err, f.fh)
		}
	}
	t.Logf("%d files closed before kill -9, all present after restart with their handles", len(files))
	last := files[len(files)-1].i
	waitObject(t, srv, "smallcrash", fmt.Sprintf("gw/s/d/small.%d", last), testrand.Bytes(uint64(last), size))
}
