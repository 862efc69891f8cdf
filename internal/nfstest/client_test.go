package nfstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// slowServer answers NFS NULL calls, each after delay(n) for the n-th
// call received (from 0), and counts the calls.
type slowServer struct {
	ln    net.Listener
	calls atomic.Int32
	delay func(n int32) time.Duration
	wg    sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// kill stops the server as kill -9 would: the port refuses connections
// and the open ones drop.
func (s *slowServer) kill() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func startSlowServer(t *testing.T, delay func(n int32) time.Duration) *slowServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowServer{ln: ln, delay: delay}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *slowServer) serve(c net.Conn) {
	defer c.Close()
	var mu sync.Mutex // replies go out whole
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:])&^(1<<31))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		n := s.calls.Add(1) - 1
		xid := binary.BigEndian.Uint32(body)
		go func() {
			d := s.delay(n)
			if d < 0 {
				return // never answered
			}
			time.Sleep(d)
			// xid, REPLY, MSG_ACCEPTED, verifier AUTH_NULL, SUCCESS
			reply := binary.BigEndian.AppendUint32(nil, 1<<31|24)
			for _, v := range []uint32{xid, 1, 0, 0, 0, 0} {
				reply = binary.BigEndian.AppendUint32(reply, v)
			}
			mu.Lock()
			c.Write(reply)
			mu.Unlock()
		}()
	}
}

func null(c *rpc.Client) error {
	_, err := c.Call(&rpc.Header{Rpcvers: 2, Prog: 100003, Vers: 3, Proc: 0, Cred: rpc.AuthNull, Verf: rpc.AuthNull})
	return err
}

// callWithin runs a call and fails the test if it has not returned after
// a generous deadline (the point of the client is that calls return).
func callWithin(t *testing.T, c *rpc.Client) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- null(c) }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Minute):
		t.Fatal("an NFS call never returned: the client is wedged")
		return nil
	}
}

// A reply slower than the go-nfs-client's own 5 s timeout is waited for,
// once: the call is not sent again, and the connection still works.
func TestSlowReplyIsWaitedFor(t *testing.T) {
	s := startSlowServer(t, func(n int32) time.Duration {
		if n == 0 {
			return 6 * time.Second
		}
		return 0
	})
	c, err := Dial(t, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := callWithin(t, c); err != nil {
		t.Fatalf("a call answered after 6 s: %v", err)
	}
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("the server received the call %d times: the client sent it again", n)
	}
	if err := callWithin(t, c); err != nil {
		t.Fatalf("the call after a slow one: %v", err)
	}
}

// recorder keeps what a test would report with Errorf.
type recorder struct {
	*testing.T
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) reported() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

// A call that never gets its reply fails, reported with the procedure,
// once CallTimeout has passed; it does not hang.
func TestUnansweredCallFails(t *testing.T) {
	old := CallTimeout
	CallTimeout = 2 * time.Second // the server below never answers
	defer func() { CallTimeout = old }()
	s := startSlowServer(t, func(int32) time.Duration { return -1 })
	rec := &recorder{T: t}
	c, err := Dial(rec, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := callWithin(t, c); err == nil {
		t.Fatal("a call the server never answered succeeded")
	}
	if got := rec.reported(); !strings.Contains(got, "NULL") || !strings.Contains(got, "no reply after") {
		t.Fatalf("report of the unanswered call: %q", got)
	}
}

// Calls pending when the server dies fail at once with an RPC error; the
// client's own connection does not break (the client library panics when
// it tears one down twice while calls are in flight).
func TestServerKilledCallFails(t *testing.T) {
	s := startSlowServer(t, func(int32) time.Duration { return -1 })
	c, err := Dial(t, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	done := inFlight(t, s, c, n)
	s.kill()
	for range n {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a call to a killed server succeeded")
			}
		case <-time.After(5 * time.Minute):
			t.Fatal("a call to a killed server never returned")
		}
	}
}

// Closing the client right after its server died with calls in flight,
// and closing it again (as a test's unmount and its cleanup both do), does
// not panic the client library: before, the relay dropped the client's
// connection when the server died, the library closed the calls' reply
// channels, and Close closed them a second time ("close of closed
// channel"), killing the whole test binary. Repeated, since the window is
// a race.
func TestCloseAfterServerDeathDoesNotPanic(t *testing.T) {
	for i := 0; i < 20; i++ {
		s := startSlowServer(t, func(int32) time.Duration { return -1 })
		c, _, err := dial(t, s.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		const n = 20
		done := inFlight(t, s, c, n)
		s.kill()
		closeClient := sync.OnceFunc(func() { closeWhenIdle(t, c) })
		closeClient()
		closeClient()
		for range n {
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				t.Fatal("a call never returned")
			}
		}
	}
}

// A server that drops a connection but still listens is dialled again:
// the next call goes through.
func TestServerDropsConnectionCallsGoOn(t *testing.T) {
	s := startSlowServer(t, func(int32) time.Duration { return 0 })
	c, err := Dial(t, s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := callWithin(t, c); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	for _, conn := range s.conns {
		conn.Close()
	}
	s.mu.Unlock()
	// The call right after the drop may meet the broken connection and
	// fail; one after that goes to a new connection.
	ok := false
	for i := 0; i < 100 && !ok; i++ {
		ok = callWithin(t, c) == nil
	}
	if !ok {
		t.Fatal("no call went through after the server dropped the connection")
	}
}

// inFlight starts n NULL calls on c and returns once the server s has
// received them all; each call's result arrives on the channel.
func inFlight(t *testing.T, s *slowServer, c *rpc.Client, n int) chan error {
	t.Helper()
	done := make(chan error, n)
	for range n {
		go func() { done <- null(c) }()
	}
	for deadline := time.Now().Add(2 * time.Minute); s.calls.Load() < int32(n); {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls reached the server", s.calls.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	return done
}
