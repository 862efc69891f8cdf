package iscsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// task is one SCSI command from arrival to response.
type task struct {
	itt     uint32
	lunRaw  uint64
	lu      *scsi.LU
	lun     uint64
	cdb     []byte
	read    bool
	write   bool
	edtl    uint32
	buf     []byte
	bufRef  *[]byte // returns buf to its pool when the command is done
	refused bool    // EDTL above maxTaskData: absorb the data, answer CHECK CONDITION

	// Data-out collection, touched only by the connection's reader.
	received        uint32
	unsolicitedDone bool
	unsolicitedSN   uint32
	nextOffset      uint32
	r2ts            map[uint32]*r2tState
	r2tSN           uint32
	started         bool
	reserved        int64 // bytes of the session budget this task holds

	ctx     context.Context
	cancel  context.CancelFunc
	aborted atomic.Bool
	done    chan struct{}
	arrived time.Time

	// Room for what every command has, so it costs no allocation of
	// its own: the CDB (unless an AHS extends it) and the response.
	cdbSpace [16]byte
	resp     PDU
}

type r2tState struct {
	offset, length, received, dataSN uint32
}

func (ss *session) scsiCommand(p *PDU) error {
	if !ss.acceptCmdSN(p) {
		return nil
	}
	flags := p.BHS[1]
	t := &task{
		itt: p.TaskTag(), lunRaw: p.LUN(), read: flags&0x40 != 0, write: flags&0x20 != 0,
		edtl: p.Uint32(20), done: make(chan struct{}), arrived: time.Now(),
	}
	cdb := append(t.cdbSpace[:0], p.BHS[32:48]...)
	if ext := extendedCDB(p.AHS); ext != nil {
		cdb = append(cdb, ext...)
	}
	if n := cdbLength(cdb[0]); n < len(cdb) && len(p.AHS) == 0 {
		cdb = cdb[:n]
	}
	t.cdb = cdb
	if !t.write && len(p.Data) > 0 {
		return ss.protocolError(p, rejectProtocolError, "immediate data on a command without the W bit")
	}
	if len(p.Data) > 0 && !ss.params.ImmediateData {
		return ss.protocolError(p, rejectProtocolError, "immediate data was not negotiated")
	}
	if uint32(len(p.Data)) > t.edtl || len(p.Data) > ss.params.FirstBurstLength {
		return ss.protocolError(p, rejectProtocolError, "immediate data longer than the transfer or FirstBurstLength")
	}
	if t.write && t.edtl > maxTaskData {
		t.refused = true
	} else if t.write {
		// Room for immediate and unsolicited data only; the rest is
		// allocated against the session budget when it is solicited.
		// When the immediate data is all of it, the PDU's data segment,
		// read for this PDU alone, is the buffer.
		if n := min(t.edtl, uint32(ss.params.FirstBurstLength)); uint32(len(p.Data)) == n {
			t.buf = p.Data
			if ss.reuseDataOut() {
				t.bufRef = p.dataRef
			}
			p.dataRef = nil
		} else {
			ss.taskBuf(t, int(n))
			copy(t.buf, p.Data)
		}
	}
	t.received = uint32(len(p.Data))
	t.unsolicitedDone = !t.write || flags&0x80 != 0 || ss.params.InitialR2T
	if t.write && !ss.params.InitialR2T && flags&0x80 == 0 && t.received >= min(t.edtl, uint32(ss.params.FirstBurstLength)) {
		t.unsolicitedDone = true
	}
	t.nextOffset = t.received
	if lun, ok := lunOf(t.lunRaw); ok && ss.target != nil {
		t.lun = lun
		t.lu = ss.target.LUNs[lun]
	}
	t.ctx, t.cancel = context.WithCancel(ss.ctx)

	ss.mu.Lock()
	if _, busy := ss.tasks[t.itt]; busy {
		ss.mu.Unlock()
		t.cancel()
		ss.reject(p, rejectTaskInProgress)
		return nil
	}
	ss.tasks[t.itt] = t
	ss.inflight++
	ss.mu.Unlock()
	ss.dataMu.Lock()
	defer ss.dataMu.Unlock()
	return ss.advance(t)
}

