package iscsi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// maxTaskData bounds the data-out buffer of one command: the largest
// transfer any device type accepts, with room for COMPARE AND WRITE's
// doubled buffer. A larger Expected Data Transfer Length is refused
// before anything is allocated.
const maxTaskData = 33 << 20

// maxSessionBuffered bounds the write data one session may have solicited
// or hold in buffers at once; R2Ts for more wait until commands finish, so
// a flood of large writes costs the target at most this much memory.
const maxSessionBuffered = 128 << 20

const reservedTag = 0xffffffff

// Reject reasons (RFC 7143 section 11.17.1).
const (
	rejectDataDigest     = 0x02
	rejectProtocolError  = 0x04
	rejectNotSupported   = 0x05
	rejectTaskInProgress = 0x07
	rejectInvalidField   = 0x09
)

// session is one logged-in iSCSI session on its single connection
// (MaxConnections=1, ErrorRecoveryLevel=0).
type session struct {
	s         *Server
	log       *slog.Logger
	nc        net.Conn
	r         *bufio.Reader
	initiator string
	isid      [6]byte
	tsih      uint16
	target    *Target
	discovery bool
	remote    string
	params    Params
	digests   Digests
	nexus     scsi.Nexus
	depth     uint32
	// nexusGone ends the I_T nexus once: at logout, before the response,
	// or when the connection ends.
	nexusGone sync.Once

	// Responses go through one writer goroutine, which sets the sequence
	// numbers in the order PDUs go out and writes whatever is queued with
	// one flush: responses finishing together share a system call.
	out        chan outgoing
	outMu      sync.RWMutex
	outClosed  bool
	writerDone chan struct{}
	w          *bufio.Writer
	statSN     uint32 // the writer's alone

	// dataMu guards the data-out state of tasks (buffers, R2Ts) and the
	// session's buffer budget; the reader holds it while handling command
	// and Data-Out PDUs, finishing commands hold it to release budget.
	dataMu   sync.Mutex
	buffered int64
	r2tWait  []*task

	mu       sync.Mutex
	expCmdSN uint32
	inflight int
	maxSent  uint32          // the largest MaxCmdSN advertised: the window never shrinks below it
	ahead    map[uint32]bool // CmdSNs received beyond a gap at ExpCmdSN
	tasks    map[uint32]*task
	nextTTT  uint32
	text     *textContinuation
	closing  bool

	ctx      context.Context
	cancel   context.CancelFunc
	lastRecv atomic.Int64 // unix nanoseconds
	wg       sync.WaitGroup
	done     chan struct{}
	workers  commandWorkers
}

