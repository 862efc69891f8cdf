// Package nfs4 is gatewayd's NFSv4.1 server (RFC 8881): the COMPOUND
// procedure of program 100003 version 4, over the same file shares and the
// same persistent file handles as the NFSv3 frontend, which reads the RPC
// records and hands the version 4 calls here (Server.Call).
//
// What it serves: sessions (EXCHANGE_ID, CREATE_SESSION with its replay,
// SEQUENCE with a slot table and reply cache, BIND_CONN_TO_SESSION,
// DESTROY_SESSION, DESTROY_CLIENTID, RECLAIM_COMPLETE, leases renewed by
// SEQUENCE and expired when not), a grace period after a restart in which
// the clients reclaim their opens and locks (state.go), a pseudo file
// system whose root lists the shares the client may see, and the
// operations that read: PUTFH, PUTROOTFH, PUTPUBFH, GETFH, LOOKUP,
// LOOKUPP, GETATTR, ACCESS, READDIR, READLINK, SAVEFH, RESTOREFH, SECINFO,
// SECINFO_NO_NAME and READ with the anonymous stateids, and read
// delegations recalled over the back channel (deleg.go). Every other
// operation of minor version 1 is NFS4ERR_NOTSUPP; minor versions 0 and 2
// are NFS4ERR_MINOR_VERS_MISMATCH.
package nfs4

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/meta"
)

// Version is the NFS program version served here.
const Version = 4

// Handles turns a share's inode into the NFS file handle both NFS
// versions use, and back.
type Handles interface {
	// Handle is the file handle of inode ino of share.
	Handle(share *fileshare.Share, ino uint64) []byte
	// Resolve is a handle's share and the inode's current path in it. An
	// error wrapping ErrBadHandle says the bytes are no handle of
	// gatewayd's; another one that the file is gone.
	Resolve(fh []byte) (*fileshare.Share, string, error)
}

// ErrBadHandle: the bytes are not a file handle of this server.
var ErrBadHandle = errors.New("nfs4: not a file handle of gatewayd")

// Options tune a Server; the zero value is the defaults.
type Options struct {
	// Lease is the lease time offered (lease_time) and after which a client
	// that sent nothing loses its state; default 90 s.
	Lease time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// MaxSlots is the most slots a session's fore channel gets (default
	// 64).
	MaxSlots uint32
	// WriteVerifier is the verifier of WRITE and COMMIT results: NFSv3's,
	// which changes when the daemon restarts.
	WriteVerifier [8]byte
	// Audit gets the operations that open or change a file of a share
	// with auditing on (audit.go); nil records none.
	Audit *audit.Log
	// ReadDelegations hands out read delegations to clients with a back
	// channel (deleg.go).
	ReadDelegations bool
}

// Server serves NFSv4.1 COMPOUNDs.
type Server struct {
	shares  *fileshare.Manager
	handles Handles
	log     *slog.Logger
	opts    Options
	started time.Time // the pseudo root's times
	owner   []byte    // server_owner major id and server scope
	// store keeps the client records (state.go); nil keeps none. Set by
	// Recover before the first call.
	store meta.Store
	// recordMu orders the writes of client records.
	recordMu sync.Mutex
	// pendingWrites: records wait to be deleted (forget, purge).
	pendingWrites atomic.Bool

	mu        sync.Mutex
	boot      uint32 // the server's instance (epoch): in client and session ids and stateids
	clients   map[uint64]*client
	owners    map[string]*owner // by client_owner4 ownerid
	sessions  map[sessionID]*session
	lastID    uint32
	lastSessN uint32
	open      opens
	grace     *grace   // the grace period, while it runs
	forget    []forget // records of clients dropped, to delete
	purge     bool     // a grace period ended: delete the records of the clients that did not come back

	delegStats delegCounters
}

// New returns a server for the manager's shares (nil serves the session
// operations and an empty pseudo root: for tests of the layer).
func New(shares *fileshare.Manager, handles Handles, logger *slog.Logger, opts Options) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Lease <= 0 {
		opts.Lease = 90 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSlots == 0 {
		opts.MaxSlots = 64
	}
	var b [4]byte
	rand.Read(b[:])
	host, _ := os.Hostname()
	s := &Server{shares: shares, handles: handles, log: logger, opts: opts,
		boot: binary.BigEndian.Uint32(b[:]), started: opts.Now(),
		owner:   []byte("gatewayd:" + host),
		clients: map[uint64]*client{}, owners: map[string]*owner{}, sessions: map[sessionID]*session{},
		open: opens{byOther: map[[12]byte]*openState{}, byFile: map[fileKey][]*openState{},
			locks: map[[12]byte]*lockState{}, exclusive: map[fileKey][8]byte{},
			delegs: map[[12]byte]*delegation{}, delegByFile: map[fileKey][]*delegation{}}}
	return s
}