// extendedCDB returns the extended CDB carried in an AHS of type 1.
func extendedCDB(ahs []byte) []byte {
	for len(ahs) >= 4 {
		n := int(binary.BigEndian.Uint16(ahs))
		typ := ahs[2]
		if 3+n > len(ahs) {
			return nil
		}
		if typ == 1 && n > 1 {
			return ahs[4 : 3+n]
		}
		ahs = ahs[(3+n+3)&^3:]
	}
	return nil
}

// advance moves a write towards execution: once the unsolicited data is
// in, it solicits the rest with R2Ts, MaxOutstandingR2T at a time, and
// starts the command when all data has arrived. ss.dataMu is held.
func (ss *session) advance(t *task) error {
	if !t.unsolicitedDone || t.started || t.aborted.Load() {
		return nil
	}
	if t.received >= t.edtl || !t.write || t.refused {
		t.started = true
		ss.execute(t)
		return nil
	}
	if t.reserved == 0 {
		need := int64(t.edtl)
		if ss.buffered > 0 && ss.buffered+need > maxSessionBuffered {
			ss.r2tWait = append(ss.r2tWait, t)
			return nil
		}
		ss.buffered += need
		t.reserved = need
		old, oldRef := t.buf, t.bufRef
		ss.taskBuf(t, int(t.edtl))
		copy(t.buf, old)
		putBuf(oldRef) // the command has not run: only this reader saw it
	}
	for len(t.r2ts) < ss.params.MaxOutstandingR2T && t.nextOffset < t.edtl {
		length := min(t.edtl-t.nextOffset, uint32(ss.params.MaxBurstLength))
		ss.mu.Lock()
		ss.nextTTT++
		ttt := ss.nextTTT & 0x7fffffff
		ss.mu.Unlock()
		if t.r2ts == nil {
			t.r2ts = map[uint32]*r2tState{}
		}
		t.r2ts[ttt] = &r2tState{offset: t.nextOffset, length: length}
		r := &PDU{}
		r.SetOpcode(OpR2T, false)
		r.SetFinal(true)
		r.SetLUN(t.lunRaw)
		r.SetTaskTag(t.itt)
		r.SetUint32(20, ttt)
		r.SetUint32(36, t.r2tSN)
		r.SetUint32(40, t.nextOffset)
		r.SetUint32(44, length)
		t.r2tSN++
		t.nextOffset += length
		if err := ss.send(r, false); err != nil {
			return err
		}
	}
	return nil
}

// release returns a finished task's buffer to the session budget and
// solicits data for writes that were waiting for room.
func (ss *session) release(t *task) {
	ss.dataMu.Lock()
	defer ss.dataMu.Unlock()
	ss.buffered -= t.reserved
	t.reserved = 0
	// The command is done with its buffer: it completed (its LU's
	// Execute returned) or never ran.
	putBuf(t.bufRef)
	t.buf, t.bufRef = nil, nil
	for len(ss.r2tWait) > 0 {
		next := ss.r2tWait[0]
		if !next.aborted.Load() && ss.buffered > 0 && ss.buffered+int64(next.edtl) > maxSessionBuffered {
			return
		}
		ss.r2tWait = ss.r2tWait[1:]
		if err := ss.advance(next); err != nil {
			return
		}
	}
}

