package nfs4

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
)

// Read delegations (RFC 8881 section 10.4), when Options.ReadDelegations
// is on. An OPEN for reading only gets OPEN_DELEGATE_READ when nobody has
// the file open for writing, no delegation of it is being recalled, and
// the client's session has a back channel that answered CB_NULL. A change
// of the file by someone else (an OPEN for writing, WRITE, SETATTR,
// REMOVE or RENAME of another client, a write over NFSv3: Server.Recall)
// recalls it with CB_RECALL over the back channel and is answered
// NFS4ERR_DELAY (NFSv3: JUKEBOX) until the holder returns it
// (DELEGRETURN). A change that did not come over NFS (a write or a size
// change over SMB, a change seen in the bucket through an event or a
// refresh) is heard from the share once made (fileshare's OnWrite and
// OnChange, watch) and recalls the delegations of the file, or of every
// file below a directory refreshed, without waiting for their return. A delegation not returned within the lease time of its
// recall is revoked: the file is free, the holder's stateid is
// NFS4ERR_DELEG_REVOKED and its SEQUENCE replies carry
// SEQ4_STATUS_RECALLABLE_STATE_REVOKED until it frees it (FREE_STATEID).
// Delegations live in memory; after a restart there are none.

// Operations and status codes of this file.
const (
	opDelegReturn    = 8
	opBackchannelCtl = 40
	errDelegRevoked  = 10087

	cbProcCompound = 1
	opCBRecall     = 4
	opCBSequence   = 11

	openDelegateNone    = 0
	openDelegateRead    = 1
	openDelegateNoneExt = 3

	wantReadDeleg = 0x0100
	wantAnyDeleg  = 0x0300
	wantNoDeleg   = 0x0400
	wantMask      = 0xff00

	// why_no_delegation4
	wndNotWanted  = 0
	wndContention = 1

	seqCBPathDown               = 0x1
	seqRecallableRevoked        = 0x40
	seqCBPathDownSession        = 0x200
	cbVersion                   = 1
	delegStateSeq        uint32 = 1
)

type backchannelCtlArgs struct {
	prog uint32
	cred Cred
}

func init() {
	decoders[opDelegReturn] = func(d *dec) any { return stateidsArgs{ids: []stateid{d.stateid()}} }
	decoders[opBackchannelCtl] = func(d *dec) any { return backchannelCtlArgs{prog: d.u32(), cred: d.cbSecParms()} }
}

// backchannelCtl serves BACKCHANNEL_CTL: the session's callbacks go to
// another program, with other credentials.
func (x *exec) backchannelCtl(a backchannelCtlArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	x.sess.cbProg, x.sess.cb.cred = a.prog, a.cred
	return ok
}

// delegation is a read delegation of one file held by one client.
type delegation struct {
	other    [12]byte
	client   *client
	file     fileKey
	fh       []byte
	recalled time.Time // when CB_RECALL was sent; zero before
	revoked  bool
}

func (d *delegation) stateid() stateid { return stateid{seq: delegStateSeq, other: d.other} }

// back is a session's back channel: the connection bound to it, the
// credential of its calls, and its one slot.
type back struct {
	conn  *Conn
	cred  Cred
	ok    bool // CB_NULL was answered on conn
	probe bool // a CB_NULL is on its way
	seq   uint32
	mu    sync.Mutex // one callback at a time: the channel has one slot
}

// up says whether callbacks can go over the back channel (under mu).
func (b *back) up() bool { return b.conn != nil && b.ok && !b.conn.isClosed() }

// bindBack makes conn the session's back channel (under mu); a new one
// is probed.
func (s *Server) bindBack(ss *session, conn *Conn) {
	if ss.cb.conn != conn {
		ss.cb.conn, ss.cb.ok, ss.cb.probe = conn, false, true
		go s.probe(ss, conn)
	}
}

// maybeGrant hands out a read delegation of file for an OPEN that asked
// for access with want bits want, if it may (under mu); nil if not, with
// the reason for an OPEN that said what it wanted.
func (x *exec) maybeGrant(file fileKey, raw []byte, access, want uint32) (*delegation, uint32) {
	s := x.s
	c := x.sess.client
	switch {
	case want == wantNoDeleg:
		return nil, wndNotWanted
	case want != 0 && want != wantReadDeleg && want != wantAnyDeleg:
		return nil, wndContention
	case access != shareAccessRead:
		return nil, wndContention
	}
	for _, o := range s.open.byFile[file] {
		if o.access&shareAccessWrite != 0 {
			return nil, wndContention
		}
	}
	for _, d := range s.open.delegByFile[file] {
		if !d.recalled.IsZero() || d.client == c {
			return nil, wndContention
		}
	}
	ss := x.sess
	if !ss.cb.up() {
		if ss.cb.conn != nil && !ss.cb.probe && !ss.cb.conn.isClosed() {
			ss.cb.probe = true
			go s.probe(ss, ss.cb.conn)
		}
		return nil, wndContention
	}
	d := &delegation{other: s.newOther(), client: c, file: file, fh: append([]byte(nil), raw...)}
	s.open.delegs[d.other] = d
	s.open.delegByFile[file] = append(s.open.delegByFile[file], d)
	s.delegStats.granted.Add(1)
	return d, 0
}

