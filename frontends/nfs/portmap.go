package nfs

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// The system's rpcbind (portmapper, RFC 1833 version 2) tells clients which
// port serves NFS and MOUNT, so a plain `mount -t nfs host:/share` finds
// the server. Register sets the mappings for NFS v3 and MOUNT v1 and v3
// over TCP; rpcbind accepts changes only from the local host and, unless
// it runs insecure (-i), from a privileged port, so this needs root.

const (
	pmapProg    = 100000
	pmapVers    = 2
	pmapProcSet = 1
	pmapProcUns = 2
	nfsProg     = 100003
	mountProg   = 100005
	ipprotoTCP  = 6
)

var registrations = []struct{ prog, vers uint32 }{{nfsProg, 3}, {mountProg, 3}, {mountProg, 1}}

// Register maps NFS and MOUNT to port in the portmapper at pmap (usually
// 127.0.0.1:111) and returns a function that removes the mappings.
func Register(ctx context.Context, pmap string, port int) (func(), error) {
	for _, r := range registrations {
		// A stale mapping from an earlier run would make SET fail.
		_, _ = pmapCall(ctx, pmap, pmapProcUns, r.prog, r.vers, 0)
		ok, err := pmapCall(ctx, pmap, pmapProcSet, r.prog, r.vers, uint32(port))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("rpcbind at %s refused to map program %d version %d (it takes changes from root on this host)", pmap, r.prog, r.vers)
		}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, r := range registrations {
			_, _ = pmapCall(ctx, pmap, pmapProcUns, r.prog, r.vers, 0)
		}
	}, nil
}

// pmapCall makes one portmapper call (SET or UNSET) from a privileged
// port when it can get one, and returns the boolean result.
func pmapCall(ctx context.Context, pmap string, proc, prog, vers, port uint32) (bool, error) {
	conn, err := dialPrivileged(ctx, pmap)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	var xidb [4]byte
	_, _ = rand.Read(xidb[:])
	xid := binary.BigEndian.Uint32(xidb[:])
	var msg []byte
	for _, v := range []uint32{xid, 0 /* CALL */, 2 /* RPC version */, pmapProg, pmapVers, proc,
		0, 0 /* AUTH_NULL credential */, 0, 0 /* AUTH_NULL verifier */, prog, vers, ipprotoTCP, port} {
		msg = binary.BigEndian.AppendUint32(msg, v)
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg))|1<<31) // last fragment
	if _, err := conn.Write(append(frame, msg...)); err != nil {
		return false, fmt.Errorf("rpcbind at %s: %w", pmap, err)
	}
	r := bufio.NewReader(conn)
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return false, fmt.Errorf("rpcbind at %s: %w", pmap, err)
	}
	n := binary.BigEndian.Uint32(hdr[:]) &^ (1 << 31)
	if n < 24 || n > 1024 {
		return false, fmt.Errorf("rpcbind at %s: reply of %d bytes", pmap, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return false, fmt.Errorf("rpcbind at %s: %w", pmap, err)
	}
	u := func(i int) uint32 { return binary.BigEndian.Uint32(body[i*4:]) }
	// xid, REPLY, MSG_ACCEPTED, verifier (flavor, length, body), SUCCESS, result
	if u(0) != xid || u(1) != 1 || u(2) != 0 {
		return false, fmt.Errorf("rpcbind at %s: call not accepted", pmap)
	}
	vlen := int(u(4))
	off := 20 + (vlen+3)/4*4
	if len(body) < off+8 {
		return false, fmt.Errorf("rpcbind at %s: short reply", pmap)
	}
	if binary.BigEndian.Uint32(body[off:]) != 0 {
		return false, fmt.Errorf("rpcbind at %s: call failed (accept status %d)", pmap, binary.BigEndian.Uint32(body[off:]))
	}
	return binary.BigEndian.Uint32(body[off+4:]) != 0, nil
}

// dialPrivileged connects from a port below 1024 when the process may bind
// one, else from any port.
func dialPrivileged(ctx context.Context, addr string) (net.Conn, error) {
	var lastErr error
	for p := 1023; p >= 600; p-- {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}, Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if isPermission(err) {
			break
		}
		if !isAddrInUse(err) {
			return nil, err
		}
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if lastErr != nil && !isPermission(lastErr) && !isAddrInUse(lastErr) {
			return nil, lastErr
		}
		return nil, err
	}
	return c, nil
}

func isPermission(err error) bool {
	var se syscall.Errno
	return errors.As(err, &se) && (se == syscall.EACCES || se == syscall.EPERM)
}

func isAddrInUse(err error) bool {
	var se syscall.Errno
	return errors.As(err, &se) && (se == syscall.EADDRINUSE || se == syscall.EADDRNOTAVAIL)
}
