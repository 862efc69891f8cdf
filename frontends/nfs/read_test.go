package nfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/vfs"

	gonfs "github.com/willscott/go-nfs"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// rawConn is one TCP connection to the server that sends calls as raw
// ONC RPC records and reads the replies as they come, in any order.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex // sends
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send sends an NFSv3 call (AUTH_NONE) of proc with args.
func (r *rawConn) send(xid, proc uint32, args []byte) error {
	b := make([]byte, 4, 4+40+len(args))
	for _, v := range []uint32{xid, 0, 2, nfsProgram, nfsVersion, proc, 0, 0, 0, 0} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = append(b, args...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4)|1<<31)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.c.Write(b)
	return err
}

// call sends one call and reads its reply, which must be the next: the
// accept_stat and the body after it.
func (r *rawConn) call(xid, proc uint32, args []byte) (accept uint32, body []byte) {
	r.t.Helper()
	if err := r.send(xid, proc, args); err != nil {
		r.t.Fatal(err)
	}
	got, accept, body, err := r.reply()
	if err != nil || got != xid {
		r.t.Fatalf("call %d: reply %d, %v", xid, got, err)
	}
	return accept, body
}

// reply reads the next reply record: its XID and, for an accepted reply
// with AUTH_NONE, the accept_stat and body after it.
func (r *rawConn) reply() (xid, accept uint32, body []byte, err error) {
	var rec []byte
	for {
		var mark [4]byte
		if _, err := io.ReadFull(r.r, mark[:]); err != nil {
			return 0, 0, nil, err
		}
		v := binary.BigEndian.Uint32(mark[:])
		frag := make([]byte, v&^(1<<31))
		if _, err := io.ReadFull(r.r, frag); err != nil {
			return 0, 0, nil, err
		}
		rec = append(rec, frag...)
		if v&(1<<31) != 0 {
			break
		}
	}
	x := xdrReader{b: rec}
	xid, mtype, stat, flavor := x.u32(), x.u32(), x.u32(), x.u32()
	x.opaque(400)
	accept = x.u32()
	if x.bad || mtype != 1 || stat != 0 || flavor != 0 {
		return xid, 0, nil, fmt.Errorf("reply to %d: not an accepted reply: %x", xid, rec)
	}
	return xid, accept, x.b, nil
}

func readArgs(fh []byte, off uint64, count uint32) []byte {
	b := xdrOpaque(nil, fh)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint32(b, count)
}

func xdrOpaque(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	b = append(b, v...)
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}

// readReply is a parsed READ3res.
type readReply struct {
	status gonfs.NFSStatus
	attr   *gonfs.FileAttribute
	eof    bool
	data   []byte
}

func parseRead(body []byte) (readReply, error) {
	var r readReply
	rd := bytes.NewReader(body)
	st, err := xdr.ReadUint32(rd)
	if err != nil {
		return r, err
	}
	r.status = gonfs.NFSStatus(st)
	if r.attr, err = parsePostOp(rd); err != nil || r.status != gonfs.NFSStatusOk {
		return r, err
	}
	var res struct {
		Count uint32
		EOF   uint32
		Data  []byte
	}
	if err := xdr.Read(rd, &res); err != nil {
		return r, err
	}
	if int(res.Count) != len(res.Data) || rd.Len() != 0 {
		return r, fmt.Errorf("count %d, %d bytes of data, %d bytes after", res.Count, len(res.Data), rd.Len())
	}
	r.eof, r.data = res.EOF == 1, res.Data
	return r, nil
}

