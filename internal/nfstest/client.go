package nfstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
// for ever. Its connection is not reachable from outside, so Dial puts a
// relay on loopback between it and the server: the relay bounds every call
// by CallTimeout and, past it, reports the call and drops the connection,
// which makes the client's call fail (and the test with it) instead of
// hanging. The client's own timeout is set above CallTimeout so that it
// never fires, and so never resends a call nor races a late reply.

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
	r, err := newRelay(addr, CallTimeout, func(msg string) { t.Errorf("%s", msg) })
	if err != nil {
		return nil, err
	}
	c, err := rpc.DialTCP("tcp", r.addr(), false)
	if err != nil {
		r.close()
		return nil, err
	}
	t.Cleanup(func() { c.Close(); r.close() })
	return c, nil
}

// Mount mounts /share (or /share/dir) at addr as auth, over Dial's client.
// The returned function unmounts and closes the connection.
func Mount(t testing.TB, addr, share string, auth rpc.Auth) (*nfsc.Target, func(), error) {
	t.Helper()
	c, err := Dial(t, addr)
	if err != nil {
		return nil, nil, err
	}
	m := &nfsc.Mount{Client: c}
	v, err := m.Mount("/"+share, auth)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return v, func() { m.Unmount(); c.Close() }, nil
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

// relay forwards RPC records between clients and the server, noting when
// each call went out; a call without a reply after the timeout is
// reported, and the relay then drops its connections and accepts no more.
// Calls pending on a connection that closes are forgotten: the client
// sends them again on its next connection.
//
// Once the server cannot be reached (it was killed), the relay stops
// listening before it drops the client's connection, so the client's
// reconnection is refused as it would be by the dead server. Accepting it
// and closing it at once instead would make the client tear down the same
// connection twice, and it panics closing its reply channels again.
type relay struct {
	ln      net.Listener
	server  string
	timeout time.Duration
	report  func(string)

	mu     sync.Mutex
	links  map[*link]bool
	failed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// link is one client connection and its connection to the server.
type link struct {
	client, server net.Conn
	pending        map[uint32]pendingCall // by XID; under relay.mu
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

func (r *relay) close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.mu.Unlock()
	r.drop()
	r.wg.Wait()
}

// drop closes the listener and every connection.
func (r *relay) drop() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.links {
		l.client.Close()
		l.server.Close()
	}
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		client, err := r.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", r.server)
		if err != nil {
			r.ln.Close()
			client.Close()
			return
		}
		l := &link{client: client, server: server, pending: map[uint32]pendingCall{}}
		r.mu.Lock()
		if r.failed {
			r.mu.Unlock()
			client.Close()
			server.Close()
			continue
		}
		r.links[l] = true
		r.mu.Unlock()
		var both sync.WaitGroup
		both.Add(2)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			both.Wait()
			r.mu.Lock()
			delete(r.links, l)
			r.mu.Unlock()
		}()
		go func() { defer both.Done(); r.copy(server, client, l.called, nil) }()
		go func() { defer both.Done(); r.copy(client, server, l.replied, r.serverLost) }()
	}
}

// serverLost stops the relay listening if the server no longer accepts
// connections.
func (r *relay) serverLost() {
	if c, err := net.Dial("tcp", r.server); err == nil {
		c.Close()
		return
	}
	r.ln.Close()
}

// copy forwards records from src to dst, passing each record's start to
// note under the relay's lock, until either side closes; then it closes
// both. If src ends by itself, lost runs first.
func (r *relay) copy(dst, src net.Conn, note func([]byte), lost func()) {
	defer dst.Close()
	defer src.Close()
	var hdr [4]byte
	first := true // the next fragment starts a record
	for {
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			if lost != nil && !errors.Is(err, net.ErrClosed) {
				lost()
			}
			return
		}
		v := binary.BigEndian.Uint32(hdr[:])
		frag := make([]byte, 4+int(v&^(1<<31)))
		copy(frag, hdr[:])
		if _, err := io.ReadFull(src, frag[4:]); err != nil {
			if lost != nil && !errors.Is(err, net.ErrClosed) {
				lost()
			}
			return
		}
		if first {
			r.mu.Lock()
			note(frag[4:])
			r.mu.Unlock()
		}
		first = v&(1<<31) != 0
		if _, err := dst.Write(frag); err != nil {
			return
		}
	}
}

// called notes a call: XID, message type 0, RPC version, program,
// version, procedure.
func (l *link) called(b []byte) {
	if len(b) >= 24 {
		l.pending[binary.BigEndian.Uint32(b)] = pendingCall{
			prog: binary.BigEndian.Uint32(b[12:]), proc: binary.BigEndian.Uint32(b[20:]), sent: time.Now()}
	}
}

func (l *link) replied(b []byte) {
	if len(b) >= 4 {
		delete(l.pending, binary.BigEndian.Uint32(b))
	}
}

// watch fails the calls that waited too long.
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
		if err := r.overdue(); err != nil {
			r.report(err.Error())
			r.drop()
			return
		}
	}
}

func (r *relay) overdue() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.links {
		for xid, c := range l.pending {
			if wait := time.Since(c.sent); wait > r.timeout {
				r.failed = true
				return fmt.Errorf("nfs: call %s, xid %#x, had no reply after %v; connection dropped",
					procs.Describe(c.prog, c.proc), xid, wait.Round(time.Second))
			}
		}
	}
	return nil
}