func (ss *session) dataOut(p *PDU) error {
	ss.dataMu.Lock()
	defer ss.dataMu.Unlock()
	ss.mu.Lock()
	t := ss.tasks[p.TaskTag()]
	ss.mu.Unlock()
	if t == nil || t.started || !t.write {
		// Data for a task that was aborted or never accepted.
		ss.log.Debug("iscsi: Data-Out for no waiting task", "itt", p.TaskTag())
		return nil
	}
	ttt, dataSN, off := p.Uint32(20), p.Uint32(36), p.Uint32(40)
	n := uint32(len(p.Data))
	if ttt == reservedTag {
		if t.unsolicitedDone {
			return ss.protocolError(p, rejectProtocolError, "unsolicited Data-Out not expected (itt %#x)", t.itt)
		}
		if dataSN != t.unsolicitedSN || off != t.received || off+n > min(t.edtl, uint32(ss.params.FirstBurstLength)) {
			ss.failDataSequence(t, fmt.Sprintf("unsolicited Data-Out out of order (DataSN %d, offset %d)", dataSN, off))
			return nil
		}
		t.unsolicitedSN++
		t.store(off, p.Data)
		t.received += n
		if p.Final() {
			t.unsolicitedDone = true
			t.nextOffset = t.received
		}
		return ss.advance(t)
	}
	r := t.r2ts[ttt]
	if r == nil {
		return ss.protocolError(p, rejectInvalidField, "Data-Out with unknown target transfer tag %#x", ttt)
	}
	if dataSN != r.dataSN || off != r.offset+r.received || r.received+n > r.length {
		ss.failDataSequence(t, fmt.Sprintf("Data-Out out of order (DataSN %d want %d, offset %d want %d)", dataSN, r.dataSN, off, r.offset+r.received))
		return nil
	}
	r.dataSN++
	t.store(off, p.Data)
	r.received += n
	t.received += n
	if r.received == r.length {
		if !p.Final() {
			return ss.protocolError(p, rejectProtocolError, "last Data-Out of a burst without the F bit")
		}
		delete(t.r2ts, ttt)
		return ss.advance(t)
	}
	if p.Final() {
		return ss.protocolError(p, rejectProtocolError, "F bit before the burst was complete")
	}
	return nil
}

// failDataSequence ends a write whose Data-Out PDUs arrived out of
// sequence: nothing is written and the command fails with ABORTED COMMAND,
// DATA PHASE ERROR; later Data-Out for it is dropped.
func (ss *session) failDataSequence(t *task, why string) {
	ss.log.Warn("iscsi: write failed", "itt", t.itt, "reason", why)
	t.started = true
	t.r2ts = nil
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		e := scsi.Sense(scsi.KeyAbortedCommand, ascDataPhaseError)
		ss.complete(t, scsi.Result{Status: scsi.StatusCheckCondition, Sense: e.Bytes(false), DataOutLen: -1})
	}()
}

const ascDataPhaseError scsi.ASC = 0x4b00

// taskBuf gives t a data-out buffer of n bytes, from a pool when the
// target lets its buffers be reused. Its contents are not cleared: a
// command runs only once Data-Out PDUs have filled all of it.
func (ss *session) taskBuf(t *task, n int) {
	if ss.reuseDataOut() {
		t.buf, t.bufRef = getBuf(n)
		return
	}
	t.buf, t.bufRef = make([]byte, n), nil
}

func (ss *session) reuseDataOut() bool { return ss.target != nil && ss.target.ReuseDataOut }

func (t *task) store(off uint32, data []byte) {
	if int(off)+len(data) <= len(t.buf) {
		copy(t.buf[off:], data)
	}
}

func (ss *session) run1(t *task) scsi.Result {
	if t.refused {
		e := scsi.InvalidCDBField(0, -1)
		e.Msg = "transfer larger than the target accepts"
		return scsi.Result{Status: scsi.StatusCheckCondition, Sense: senseFixed(e), DataOutLen: -1}
	}
	if len(t.cdb) > 0 && t.cdb[0] == scsi.OpReportLUNs {
		return ss.reportLUNs(t)
	}
	if t.lu == nil {
		return noLU(t)
	}
	limit := 0
	if t.read {
		limit = int(t.edtl)
	}
	return t.lu.Execute(t.ctx, &scsi.Command{CDB: t.cdb, DataOut: t.buf, Nexus: ss.nexus, DataInLimit: limit})
}

