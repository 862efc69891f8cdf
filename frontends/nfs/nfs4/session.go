package nfs4

import (
	"bytes"
	"encoding/binary"
	"time"
)

// Clients and sessions (RFC 8881 sections 2.4, 2.10, 18.35-18.37, 18.46).
// The state lives in memory under Server.mu: client records by id and by
// owner, sessions by id, each session's slot table with its reply cache.
// What outlives a restart is one record per client in the metadata store
// (state.go), so that its client may reclaim.

// client is a client record (a client ID).
type client struct {
	id        uint64
	owner     string
	verifier  [8]byte
	principal string
	flags     uint32
	confirmed bool
	// seq is the CREATE_SESSION sequence id expected next; csReply the
	// result of the last one (status and body), for its replay.
	seq      uint32
	csStatus uint32
	csReply  []byte
	renewed  time.Time
	sessions map[sessionID]*session
	// revoked counts its revoked delegations not yet freed (deleg.go).
	revoked int
	// reclaimed: RECLAIM_COMPLETE was done.
	reclaimed bool
	// kept: its record is in the store, written in this epoch (state.go);
	// gone: the record was dropped.
	kept, gone bool
}

// owner is what a client_owner4 names: its confirmed record, and an
// unconfirmed one that replaces it once CREATE_SESSION confirms it.
type owner struct {
	confirmed, unconfirmed *client
}

type session struct {
	id     sessionID
	client *client
	flags  uint32
	fore   channelAttrs
	back   channelAttrs
	cbProg uint32
	slots  []slot
	conns  map[*Conn]bool
	cb     back // the back channel, when the client asked for one (deleg.go)
}

// slot is an entry of a session's slot table: the sequence id of its last
// request, whether that one is being served, and its reply if cached.
type slot struct {
	seq    uint32
	busy   bool
	reply  []byte
	cached bool
	hash   uint64
}

// Server limits of a session's fore channel.
const (
	maxRequest = 1<<20 + 64<<10 // a WRITE of maxIO with its headers
	maxIO      = 1 << 20        // READ and WRITE data
	// maxResponse is a READ of maxIO with its headers.
	maxResponse = maxIO + 64<<10
	// maxCached is the largest reply kept in a slot; a request that asks
	// for its reply to be cached (sa_cachethis) is told this bound
	// (ca_maxresponsesize_cached). Other replies are kept too when no
	// larger, so a retransmission of a reply this size is answered from
	// the cache, whatever it asked.
	maxCached = 64 << 10
	// minRequest and minResponse are the smallest sizes a channel may
	// offer; less is NFS4ERR_TOOSMALL.
	minRequest  = 256
	minResponse = 256
	// maxSessionOps is ca_maxoperations at most.
	maxSessionOps = 64
)

// expire drops the clients whose lease ended, with their sessions (under
// mu).
func (s *Server) expire(now time.Time) {
	for _, c := range s.clients {
		if now.Sub(c.renewed) > s.opts.Lease {
			s.log.Debug("nfs4: lease expired", "clientid", c.id)
			s.dropClient(c)
		}
	}
}

// dropClient forgets a client record and its sessions (under mu).
func (s *Server) dropClient(c *client) {
	c.gone = true
	if c.kept {
		s.forget = append(s.forget, forget{c.owner, c.id})
		s.pendingWrites.Store(true)
	}
	s.dropOpens(c)
	s.dropDelegs(c)
	for id := range c.sessions {
		delete(s.sessions, id)
	}
	delete(s.clients, c.id)
	if o := s.owners[c.owner]; o != nil {
		if o.confirmed == c {
			o.confirmed = nil
		}
		if o.unconfirmed == c {
			o.unconfirmed = nil
		}
		if o.confirmed == nil && o.unconfirmed == nil {
			delete(s.owners, c.owner)
		}
	}
}