func newSession(ls *loginState) *session {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{
		s: ls.s, nc: ls.nc, r: ls.r, initiator: ls.initiator, isid: ls.isid, tsih: ls.tsih,
		target: ls.target, discovery: ls.discovery, remote: ls.nc.RemoteAddr().String(),
		params: ls.neg.finish(), depth: uint32(ls.s.cfg.QueueDepth),
		w: bufio.NewWriterSize(ls.nc, 256<<10), statSN: ls.statSN + 1, expCmdSN: ls.cmdSN,
		out: make(chan outgoing, 1024), writerDone: make(chan struct{}),
		tasks: map[uint32]*task{}, ahead: map[uint32]bool{}, ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	ss.digests = Digests{Header: ss.params.HeaderDigest, Data: ss.params.DataDigest}
	ss.workers = commandWorkers{work: make(chan *task), maxIdle: int32(ss.depth)}
	ss.nexus = scsi.Nexus{InitiatorPort: fmt.Sprintf("%s,i,0x%x", ss.initiator, ss.isid[:]), TargetPortID: 1}
	target := ""
	if ss.target != nil {
		target = ss.target.Name
	}
	ss.log = ls.log.With("initiator", ss.initiator, "target", target, "tsih", ss.tsih)
	return ss
}

// close ends the session: the connection drops and running commands are
// cancelled.
func (ss *session) close() {
	ss.mu.Lock()
	ss.closing = true
	ss.mu.Unlock()
	ss.cancel()
	ss.nc.Close()
}

func (ss *session) waitDone() { <-ss.done }

// run serves the session until the connection ends.
func (ss *session) run(ctx context.Context) {
	ss.log.Info("iscsi: session started", "discovery", ss.discovery,
		"header_digest", ss.digests.Header, "data_digest", ss.digests.Data,
		"max_burst", ss.params.MaxBurstLength, "immediate_data", ss.params.ImmediateData, "initial_r2t", ss.params.InitialR2T)
	go ss.writer()
	defer func() {
		// Commands end (nobody reads their answers any more), queued
		// PDUs such as a Reject or a logout response still go out, then
		// the connection closes.
		ss.cancel()
		ss.wg.Wait()
		ss.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		ss.closeOut()
		<-ss.writerDone
		ss.close()
		ss.s.unregister(ss)
		ss.loseNexus()
		close(ss.done)
		ss.log.Info("iscsi: session ended")
	}()
	ss.lastRecv.Store(time.Now().UnixNano())
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		ss.pinger()
	}()
	// SCSI Command and Data-Out PDUs are read into the same PDU each
	// time: their handlers keep nothing of it but the data segment
	// (p.dataRef says whether they took it). Other PDUs get their own,
	// which a handler's goroutine may keep.
	var scratch PDU
	for {
		p, err := readPDU(ss.r, ss.digests, TargetMaxRecv, &scratch, true)
		if err == nil && !pooledData(p.Opcode()) {
			own := *p
			p = &own
		}
		if errors.Is(err, ErrDataDigest) {
			// Error recovery level 0 cannot recover the command's data.
			ss.reject(p, rejectDataDigest)
			ss.log.Warn("iscsi: data digest error; dropping the connection")
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				ss.log.Info("iscsi: connection read failed", "err", err)
			}
			return
		}
		ss.lastRecv.Store(time.Now().UnixNano())
		err = ss.dispatch(p)
		// A Data-Out's data is in its command's buffer now; a command
		// that took its PDU's data took the reference with it.
		putBuf(p.dataRef)
		p.dataRef = nil
		if err != nil {
			ss.log.Warn("iscsi: protocol error; dropping the connection", "err", err)
			return
		}
	}
}

// errProtocol ends the connection after a Reject has been sent.
type errProtocol struct{ msg string }

func (e *errProtocol) Error() string { return e.msg }

func (ss *session) protocolError(p *PDU, reason byte, format string, args ...any) error {
	ss.reject(p, reason)
	return &errProtocol{fmt.Sprintf(format, args...)}
}

func (ss *session) dispatch(p *PDU) error {
	op := p.Opcode()
	if ss.discovery {
		switch op {
		case OpText, OpLogout, OpNOPOut:
		default:
			return ss.protocolError(p, rejectProtocolError, "%v in a discovery session", op)
		}
	}
	switch op {
	case OpNOPOut:
		return ss.nopOut(p)
	case OpSCSICommand:
		return ss.scsiCommand(p)
	case OpDataOut:
		return ss.dataOut(p)
	case OpTaskMgmt:
		if !ss.acceptCmdSN(p) {
			return nil
		}
		ss.taskManagement(p)
		return nil
	case OpText:
		if !ss.acceptCmdSN(p) {
			return nil
		}
		return ss.textRequest(p)
	case OpLogout:
		if !ss.acceptCmdSN(p) {
			return nil
		}
		ss.logout(p)
		return nil
	case OpSNACK:
		ss.reject(p, rejectNotSupported)
		return nil
	case OpLogin:
		return ss.protocolError(p, rejectProtocolError, "login request in full feature phase")
	}
	ss.reject(p, rejectNotSupported)
	return nil
}

// serialLT compares sequence numbers (RFC 1982, 32-bit).
func serialLT(a, b uint32) bool { return a != b && int32(a-b) < 0 }