func senseFixed(e *scsi.Error) []byte { return e.Bytes(false) }

// noLU answers a command to a LUN the target does not have: INQUIRY gets
// peripheral qualifier 011b, everything else LOGICAL UNIT NOT SUPPORTED.
func noLU(t *task) scsi.Result {
	if t.cdb[0] == scsi.OpInquiry && len(t.cdb) >= 6 && t.cdb[1]&1 == 0 {
		b := make([]byte, 36)
		b[0] = 0x7f
		b[2], b[3], b[4] = 0x06, 0x12, 31
		return scsi.Result{Data: scsi.Truncate(b, int(scsi.U16(t.cdb[3:]))), DataOutLen: -1}
	}
	e := scsi.Sense(scsi.KeyIllegalRequest, scsi.ASCLUNNotSupported)
	if t.cdb[0] == scsi.OpRequestSense && len(t.cdb) >= 6 {
		return scsi.Result{Data: scsi.Truncate(senseFixed(e), int(t.cdb[4])), DataOutLen: -1}
	}
	return scsi.Result{Status: scsi.StatusCheckCondition, Sense: senseFixed(e), DataOutLen: -1}
}

func (ss *session) reportLUNs(t *task) scsi.Result {
	cdb := t.cdb
	if len(cdb) < 12 {
		return scsi.Result{Status: scsi.StatusCheckCondition, Sense: senseFixed(scsi.InvalidCDBField(0, -1)), DataOutLen: -1}
	}
	alloc := int(scsi.U32(cdb[6:]))
	if alloc < 16 {
		return scsi.Result{Status: scsi.StatusCheckCondition, Sense: senseFixed(scsi.InvalidCDBField(6, -1)), DataOutLen: -1}
	}
	switch cdb[2] {
	case 0x00, 0x01, 0x02, 0x10, 0x11:
	default:
		return scsi.Result{Status: scsi.StatusCheckCondition, Sense: senseFixed(scsi.InvalidCDBField(2, -1)), DataOutLen: -1}
	}
	b := make([]byte, 8)
	if ss.target != nil && cdb[2] != 0x01 {
		for _, lun := range sortedLUNs(ss.target.LUNs) {
			b = append(b, lunField(lun)...)
		}
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-8))
	return scsi.Result{Data: scsi.Truncate(b, alloc), DataOutLen: -1}
}

func sortedLUNs(m map[uint64]*scsi.LU) []uint64 {
	luns := make([]uint64, 0, len(m))
	for l := range m {
		luns = append(luns, l)
	}
	for i := 1; i < len(luns); i++ {
		for j := i; j > 0 && luns[j] < luns[j-1]; j-- {
			luns[j], luns[j-1] = luns[j-1], luns[j]
		}
	}
	return luns
}