func parsePostOp(rd io.Reader) (*gonfs.FileAttribute, error) {
	follows, err := xdr.ReadUint32(rd)
	if err != nil || follows == 0 {
		return nil, err
	}
	var a gonfs.FileAttribute
	if err := xdr.Read(rd, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Many READs (and GETATTRs, and calls go-nfs serves) sent on one
// connection without waiting: every reply comes once, under its call's
// XID, with the data at its offset, the eof flag right (short at the end
// of the file, empty past it) and the file's attributes.
func TestManyReadsOnOneConnection(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"})
	v, fh := f.newFile("s", "f.bin")
	want := testrand.Bytes(7, 5<<20+333)
	if err := writeAll(v, fh, want); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, f.addr)

	type call struct {
		proc        uint32
		off         uint64
		count       uint32
		wantData    []byte
		wantEOF     bool
		wantFailure gonfs.NFSStatus
	}
	rng := rand.New(rand.NewPCG(1, 2))
	size := uint64(len(want))
	calls := map[uint32]call{}
	var order []uint32
	for i := range 400 {
		xid := uint32(1000 + i)
		var k call
		switch i % 10 {
		case 0:
			k = call{proc: procGetattr}
		case 1:
			k = call{proc: procFsinfo}
		case 2: // to the end of the file, or past it
			off := size - uint64(rng.IntN(3<<20))
			if i%20 == 2 {
				off = size + uint64(rng.IntN(100))
			}
			k = call{proc: procRead, off: off, count: 4 << 20}
		case 3: // ends exactly at the end
			k = call{proc: procRead, off: size - 4096, count: 4096}
		default:
			off := uint64(rng.IntN(int(size)))
			k = call{proc: procRead, off: off, count: uint32(1 + rng.IntN(1<<20))}
		}
		if k.proc == procRead {
			end := min(k.off+uint64(min(k.count, maxReadCount)), size)
			if k.off < size {
				k.wantData = want[k.off:end]
			}
			k.wantEOF = end == size
		}
		calls[xid] = k
		order = append(order, xid)
	}
	// The sender reads its own copy: the reader below deletes from calls.
	toSend := make([]call, len(order))
	for i, xid := range order {
		toSend[i] = calls[xid]
	}
	sent := make(chan error, 1)
	go func() {
		for i, xid := range order {
			k := toSend[i]
			var args []byte
			switch k.proc {
			case procRead:
				args = readArgs(fh, k.off, k.count)
			default:
				args = xdrOpaque(nil, fh)
			}
			if err := c.send(xid, k.proc, args); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	inOrder := true
	for i := range order {
		xid, accept, body, err := c.reply()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		k, ok := calls[xid]
		if !ok {
			t.Fatalf("reply %d: XID %d answered twice or never asked", i, xid)
		}
		delete(calls, xid)
		if xid != order[i] {
			inOrder = false
		}
		if accept != acceptSuccess {
			t.Fatalf("XID %d: accept_stat %d", xid, accept)
		}
		switch k.proc {
		case procGetattr:
			rd := bytes.NewReader(body)
			var a gonfs.FileAttribute
			st, err := xdr.ReadUint32(rd)
			if err == nil {
				err = xdr.Read(rd, &a)
			}
			if err != nil || st != 0 || a.Filesize != size || a.Type != gonfs.FileTypeRegular {
				t.Fatalf("GETATTR %d: status %d size %d type %d, %v", xid, st, a.Filesize, a.Type, err)
			}
		case procRead:
			r, err := parseRead(body)
			if err != nil || r.status != gonfs.NFSStatusOk {
				t.Fatalf("READ %d at %d of %d: status %d, %v", xid, k.off, k.count, r.status, err)
			}
			if r.attr == nil || r.attr.Filesize != size {
				t.Fatalf("READ %d: attributes %+v", xid, r.attr)
			}
			if !bytes.Equal(r.data, k.wantData) || r.eof != k.wantEOF {
				t.Fatalf("READ %d at %d of %d: %d bytes (equal %v), eof %v; want %d bytes, eof %v",
					xid, k.off, k.count, len(r.data), bytes.Equal(r.data, k.wantData), r.eof, len(k.wantData), k.wantEOF)
			}
		default:
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 0 {
				t.Fatalf("FSINFO %d: %x", xid, body[:min(len(body), 16)])
			}
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Fatalf("%d calls not answered", len(calls))
	}
	t.Logf("replies in the order of the calls: %v", inOrder)
}

// writeAll writes data to the file fh, 1 MiB at a time, FILE_SYNC.
func writeAll(v *nfsc.Target, fh []byte, data []byte) error {
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := nfstest.WriteStable(v, fh, uint64(off), data[off:min(off+1<<20, len(data))], nfstest.FileSync); err != nil {
			return err
		}
	}
	return nil
}

// heldStore holds every Get of one key until released.
type heldStore struct {
	*mem.Store
	key     string
	held    chan struct{} // a Get of key waits
	release chan struct{}
}

func (s *heldStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == s.key {
		select {
		case s.held <- struct{}{}:
		default:
		}
		<-s.release
	}
	return s.Store.Get(ctx, key, off, n)
}

// A connection's calls are served at once: while a READ waits for the
// object store, a GETATTR and a READ of cached data sent after it on the
// same connection are answered; the held READ is answered when the store
// answers, with its data.
func TestReadsServedBesideAWaitingOne(t *testing.T) {
	store := &heldStore{Store: mem.New("nfs"), key: "s/cold.bin", held: make(chan struct{}, 1), release: make(chan struct{})}
	f := startStore(t, store, vfs.Default, filepath.Join(t.TempDir(), "log"), fileshare.Config{Name: "s"})
	cold := testrand.Bytes(8, 100000)
	if err := store.Store.Put(context.Background(), "s/cold.bin", bytes.NewReader(cold), int64(len(cold))); err != nil {
		t.Fatal(err)
	}
	v, hot := f.newFile("s", "hot.bin")
	warm := testrand.Bytes(9, 50000)
	if err := writeAll(v, hot, warm); err != nil {
		t.Fatal(err)
	}
	_, coldFH, err := v.Lookup("cold.bin")
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(store.release)
		}
	}()
	c := dialRaw(t, f.addr)
	if err := c.send(1, procRead, readArgs(coldFH, 0, 1<<20)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.held:
	case <-time.After(5 * time.Minute):
		t.Fatal("the READ of data not cached did not ask the store")
	}
	if err := c.send(2, procGetattr, xdrOpaque(nil, hot)); err != nil {
		t.Fatal(err)
	}
	if err := c.send(3, procRead, readArgs(hot, 1000, 2000)); err != nil {
		t.Fatal(err)
	}
	// Generous: a server that serves the calls one at a time never
	// answers them while the first waits.
	c.c.SetReadDeadline(time.Now().Add(3 * time.Minute))
	for range 2 {
		xid, _, body, err := c.reply()
		if err != nil || xid != 2 && xid != 3 {
			t.Fatalf("a reply while the READ before it waits for the store: XID %d, %v", xid, err)
		}
		if xid == 3 {
			r, err := parseRead(body)
			if err != nil || !bytes.Equal(r.data, warm[1000:3000]) || r.eof {
				t.Fatalf("READ of cached data: %d bytes, eof %v, %v", len(r.data), r.eof, err)
			}
		}
	}
	close(store.release)
	released = true
	c.c.SetReadDeadline(time.Time{})
	xid, _, body, err := c.reply()
	if err != nil || xid != 1 {
		t.Fatalf("the held READ's reply: XID %d, %v", xid, err)
	}
	r, err := parseRead(body)
	if err != nil || !bytes.Equal(r.data, cold) || !r.eof {
		t.Fatalf("the held READ: %d bytes, eof %v, %v", len(r.data), r.eof, err)
	}
}

// READ, GETATTR and ACCESS answer errors as NFS statuses: a stale handle,
// a directory (READ), bad arguments (GARBAGE_ARGS); ACCESS grants no
// changes on a read-only share. The connection serves on.
func TestReadErrors(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s"}, fileshare.Config{Name: "ro", ReadOnly: true})
	v, fh := f.newFile("s", "f")
	dir, err := v.Mkdir("d", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	stale := append([]byte(nil), fh...)
	stale[len(stale)-1] ^= 0xff
	ro, rodone := f.mount("ro")
	defer rodone()
	_, roRoot, err := ro.Lookup(".")
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, f.addr)
	status := func(xid, proc uint32, args []byte) (uint32, []byte) {
		t.Helper()
		accept, body := c.call(xid, proc, args)
		if accept != acceptSuccess {
			return 1000 + accept, nil
		}
		return binary.BigEndian.Uint32(body), body[4:]
	}
	for i, k := range []struct {
		name string
		proc uint32
		args []byte
		want uint32
	}{
		{"READ of a stale handle", procRead, readArgs(stale, 0, 10), uint32(gonfs.NFSStatusStale)},
		{"READ of a short handle", procRead, readArgs([]byte{1, 2, 3}, 0, 10), uint32(gonfs.NFSStatusStale)},
		{"READ of a directory", procRead, readArgs(dir, 0, 10), uint32(gonfs.NFSStatusIsDir)},
		{"GETATTR of a stale handle", procGetattr, xdrOpaque(nil, stale), uint32(gonfs.NFSStatusStale)},
		{"ACCESS of a stale handle", procAccess, binary.BigEndian.AppendUint32(xdrOpaque(nil, stale), 0x3f), uint32(gonfs.NFSStatusStale)},
		{"READ with its count cut off", procRead, xdrOpaque(nil, fh), 1000 + acceptGarbageArgs},
		{"GETATTR of a handle longer than its call", procGetattr, binary.BigEndian.AppendUint32(nil, 64), 1000 + acceptGarbageArgs},
		{"empty file read", procRead, readArgs(fh, 0, 10), 0},
	} {
		if got, _ := status(uint32(10+i), k.proc, k.args); got != k.want {
			t.Errorf("%s: %d, want %d", k.name, got, k.want)
		}
	}
	for _, k := range []struct {
		name string
		fh   []byte
		want uint32
	}{
		{"a writable share", fh, 0x3f},
		{"a read-only share", roRoot, accessReadOnly},
	} {
		st, body := status(100, procAccess, binary.BigEndian.AppendUint32(xdrOpaque(nil, k.fh), 0x3f))
		rd := bytes.NewReader(body)
		a, err := parsePostOp(rd)
		mask, err2 := xdr.ReadUint32(rd)
		if st != 0 || err != nil || err2 != nil || a == nil || mask != k.want {
			t.Errorf("ACCESS on %s: status %d, attributes %v, mask %#x (%v %v), want %#x", k.name, st, a != nil, mask, err, err2, k.want)
		}
	}
}

// The attributes READ, GETATTR and ACCESS encode are go-nfs's, byte for
// byte.
func TestAttributesAsGoNFS(t *testing.T) {
	a := fileshare.Attr{Type: fileshare.TypeFile, Mode: 0o4755, UID: 12, GID: 34, Size: 1<<40 + 5, Ino: 99,
		Mtime: time.Unix(1700000000, 123456789)}
	attr := attrOf("dir/x", a)
	var want bytes.Buffer
	if err := gonfs.WritePostOpAttrs(&want, attr); err != nil {
		t.Fatal(err)
	}
	w := &replyWriter{}
	w.postOp(attr)
	if !bytes.Equal(w.b, want.Bytes()) {
		t.Fatalf("post_op_attr:\n%x\ngo-nfs:\n%x", w.b, want.Bytes())
	}
	want.Reset()
	if err := gonfs.WriteWcc(&want, attr.AsCache(), attr); err != nil {
		t.Fatal(err)
	}
	w = &replyWriter{}
	w.wcc("dir/x", &a, &a)
	if !bytes.Equal(w.b, want.Bytes()) {
		t.Fatalf("wcc_data:\n%x\ngo-nfs:\n%x", w.b, want.Bytes())
	}
}
