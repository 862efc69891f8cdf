package nfs

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/frontends/nfs/nfs4"
)

// The connection's ONC RPC layer (RFC 5531) is gatewayd's own; go-nfs
// serves the procedures it is not given. go-nfs v0.0.4 cannot be extended
// from outside for what the hot procedures need: its RegisterMessageHandler
// neither replaces a procedure it has registered nor takes a handler from
// outside its package (the handler's type takes an unexported one), its
// connection serves one call at a time, and every reply is built in a
// fresh bytes.Buffer and copied twice more on the way to the socket. So
// rpcConn sits between the socket and go-nfs:
//
//   - a reader goroutine reads each call record off the socket, whole;
//   - NFSv3 READ, GETATTR, ACCESS, WRITE, COMMIT, FSINFO, READDIR and
//     READDIRPLUS it serves itself, up to maxServed of a connection at
//     once, each on its own goroutine; the reader stops reading while
//     maxServed are being served;
//   - every other call (the namespace procedures, MOUNT, NULL) it hands to
//     go-nfs, in order, as the bytes go-nfs's Read returns: go-nfs serves
//     those one at a time, as before, beside the calls served here;
//   - one writer goroutine writes the replies, each whole (one record),
//     in the order they are ready, not the order of the calls (RPC
//     matches a reply to its call by XID): several ready at once go out in
//     one writev. go-nfs's replies, which it writes in pieces, are
//     gathered into a record and queued the same way.
//
// A reply is built in a pooled buffer that starts with its record mark
// and RPC header; READ reads the file's data straight into it after the
// header (from the cache's chunk file, or the store), so the data is
// copied once into the buffer and once into the socket.

const (
	nfsProgram = 100003
	nfsVersion = 3

	// NFSv3 procedures served here.
	procGetattr = 1
	procAccess  = 4
	procRead    = 6
	procWrite   = 7
	procFsinfo  = 19
	procCommit  = 21

	// maxCall is the largest call record read: a WRITE of the wtmax
	// FSINFO offers (maxTransfer) with its arguments and the largest
	// credential and verifier (400 bytes each), rounded up. A larger
	// record closes the connection (and is logged), so one connection
	// holds at most maxServed records of this size.
	maxCall = maxTransfer + 64<<10
	// bigCall: a buffer larger than this (a call record grown over
	// several fragments, a reply of go-nfs's gathered) is not kept for
	// another.
	bigCall = 4 << 20
	// maxServed is how many calls of one connection are served here at
	// once (replies not yet written included); the connection is not
	// read further meanwhile.
	maxServed = 16
	// toGoNFS is how many calls may wait for go-nfs on one connection
	// before the reader waits too.
	toGoNFS = 16

	// Accept stats (accept_stat).
	acceptSuccess     = 0
	acceptGarbageArgs = 4

	maxHandle = 64 // NFS3_FHSIZE
)

// served are the NFSv3 procedures rpcConn serves itself; it hands the
// others to go-nfs. A procedure reads its arguments from x and appends
// its reply, from the accept_stat on, to w.
var served = map[uint32]func(c *rpcConn, x *xdrReader, w *replyWriter){
	procGetattr: (*rpcConn).getattr,
	procAccess:  (*rpcConn).access,
	procRead:    (*rpcConn).read,
	procWrite:   (*rpcConn).write,
	procCommit:  (*rpcConn).commit,
	procFsinfo:  (*rpcConn).fsinfo,
	procMknod:   (*rpcConn).mknod, // mknod.go

	procReaddir:     (*rpcConn).readdir, // readdir.go
	procReaddirplus: (*rpcConn).readdirplus,
}

// rpcListener hands out rpcConns, the connections go-nfs serves.
type rpcListener struct {
	net.Listener
	h *handler
}

func (l rpcListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newRPCConn(c, l.h), nil
}