// acceptCmdSN applies the command window to a request: immediate requests
// always pass and consume no sequence number; others must fall in
// [ExpCmdSN, MaxCmdSN] and not repeat one already received, or are
// silently ignored (RFC 7143 section 4.2.2.1). ExpCmdSN moves past every
// number received without a gap; numbers received beyond a gap wait in
// ahead. Commands run as they arrive: they are all simple tasks, which
// SAM lets the target reorder.
func (ss *session) acceptCmdSN(p *PDU) bool {
	if p.Immediate() {
		return true
	}
	sn := p.Uint32(24)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if serialLT(sn, ss.expCmdSN) || serialLT(ss.maxCmdSNLocked(), sn) || ss.ahead[sn] {
		ss.log.Debug("iscsi: command outside the window ignored", "cmdsn", sn, "expcmdsn", ss.expCmdSN)
		return false
	}
	if sn != ss.expCmdSN {
		ss.ahead[sn] = true
		return true
	}
	ss.expCmdSN++
	for ss.ahead[ss.expCmdSN] {
		delete(ss.ahead, ss.expCmdSN)
		ss.expCmdSN++
	}
	return true
}

func (ss *session) maxCmdSNLocked() uint32 {
	room := int(ss.depth) - ss.inflight
	if room < 0 {
		room = 0
	}
	m := ss.expCmdSN + uint32(room) - 1
	if serialLT(m, ss.maxSent) {
		m = ss.maxSent
	}
	return m
}

type outgoing struct {
	p       *PDU
	advance bool          // the PDU takes a StatSN
	flushed chan struct{} // closed once written (or the connection failed)
}

// send queues p for the writer, which fills in StatSN (advanced when
// advance is set), ExpCmdSN and MaxCmdSN.
func (ss *session) send(p *PDU, advance bool) error {
	return ss.enqueue(outgoing{p: p, advance: advance})
}

// sendAndFlush is send that waits until p is on the wire, for responses
// after which the connection closes.
func (ss *session) sendAndFlush(p *PDU, advance bool) {
	o := outgoing{p: p, advance: advance, flushed: make(chan struct{})}
	if ss.enqueue(o) == nil {
		<-o.flushed
	}
}

func (ss *session) enqueue(o outgoing) error {
	ss.outMu.RLock()
	defer ss.outMu.RUnlock()
	if ss.outClosed {
		return net.ErrClosed
	}
	ss.out <- o // the writer drains the queue until it is closed
	return nil
}

func (ss *session) closeOut() {
	ss.outMu.Lock()
	defer ss.outMu.Unlock()
	if !ss.outClosed {
		ss.outClosed = true
		close(ss.out)
	}
}

func (ss *session) writer() {
	defer close(ss.writerDone)
	var err error
	var waiting []chan struct{}
	for o := range ss.out {
		batch := []outgoing{o}
		yielded := false
	more:
		for len(batch) < 256 {
			select {
			case o, ok := <-ss.out:
				if !ok {
					break more
				}
				batch = append(batch, o)
			default:
				// Before writing, let commands that are running finish
				// once, so their responses share this system call
				// rather than each making one.
				if !yielded && ss.workers.busy.Load() > 0 {
					yielded = true
					runtime.Gosched()
					continue
				}
				break more
			}
		}
		for _, o := range batch {
			if err == nil {
				err = ss.write1(o)
			}
			if o.flushed != nil {
				waiting = append(waiting, o.flushed)
			}
		}
		if err == nil {
			err = ss.w.Flush()
		}
		if err != nil {
			ss.nc.Close() // the reader sees it and ends the session
		}
		for _, ch := range waiting {
			close(ch)
		}
		waiting = waiting[:0]
	}
}

func (ss *session) write1(o outgoing) error {
	p := o.p
	ss.mu.Lock()
	exp, maxSN := ss.expCmdSN, ss.maxCmdSNLocked()
	ss.maxSent = maxSN
	ss.mu.Unlock()
	if p.Opcode() != OpDataIn || o.advance {
		p.SetUint32(24, ss.statSN)
	}
	if o.advance {
		ss.statSN++
	}
	p.SetUint32(28, exp)
	p.SetUint32(32, maxSN)
	return p.writeTo(ss.w, ss.digests)
}

func (ss *session) reject(p *PDU, reason byte) {
	if p == nil {
		return
	}
	r := &PDU{}
	r.SetOpcode(OpReject, false)
	r.SetFinal(true)
	r.BHS[2] = reason
	r.SetTaskTag(reservedTag)
	r.Data = append([]byte(nil), p.BHS[:]...)
	ss.send(r, true)
}