// newClient makes a client record (under mu).
func (s *Server) newClient(a exchangeIDArgs, principal string, now time.Time) *client {
	s.lastID++
	c := &client{id: uint64(s.boot)<<32 | uint64(s.lastID), owner: string(a.owner), verifier: a.verifier,
		principal: principal, flags: a.flags, seq: 1, renewed: now, sessions: map[sessionID]*session{}}
	s.clients[c.id] = c
	return c
}

// exchangeID serves EXCHANGE_ID (RFC 8881 section 18.35.5's cases).
func (x *exec) exchangeID(a exchangeIDArgs) uint32 {
	if a.flags&^exchgidArgFlags != 0 {
		return errInval
	}
	if a.protect != sp4None {
		// Machine credentials and SSV protect state with RPCSEC_GSS, which
		// this server does not speak.
		return errNotSupp
	}
	s := x.s
	principal := x.cred.principal()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	s.expire(now)
	o := s.owners[string(a.owner)]
	if o == nil {
		o = &owner{}
		s.owners[string(a.owner)] = o
	}
	var c *client
	conf := o.confirmed
	switch {
	case a.flags&exchgidUpdConfirmedRec != 0:
		switch {
		case conf == nil:
			return errNoEnt
		case conf.verifier != a.verifier:
			return errNotSame
		case conf.principal != principal:
			return errPerm
		}
		c = conf
	case conf != nil && conf.verifier == a.verifier && conf.principal == principal:
		c = conf // a retry, or another connection of the same client
	case conf != nil && conf.principal != principal && len(conf.sessions) > 0:
		return errClientIDInUse
	default:
		// A new client, a client rebooted (its verifier changed), another
		// principal taking over a record without state, or an unconfirmed
		// record replaced: a new unconfirmed record, which CREATE_SESSION
		// confirms.
		if conf != nil && conf.principal != principal {
			s.dropClient(conf)
		}
		if u := o.unconfirmed; u != nil {
			s.dropClient(u)
		}
		s.owners[string(a.owner)] = o
		c = s.newClient(a, principal, now)
		o.unconfirmed = c
	}
	c.renewed = now
	flags := uint32(exchgidUseNonPNFS)
	if c.confirmed {
		flags |= exchgidConfirmedR
	}
	e := &x.out
	e.u64(c.id)
	e.u32(c.seq)
	e.u32(flags)
	e.u32(sp4None)
	e.u64(0) // server_owner: minor id
	e.opaque(s.owner)
	e.opaque(s.owner) // server scope
	e.u32(0)          // no implementation id
	return ok
}

// NFS4ERR_CLID_INUSE
const errClientIDInUse = 10017

// createSession serves CREATE_SESSION (RFC 8881 section 18.36).
func (x *exec) createSession(a createSessionArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	s.expire(now)
	c := s.clients[a.clientID]
	if c == nil {
		return errStaleClientID
	}
	switch {
	case c.confirmed && a.seq == c.seq-1 && c.csReply != nil:
		// A retransmission: the same answer again.
		x.out.b = append(x.out.b, c.csReply...)
		return c.csStatus
	case a.seq != c.seq:
		return errSeqMisordered
	case !c.confirmed && c.principal != x.cred.principal():
		return errClientIDInUse
	}
	st, body := s.newSession(x, c, a, now)
	if st != ok {
		return st
	}
	c.seq++
	c.csStatus, c.csReply = st, body
	x.out.b = append(x.out.b, body...)
	return st
}

