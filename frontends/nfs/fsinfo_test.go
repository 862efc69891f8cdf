package nfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gonfs "github.com/willscott/go-nfs"
	"github.com/willscott/go-nfs-client/nfs/xdr"

	"github.com/gatewayd/gatewayd/fileshare"
)

// fsinfoRes is fsinfo3resok after its attributes, as go-nfs encodes it
// (its fsinfores).
type fsinfoRes struct {
	Rtmax       uint32
	Rtpref      uint32
	Rtmult      uint32
	Wtmax       uint32
	Wtpref      uint32
	Wtmult      uint32
	Dtpref      uint32
	Maxfilesize uint64
	TimeDelta   uint64
	Properties  uint32
}

// FSINFO offers the transfer sizes the server keeps (1 MiB), the share's
// largest file, 1 ns times, and symbolic links but not hard links (a
// share refuses them); times can be set on a writable share only. Its
// attributes are GETATTR's. A stale handle is NFS3ERR_STALE, a cut call
// GARBAGE_ARGS.
func TestFSInfo(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"}, fileshare.Config{Name: "ro", ReadOnly: true})
	c := dialRaw(t, f.addr)
	call := c.call
	for i, k := range []struct {
		share string
		props uint32
	}{
		{"s", gonfs.FSInfoPropertySymlink | gonfs.FSInfoPropertyHomogeneous | gonfs.FSInfoPropertyCanSetTime},
		{"ro", gonfs.FSInfoPropertySymlink | gonfs.FSInfoPropertyHomogeneous},
	} {
		v, done := f.mount(k.share)
		_, root, err := v.Lookup(".")
		done()
		if err != nil {
			t.Fatal(err)
		}
		xid := uint32(10 * (i + 1))
		accept, body := call(xid, procFsinfo, xdrOpaque(nil, root))
		rd := bytes.NewReader(body)
		st, err := xdr.ReadUint32(rd)
		if accept != acceptSuccess || err != nil || st != uint32(gonfs.NFSStatusOk) {
			t.Fatalf("FSINFO of %s: accept_stat %d, status %d, %v", k.share, accept, st, err)
		}
		follows, err := xdr.ReadUint32(rd)
		if err != nil || follows != 1 {
			t.Fatalf("FSINFO of %s: no attributes (%v)", k.share, err)
		}
		attrAt := len(body) - rd.Len()
		var a gonfs.FileAttribute
		if err := xdr.Read(rd, &a); err != nil || a.Type != gonfs.FileTypeDirectory {
			t.Fatalf("FSINFO of %s: attributes %+v, %v", k.share, a, err)
		}
		attrs := body[attrAt : len(body)-rd.Len()]
		var res fsinfoRes
		if err := xdr.Read(rd, &res); err != nil || rd.Len() != 0 {
			t.Fatalf("FSINFO of %s: %v, %d bytes after", k.share, err, rd.Len())
		}
		want := fsinfoRes{Rtmax: 1 << 20, Rtpref: 1 << 20, Rtmult: 4096, Wtmax: 1 << 20, Wtpref: 1 << 20, Wtmult: 4096,
			Dtpref: 8192, Maxfilesize: fileshare.MaxFileSize, TimeDelta: 1, Properties: k.props}
		if res != want {
			t.Errorf("FSINFO of %s:\n%+v\nwant\n%+v", k.share, res, want)
		}
		accept, body = call(xid+1, procGetattr, xdrOpaque(nil, root))
		if accept != acceptSuccess || len(body) < 4 || !bytes.Equal(body[4:], attrs) {
			t.Errorf("FSINFO's attributes of %s differ from GETATTR's:\n%x\n%x", k.share, attrs, body)
		}
	}
	_, fh := f.newFile("s", "f")
	stale := append([]byte(nil), fh...)
	stale[len(stale)-1] ^= 0xff
	if accept, body := call(100, procFsinfo, xdrOpaque(nil, stale)); accept != acceptSuccess ||
		!bytes.Equal(body, []byte{0, 0, 0, byte(gonfs.NFSStatusStale), 0, 0, 0, 0}) {
		t.Errorf("FSINFO of a stale handle: accept_stat %d, %x", accept, body)
	}
	if accept, _ := call(101, procFsinfo, binary.BigEndian.AppendUint32(nil, 64)); accept != acceptGarbageArgs {
		t.Errorf("FSINFO of a handle longer than its call: accept_stat %d", accept)
	}
}

