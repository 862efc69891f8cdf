package nfstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/nfs/procs"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// The go-nfs-client's RPC client gives up waiting for a reply after
// rpc.DefaultReadTimeout (5 s), then sends the call again; a reply that
// arrives as it gives up leaves its receiving goroutine blocked for good
// on a channel nobody reads, and every later call on the connection waits
// for ever. And when its connection breaks, it closes the reply channels
// of the calls in flight without forgetting them, so a second teardown
// before those calls return (a reconnection that breaks too, or Close)
// closes them again and panics the test binary. Its connection is not
// reachable from outside, so Dial puts a relay on loopback between it and
// the server, and the client's connection to the relay never breaks while
// it is open: the relay answers every call exactly once, with the
// server's reply or, when the server is gone or the call waited past
// CallTimeout (which is reported), with an RPC error (SYSTEM_ERR) that
// makes the call fail at once. The client's own timeout is set above
// CallTimeout so that it never fires, and so never resends a call nor
// races a late reply.

// CallTimeout is how long a call may wait for its reply: generous, for a
// busy machine; a server that takes longer is reported.
var CallTimeout = 3 * time.Minute

func init() {
	rpc.DefaultReadTimeout = 24 * time.Hour
}

// Dial connects an RPC client to the NFS (and MOUNT) server at addr
// through a relay that bounds every call by CallTimeout; a call past it is
// reported with t.Errorf and fails. The client is closed at the test's
// end.
func Dial(t testing.TB, addr string) (*rpc.Client, error) {
	t.Helper()
	c, _, err := dial(t, addr)
	return c, err
}

// dial is Dial that also returns the function that closes the client,
// once, after its calls in flight have returned (closeWhenIdle).
func dial(t testing.TB, addr string) (*rpc.Client, func(), error) {
	t.Helper()
	r, err := newRelay(addr, CallTimeout, func(msg string) { t.Errorf("%s", msg) })
	if err != nil {
		return nil, nil, err
	}
	// The client library binds a random local port and, unprivileged,
	// does not try another when it is taken.
	c, err := rpc.DialTCP("tcp", r.addr(), false)
	for i := 0; i < 20 && errors.Is(err, syscall.EADDRINUSE); i++ {
		c, err = rpc.DialTCP("tcp", r.addr(), false)
	}
	if err != nil {
		r.close()
		return nil, nil, err
	}
	closeClient := sync.OnceFunc(func() { closeWhenIdle(t, c) })
	t.Cleanup(func() { closeClient(); r.close() })
	return c, closeClient, nil
}

// closeWhenIdle closes c once no call of it waits for its reply. The client
// library closes the reply channels of the calls in flight at Close and
// again when its receiver sees the connection end, without forgetting
// them: a Close with a call in flight panics the test binary ("close of
// closed channel"). The relay answers every call within CallTimeout, so
// the wait ends; the calls' table is read through reflection, since the
// library does not export it.
func closeWhenIdle(t testing.TB, c *rpc.Client) {
	replies := reflect.ValueOf(c).Elem().FieldByName("replies")
	deadline := time.Now().Add(CallTimeout + time.Minute)
	for {
		c.Lock()
		n := replies.Len()
		c.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("nfs: %d calls still waiting for their replies at close", n)
			return // not closed: closing would panic
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
}

// Mount mounts /share (or /share/dir) at addr as auth, over Dial's client.
// The returned function unmounts and closes the connection.
func Mount(t testing.TB, addr, share string, auth rpc.Auth) (*nfsc.Target, func(), error) {
	t.Helper()
	c, closeClient, err := dial(t, addr)
	if err != nil {
		return nil, nil, err
	}
	m := &nfsc.Mount{Client: c}
	v, err := m.Mount("/"+share, auth)
	if err != nil {
		closeClient()
		return nil, nil, err
	}
	return v, func() { m.Unmount(); closeClient() }, nil
}

// MustMount is Mount with AuthNull that fails the test on an error.
func MustMount(t testing.TB, addr, share string) (*nfsc.Target, func()) {
	t.Helper()
	v, done, err := Mount(t, addr, share, rpc.AuthNull)
	if err != nil {
		t.Fatalf("nfs mount of %s at %s: %v", share, addr, err)
	}
	return v, done
}

// relay forwards RPC records between a client and the server. Each
// client connection has its own connection to the server, dialled again
// after it breaks; every call is answered exactly once (answer).
type relay struct {
	ln      net.Listener
	server  string
	timeout time.Duration
	report  func(string)

	mu    sync.Mutex
	links map[*link]bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

// link is one client connection and its connection to the server.
type link struct {
	r      *relay
	client net.Conn
	wmu    sync.Mutex // client writes

	// Under relay.mu:
	server  net.Conn               // nil while there is none
	pending map[uint32]pendingCall // by XID, until answered
}

type pendingCall struct {
	prog, proc uint32
	sent       time.Time
}

func newRelay(server string, timeout time.Duration, report func(string)) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, server: server, timeout: timeout, report: report,
		links: map[*link]bool{}, stop: make(chan struct{})}
	r.wg.Add(2)
	go r.accept()
	go r.watch()
	return r, nil
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// close stops the relay and closes every connection.
func (r *relay) close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.ln.Close()
	for l := range r.links {
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		l := &link{r: r, client: client, pending: map[uint32]pendingCall{}}
		r.mu.Lock()
		r.links[l] = true
		r.mu.Unlock()
		r.wg.Add(1)
		go l.fromClient()
	}
}

