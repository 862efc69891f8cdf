package nfs

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/frontends/nfs/procs"
	"github.com/gatewayd/gatewayd/internal/nfstest"
)

// calls counts the calls the server timed, by procedure.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) observe(proc string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.n[proc]++
	}
}

func (c *calls) count(proc string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[proc]
}

// Every call of a client's session is timed under its procedure's name,
// large WRITEs and READs (records longer than a socket read) included.
// Only the last call's count could lag its reply; it is a LOOKUP.
func TestLatencyByProcedure(t *testing.T) {
	f := start(t, fileshare.Config{Name: "docs"})
	v, unmount := f.mount("docs")
	defer unmount()
	nfstest.Operations(t, v)
	for _, proc := range []string{"MNT", "MKDIR", "LOOKUP", "WRITE", "READ", "RENAME", "GETATTR", "SETATTR",
		"READDIRPLUS", "REMOVE", "RMDIR"} {
		if f.calls.count(proc) == 0 {
			t.Errorf("no %s call timed", proc)
		}
	}
	if n := f.calls.count("other"); n != 0 {
		t.Errorf("%d calls timed as other", n)
	}
}

// A call at or over slowCall is logged with its procedure; the records
// are scanned however the stream is cut into reads and writes, the
// fragment headers included.
func TestSlowCallLogged(t *testing.T) {
	var log bytes.Buffer
	var observed []string
	l := timedListener{observe: func(proc string, _ time.Duration) { observed = append(observed, proc) },
		log: slog.New(slog.NewTextHandler(&log, nil)), slow: 0} // every call is slow
	client, server := net.Pipe()
	defer client.Close()
	c := l.wrap(server)
	// A WRITE call (NFS program, version 3, procedure 7) of 40 bytes in
	// two fragments, and its reply in one.
	body := binary.BigEndian.AppendUint32(nil, 0x1234) // xid
	for _, v := range []uint32{0, 2, procs.NFS, 3, 7} {
		body = binary.BigEndian.AppendUint32(body, v)
	}
	body = append(body, make([]byte, 16)...)
	call := binary.BigEndian.AppendUint32(nil, 10)
	call = append(call, body[:10]...)
	call = binary.BigEndian.AppendUint32(call, 1<<31|uint32(len(body)-10))
	call = append(call, body[10:]...)
	go func() {
		for _, b := range call { // a byte at a time
			client.Write([]byte{b})
		}
	}()
	buf := make([]byte, 3)
	for got := 0; got < len(call); {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	reply := binary.BigEndian.AppendUint32(nil, 1<<31|8)
	reply = binary.BigEndian.AppendUint32(reply, 0x1234)
	reply = binary.BigEndian.AppendUint32(reply, 1)
	go io.Copy(io.Discard, client)
	for i := range reply { // a byte at a time
		if _, err := c.Write(reply[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if len(observed) != 1 || observed[0] != "WRITE" {
		t.Fatalf("calls timed: %q, want one WRITE", observed)
	}
	if !strings.Contains(log.String(), "nfs: slow call") || !strings.Contains(log.String(), "proc=WRITE") {
		t.Fatalf("log: %q", log.String())
	}
}
