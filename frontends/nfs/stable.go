package nfs

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/fileshare"
)

// WRITE and COMMIT (RFC 1813 sections 3.3.7 and 3.3.21) are served here,
// below go-nfs, on the connection: go-nfs answers every WRITE with
// FILE_SYNC once its file's Write returns and makes COMMIT a no-op, and
// its RegisterMessageHandler can neither replace a procedure it has
// registered nor be given a handler from outside its package (the
// handler's type takes an unexported one).
//
// stableConn reads each call record off the socket. WRITE and COMMIT of
// NFSv3 it serves itself, several at once; every other call it hands to
// go-nfs unchanged, as the bytes go-nfs reads. Replies are written whole,
// one at a time: go-nfs's (which it may write in several pieces) and ours.
//
//   - An UNSTABLE WRITE is applied and answered without waiting for a
//     sync (fileshare.Buffered) and says so: committed UNSTABLE.
//   - COMMIT makes every write answered before it durable
//     (fileshare.Share.Sync), whatever the range it names.
//   - DATA_SYNC and FILE_SYNC writes are durable when answered, and
//     answer FILE_SYNC.
//   - WRITE and COMMIT carry the server's write verifier: 8 random bytes
//     drawn when the daemon starts. A client that sees it change between
//     an UNSTABLE WRITE and its COMMIT (the daemon restarted: what was not
//     committed may be lost) sends that data again.

const (
	procWrite  = 7
	procCommit = 21

	stableUnstable = 0 // stable_how
	stableFileSync = 2

	// maxCall is the largest call record read; a larger one closes the
	// connection. go-nfs's FSINFO offers writes of up to 1 GiB; Linux and
	// libnfs send at most 1 MiB per WRITE, the go-nfs-client what it is
	// given.
	maxCall = 1<<30 + 64<<10
	// bigCall: a call larger than this is served before the next call of
	// its connection is read, and its buffer is not kept for another.
	bigCall = 4 << 20
	// maxServed is how many WRITE and COMMIT calls of one connection are
	// served at once; the connection is not read further meanwhile.
	maxServed = 16
)

// maxUnsynced bounds the UNSTABLE bytes written since the last sync: past
// it, a WRITE waits for the upload buffer's sync before it is answered
// (still UNSTABLE). The buffer keeps a record in memory until it is
// synced, so without a bound a disk slower than the clients would let
// memory grow to the buffer's size. (A variable for tests.)
var maxUnsynced int64 = 64 << 20

// stableListener hands out stableConns.
type stableListener struct {
	net.Listener
	h *handler
}

func (l stableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newStableConn(c, l.h), nil
}

type stableConn struct {
	net.Conn // the socket (or timedConn over it)
	h        *handler
	ctx      context.Context // ends when the connection is closed: stats and COMMIT's wait
	cancel   context.CancelFunc
	r        *bufio.Reader

	pass    []byte // what go-nfs reads next: the rest of a call record
	passBuf []byte

	served chan struct{} // one token per call being served (maxServed)
	wlock  chan struct{} // held while one reply is being written
	closed chan struct{}
	once   sync.Once

	// go-nfs's writer goroutine's alone:
	out     recordScanner // its reply records
	holding bool          // it holds wlock: a reply of its is part written
}

func newStableConn(c net.Conn, h *handler) *stableConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &stableConn{Conn: c, h: h, ctx: ctx, cancel: cancel, r: bufio.NewReaderSize(c, 64<<10),
		served: make(chan struct{}, maxServed), wlock: make(chan struct{}, 1), closed: make(chan struct{})}
}

// Read gives go-nfs the calls it serves, record by record, serving WRITE
// and COMMIT on the way.
func (c *stableConn) Read(p []byte) (int, error) {
	for len(c.pass) == 0 {
		rec, err := c.readCall()
		if err != nil {
			c.Close() // go-nfs closes the connection only on EOF
			return 0, err
		}
		if c.serve(rec) {
			continue
		}
		c.passBuf = binary.BigEndian.AppendUint32(c.passBuf[:0], uint32(len(*rec))|1<<31)
		c.passBuf = append(c.passBuf, *rec...)
		c.pass = c.passBuf
		putRecord(rec)
	}
	n := copy(p, c.pass)
	c.pass = c.pass[n:]
	return n, nil
}