// encodeDelegation appends OPEN's open_delegation4.
func (e *enc) delegation(d *delegation, want, why uint32) {
	switch {
	case d != nil:
		e.u32(openDelegateRead)
		e.u32(d.stateid().seq)
		e.fixed(d.other[:])
		e.bool(false) // recall
		e.u32(0)      // nfsace4: ACE4_ACCESS_ALLOWED_ACE_TYPE,
		e.u32(0)      // no flags,
		e.u32(0)      // no access mask,
		e.str("")     // nobody named
	case want != 0: // a delegation wanted or not: answered as 4.1 does
		e.u32(openDelegateNoneExt)
		e.u32(why)
		if why == wndContention {
			e.bool(false) // ond_server_will_push_deleg
		}
	default:
		e.u32(openDelegateNone)
	}
}

// breakDelegs recalls the delegations of file that clients other than c
// (nil: every client) hold, and says whether any is still held: the
// change must wait (under mu).
func (s *Server) breakDelegs(file fileKey, c *client, now time.Time) bool {
	s.revokeLate(now)
	held := false
	for _, d := range s.open.delegByFile[file] {
		if d.client == c {
			continue
		}
		held = true
		if d.recalled.IsZero() {
			d.recalled = now
			s.open.recalling = append(s.open.recalling, d)
			s.delegStats.recalled.Add(1)
			go s.recall(d)
		}
	}
	return held
}

// revokeLate revokes the recalled delegations not returned within the
// lease time (under mu).
func (s *Server) revokeLate(now time.Time) {
	keep := s.open.recalling[:0]
	for _, d := range s.open.recalling {
		switch {
		case d.revoked || s.open.delegs[d.other] != d:
		case now.Sub(d.recalled) > s.opts.Lease:
			s.log.Info("nfs4: delegation not returned within the lease time of its recall: revoked", "clientid", d.client.id)
			s.unlinkDeleg(d)
			d.revoked = true
			d.client.revoked++
			s.delegStats.revoked.Add(1)
		default:
			keep = append(keep, d)
		}
	}
	clear(s.open.recalling[len(keep):])
	s.open.recalling = keep
}

// unlinkDeleg takes d off its file (under mu); a revoked one stays known
// by its stateid until freed.
func (s *Server) unlinkDeleg(d *delegation) {
	dropFromFile(s.open.delegByFile, d.file, d)
}

// dropDelegs forgets a client's delegations (under mu).
func (s *Server) dropDelegs(c *client) {
	for _, d := range s.open.delegs {
		if d.client == c {
			s.unlinkDeleg(d)
			delete(s.open.delegs, d.other)
		}
	}
}

// findDeleg resolves a delegation stateid of the current client; found
// says whether id names a delegation at all (under mu).
func (x *exec) findDeleg(id stateid) (d *delegation, st uint32, found bool) {
	d = x.s.open.delegs[id.other]
	switch {
	case d == nil:
		return nil, ok, false
	case x.sess == nil || d.client != x.sess.client:
		return nil, errBadStateID, true
	case id.seq > delegStateSeq:
		return nil, errBadStateID, true
	case d.revoked:
		return d, errDelegRevoked, true
	}
	return d, ok, true
}

// delegReturn serves DELEGRETURN.
func (x *exec) delegReturn(id stateid) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	d, st, found := x.findDeleg(id)
	switch {
	case !found:
		if id.special() {
			return errBadStateID
		}
		if _, st := x.findState(id); st != ok {
			return st
		}
		return errBadStateID // an open's or a lock's stateid
	case st == errDelegRevoked:
		return errDelegRevoked
	case st != ok:
		return st
	}
	s.unlinkDeleg(d)
	delete(s.open.delegs, d.other)
	s.delegStats.returned.Add(1)
	return ok
}

// changeSource marks the changes NFSv4.1 makes to shares, which recall
// delegations before they are made (changing), so that the share does
// not report them back (watch).
var changeSource = fileshare.NewChangeSource("nfs4")

// watch subscribes to the changes of share sh made by other paths, at the
// first delegation of one of its files (under mu).
func (s *Server) watch(sh *fileshare.Share) {
	if s.open.watched == nil {
		s.open.watched = map[*fileshare.Share]func(){}
	}
	if _, ok := s.open.watched[sh]; ok {
		return
	}
	stopWrite := sh.OnWrite(changeSource, func(p string) { s.changedElsewhere(sh, p, false) })
	stopChange := sh.OnChange(func(p string) { s.changedElsewhere(sh, p, true) })
	s.open.watched[sh] = func() { stopWrite(); stopChange() }
}

