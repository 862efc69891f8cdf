package nfs

import (
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/frontends/nfs/nfs4"
	"github.com/gatewayd/gatewayd/frontends/nfs/procs"
)

// Reply latency is measured on the connection, below go-nfs, which has no
// hook around its procedure handlers: a call counts from when its record
// header is read off the socket to when the last byte of the reply with
// the same XID is written. go-nfs serves a connection's calls one at a
// time, so the time includes waiting behind the calls sent before it on
// the same connection: what the client sees.

// slowCall is how long a call may take before it is logged: a Linux
// client over TCP resends after 60 s (timeo=600).
const slowCall = 10 * time.Second

// timedListener hands out connections that time each call.
type timedListener struct {
	net.Listener
	observe func(proc string, d time.Duration)
	log     *slog.Logger
	slow    time.Duration // calls as long are logged: slowCall, shorter in tests
}

func (l timedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

func (l timedListener) wrap(c net.Conn) *timedConn {
	tc := &timedConn{Conn: c, observe: l.observe, log: l.log, slow: l.slow, pending: map[uint32]pendingCall{}}
	tc.in = recordScanner{want: 24, onHead: tc.called}
	tc.out = recordScanner{want: 4, onEnd: tc.replied}
	return tc
}

type pendingCall struct {
	proc  string
	since time.Time
}

// timedConn scans the call records read and the reply records written.
// go-nfs reads on one goroutine and writes on another.
type timedConn struct {
	net.Conn
	observe func(proc string, d time.Duration)
	log     *slog.Logger
	slow    time.Duration
	in, out recordScanner // the reader's and the writer's alone
	wbufs   [][]byte      // the writer's: what WriteBuffers writes

	mu      sync.Mutex
	pending map[uint32]pendingCall // by XID
}

func (c *timedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.in.feed(p[:n])
	}
	return n, err
}

func (c *timedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.out.feed(p[:n])
	}
	return n, err
}

// WriteBuffers writes several buffers at once (writev on a socket), for
// rpcConn's writer.
func (c *timedConn) WriteBuffers(b *net.Buffers) (int64, error) {
	c.wbufs = append(c.wbufs[:0], *b...)
	n, err := b.WriteTo(c.Conn)
	left := n
	for _, p := range c.wbufs {
		k := min(left, int64(len(p)))
		c.out.feed(p[:k])
		left -= k
	}
	clear(c.wbufs)
	return n, err
}

// called notes a call: XID, message type 0, RPC version, program,
// version, procedure.
func (c *timedConn) called(head []byte) {
	if len(head) < 24 || binary.BigEndian.Uint32(head[4:]) != 0 {
		return
	}
	xid := binary.BigEndian.Uint32(head)
	prog, num := binary.BigEndian.Uint32(head[12:]), binary.BigEndian.Uint32(head[20:])
	proc := procs.Name(prog, num)
	if prog == procs.NFS && binary.BigEndian.Uint32(head[16:]) == nfs4.Version {
		proc = "other"
		if num <= 1 {
			proc = [...]string{"NULL", "COMPOUND"}[num] // NFSv4.1
		}
	}
	c.mu.Lock()
	c.pending[xid] = pendingCall{proc: proc, since: time.Now()}
	c.mu.Unlock()
}

func (c *timedConn) replied(head []byte) {
	if len(head) < 4 {
		return
	}
	xid := binary.BigEndian.Uint32(head)
	c.mu.Lock()
	call, ok := c.pending[xid]
	delete(c.pending, xid)
	c.mu.Unlock()
	if !ok {
		return
	}
	d := time.Since(call.since)
	c.observe(call.proc, d)
	if d >= c.slow {
		c.log.Warn("nfs: slow call", "proc", call.proc, "seconds", d.Seconds(), "client", c.RemoteAddr())
	}
}

// recordScanner follows ONC RPC record marking (RFC 5531 section 11) in a
// byte stream: a 4-byte header per fragment, its top bit marking a
// record's last fragment. onHead gets a record's first want bytes as soon
// as they are in (or all of a shorter record at its end); onEnd gets them
// at the record's end.
type recordScanner struct {
	want          int
	onHead, onEnd func(head []byte)

	hdr      [4]byte
	nhdr     int
	left     uint32 // bytes left in the current fragment
	last     bool   // the current fragment ends its record
	head     []byte
	headDone bool
}

func (s *recordScanner) feed(p []byte) {
	for len(p) > 0 {
		if s.left == 0 {
			k := copy(s.hdr[s.nhdr:], p)
			s.nhdr += k
			p = p[k:]
			if s.nhdr < 4 {
				return
			}
			s.nhdr = 0
			v := binary.BigEndian.Uint32(s.hdr[:])
			s.last, s.left = v&(1<<31) != 0, v&^(1<<31)
			if s.left == 0 && s.last {
				s.end()
			}
			continue
		}
		n := min(s.left, uint32(len(p)))
		if need := s.want - len(s.head); need > 0 {
			s.head = append(s.head, p[:min(need, int(n))]...)
			if len(s.head) == s.want && s.onHead != nil {
				s.headDone = true
				s.onHead(s.head)
			}
		}
		p = p[n:]
		s.left -= n
		if s.left == 0 && s.last {
			s.end()
		}
	}
}

// atEnd says whether the bytes fed so far end with a whole record.
func (s *recordScanner) atEnd() bool { return s.nhdr == 0 && s.left == 0 && s.last }

func (s *recordScanner) end() {
	if !s.headDone && s.onHead != nil {
		s.onHead(s.head)
	}
	if s.onEnd != nil {
		s.onEnd(s.head)
	}
	s.head, s.headDone = s.head[:0], false
}