type rpcConn struct {
	net.Conn // the socket (or timedConn over it)
	h        *handler
	ctx      context.Context // ends when the connection is closed
	cancel   context.CancelFunc
	r        *bufio.Reader

	tokens chan struct{} // one per call being served here (maxServed)
	closed chan struct{}
	once   sync.Once

	// go-nfs's side: the calls it serves, in order, and its reply.
	calls   chan *[]byte
	pass    []byte  // what go-nfs's Read gives next: the rest of a call record
	passRec *[]byte // the record pass is in
	gout    []byte  // go-nfs's reply being gathered (its writer's alone)
	out     recordScanner
	gdone   chan struct{} // the writer has written go-nfs's reply

	v4 *nfs4.Conn // the connection as NFSv4.1 knows it

	// Calls noted for the audit log until their replies (audit.go).
	amu      sync.Mutex
	audits   map[uint32]*auditCall // by XID
	auditing atomic.Int32          // len(audits)

	// The writer's queue.
	wmu     sync.Mutex
	wcond   *sync.Cond
	queue   []outMsg
	wclosed bool
}

// outMsg is a reply record queued for the writer, and what to do once it
// is written.
type outMsg struct {
	b     []byte
	buf   *[]byte       // a pooled reply buffer to put back
	token bool          // a call served here: its token is given back
	done  chan struct{} // go-nfs's reply: its writer is told
}

func newRPCConn(nc net.Conn, h *handler) *rpcConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &rpcConn{Conn: nc, h: h, ctx: ctx, cancel: cancel, r: bufio.NewReaderSize(nc, 64<<10),
		tokens: make(chan struct{}, maxServed), closed: make(chan struct{}),
		calls: make(chan *[]byte, toGoNFS), gdone: make(chan struct{}, 1), v4: nfs4.NewConn(nc.RemoteAddr())}
	c.wcond = sync.NewCond(&c.wmu)
	c.v4.SetSender(func(rec []byte) bool { return c.send(outMsg{b: rec}) })
	go c.readCalls()
	go c.writeReplies()
	return c
}

// readCalls reads the connection's calls and serves them or hands them to
// go-nfs, until the connection fails or closes.
func (c *rpcConn) readCalls() {
	defer close(c.calls)
	for {
		rec, err := c.readCall()
		if err != nil {
			c.Close()
			return
		}
		if b := (*rec)[4:]; len(b) >= 8 && binary.BigEndian.Uint32(b[4:]) == 1 {
			// A reply to a callback of NFSv4.1's back channel.
			c.v4.Reply(binary.BigEndian.Uint32(b), b[8:])
			putRecord(rec)
			continue
		}
		if c.serve(rec) {
			continue
		}
		body := (*rec)[4:]
		binary.BigEndian.PutUint32(*rec, uint32(len(body))|1<<31)
		select {
		case c.calls <- rec:
		case <-c.closed:
			putRecord(rec)
			return
		}
	}
}

// Read gives go-nfs the calls it serves, record by record.
func (c *rpcConn) Read(p []byte) (int, error) {
	for len(c.pass) == 0 {
		if c.passRec != nil {
			putRecord(c.passRec)
			c.passRec = nil
		}
		select {
		case rec, ok := <-c.calls:
			if !ok {
				c.Close() // go-nfs closes the connection only on EOF
				return 0, io.EOF
			}
			c.passRec, c.pass = rec, *rec
		case <-c.closed:
			return 0, io.EOF
		}
	}
	n := copy(p, c.pass)
	c.pass = c.pass[n:]
	return n, nil
}