// complete sends a command's data and status, unless it was aborted.
func (ss *session) complete(t *task, res scsi.Result) {
	defer func() {
		t.cancel()
		close(t.done)
	}()
	// The task leaves the window before its status goes out, so the
	// MaxCmdSN in the response already counts the freed slot.
	ss.mu.Lock()
	if ss.tasks[t.itt] == t {
		delete(ss.tasks, t.itt)
	}
	ss.inflight--
	ss.mu.Unlock()
	ss.release(t)
	if t.aborted.Load() {
		return
	}
	if ss.s.cfg.Latency != nil {
		defer func() { ss.s.cfg.Latency(OpClass(t.cdb), time.Since(t.arrived)) }()
	}
	var over, under bool
	var residual uint32
	switch {
	case res.DataOutLen >= 0 && (t.write || res.DataOutLen > 0):
		want := uint32(res.DataOutLen)
		if want > t.edtl {
			over, residual = true, want-t.edtl
		} else if want < t.edtl {
			under, residual = true, t.edtl-want
		}
	case t.read && (res.Status == scsi.StatusGood || len(res.Data) > 0):
		// Data-in goes with GOOD, or with a CHECK CONDITION that
		// transferred some (a tape read of a short record).
		n := uint32(max(len(res.Data), res.DataInLen))
		if n > t.edtl {
			over, residual = true, n-t.edtl
			res.Data = res.Data[:t.edtl]
		} else if n < t.edtl {
			under, residual = true, t.edtl-n
		}
	case res.Status == scsi.StatusGood && !t.read && t.edtl > 0 && !t.write:
		under, residual = true, t.edtl
	}
	if !t.read {
		res.Data = nil
	}
	dataSN := uint32(0)
	if len(res.Data) > 0 {
		seg := uint32(ss.params.InitiatorMaxRecv)
		burst := uint32(ss.params.MaxBurstLength)
		total := uint32(len(res.Data))
		for off := uint32(0); off < total; {
			n := min(seg, total-off, burst-off%burst)
			last := off+n == total
			collapse := last && res.Status == scsi.StatusGood
			p := &t.resp // the status goes with this PDU, not a SCSI Response
			if !collapse {
				p = &PDU{}
			}
			p.SetOpcode(OpDataIn, false)
			flags := byte(0)
			if last || (off+n)%burst == 0 {
				flags |= 0x80
			}
			if collapse {
				flags |= 0x01
				if over {
					flags |= 0x04
				}
				if under {
					flags |= 0x02
				}
				p.BHS[3] = byte(res.Status)
				p.SetUint32(44, residual)
			}
			p.BHS[1] = flags
			p.SetTaskTag(t.itt)
			p.SetUint32(20, reservedTag)
			p.SetUint32(36, dataSN)
			p.SetUint32(40, off)
			p.Data = res.Data[off : off+n]
			dataSN++
			if err := ss.send(p, collapse); err != nil {
				return
			}
			off += n
			if collapse {
				return
			}
		}
	}
	r := &t.resp
	r.SetOpcode(OpSCSIResponse, false)
	r.BHS[1] = 0x80
	if over {
		r.BHS[1] |= 0x04
	}
	if under {
		r.BHS[1] |= 0x02
	}
	r.BHS[3] = byte(res.Status)
	r.SetTaskTag(t.itt)
	r.SetUint32(36, dataSN+t.r2tSN)
	r.SetUint32(44, residual)
	if len(res.Sense) > 0 {
		r.Data = make([]byte, 2+len(res.Sense))
		binary.BigEndian.PutUint16(r.Data, uint16(len(res.Sense)))
		copy(r.Data[2:], res.Sense)
	}
	ss.send(r, true)
}

// Task management functions (RFC 7143 section 11.5.1) and responses.
const (
	tmfAbortTask     = 1
	tmfAbortTaskSet  = 2
	tmfClearACA      = 3
	tmfClearTaskSet  = 4
	tmfLUNReset      = 5
	tmfTargetWarm    = 6
	tmfTargetCold    = 7
	tmfTaskReassign  = 8
	tmfComplete      = 0
	tmfNoTask        = 1
	tmfNoLUN         = 2
	tmfNoReassign    = 4
	tmfNotSupported  = 5
	tmfAuthzFailed   = 6
	tmfFunctionRefus = 255
)

// abortTasks marks the session's matching tasks aborted (no response will
// be sent for them), cancels them and returns their done channels. Tasks
// still collecting data are dropped at once.
func (ss *session) abortTasks(match func(*task) bool) []chan struct{} {
	ss.dataMu.Lock()
	ss.mu.Lock()
	var waits []chan struct{}
	var dropped []*task
	for itt, t := range ss.tasks {
		if !match(t) {
			continue
		}
		t.aborted.Store(true)
		t.cancel()
		if !t.started {
			delete(ss.tasks, itt)
			ss.inflight--
			dropped = append(dropped, t)
			continue
		}
		waits = append(waits, t.done)
	}
	ss.mu.Unlock()
	ss.dataMu.Unlock()
	for _, t := range dropped {
		ss.release(t)
	}
	return waits
}