// Conn is one client connection, as the RPC layer knows it.
type Conn struct {
	addr netip.Addr
	peer string // host:port, for the audit log
	cb   callbacks
}

// NewConn describes a connection from addr.
func NewConn(addr net.Addr) *Conn {
	c := &Conn{peer: addr.String()}
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		c.addr = ap.Addr().Unmap()
	}
	return c
}

// Cred is a call's credential: its flavour and body (RFC 5531).
type Cred struct {
	Flavor uint32
	Body   []byte
}

// principal names who sent a call, for EXCHANGE_ID's checks: the AUTH_SYS
// uid, or "none".
func (c Cred) principal() string {
	if c.Flavor != authSys {
		return "none"
	}
	d := &dec{b: c.Body}
	d.u32()        // stamp
	d.opaque(255)  // machine name
	uid := d.u32() // uid
	if d.bad {
		return "sys:?"
	}
	return fmt.Sprintf("sys:%d", uid)
}

// Call serves one call of the NFS program, version 4: procedure proc with
// its arguments (what follows the RPC header). It returns the accept_stat
// and, when it is success, the reply's body. args is not kept.
func (s *Server) Call(ctx context.Context, conn *Conn, proc uint32, cred Cred, args []byte) (uint32, []byte) {
	return s.CallFrom(ctx, conn, proc, cred, Buffer{B: args})
}

// Buffer is a call's buffer, which a WRITE may take over so that its
// data goes to the share's upload buffer from there, with no copy (as
// NFSv3's WRITE does: fileshare's WriteFrom).
type Buffer struct {
	B     []byte // the call's arguments are B[Start:]
	Start int
	// Take hands B over for a WRITE of n bytes (unstable: answered before
	// it is durable) and returns what to call once the share no longer
	// reads B; nil: B cannot be taken, and is not kept.
	Take func(n int, unstable bool) (release func())
}

// CallFrom is Call with the arguments in a buffer a WRITE may take.
func (s *Server) CallFrom(ctx context.Context, conn *Conn, proc uint32, cred Cred, buf Buffer) (uint32, []byte) {
	switch proc {
	case procNull:
		return AcceptSuccess, nil
	case procCompound:
		return AcceptSuccess, s.compound(ctx, conn, cred, buf)
	}
	return AcceptProcUnavail, nil
}

// exec is one COMPOUND being served.
type exec struct {
	s     *Server
	ctx   context.Context
	conn  *Conn
	cred  Cred
	c     *compound
	raw   []byte  // the arguments as sent (the reply cache's check)
	buf   *Buffer // the call's buffer while a WRITE may take it
	cur   *fh
	saved *fh
	sess  *session
	slot  *slot
	// cacheThis: SEQUENCE asked for the reply to be cached.
	cacheThis bool
	opIndex   int // the operation running
	// keepBody: the operation's result has a body also when it fails.
	keepBody bool
	curState *openState // the current stateid's open, or
	curLock  *lockState // its lock stateid
	// The saved file handle's stateid (SAVEFH, RESTOREFH).
	savedState *openState
	savedLock  *lockState
	out        enc // the results
	n          uint32
}

// sessionless are the operations a COMPOUND may carry without SEQUENCE,
// each alone.
var sessionless = map[uint32]bool{opExchangeID: true, opCreateSession: true, opDestroySession: true,
	opBindConnToSession: true, opDestroyClientID: true}

func (s *Server) compound(ctx context.Context, conn *Conn, cred Cred, buf Buffer) []byte {
	args := buf.B[buf.Start:]
	c := decodeCompound(args)
	if s.opts.ReadDelegations {
		ctx = fileshare.QuietChanges(ctx, changeSource) // recalled before, by changing
	}
	x := &exec{s: s, ctx: ctx, conn: conn, cred: cred, c: c, raw: args}
	if buf.Take != nil {
		x.buf = &buf
	}
	status := c.status
	if status == ok {
		var cached []byte
		status, cached = x.run()
		if cached != nil {
			return cached
		}
	}
	var h enc
	h.b = make([]byte, 0, 12+len(c.tag)+len(x.out.b))
	h.u32(status)
	h.opaque(c.tag)
	h.u32(x.n)
	reply := append(h.b, x.out.b...)
	if x.slot != nil {
		s.finish(x, reply)
	}
	s.writeRecords(context.WithoutCancel(ctx))
	return reply
}