// Write is go-nfs's writer writing its replies, a reply perhaps in several
// pieces: once one is whole, it is queued for the writer, and Write
// returns when it is written.
func (c *rpcConn) Write(p []byte) (int, error) {
	c.gout = append(c.gout, p...)
	c.out.feed(p)
	if !c.out.atEnd() {
		return len(p), nil
	}
	ok := c.send(outMsg{b: c.gout, done: c.gdone})
	<-c.gdone
	if cap(c.gout) > bigCall {
		c.gout = nil
	}
	c.gout = c.gout[:0]
	if !ok {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

// send queues a reply for the writer; after Close it is not written, only
// released, and send says so.
func (c *rpcConn) send(m outMsg) bool {
	var a *auditCall
	var result string
	if c.auditing.Load() > 0 {
		a, result = c.auditReply(m.b) // before the writer may reuse m.b
	}
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		c.release(m)
		return false
	}
	c.queue = append(c.queue, m)
	c.wmu.Unlock()
	c.wcond.Signal()
	if a != nil {
		c.writeAudit(a, result)
	}
	return true
}

func (c *rpcConn) release(m outMsg) {
	if m.buf != nil {
		putReply(m.buf)
	}
	if m.token {
		<-c.tokens
	}
	if m.done != nil {
		m.done <- struct{}{}
	}
}

// buffersWriter is a connection that writes several buffers at once
// (timedConn, over a socket's writev).
type buffersWriter interface {
	WriteBuffers(b *net.Buffers) (int64, error)
}

// writeReplies writes the queued replies, all those queued at once in one
// writev, until the connection closes.
func (c *rpcConn) writeReplies() {
	var batch []outMsg
	var backing net.Buffers
	for {
		c.wmu.Lock()
		for len(c.queue) == 0 && !c.wclosed {
			c.wcond.Wait()
		}
		batch, c.queue = c.queue, batch[:0]
		closed := c.wclosed
		c.wmu.Unlock()
		if !closed {
			bufs := backing[:0]
			for _, m := range batch {
				bufs = append(bufs, m.b)
			}
			backing = bufs
			var err error
			if bw, ok := c.Conn.(buffersWriter); ok {
				_, err = bw.WriteBuffers(&bufs)
			} else {
				_, err = bufs.WriteTo(c.Conn)
			}
			if err != nil {
				c.Close()
			}
			clear(backing)
		}
		for i, m := range batch {
			c.release(m)
			batch[i] = outMsg{}
		}
		if closed {
			return
		}
	}
}

func (c *rpcConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.cancel()
		c.v4.Close()
		c.wmu.Lock()
		c.wclosed = true
		c.wmu.Unlock()
		c.wcond.Broadcast()
	})
	return c.Conn.Close()
}

// Call records are read into pooled buffers, 4 bytes after their start:
// room for the record mark of a call handed to go-nfs.
var records = sync.Pool{New: func() any { return new([]byte) }}

func putRecord(b *[]byte) {
	if cap(*b) <= bigCall+64<<10 {
		records.Put(b)
	}
}