// Close ends the server's subscriptions to the shares' changes.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sh, stop := range s.open.watched {
		stop()
		delete(s.open.watched, sh)
	}
}

// changedElsewhere recalls the delegations of file p of share sh and,
// with below (p may be a directory refreshed), of every file below p: the
// share heard of a change made there by another path. The change is made
// already: it does not wait for their return.
func (s *Server) changedElsewhere(sh *fileshare.Share, p string, below bool) {
	id := sh.Config().ID
	var files []fileKey
	if ino, ok := sh.InodeOf(p); ok {
		files = append(files, fileKey{id, ino})
	}
	if below {
		s.mu.Lock()
		var held []fileKey
		for f := range s.open.delegByFile {
			if f.share == id {
				held = append(held, f)
			}
		}
		s.mu.Unlock()
		for _, f := range held {
			q, err := sh.PathOf(context.Background(), f.ino)
			if err == nil && (p == "" || strings.HasPrefix(q, p+"/")) {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for _, f := range files {
		s.breakDelegs(f, nil, now)
	}
}

// changing is called before the current client changes file (its data,
// attributes or name): it recalls the delegations others hold and says
// whether the change must wait (NFS4ERR_DELAY).
func (x *exec) changing(file fileKey) bool {
	s := x.s
	if !s.opts.ReadDelegations {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *client
	if x.sess != nil {
		c = x.sess.client
	}
	return s.breakDelegs(file, c, s.opts.Now())
}

// changingPath is changing for a file of the current file's share by its
// path; nothing when it is no regular file or is not there.
func (x *exec) changingPath(sh *fileshare.Share, p string) bool {
	if !x.s.opts.ReadDelegations || sh == nil {
		return false
	}
	a, err := sh.Stat(x.ctx, p)
	if err != nil || a.Type != fileshare.TypeFile {
		return false
	}
	return x.changing(fileKey{sh.Config().ID, a.Ino})
}

// Recall is called before a change of inode ino of share that does not
// come over NFSv4.1 (an NFSv3 WRITE): it recalls the delegations of the
// file and says whether the change must wait until they are returned or
// revoked (the caller answers NFS3ERR_JUKEBOX).
func (s *Server) Recall(share *fileshare.Share, ino uint64) bool {
	if !s.opts.ReadDelegations {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.breakDelegs(fileKey{share.Config().ID, ino}, nil, s.opts.Now())
}

// SetReadDelegations sets Options.ReadDelegations, before the first call.
func (s *Server) SetReadDelegations(on bool) { s.opts.ReadDelegations = on }

// DelegationStats counts read delegations since the server started.
type DelegationStats struct {
	Granted, Recalled, Returned, Revoked uint64
}

type delegCounters struct{ granted, recalled, returned, revoked atomic.Uint64 }

// Delegations returns the delegation counters.
func (s *Server) Delegations() DelegationStats {
	c := &s.delegStats
	return DelegationStats{Granted: c.granted.Load(), Recalled: c.recalled.Load(),
		Returned: c.returned.Load(), Revoked: c.revoked.Load()}
}

// probe checks a session's back channel with CB_NULL.
func (s *Server) probe(ss *session, conn *Conn) {
	s.mu.Lock()
	cred, prog := ss.cb.cred, ss.cbProg
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Lease)
	defer cancel()
	_, err := conn.call(ctx, prog, 0, cred, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.cb.conn == conn {
		ss.cb.probe = false
		ss.cb.ok = err == nil
	}
	if err != nil {
		s.log.Info("nfs4: the back channel did not answer CB_NULL: no delegations on it", "clientid", ss.client.id, "err", err)
	}
}

// recall sends CB_RECALL of d over a back channel of its client. Whatever
// happens, d is revoked if not returned within the lease time.
func (s *Server) recall(d *delegation) {
	s.mu.Lock()
	var ss *session
	for _, p := range d.client.sessions {
		if p.cb.up() {
			ss = p
			break
		}
	}
	s.mu.Unlock()
	if ss == nil {
		s.log.Info("nfs4: a delegation to recall has no back channel: revoked after the lease time", "clientid", d.client.id)
		return
	}
	ss.cb.mu.Lock()
	defer ss.cb.mu.Unlock()
	s.mu.Lock()
	conn, cred, prog, seq := ss.cb.conn, ss.cb.cred, ss.cbProg, ss.cb.seq+1
	s.mu.Unlock()
	var e enc
	e.opaque(nil) // tag
	e.u32(1)      // minor version
	e.u32(0)      // callback_ident: none in 4.1
	e.u32(2)
	e.u32(opCBSequence)
	e.fixed(ss.id[:])
	e.u32(seq)
	e.u32(0) // slot
	e.u32(0) // highest slot
	e.bool(false)
	e.u32(0) // referring call lists
	e.u32(opCBRecall)
	e.u32(d.stateid().seq)
	e.fixed(d.other[:])
	e.bool(false) // truncate
	e.opaque(d.fh)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Lease)
	defer cancel()
	body, err := conn.call(ctx, prog, cbProcCompound, cred, e.b)
	status, seqStatus := uint32(errServerFault), uint32(errServerFault)
	if err == nil {
		r := &dec{b: body}
		status = r.u32()
		r.opaque(opaqueLimit)
		if r.u32() > 0 && r.u32() == opCBSequence {
			seqStatus = r.u32()
		}
		if r.bad {
			status, seqStatus = errBadXDR, errBadXDR
		}
	}
	s.mu.Lock()
	if seqStatus == ok && ss.cb.conn == conn {
		ss.cb.seq = seq
	}
	s.mu.Unlock()
	if err != nil || status != ok {
		s.log.Info("nfs4: CB_RECALL failed: the delegation is revoked if not returned within the lease time",
			"clientid", d.client.id, "status", status, "err", err)
	}
}

// The back channel of a connection (Conn): calls to the client's callback
// program, their replies read by the RPC layer and handed to Reply.

// errConnClosed: the connection ended before the callback's reply.
var errConnClosed = errors.New("nfs4: connection closed")

type callbacks struct {
	mu      sync.Mutex
	send    func(rec []byte) bool
	xid     uint32
	waiting map[uint32]chan []byte
	closed  bool
}

// SetSender gives the connection its way to send a record (an RPC call,
// record mark included) to the client; it says false once the
// connection is closed.
func (c *Conn) SetSender(send func(rec []byte) bool) {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.send = send
	var b [4]byte
	rand.Read(b[:])
	c.cb.xid = binary.BigEndian.Uint32(b[:])
}

// Reply hands over the reply to a callback: its XID and what follows the
// message type (reply_stat on). body is not kept.
func (c *Conn) Reply(xid uint32, body []byte) {
	c.cb.mu.Lock()
	ch := c.cb.waiting[xid]
	delete(c.cb.waiting, xid)
	c.cb.mu.Unlock()
	if ch != nil {
		ch <- append([]byte(nil), body...)
	}
}

// Close says the connection ended: callbacks waiting fail.
func (c *Conn) Close() {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	c.cb.closed = true
	for xid, ch := range c.cb.waiting {
		close(ch)
		delete(c.cb.waiting, xid)
	}
}

func (c *Conn) isClosed() bool {
	c.cb.mu.Lock()
	defer c.cb.mu.Unlock()
	return c.cb.closed || c.cb.send == nil
}

// call makes an RPC call of procedure proc of program prog, version 1,
// over the connection and returns its results.
func (c *Conn) call(ctx context.Context, prog, proc uint32, cred Cred, args []byte) ([]byte, error) {
	ch := make(chan []byte, 1)
	c.cb.mu.Lock()
	if c.cb.closed || c.cb.send == nil {
		c.cb.mu.Unlock()
		return nil, errConnClosed
	}
	c.cb.xid++
	xid := c.cb.xid
	if c.cb.waiting == nil {
		c.cb.waiting = map[uint32]chan []byte{}
	}
	c.cb.waiting[xid] = ch
	send := c.cb.send
	c.cb.mu.Unlock()
	var e enc
	e.u32(0) // record mark, below
	e.u32(xid)
	e.u32(0) // CALL
	e.u32(2) // RPC version
	e.u32(prog)
	e.u32(cbVersion)
	e.u32(proc)
	e.u32(cred.Flavor)
	e.opaque(cred.Body)
	e.u32(authNone) // verifier
	e.u32(0)
	e.b = append(e.b, args...)
	binary.BigEndian.PutUint32(e.b, uint32(len(e.b)-4)|1<<31)
	forget := func() {
		c.cb.mu.Lock()
		delete(c.cb.waiting, xid)
		c.cb.mu.Unlock()
	}
	if !send(e.b) {
		forget()
		return nil, errConnClosed
	}
	var body []byte
	select {
	case b, open := <-ch:
		if !open {
			return nil, errConnClosed
		}
		body = b
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
	r := &dec{b: body}
	if r.u32() != 0 { // MSG_DENIED
		return nil, errors.New("nfs4: callback denied")
	}
	r.u32()
	r.opaque(400) // verifier
	if a := r.u32(); a != AcceptSuccess || r.bad {
		return nil, errors.New("nfs4: callback not accepted")
	}
	return r.b, nil
}