// run runs the operations in order until one fails: the compound's status
// is the last one's. A retransmission SEQUENCE recognises returns the
// cached reply instead.
func (x *exec) run() (uint32, []byte) {
	status := uint32(ok)
	for i, o := range x.c.ops {
		x.opIndex = i
		start := len(x.out.b)
		code := o.code
		x.out.u32(code)
		x.out.u32(0)
		x.n++
		st := o.err
		dir, saved := x.cur, x.saved
		if st == ok {
			switch {
			case i == 0 && o.code == opSequence:
				var cached []byte
				st, cached = x.sequence(o.args.(sequenceArgs))
				if cached != nil {
					return ok, cached
				}
			case o.code == opSequence:
				st = errSequencePos
			case i == 0 && sessionless[o.code] && len(x.c.ops) > 1:
				st = errNotOnlyOp
			case i == 0 && !sessionless[o.code]:
				st = errOpNotInSession
			default:
				st = x.op(o)
				if x.s.opts.Audit != nil {
					x.audit(o, st, dir, saved)
				}
			}
		}
		if st != ok && !x.keepBody {
			x.out.b = x.out.b[:start+8]
		}
		x.keepBody = false
		switch {
		case x.sess == nil:
		case uint32(len(x.out.b))+64 > x.sess.fore.maxResponse:
			x.out.b = x.out.b[:start+8]
			st = errRepTooBig
		case x.cacheThis && uint32(len(x.out.b))+len32(x.c.tag)+12 > x.sess.fore.maxResponseCached:
			x.out.b = x.out.b[:start+8]
			st = errRepTooBigToCache
		}
		putU32(x.out.b[start+4:], st)
		status = st
		if st != ok {
			break
		}
	}
	return status, nil
}

func len32(b []byte) uint32 { return uint32(len(b)) }

func putU32(b []byte, v uint32) { binary.BigEndian.PutUint32(b, v) }

// op runs one operation after the first, appending its result body.
func (x *exec) op(o op) uint32 {
	switch o.code {
	case opExchangeID:
		return x.exchangeID(o.args.(exchangeIDArgs))
	case opCreateSession:
		return x.createSession(o.args.(createSessionArgs))
	case opDestroySession:
		return x.destroySession(o.args.(sessionArgs))
	case opBindConnToSession:
		return x.bindConn(o.args.(bindConnArgs))
	case opDestroyClientID:
		return x.destroyClientID(o.args.(clientIDArgs))
	case opReclaimComplete:
		return x.reclaimComplete(o.args.(reclaimCompleteArgs))
	}
	return x.fileOp(o)
}

// hashArgs identifies a request, to tell a retransmission from another
// request sent on the same slot with the same sequence id (a false retry,
// RFC 8881 section 2.10.6.1.3.1). It hashes the request's length and its
// first and last argsHashSpan bytes: the operations and their file
// handles, stateids, offsets and counts are at the front, and the rest of
// a large request is a WRITE's data. Hashing that data too cost a pass
// over every byte written, under the server's lock: 0.33 ms a MiB on the
// host, and 11 % of gatewayd's CPU samples in the guest's v4.1 write-1m
// (BENCHMARKS.md). As with the Linux server's reply cache, which compares
// a request's first 256 bytes and its length, a request that differs from
// the slot's last one only inside a large WRITE's data is taken for its
// retransmission; a client that reuses a slot and sequence id for new data
// is broken either way. The hashes are compared within one process only,
// so its per-process seed does not matter.
func hashArgs(b []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(argsSeed)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	if len(b) <= 2*argsHashSpan {
		h.Write(b)
	} else {
		h.Write(b[:argsHashSpan])
		h.Write(b[len(b)-argsHashSpan:])
	}
	return h.Sum64()
}

// argsHashSpan is how much of each end of a request hashArgs reads.
const argsHashSpan = 1024

var argsSeed = maphash.MakeSeed()