// newSession makes the session CREATE_SESSION asked for, confirming the
// client if it was not (under mu); it returns the result.
func (s *Server) newSession(x *exec, c *client, a createSessionArgs, now time.Time) (uint32, []byte) {
	if a.flags&^(sessPersist|sessConnBackChan|sessConnRDMA) != 0 {
		return errInval, nil
	}
	if a.fore.maxRequest < minRequest || a.fore.maxResponse < minResponse ||
		a.back.maxRequest < minRequest || a.back.maxResponse < minResponse {
		return errTooSmall, nil
	}
	if !c.confirmed {
		if o := s.owners[c.owner]; o != nil {
			if old := o.confirmed; old != nil && old != c {
				s.dropClient(old) // the client rebooted: its old state goes
			}
			o.confirmed, o.unconfirmed = c, nil
			s.owners[c.owner] = o
		}
		c.confirmed = true
	}
	c.renewed = now
	fore := a.fore
	fore.headerPad = 0
	fore.maxRequest = min(fore.maxRequest, maxRequest)
	fore.maxResponse = min(fore.maxResponse, maxResponse)
	fore.maxResponseCached = min(fore.maxResponseCached, maxCached)
	fore.maxOps = min(max(fore.maxOps, 2), maxSessionOps)
	fore.maxReqs = min(max(fore.maxReqs, 1), s.opts.MaxSlots)
	fore.rdmaIRD = nil
	back := a.back
	back.headerPad = 0
	back.maxReqs = min(max(back.maxReqs, 1), 16)
	back.rdmaIRD = nil
	s.lastSessN++
	var id sessionID
	binary.BigEndian.PutUint64(id[:], c.id)
	binary.BigEndian.PutUint32(id[8:], s.lastSessN)
	binary.BigEndian.PutUint32(id[12:], s.boot)
	flags := a.flags &^ (sessPersist | sessConnRDMA | sessConnBackChan)
	if s.opts.ReadDelegations && a.flags&sessConnBackChan != 0 {
		flags |= sessConnBackChan // this connection is the back channel too
	}
	ss := &session{id: id, client: c, flags: flags,
		fore: fore, back: back, cbProg: a.cbProgram, slots: make([]slot, fore.maxReqs),
		conns: map[*Conn]bool{x.conn: true}}
	ss.cb.cred = a.cbCred
	if flags&sessConnBackChan != 0 {
		s.bindBack(ss, x.conn) // probed as the reply goes: the client is ready for CB_NULL then
	}
	s.sessions[id] = ss
	c.sessions[id] = ss
	var e enc
	e.fixed(id[:])
	e.u32(a.seq)
	e.u32(ss.flags)
	e.channelAttrs(fore)
	e.channelAttrs(back)
	return ok, e.b
}

func (e *enc) channelAttrs(a channelAttrs) {
	for _, v := range []uint32{a.headerPad, a.maxRequest, a.maxResponse, a.maxResponseCached, a.maxOps, a.maxReqs} {
		e.u32(v)
	}
	e.u32(uint32(len(a.rdmaIRD)))
	for _, v := range a.rdmaIRD {
		e.u32(v)
	}
}

// session finds a live session (under mu): one whose client's lease
// ended is gone.
func (s *Server) session(id sessionID, now time.Time) *session {
	ss := s.sessions[id]
	if ss == nil {
		return nil
	}
	if now.Sub(ss.client.renewed) > s.opts.Lease {
		s.log.Debug("nfs4: lease expired", "clientid", ss.client.id)
		s.dropClient(ss.client)
		return nil
	}
	return ss
}

// sequence serves SEQUENCE (RFC 8881 sections 2.10.6 and 18.46): it checks
// the slot, and for a retransmission of the slot's last request returns
// that request's reply, which it does not run again.
func (x *exec) sequence(a sequenceArgs) (uint32, []byte) {
	s := x.s
	h := hashArgs(x.raw) // before the lock: it reads the request
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	ss := s.session(a.session, now)
	switch {
	case ss == nil:
		return errBadSession, nil
	case a.slot >= uint32(len(ss.slots)):
		return errBadSlot, nil
	case uint32(len(x.c.ops)) > ss.fore.maxOps:
		return errTooManyOps, nil
	case uint32(len(x.raw)) > ss.fore.maxRequest:
		return errReqTooBig, nil
	}
	sl := &ss.slots[a.slot]
	switch a.seq {
	case sl.seq:
		switch {
		case sl.busy:
			return errDelay, nil
		case sl.hash != h:
			return errSeqFalseRetry, nil
		case !sl.cached:
			return errRetryUncachedRep, nil
		}
		ss.client.renewed = now
		return ok, bytes.Clone(sl.reply)
	case sl.seq + 1:
	default:
		return errSeqMisordered, nil
	}
	sl.seq, sl.busy, sl.hash, sl.cached, sl.reply = a.seq, true, h, false, nil
	ss.client.renewed = now
	ss.conns[x.conn] = true
	x.sess, x.slot, x.cacheThis = ss, sl, a.cacheThis
	highest := uint32(len(ss.slots) - 1)
	e := &x.out
	e.fixed(a.session[:])
	e.u32(a.seq)
	e.u32(a.slot)
	e.u32(highest)
	e.u32(highest)
	var flags uint32
	if s.opts.ReadDelegations {
		if ss.cb.conn != nil && ss.cb.conn.isClosed() {
			flags |= seqCBPathDownSession
			if len(ss.client.sessions) == 1 {
				flags |= seqCBPathDown
			}
		}
		if ss.client.revoked > 0 {
			flags |= seqRecallableRevoked
		}
		s.revokeLate(now)
	}
	e.u32(flags)
	return ok, nil
}