var records = sync.Pool{New: func() any { return new([]byte) }}

func putRecord(b *[]byte) {
	if cap(*b) <= bigCall+64<<10 {
		records.Put(b)
	}
}

// readCall reads one record, all its fragments.
func (c *stableConn) readCall() (*[]byte, error) {
	rec := records.Get().(*[]byte)
	b := (*rec)[:0]
	for {
		var mark [4]byte
		if _, err := io.ReadFull(c.r, mark[:]); err != nil {
			putRecord(rec)
			if err == io.ErrUnexpectedEOF || len(b) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		v := binary.BigEndian.Uint32(mark[:])
		n := int(v &^ (1 << 31))
		if len(b)+n > maxCall {
			putRecord(rec)
			c.h.s.log.Warn("nfs: call too large: connection closed", "bytes", len(b)+n, "client", c.RemoteAddr())
			return nil, fmt.Errorf("nfs: call of over %d bytes", maxCall)
		}
		b = grow(b, n)
		if _, err := io.ReadFull(c.r, b[len(b)-n:]); err != nil {
			*rec = b[:0]
			putRecord(rec)
			return nil, io.ErrUnexpectedEOF
		}
		if v&(1<<31) != 0 {
			*rec = b
			return rec, nil
		}
	}
}

// grow extends b by n bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// serve starts serving rec if it is an NFSv3 WRITE or COMMIT, and says
// whether it did. The call header: XID, message type 0, RPC version 2,
// program, version, procedure, credential and verifier.
func (c *stableConn) serve(rec *[]byte) bool {
	x := xdrReader{b: *rec}
	xid, mtype, rpcvers, prog, vers, proc := x.u32(), x.u32(), x.u32(), x.u32(), x.u32(), x.u32()
	x.u32()
	x.opaque(400) // credential
	x.u32()
	x.opaque(400) // verifier
	if x.bad || mtype != 0 || rpcvers != 2 || prog != nfsProgram || vers != 3 || proc != procWrite && proc != procCommit {
		return false
	}
	select {
	case c.served <- struct{}{}:
	case <-c.closed:
		putRecord(rec)
		return true
	}
	serve := func() {
		defer func() { <-c.served }()
		body := c.call(proc, &x)
		putRecord(rec) // the data is in the journal's record or the cache now
		c.reply(xid, body)
	}
	if len(*rec) > bigCall {
		serve() // one at a time: memory stays near one call's size
	} else {
		go serve()
	}
	return true
}

const nfsProgram = 100003

// reply writes the accepted reply to xid with body (accept_stat first).
func (c *stableConn) reply(xid uint32, body []byte) {
	msg := make([]byte, 0, 4+20+len(body))
	msg = binary.BigEndian.AppendUint32(msg, uint32(20+len(body))|1<<31)
	msg = binary.BigEndian.AppendUint32(msg, xid)
	msg = binary.BigEndian.AppendUint32(msg, 1) // REPLY
	msg = binary.BigEndian.AppendUint32(msg, 0) // MSG_ACCEPTED
	msg = binary.BigEndian.AppendUint64(msg, 0) // verifier: AUTH_NONE, empty
	msg = append(msg, body...)
	select {
	case c.wlock <- struct{}{}:
	case <-c.closed:
		return
	}
	_, err := c.Conn.Write(msg)
	<-c.wlock
	if err != nil {
		c.Close()
	}
}

// Write is go-nfs's writer writing its replies, a reply perhaps in several
// pieces: ours wait until one is whole.
func (c *stableConn) Write(p []byte) (int, error) {
	if !c.holding {
		select {
		case c.wlock <- struct{}{}:
		case <-c.closed:
			return 0, net.ErrClosed
		}
		c.holding = true
	}
	n, err := c.Conn.Write(p)
	c.out.feed(p[:n])
	if err != nil || c.out.atEnd() {
		c.holding = false
		<-c.wlock
	}
	return n, err
}

func (c *stableConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.cancel()
	})
	return c.Conn.Close()
}