func (ss *session) nopOut(p *PDU) error {
	if !ss.acceptCmdSN(p) {
		return nil
	}
	if p.TaskTag() == reservedTag {
		return nil // an answer to our ping, or a ping that wants no answer
	}
	r := &PDU{}
	r.SetOpcode(OpNOPIn, false)
	r.SetFinal(true)
	r.SetLUN(p.LUN())
	r.SetTaskTag(p.TaskTag())
	r.SetUint32(20, reservedTag)
	r.Data = p.Data
	return ss.send(r, true)
}

// pinger sends a NOP-In when the connection has been silent for
// NOPInterval and drops it when the silence outlasts NOPTimeout more.
func (ss *session) pinger() {
	interval, timeout := ss.s.cfg.NOPInterval, ss.s.cfg.NOPTimeout
	tick := time.NewTicker(max(interval/4, 10*time.Millisecond))
	defer tick.Stop()
	var pingSent int64
	for {
		select {
		case <-ss.ctx.Done():
			return
		case now := <-tick.C:
			last := ss.lastRecv.Load()
			idle := time.Duration(now.UnixNano() - last)
			if pingSent > last && time.Duration(now.UnixNano()-pingSent) > timeout {
				ss.log.Warn("iscsi: initiator did not answer a NOP-In; dropping the connection", "idle", idle.Round(time.Second))
				ss.close()
				return
			}
			if idle >= interval && pingSent <= last {
				ss.mu.Lock()
				ss.nextTTT++
				ttt := ss.nextTTT
				ss.mu.Unlock()
				r := &PDU{}
				r.SetOpcode(OpNOPIn, false)
				r.SetFinal(true)
				r.SetTaskTag(reservedTag)
				r.SetUint32(20, ttt&0x7fffffff)
				if err := ss.send(r, false); err != nil {
					return
				}
				pingSent = now.UnixNano()
			}
		}
	}
}

func (ss *session) logout(p *PDU) {
	reason := p.BHS[1] & 0x7f
	// Let running commands finish so their responses precede the logout
	// response. Commands still waiting for data will never run. (The
	// reader goroutine, which this is, alone sets started.)
	ss.mu.Lock()
	var waits []chan struct{}
	for _, t := range ss.tasks {
		if t.started {
			waits = append(waits, t.done)
		}
	}
	ss.mu.Unlock()
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		deadline := time.After(10 * time.Second)
		for _, w := range waits {
			select {
			case <-w:
			case <-deadline:
			}
		}
		// What the nexus held (an SPC-2 reservation) is released before
		// the initiator hears the logout is done: another initiator may
		// act on it at once.
		ss.loseNexus()
		r := &PDU{}
		r.SetOpcode(OpLogoutResp, false)
		r.SetFinal(true)
		r.SetTaskTag(p.TaskTag())
		if reason > 2 {
			r.BHS[2] = 2 // connection recovery is not supported
		}
		ss.sendAndFlush(r, true)
		ss.log.Info("iscsi: logout", "reason", reason)
		ss.close()
	}()
}

// loseNexus tells every LU of the session's target that its I_T nexus
// is gone, once.
func (ss *session) loseNexus() {
	ss.nexusGone.Do(func() {
		if ss.target != nil {
			for _, lu := range ss.target.LUNs {
				lu.NexusLost(ss.nexus.InitiatorPort)
			}
		}
	})
}

// lunOf decodes the LUN field (SAM-5 single level: peripheral or flat
// space addressing).
func lunOf(field uint64) (uint64, bool) {
	b0, b1 := byte(field>>56), byte(field>>48)
	if field&0x0000ffffffffffff != 0 {
		return 0, false
	}
	switch b0 >> 6 {
	case 0:
		if b0&0x3f != 0 {
			return 0, false
		}
		return uint64(b1), true
	case 1:
		return uint64(b0&0x3f)<<8 | uint64(b1), true
	}
	return 0, false
}

// lunField encodes a LUN for REPORT LUNS.
func lunField(lun uint64) []byte {
	b := make([]byte, 8)
	if lun < 256 {
		b[1] = byte(lun)
	} else {
		b[0] = 0x40 | byte(lun>>8)&0x3f
		b[1] = byte(lun)
	}
	return b
}

// cdbLength is the CDB length its group code implies.
func cdbLength(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 16
}

func binaryUint16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