// fromClient forwards the client's calls until the client closes.
func (l *link) fromClient() {
	r := l.r
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.links, l)
		if l.server != nil {
			l.server.Close()
		}
		r.mu.Unlock()
		l.client.Close()
	}()
	for {
		rec, err := readRecord(l.client)
		if err != nil {
			return
		}
		if len(rec) < 24 {
			continue // not a call
		}
		xid := binary.BigEndian.Uint32(rec)
		r.mu.Lock()
		l.pending[xid] = pendingCall{prog: binary.BigEndian.Uint32(rec[12:]), proc: binary.BigEndian.Uint32(rec[20:]), sent: time.Now()}
		srv := l.server
		r.mu.Unlock()
		if srv == nil {
			if srv = l.dial(); srv == nil {
				l.answer(xid, nil) // the server is gone
				continue
			}
		}
		if err := writeRecord(srv, rec); err != nil {
			srv.Close() // its reader answers what waits on it
			l.answer(xid, nil)
		}
	}
}

// dial connects the link to the server and starts reading its replies;
// nil if the server cannot be reached.
func (l *link) dial() net.Conn {
	srv, err := net.Dial("tcp", l.r.server)
	if err != nil {
		return nil
	}
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	select {
	case <-l.r.stop:
		srv.Close()
		return nil
	default:
	}
	l.server = srv
	l.r.wg.Add(1)
	go l.fromServer(srv)
	return srv
}

// fromServer passes the server's replies to the client; when the
// connection ends, the calls still waiting fail.
func (l *link) fromServer(srv net.Conn) {
	r := l.r
	defer r.wg.Done()
	for {
		rec, err := readRecord(srv)
		if err != nil {
			break
		}
		if len(rec) >= 4 {
			l.answer(binary.BigEndian.Uint32(rec), rec)
		}
	}
	srv.Close()
	r.mu.Lock()
	if l.server == srv {
		l.server = nil
	}
	xids := make([]uint32, 0, len(l.pending))
	for xid := range l.pending {
		xids = append(xids, xid)
	}
	r.mu.Unlock()
	for _, xid := range xids {
		l.answer(xid, nil)
	}
}

// answer sends the client rec, the reply to call xid, or a SYSTEM_ERR
// reply if rec is nil, once: a call already answered is not answered again
// (a late reply after an error is dropped).
func (l *link) answer(xid uint32, rec []byte) {
	l.r.mu.Lock()
	_, ok := l.pending[xid]
	delete(l.pending, xid)
	l.r.mu.Unlock()
	if !ok {
		return
	}
	if rec == nil {
		// XID, REPLY, MSG_ACCEPTED, verifier AUTH_NONE of length 0,
		// SYSTEM_ERR.
		rec = binary.BigEndian.AppendUint32(nil, xid)
		for _, v := range []uint32{1, 0, 0, 0, 5} {
			rec = binary.BigEndian.AppendUint32(rec, v)
		}
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_ = writeRecord(l.client, rec) // a closed client needs no answer
}

// readRecord reads one RPC record (RFC 5531 record marking), all its
// fragments joined.
func readRecord(c net.Conn) ([]byte, error) {
	var rec []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil, err
		}
		v := binary.BigEndian.Uint32(hdr[:])
		start := len(rec)
		rec = append(rec, make([]byte, v&^(1<<31))...)
		if _, err := io.ReadFull(c, rec[start:]); err != nil {
			return nil, err
		}
		if v&(1<<31) != 0 {
			return rec, nil
		}
	}
}

// writeRecord writes rec as one last fragment.
func writeRecord(c net.Conn, rec []byte) error {
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(rec)), uint32(len(rec))|1<<31)
	_, err := c.Write(append(buf, rec...))
	return err
}

// watch fails the calls that waited too long: each is reported and
// answered with an error.
func (r *relay) watch() {
	defer r.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		type overdue struct {
			l   *link
			xid uint32
			c   pendingCall
		}
		var late []overdue
		r.mu.Lock()
		for l := range r.links {
			for xid, c := range l.pending {
				if time.Since(c.sent) > r.timeout {
					late = append(late, overdue{l, xid, c})
				}
			}
		}
		r.mu.Unlock()
		for _, o := range late {
			r.report(fmt.Sprintf("nfs: call %s, xid %#x, had no reply after %v; it fails",
				procs.Describe(o.c.prog, o.c.proc), o.xid, time.Since(o.c.sent).Round(time.Second)))
			o.l.answer(o.xid, nil)
		}
	}
}