// The fsinfo3resok FSINFO encodes is go-nfs's encoding of the same
// values, byte for byte.
func TestFSInfoAsGoNFS(t *testing.T) {
	var want bytes.Buffer
	res := fsinfoRes{Rtmax: maxTransfer, Rtpref: maxTransfer, Rtmult: fsinfoMult, Wtmax: maxTransfer, Wtpref: maxTransfer,
		Wtmult: fsinfoMult, Dtpref: fsinfoDtpref, Maxfilesize: fileshare.MaxFileSize, TimeDelta: 1, Properties: 0x1a}
	if err := xdr.Write(&want, res); err != nil {
		t.Fatal(err)
	}
	w := &replyWriter{}
	w.fsinfoRes(0x1a)
	if !bytes.Equal(w.b, want.Bytes()) {
		t.Fatalf("fsinfo3resok:\n%x\ngo-nfs:\n%x", w.b, want.Bytes())
	}
}

// writeCall is a raw WRITE call record, mark included, with a credential
// and verifier of credLen bytes each (AUTH_SYS-sized opaque bodies).
func writeCall(xid uint32, fh []byte, credLen int, data []byte) []byte {
	b := make([]byte, 4)
	for _, v := range []uint32{xid, 0, 2, nfsProgram, nfsVersion, procWrite} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	for range 2 { // credential, verifier: flavor 1 (AUTH_SYS) with an opaque body; ignored
		b = binary.BigEndian.AppendUint32(b, 1)
		b = xdrOpaque(b, make([]byte, credLen))
	}
	b = xdrOpaque(b, fh)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = binary.BigEndian.AppendUint32(b, stableFileSync)
	b = xdrOpaque(b, data)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4)|1<<31)
	return b
}

// The largest legal call, a WRITE of wtmax with the largest credential
// and verifier, is served. A call record over the bound, whole or in
// fragments, closes its connection before its body is read, with a
// warning naming the client and the size, and the server goes on serving
// the other connections.
func TestCallOverBoundClosesConnection(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	_, fh := f.newFile("s", "f")
	// A second server of the same shares, with its log kept in a file.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() }) // after the server's, below
	logged := func() string {
		b, _ := os.ReadFile(logFile.Name())
		return string(b)
	}
	srv := New(f.shares, slog.New(slog.NewTextHandler(logFile, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	addr := l.Addr().String()
	other := dialRaw(t, addr)
	getattr := func(c *rawConn, xid uint32) {
		t.Helper()
		if err := c.send(xid, procGetattr, xdrOpaque(nil, fh)); err != nil {
			t.Fatal(err)
		}
		got, accept, body, err := c.reply()
		if err != nil || got != xid || accept != acceptSuccess || binary.BigEndian.Uint32(body) != 0 {
			t.Fatalf("GETATTR %d on another connection: reply %d, accept_stat %d, %v", xid, got, accept, err)
		}
	}
	getattr(other, 1)

	big := dialRaw(t, addr)
	data := bytes.Repeat([]byte{7}, maxTransfer)
	if _, err := big.c.Write(writeCall(2, fh, 400, data)); err != nil {
		t.Fatal(err)
	}
	got, accept, body, err := big.reply()
	if err != nil || got != 2 || accept != acceptSuccess || binary.BigEndian.Uint32(body) != 0 {
		t.Fatalf("WRITE of wtmax with 400-byte credentials: reply %d, accept_stat %d, %v", got, accept, err)
	}

	for i, marks := range [][]uint32{
		{1<<31 | maxCall + 1},                // one fragment
		{maxCall / 2, 1<<31 | maxCall/2 + 8}, // two: the second crosses the bound
		{1<<31 | 1<<31 - 1},                  // the largest a mark can say
	} {
		c := dialRaw(t, addr)
		var b []byte
		for j, m := range marks {
			b = binary.BigEndian.AppendUint32(b, m)
			if j < len(marks)-1 {
				b = append(b, make([]byte, m&^(1<<31))...)
			}
		}
		b = append(b, make([]byte, 4096)...) // the start of the fragment over the bound, never read
		if _, err := c.c.Write(b); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		// Generous: only a server that keeps reading never answers.
		c.c.SetReadDeadline(time.Now().Add(3 * time.Minute))
		var one [1]byte
		n, err := c.c.Read(one[:])
		var ne net.Error
		if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("case %d: the connection was not closed: %d bytes, %v", i, n, err)
		}
		if err != io.EOF && !errors.Is(err, net.ErrClosed) {
			t.Logf("case %d: closed with %v", i, err)
		}
		warn := fmt.Sprintf("level=WARN msg=\"nfs: call too large: connection closed\" bytes=%d client=%s", total(marks), c.c.LocalAddr())
		if log := logged(); !strings.Contains(log, warn) {
			t.Errorf("case %d: no warning %q in the log:\n%s", i, warn, log)
		}
		getattr(other, uint32(10+i))
		getattr(dialRaw(t, addr), uint32(20+i))
	}
}

// total is the size of a record of fragments with these marks.
func total(marks []uint32) int {
	n := 0
	for _, m := range marks {
		n += int(m &^ (1 << 31))
	}
	return n
}