// Accept stats (accept_stat).
const (
	acceptSuccess     = 0
	acceptGarbageArgs = 4
	maxHandle         = 64 // NFS3_FHSIZE
)

// call serves one WRITE or COMMIT; its arguments are the rest of x. It
// returns the reply's body from the accept_stat on.
func (c *stableConn) call(proc uint32, x *xdrReader) []byte {
	fh := x.opaque(maxHandle)
	offset, count := x.u64(), uint32(0)
	var how uint32
	var data []byte
	if proc == procWrite {
		count, how = x.u32(), x.u32()
		data = x.opaque(maxCall)
	} else {
		count = x.u32()
	}
	if x.bad || proc == procWrite && how > stableFileSync {
		return binary.BigEndian.AppendUint32(nil, acceptGarbageArgs)
	}
	w := &replyWriter{}
	w.u32(acceptSuccess)
	if proc == procWrite {
		c.write(w, fh, offset, data[:min(int(count), len(data))], how)
	} else {
		c.commit(w, fh)
	}
	return w.b
}

// resolve finds the share and path of a handle, and checks the client.
func (c *stableConn) resolve(fh []byte) (*fileshare.Share, string, gonfs.NFSStatus) {
	fs, path, err := c.h.FromHandle(fh)
	if err != nil {
		if errors.Is(err, fileshare.ErrStale) || errors.Is(err, fileshare.ErrNotExist) {
			return nil, "", gonfs.NFSStatusStale
		}
		c.h.s.log.Warn("nfs: resolve a handle", "err", err)
		return nil, "", gonfs.NFSStatusIO
	}
	sf := fs.(*shareFS)
	if !allowed(sf.share, c.RemoteAddr()) {
		return nil, "", gonfs.NFSStatusAccess
	}
	return sf.share, strings.Join(path, "/"), gonfs.NFSStatusOk
}

func (c *stableConn) write(w *replyWriter, fh []byte, offset uint64, data []byte, how uint32) {
	share, p, st := c.resolve(fh)
	if st != gonfs.NFSStatusOk {
		w.fail(st, nil)
		return
	}
	if share.Config().ReadOnly {
		w.fail(gonfs.NFSStatusROFS, nil)
		return
	}
	pre, err := share.Stat(c.ctx, p)
	if err != nil {
		w.fail(writeStatus(err), nil)
		return
	}
	if pre.Type != fileshare.TypeFile {
		st := gonfs.NFSStatusInval
		if pre.Type == fileshare.TypeDir {
			st = gonfs.NFSStatusIsDir
		}
		w.fail(st, &pre)
		return
	}
	if offset > fileshare.MaxFileSize || offset+uint64(len(data)) > fileshare.MaxFileSize {
		w.fail(gonfs.NFSStatusFBig, &pre)
		return
	}
	d, committed := fileshare.Durable, uint32(stableFileSync)
	if how == stableUnstable {
		d, committed = fileshare.Buffered, stableUnstable
	}
	// Not c.ctx: a write cut off between its record and its apply would
	// leave the cache behind the log until a restart (as go-nfs's own
	// WRITE, which uses the share's background context).
	post, err := share.Write(context.Background(), p, data, int64(offset), d)
	if err == nil && d == fileshare.Buffered && c.h.s.unsynced.Add(int64(len(data))) > maxUnsynced {
		if err = share.Sync(c.ctx); err == nil {
			c.h.s.unsynced.Store(0)
		}
	}
	if err != nil {
		c.h.s.log.Warn("nfs: write", "share", share.Config().Name, "path", p, "err", err)
		w.fail(writeStatus(err), &pre)
		return
	}
	w.u32(uint32(gonfs.NFSStatusOk))
	w.wcc(p, &pre, &post)
	w.u32(uint32(len(data)))
	w.u32(committed)
	w.b = append(w.b, c.h.s.verifier[:]...)
}