// finish keeps a SEQUENCE's reply in its slot and frees the slot.
func (s *Server) finish(x *exec, reply []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := x.slot
	sl.busy = false
	if len(reply) <= maxCached {
		sl.reply, sl.cached = bytes.Clone(reply), true
	}
}

// destroySession serves DESTROY_SESSION.
func (x *exec) destroySession(a sessionArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[a.session]
	if ss == nil {
		return errBadSession
	}
	switch {
	case x.sess == nil && !ss.conns[x.conn]:
		return errConnNotBound
	case x.sess != nil && x.sess.client != ss.client:
		return errBadSession
	case x.sess == ss && x.opIndex != len(x.c.ops)-1:
		// A compound's own session ends with it.
		return errNotOnlyOp
	}
	delete(s.sessions, ss.id)
	delete(ss.client.sessions, ss.id)
	return ok
}

// bindConn serves BIND_CONN_TO_SESSION: the connection serves the fore
// channel, and the back channel too when read delegations are on and the
// client asks (the server makes callbacks only for those).
func (x *exec) bindConn(a bindConnArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.session(a.session, s.opts.Now())
	if ss == nil {
		return errBadSession
	}
	switch a.dir {
	case cdfcFore, cdfcForeOrBoth, cdfcBackOrBoth:
	default: // a back channel alone, and there is none; or no direction
		return errInval
	}
	ss.conns[x.conn] = true
	x.out.fixed(a.session[:])
	if s.opts.ReadDelegations && a.dir != cdfcFore {
		s.bindBack(ss, x.conn)
		x.out.u32(cdfcForeOrBoth) // CDFS4_BOTH
		x.out.bool(false)
		return ok
	}
	x.out.u32(cdfcFore)
	x.out.bool(false)
	return ok
}

// destroyClientID serves DESTROY_CLIENTID.
func (x *exec) destroyClientID(a clientIDArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[a.clientID]
	switch {
	case c == nil:
		return errStaleClientID
	case len(c.sessions) > 0:
		return errClientIDBusy
	}
	s.dropClient(c)
	return ok
}

// reclaimComplete serves RECLAIM_COMPLETE: the client reclaims nothing
// more, and may take new opens and locks once no grace period runs. The
// client's record is written first (state.go): the client may reclaim
// after the next restart. The last client of the grace period's records to
// send it ends the period.
func (x *exec) reclaimComplete(a reclaimCompleteArgs) uint32 {
	if a.oneFS {
		return ok // per file system: nothing to do
	}
	s, c := x.s, x.sess.client
	s.mu.Lock()
	done := c.reclaimed
	s.mu.Unlock()
	if done {
		return errCompleteAlready
	}
	if st := x.keep(c); st != ok {
		return st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.reclaimed {
		return errCompleteAlready
	}
	c.reclaimed = true
	if s.inGrace(s.opts.Now()) {
		g := s.grace
		if done, known := g.known[c.owner]; known && !done {
			g.known[c.owner] = true
			g.pending--
			if g.pending == 0 {
				s.endGrace("every client of the last instance sent RECLAIM_COMPLETE")
			}
		}
	}
	return ok
}