// readCall reads one record, all its fragments.
func (c *rpcConn) readCall() (*[]byte, error) {
	rec := records.Get().(*[]byte)
	b := grow((*rec)[:0], 4)
	for {
		var mark [4]byte
		if _, err := io.ReadFull(c.r, mark[:]); err != nil {
			putRecord(rec)
			if err == io.ErrUnexpectedEOF || len(b) > 4 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		v := binary.BigEndian.Uint32(mark[:])
		n := int(v &^ (1 << 31))
		if len(b)-4+n > maxCall {
			putRecord(rec)
			c.h.s.log.Warn("nfs: call too large: connection closed", "bytes", len(b)-4+n, "client", c.RemoteAddr())
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

// serve starts serving rec if it is an NFSv3 call of a procedure served
// here, and says whether it did. The call header: XID, message type 0,
// RPC version 2, program, version, procedure, credential and verifier
// (both ignored, as go-nfs does).
func (c *rpcConn) serve(rec *[]byte) bool {
	x := xdrReader{b: (*rec)[4:], rec: rec}
	xid, mtype, rpcvers, prog, vers, proc := x.u32(), x.u32(), x.u32(), x.u32(), x.u32(), x.u32()
	flavor := x.u32()
	cred := x.opaque(400) // credential
	x.u32()
	x.opaque(400) // verifier
	if c.h.s.Audit != nil && vers == nfsVersion && prog == nfsProgram && mtype == 0 && !x.bad {
		c.noteAudit(xid, proc, flavor, cred, x)
	}
	fn := served[proc]
	if vers == nfs4.Version {
		fn = serve4(proc, flavor, cred)
	} else if vers != nfsVersion {
		fn = nil
	}
	if x.bad || mtype != 0 || rpcvers != 2 || prog != nfsProgram || fn == nil {
		return false
	}
	select {
	case c.tokens <- struct{}{}:
	case <-c.closed:
		putRecord(rec)
		return true
	}
	go func() { // at most maxServed at once, each at most maxCall
		w := newReply(xid)
		fn(c, &x, w)
		if x.rec != nil { // not taken (WRITE takes it: its data goes to the log from it)
			putRecord(x.rec)
		}
		c.send(w.done())
	}()
	return true
}

// Reply buffers, pooled by size.
var replyPools = [...]struct {
	size int
	pool sync.Pool
}{{size: 4 << 10}, {size: 64 << 10}, {size: 1<<20 + 4<<10}}

// getReply returns a pooled buffer of at least n bytes (nil past the
// largest pool).
func getReply(n int) *[]byte {
	for i := range replyPools {
		p := &replyPools[i]
		if n <= p.size {
			if b, ok := p.pool.Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, 0, p.size)
			return &b
		}
	}
	return nil
}

func putReply(b *[]byte) {
	for i := range replyPools {
		p := &replyPools[i]
		if cap(*b) == p.size {
			*b = (*b)[:0]
			p.pool.Put(b)
			return
		}
	}
}

// replyWriter builds a reply record in XDR: the record mark, the RPC
// header, then what the procedure appends from the accept_stat on.
type replyWriter struct {
	b   []byte
	buf *[]byte // the pooled buffer b is in, if it is
}

// replyHead is the length of a reply's record mark and header up to the
// accept_stat.
const replyHead = 4 + 4*5

func newReply(xid uint32) *replyWriter {
	w := &replyWriter{buf: getReply(512)}
	w.b = (*w.buf)[:4]
	w.u32(xid)
	w.u32(1) // REPLY
	w.u32(0) // MSG_ACCEPTED
	w.u32(0) // verifier: AUTH_NONE, empty
	w.u32(0)
	return w
}

// reserve makes room for n more bytes, moving to a larger pooled buffer if
// need be.
func (w *replyWriter) reserve(n int) {
	if cap(w.b)-len(w.b) >= n {
		return
	}
	old := w.buf
	if nb := getReply(len(w.b) + n); nb != nil {
		*nb = append((*nb)[:0], w.b...)
		w.b, w.buf = *nb, nb
	} else {
		w.b, w.buf = append(make([]byte, 0, len(w.b)+n), w.b...), nil
	}
	if old != nil {
		putReply(old)
	}
}

// garbage makes the reply GARBAGE_ARGS.
func (w *replyWriter) garbage() {
	w.b = w.b[:replyHead]
	w.u32(acceptGarbageArgs)
}

// done sets the record mark and hands the reply to the writer's queue.
func (w *replyWriter) done() outMsg {
	binary.BigEndian.PutUint32(w.b, uint32(len(w.b)-4)|1<<31)
	if w.buf != nil {
		*w.buf = w.b
	}
	return outMsg{b: w.b, buf: w.buf, token: true}
}

func (w *replyWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *replyWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

func (w *replyWriter) status(st gonfs.NFSStatus) { w.u32(uint32(st)) }

// fattr appends a fattr3: a file's attributes, as go-nfs's GETATTR gives
// them (attrOf), in the order of its FileAttribute.
func (w *replyWriter) fattr(a *gonfs.FileAttribute) {
	w.reserve(84)
	for _, v := range []uint32{uint32(a.Type), a.FileMode, a.Nlink, a.UID, a.GID} {
		w.u32(v)
	}
	w.u64(a.Filesize)
	w.u64(a.Used)
	w.u32(a.SpecData[0])
	w.u32(a.SpecData[1])
	w.u64(a.FSID)
	w.u64(a.Fileid)
	for _, t := range []gonfs.FileTime{a.Atime, a.Mtime, a.Ctime} {
		w.u32(t.Seconds)
		w.u32(t.Nseconds)
	}
}

// postOp appends a post_op_attr: a file's attributes if known.
func (w *replyWriter) postOp(a *gonfs.FileAttribute) {
	if a == nil {
		w.u32(0)
		return
	}
	w.u32(1)
	w.fattr(a)
}

// xdrReader reads XDR from a call record; bad is set once it runs out.
type xdrReader struct {
	b   []byte
	bad bool
	rec *[]byte // the call record b is in, until a procedure takes it
}

// take hands the call record over to the procedure serving it, which puts
// it back (putRecord) once nothing reads it, perhaps after its reply.
func (x *xdrReader) take() *[]byte {
	rec := x.rec
	x.rec = nil
	return rec
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