func (c *stableConn) commit(w *replyWriter, fh []byte) {
	share, p, st := c.resolve(fh)
	if st != gonfs.NFSStatusOk {
		w.fail(st, nil)
		return
	}
	if !share.Config().ReadOnly {
		if err := share.Sync(c.ctx); err != nil {
			c.h.s.log.Warn("nfs: commit", "share", share.Config().Name, "err", err)
			w.fail(gonfs.NFSStatusIO, nil)
			return
		}
		c.h.s.unsynced.Store(0)
	}
	w.u32(uint32(gonfs.NFSStatusOk))
	var post *fileshare.Attr
	if a, err := share.Stat(c.ctx, p); err == nil {
		post = &a
	}
	w.wcc(p, nil, post)
	w.b = append(w.b, c.h.s.verifier[:]...)
}

// writeStatus is the NFS status of a failed write.
func writeStatus(err error) gonfs.NFSStatus {
	switch {
	case errors.Is(err, fileshare.ErrNotExist), errors.Is(err, fileshare.ErrStale):
		return gonfs.NFSStatusStale
	case errors.Is(err, fileshare.ErrReadOnly):
		return gonfs.NFSStatusROFS
	case errors.Is(err, fileshare.ErrIsDir):
		return gonfs.NFSStatusIsDir
	case errors.Is(err, fileshare.ErrInvalid):
		return gonfs.NFSStatusInval
	case errors.Is(err, syscall.ENOSPC):
		return gonfs.NFSStatusNoSPC
	case errors.Is(err, syscall.EDQUOT):
		return gonfs.NFSStatusDQuot
	}
	return gonfs.NFSStatusIO
}

// replyWriter builds a reply body in XDR.
type replyWriter struct{ b []byte }

func (w *replyWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }

// fail writes a failed WRITE3res or COMMIT3res: the status and wcc_data.
func (w *replyWriter) fail(st gonfs.NFSStatus, pre *fileshare.Attr) {
	w.u32(uint32(st))
	w.wcc("", pre, nil)
}

// wcc writes wcc_data: the attributes before (size and times) and after.
func (w *replyWriter) wcc(p string, pre, post *fileshare.Attr) {
	var preAttr *gonfs.FileCacheAttribute
	if pre != nil {
		preAttr = attrOf(p, *pre).AsCache()
	}
	var postAttr *gonfs.FileAttribute
	if post != nil {
		postAttr = attrOf(p, *post)
	}
	buf := bytesWriter{w}
	_ = gonfs.WriteWcc(buf, preAttr, postAttr) // writes to memory: no error
}

// attrOf is a file's fattr3, as go-nfs's GETATTR gives it.
func attrOf(p string, a fileshare.Attr) *gonfs.FileAttribute {
	return gonfs.ToFileAttribute(info{name: p[strings.LastIndex(p, "/")+1:], a: a}, p)
}

type bytesWriter struct{ w *replyWriter }

func (b bytesWriter) Write(p []byte) (int, error) {
	b.w.b = append(b.w.b, p...)
	return len(p), nil
}

// xdrReader reads XDR from a call record; bad is set once it runs out.
type xdrReader struct {
	b   []byte
	bad bool
}

func (x *xdrReader) u32() uint32 {
	if len(x.b) < 4 {
		x.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(x.b)
	x.b = x.b[4:]
	return v
}

func (x *xdrReader) u64() uint64 { return uint64(x.u32())<<32 | uint64(x.u32()) }

// opaque reads variable-length opaque data of at most max bytes, and its
// padding.
func (x *xdrReader) opaque(max int) []byte {
	n := int(x.u32())
	padded := (n + 3) &^ 3
	if x.bad || n > max || padded > len(x.b) {
		x.bad = true
		return nil
	}
	v := x.b[:n:n]
	x.b = x.b[padded:]
	return v
}