// cancelOthers cancels matching tasks of the target's other sessions;
// they end with TASK ABORTED (the Control page's TAS bit).
func (ss *session) cancelOthers(lu *scsi.LU) {
	ss.s.mu.Lock()
	var others []*session
	for o := range ss.s.sessions {
		if o != ss && o.target == ss.target {
			others = append(others, o)
		}
	}
	ss.s.mu.Unlock()
	for _, o := range others {
		o.mu.Lock()
		for _, t := range o.tasks {
			if lu == nil || t.lu == lu {
				t.cancel()
			}
		}
		o.mu.Unlock()
	}
}

func (ss *session) taskManagement(p *PDU) {
	fn := p.BHS[1] & 0x7f
	rtt := p.Uint32(20)
	lun, lunOK := lunOf(p.LUN())
	var lu *scsi.LU
	if lunOK && ss.target != nil {
		lu = ss.target.LUNs[lun]
	}
	respond := func(code byte, flush bool) {
		r := &PDU{}
		r.SetOpcode(OpTaskMgmtResp, false)
		r.SetFinal(true)
		r.BHS[2] = code
		r.SetTaskTag(p.TaskTag())
		if flush {
			ss.sendAndFlush(r, true)
			return
		}
		ss.send(r, true)
	}
	var waits []chan struct{}
	after := func() {}
	code := byte(tmfComplete)
	switch fn {
	case tmfAbortTask:
		found := false
		waits = ss.abortTasks(func(t *task) bool {
			if t.itt == rtt {
				found = true
				return true
			}
			return false
		})
		if !found {
			code = tmfNoTask
		}
	case tmfAbortTaskSet, tmfClearTaskSet:
		if lu == nil {
			code = tmfNoLUN
			break
		}
		waits = ss.abortTasks(func(t *task) bool { return t.lu == lu })
		if fn == tmfClearTaskSet {
			ss.cancelOthers(lu)
		}
	case tmfLUNReset:
		if lu == nil {
			code = tmfNoLUN
			break
		}
		waits = ss.abortTasks(func(t *task) bool { return t.lu == lu })
		ss.cancelOthers(lu)
		after = func() { lu.Reset(scsi.ASCBusDeviceResetOccurred) }
	case tmfTargetWarm, tmfTargetCold:
		if ss.target == nil {
			code = tmfNotSupported
			break
		}
		waits = ss.abortTasks(func(*task) bool { return true })
		ss.cancelOthers(nil)
		target := ss.target
		after = func() {
			for _, l := range target.LUNs {
				l.Reset(scsi.ASCPowerOnReset)
			}
		}
		if fn == tmfTargetCold {
			prev := after
			after = func() {
				prev()
				// A cold reset ends every session of the target, this
				// one after its response.
				ss.s.closeSessions(func(o *session) bool { return o != ss && o.target == target })
			}
		}
	case tmfTaskReassign:
		code = tmfNoReassign
	default:
		code = tmfNotSupported
	}
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		for _, w := range waits {
			<-w
		}
		after()
		if fn == tmfTargetCold && code == tmfComplete {
			respond(code, true)
			ss.close()
			return
		}
		respond(code, false)
	}()
}

// OpClass sorts a command for latency figures: "read" and "write" for the
// READ and WRITE commands of disks and tapes (and WRITE AND VERIFY),
// "other" for the rest.
func OpClass(cdb []byte) string {
	if len(cdb) == 0 {
		return "other"
	}
	switch cdb[0] {
	case 0x08, 0x28, 0xa8, 0x88: // READ (6), (10), (12), (16)
		return "read"
	case 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e: // WRITE (6), (10), (12), (16), WRITE AND VERIFY (10), (12), (16)
		return "write"
	}
	return "other"
}
