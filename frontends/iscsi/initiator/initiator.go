// Package initiator is a small iSCSI initiator: the client side of
// gatewayd's PDU codec. It logs in (with one-way or mutual CHAP),
// discovers targets, runs SCSI commands concurrently with R2T and Data-In
// handling, answers the target's NOP-In pings, sends its own, and logs
// out. gatewayd's tests use it to drive the target where a precise
// protocol-level check is wanted; it is not a general-purpose initiator
// (one connection per session, error recovery level 0).
package initiator

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi"
)

// Options configure a login.
type Options struct {
	InitiatorName string // default iqn.2024-01.io.gatewayd:initiator
	TargetName    string // empty for a discovery session
	Discovery     bool
	// CHAPUser and CHAPSecret answer the target's challenge.
	CHAPUser, CHAPSecret string
	// MutualSecret, when set, makes the initiator challenge the target and
	// check its answer (MutualUser too, when set).
	MutualUser, MutualSecret string
	HeaderDigest, DataDigest bool
	ImmediateData            bool
	InitialR2T               bool // true: all write data waits for R2T
	MaxBurstLength           int  // default 256 KiB
	FirstBurstLength         int  // default 64 KiB
	MaxRecvDataSegmentLength int  // default 256 KiB
	// NOPInterval, when set, sends a NOP-Out after that much idle time,
	// as open-iscsi and libiscsi do.
	NOPInterval time.Duration
	ISID        [6]byte // default random
}

// LoginError is a login the target refused.
type LoginError struct {
	Status uint16 // class << 8 | detail
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsi login refused: status 0x%04x", e.Status)
}

// Response is a SCSI command's outcome.
type Response struct {
	Status    byte
	Sense     []byte
	Data      []byte
	Residual  uint32
	Overflow  bool
	Underflow bool
}

type pending struct {
	resp    Response
	readLen int
	out     []byte // data-out, for R2Ts
	lun     uint64
	done    chan error
	tmf     chan byte
	nop     chan []byte
	text    chan *iscsi.PDU
	logout  chan bool
}

// Conn is a logged-in session.
type Conn struct {
	nc      net.Conn
	r       *bufio.Reader
	opts    Options
	digests iscsi.Digests

	// negotiated
	maxSendData int
	maxBurst    int
	firstBurst  int
	immediate   bool
	initialR2T  bool

	wmu sync.Mutex
	// cmdMu keeps commands on the wire in CmdSN order: it is held from
	// taking a CmdSN until the PDU carrying it is written.
	cmdMu sync.Mutex

	mu        sync.Mutex
	cmdSN     uint32
	expStatSN uint32
	maxCmdSN  uint32
	itt       uint32
	tasks     map[uint32]*pending
	err       error
	window    *sync.Cond
	lastSend  time.Time

	closed chan struct{}
	wg     sync.WaitGroup
	// NOPIns counts target-initiated pings answered.
	NOPIns int
}

// Dial connects to addr and logs in.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	if opts.InitiatorName == "" {
		opts.InitiatorName = "iqn.2024-01.io.gatewayd:initiator"
	}
	if opts.MaxBurstLength == 0 {
		opts.MaxBurstLength = 256 << 10
	}
	if opts.FirstBurstLength == 0 {
		opts.FirstBurstLength = 64 << 10
	}
	if opts.MaxRecvDataSegmentLength == 0 {
		opts.MaxRecvDataSegmentLength = 256 << 10
	}
	if opts.ISID == ([6]byte{}) {
		rand.Read(opts.ISID[1:])
		opts.ISID[0] = 0x80 // random qualifier format
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 256<<10), opts: opts, tasks: map[uint32]*pending{},
		closed: make(chan struct{}), maxSendData: 8192, maxBurst: 262144, firstBurst: 65536}
	c.window = sync.NewCond(&c.mu)
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	if err := c.login(); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	c.digests = iscsi.Digests{Header: opts.HeaderDigest, Data: opts.DataDigest}
	c.wg.Add(1)
	go c.readLoop()
	if opts.NOPInterval > 0 {
		c.wg.Add(1)
		go c.pinger()
	}
	return c, nil
}

func (c *Conn) loginPDU(csg, nsg int, transit bool, kvs []iscsi.KV) *iscsi.PDU {
	p := &iscsi.PDU{}
	p.SetOpcode(iscsi.OpLogin, true)
	p.BHS[1] = byte(csg<<2 | nsg)
	if transit {
		p.BHS[1] |= 0x80
	}
	copy(p.BHS[8:14], c.opts.ISID[:])
	p.SetTaskTag(1)
	p.SetUint32(24, c.cmdSN)
	p.SetUint32(28, c.expStatSN)
	p.Data = iscsi.EncodeText(kvs)
	return p
}

func (c *Conn) exchange(p *iscsi.PDU) (*iscsi.PDU, map[string]string, error) {
	b, err := p.Marshal(iscsi.Digests{})
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.nc.Write(b); err != nil {
		return nil, nil, err
	}
	resp, err := iscsi.ReadPDU(c.r, iscsi.Digests{}, 1<<20)
	if err != nil {
		return nil, nil, err
	}
	if resp.Opcode() != iscsi.OpLoginResp {
		return nil, nil, fmt.Errorf("iscsi: got %v during login", resp.Opcode())
	}
	status := binary.BigEndian.Uint16(resp.BHS[36:])
	if status != 0 {
		return nil, nil, &LoginError{Status: status}
	}
	c.expStatSN = resp.Uint32(24) + 1
	c.maxCmdSN = resp.Uint32(32)
	kvs, err := iscsi.ParseText(resp.Data)
	if err != nil {
		return nil, nil, err
	}
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return resp, m, nil
}

func (c *Conn) login() error {
	o := c.opts
	first := []iscsi.KV{{Key: "InitiatorName", Value: o.InitiatorName}}
	if o.Discovery {
		first = append(first, iscsi.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		first = append(first, iscsi.KV{Key: "SessionType", Value: "Normal"}, iscsi.KV{Key: "TargetName", Value: o.TargetName})
	}
	method := "None"
	if o.CHAPUser != "" {
		method = "CHAP"
	}
	first = append(first, iscsi.KV{Key: "AuthMethod", Value: method})
	resp, m, err := c.exchange(c.loginPDU(0, 1, method == "None", first))
	if err != nil {
		return err
	}
	if method == "CHAP" {
		if m["AuthMethod"] != "CHAP" {
			return fmt.Errorf("iscsi: target answered AuthMethod=%q", m["AuthMethod"])
		}
		_, m, err = c.exchange(c.loginPDU(0, 1, false, []iscsi.KV{{Key: "CHAP_A", Value: "5"}}))
		if err != nil {
			return err
		}
		id, err := strconv.Atoi(m["CHAP_I"])
		if err != nil {
			return fmt.Errorf("iscsi: bad CHAP_I %q", m["CHAP_I"])
		}
		challenge, err := iscsi.DecodeBinary(m["CHAP_C"])
		if err != nil {
			return err
		}
		kvs := []iscsi.KV{{Key: "CHAP_N", Value: o.CHAPUser},
			{Key: "CHAP_R", Value: iscsi.EncodeBinary(iscsi.CHAPResponse(byte(id), o.CHAPSecret, challenge))}}
		var myID byte
		var myChallenge []byte
		if o.MutualSecret != "" {
			myID, myChallenge = iscsi.NewChallenge()
			kvs = append(kvs, iscsi.KV{Key: "CHAP_I", Value: strconv.Itoa(int(myID))},
				iscsi.KV{Key: "CHAP_C", Value: iscsi.EncodeBinary(myChallenge)})
		}
		resp, m, err = c.exchange(c.loginPDU(0, 1, true, kvs))
		if err != nil {
			return err
		}
		if o.MutualSecret != "" {
			r, err := iscsi.DecodeBinary(m["CHAP_R"])
			if err != nil {
				return fmt.Errorf("iscsi: target did not authenticate: %w", err)
			}
			if (o.MutualUser != "" && m["CHAP_N"] != o.MutualUser) || string(r) != string(iscsi.CHAPResponse(myID, o.MutualSecret, myChallenge)) {
				return errors.New("iscsi: target failed mutual CHAP authentication")
			}
		}
	}
	for resp.BHS[1]&0x80 == 0 { // the target has not agreed to leave security negotiation
		resp, _, err = c.exchange(c.loginPDU(0, 1, true, nil))
		if err != nil {
			return err
		}
	}
	digest := func(b bool) string {
		if b {
			return "CRC32C"
		}
		return "None"
	}
	yes := func(b bool) string {
		if b {
			return "Yes"
		}
		return "No"
	}
	ops := []iscsi.KV{
		{Key: "HeaderDigest", Value: digest(o.HeaderDigest)},
		{Key: "DataDigest", Value: digest(o.DataDigest)},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(o.MaxRecvDataSegmentLength)},
	}
	if !o.Discovery {
		ops = append(ops,
			iscsi.KV{Key: "InitialR2T", Value: yes(o.InitialR2T)},
			iscsi.KV{Key: "ImmediateData", Value: yes(o.ImmediateData)},
			iscsi.KV{Key: "MaxBurstLength", Value: strconv.Itoa(o.MaxBurstLength)},
			iscsi.KV{Key: "FirstBurstLength", Value: strconv.Itoa(o.FirstBurstLength)},
			iscsi.KV{Key: "MaxOutstandingR2T", Value: "1"},
			iscsi.KV{Key: "ErrorRecoveryLevel", Value: "0"},
			iscsi.KV{Key: "MaxConnections", Value: "1"},
		)
	}
	resp, m, err = c.exchange(c.loginPDU(1, 3, true, ops))
	if err != nil {
		return err
	}
	for resp.BHS[1]&0x80 == 0 {
		resp, _, err = c.exchange(c.loginPDU(1, 3, true, nil))
		if err != nil {
			return err
		}
	}
	atoi := func(k string, def int) int {
		if v, err := strconv.Atoi(m[k]); err == nil {
			return v
		}
		return def
	}
	c.maxSendData = atoi("MaxRecvDataSegmentLength", 8192)
	c.maxBurst = atoi("MaxBurstLength", 262144)
	c.firstBurst = atoi("FirstBurstLength", 65536)
	c.immediate = m["ImmediateData"] == "Yes"
	c.initialR2T = m["InitialR2T"] != "No"
	if o.Discovery {
		c.immediate, c.initialR2T = false, true
	}
	if m["HeaderDigest"] != "" && (m["HeaderDigest"] == "CRC32C") != o.HeaderDigest {
		return fmt.Errorf("iscsi: target answered HeaderDigest=%s", m["HeaderDigest"])
	}
	return nil
}

// Err is why the connection ended, or nil.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	tasks := c.tasks
	c.tasks = map[uint32]*pending{}
	c.window.Broadcast()
	c.mu.Unlock()
	for _, p := range tasks {
		if p.done != nil {
			select {
			case p.done <- err:
			default:
			}
		}
		if p.tmf != nil {
			close(p.tmf)
		}
		if p.nop != nil {
			close(p.nop)
		}
		if p.text != nil {
			close(p.text)
		}
		if p.logout != nil {
			close(p.logout)
		}
	}
	c.nc.Close()
}

// Close drops the connection without logging out.
func (c *Conn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	c.fail(net.ErrClosed)
	c.wg.Wait()
	return nil
}

func (c *Conn) write(p *iscsi.PDU) error {
	b, err := p.Marshal(c.digests)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.lastSend = time.Now()
	c.mu.Unlock()
	_, err = c.nc.Write(b)
	return err
}

// newTask reserves an ITT and, unless immediate, a CmdSN within the
// target's window.
func (c *Conn) newTask(ctx context.Context, p *pending, immediate bool) (itt, cmdSN, expStatSN uint32, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !immediate && int32(c.maxCmdSN-c.cmdSN) < 0 && c.err == nil {
		if ctx.Err() != nil {
			return 0, 0, 0, ctx.Err()
		}
		c.window.Wait()
	}
	if c.err != nil {
		return 0, 0, 0, c.err
	}
	c.itt++
	if c.itt == 0xffffffff {
		c.itt = 1
	}
	itt = c.itt
	cmdSN = c.cmdSN
	if !immediate {
		c.cmdSN++
	}
	c.tasks[itt] = p
	return itt, cmdSN, c.expStatSN, nil
}

func (c *Conn) updateSN(p *iscsi.PDU, statSN bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if statSN {
		if sn := p.Uint32(24); int32(sn+1-c.expStatSN) > 0 {
			c.expStatSN = sn + 1
		}
	}
	if m := p.Uint32(32); int32(m-c.maxCmdSN) > 0 {
		c.maxCmdSN = m
		c.window.Broadcast()
	}
}

// Command runs one SCSI command: dataOut is written (immediate, then on
// R2T), up to readLen bytes are read.
func (c *Conn) Command(ctx context.Context, lun uint64, cdb []byte, dataOut []byte, readLen int) (*Response, error) {
	return c.CommandEDTL(ctx, lun, cdb, dataOut, readLen, -1)
}

// CommandEDTL is Command with an explicit Expected Data Transfer Length
// (edtl < 0: len(dataOut) or readLen), to test residual handling.
func (c *Conn) CommandEDTL(ctx context.Context, lun uint64, cdb []byte, dataOut []byte, readLen, edtl int) (*Response, error) {
	if len(cdb) > 16 {
		return nil, errors.New("initiator: CDBs longer than 16 bytes are not supported")
	}
	p := &pending{readLen: readLen, out: dataOut, lun: lun, done: make(chan error, 1)}
	c.cmdMu.Lock()
	itt, cmdSN, expStatSN, err := c.newTask(ctx, p, false)
	if err != nil {
		c.cmdMu.Unlock()
		return nil, err
	}
	pdu := &iscsi.PDU{}
	pdu.SetOpcode(iscsi.OpSCSICommand, false)
	flags := byte(0x80 | 0x01) // final, simple task attribute
	if readLen > 0 {
		flags |= 0x40
	}
	if dataOut != nil {
		flags |= 0x20
	}
	if edtl < 0 {
		edtl = readLen
		if dataOut != nil {
			edtl = len(dataOut)
		}
	}
	pdu.SetLUN(lunField(lun))
	pdu.SetTaskTag(itt)
	pdu.SetUint32(20, uint32(edtl))
	pdu.SetUint32(24, cmdSN)
	pdu.SetUint32(28, expStatSN)
	copy(pdu.BHS[32:48], cdb)
	var unsolicited []byte
	if len(dataOut) > 0 {
		n := min(len(dataOut), c.firstBurst)
		if c.immediate {
			imm := min(n, c.maxSendData)
			pdu.Data = dataOut[:imm]
			unsolicited = dataOut[imm:n]
		} else {
			unsolicited = dataOut[:n]
		}
		if c.initialR2T {
			unsolicited = nil
		}
	}
	if len(unsolicited) > 0 {
		flags &^= 0x80 // unsolicited Data-Out follows
	}
	pdu.BHS[1] = flags
	err = c.write(pdu)
	c.cmdMu.Unlock()
	if err != nil {
		return nil, err
	}
	if len(unsolicited) > 0 {
		base := uint32(len(pdu.Data))
		if err := c.sendData(itt, lunField(lun), 0xffffffff, base, unsolicited); err != nil {
			return nil, err
		}
	}
	select {
	case err := <-p.done:
		if err != nil {
			return nil, err
		}
		return &p.resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// sendData sends data as Data-Out PDUs at offset base of the task's buffer.
func (c *Conn) sendData(itt uint32, lun uint64, ttt, base uint32, data []byte) error {
	sn := uint32(0)
	for off := 0; off < len(data); {
		n := min(len(data)-off, c.maxSendData)
		p := &iscsi.PDU{}
		p.SetOpcode(iscsi.OpDataOut, false)
		if off+n == len(data) {
			p.SetFinal(true)
		}
		p.SetLUN(lun)
		p.SetTaskTag(itt)
		p.SetUint32(20, ttt)
		c.mu.Lock()
		p.SetUint32(28, c.expStatSN)
		c.mu.Unlock()
		p.SetUint32(36, sn)
		p.SetUint32(40, base+uint32(off))
		p.Data = data[off : off+n]
		if err := c.write(p); err != nil {
			return err
		}
		sn++
		off += n
	}
	return nil
}

func lunField(lun uint64) uint64 {
	if lun < 256 {
		return lun << 48
	}
	return (0x4000 | lun&0x3fff) << 48
}

func (c *Conn) readLoop() {
	defer c.wg.Done()
	for {
		p, err := iscsi.ReadPDU(c.r, c.digests, 16<<20)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.fail(err)
			return
		}
		if err := c.handle(p); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *Conn) take(itt uint32, remove bool) *pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.tasks[itt]
	if remove {
		delete(c.tasks, itt)
	}
	return p
}

func (c *Conn) handle(p *iscsi.PDU) error {
	switch p.Opcode() {
	case iscsi.OpDataIn:
		status := p.BHS[1]&0x01 != 0
		c.updateSN(p, status)
		t := c.take(p.TaskTag(), status)
		if t == nil {
			return fmt.Errorf("initiator: Data-In for unknown task %#x", p.TaskTag())
		}
		off := int(p.Uint32(40))
		if off+len(p.Data) > t.readLen {
			return fmt.Errorf("initiator: Data-In beyond the expected length (%d+%d > %d)", off, len(p.Data), t.readLen)
		}
		if need := off + len(p.Data); need > len(t.resp.Data) {
			t.resp.Data = append(t.resp.Data, make([]byte, need-len(t.resp.Data))...)
		}
		copy(t.resp.Data[off:], p.Data)
		if status {
			t.resp.Status = p.BHS[3]
			t.resp.Overflow = p.BHS[1]&0x04 != 0
			t.resp.Underflow = p.BHS[1]&0x02 != 0
			t.resp.Residual = p.Uint32(44)
			t.done <- nil
		}
	case iscsi.OpSCSIResponse:
		c.updateSN(p, true)
		t := c.take(p.TaskTag(), true)
		if t == nil {
			return fmt.Errorf("initiator: response for unknown task %#x", p.TaskTag())
		}
		t.resp.Status = p.BHS[3]
		t.resp.Overflow = p.BHS[1]&0x04 != 0
		t.resp.Underflow = p.BHS[1]&0x02 != 0
		t.resp.Residual = p.Uint32(44)
		if len(p.Data) >= 2 {
			n := int(binary.BigEndian.Uint16(p.Data))
			if 2+n <= len(p.Data) {
				t.resp.Sense = append([]byte(nil), p.Data[2:2+n]...)
			}
		}
		t.done <- nil
	case iscsi.OpR2T:
		c.updateSN(p, false)
		t := c.take(p.TaskTag(), false)
		if t == nil {
			return fmt.Errorf("initiator: R2T for unknown task %#x", p.TaskTag())
		}
		off, n := p.Uint32(40), p.Uint32(44)
		if int(off)+int(n) > len(t.out) {
			return fmt.Errorf("initiator: R2T beyond the data (%d+%d > %d)", off, n, len(t.out))
		}
		go c.sendData(p.TaskTag(), p.LUN(), p.Uint32(20), off, t.out[off:off+n])
	case iscsi.OpNOPIn:
		if p.TaskTag() == 0xffffffff {
			c.updateSN(p, false)
			// The target pings: answer with its transfer tag.
			c.mu.Lock()
			c.NOPIns++
			sn, exp := c.cmdSN, c.expStatSN
			c.mu.Unlock()
			r := &iscsi.PDU{}
			r.SetOpcode(iscsi.OpNOPOut, true)
			r.SetFinal(true)
			r.SetLUN(p.LUN())
			r.SetTaskTag(0xffffffff)
			r.SetUint32(20, p.Uint32(20))
			r.SetUint32(24, sn)
			r.SetUint32(28, exp)
			go c.write(r)
			return nil
		}
		c.updateSN(p, true)
		if t := c.take(p.TaskTag(), true); t != nil && t.nop != nil {
			t.nop <- append([]byte(nil), p.Data...)
		}
	case iscsi.OpTaskMgmtResp:
		c.updateSN(p, true)
		if t := c.take(p.TaskTag(), true); t != nil && t.tmf != nil {
			t.tmf <- p.BHS[2]
		}
	case iscsi.OpTextResp:
		c.updateSN(p, true)
		if t := c.take(p.TaskTag(), true); t != nil && t.text != nil {
			t.text <- p
		}
	case iscsi.OpLogoutResp:
		c.updateSN(p, true)
		if t := c.take(p.TaskTag(), true); t != nil && t.logout != nil {
			t.logout <- p.BHS[2] == 0
		}
	case iscsi.OpReject:
		c.updateSN(p, true)
		return fmt.Errorf("initiator: target rejected a PDU (reason %#x)", p.BHS[2])
	case iscsi.OpAsyncMessage:
		c.updateSN(p, true)
	default:
		return fmt.Errorf("initiator: unexpected %v", p.Opcode())
	}
	return nil
}

// NOP sends a NOP-Out carrying data and waits for the echo.
func (c *Conn) NOP(ctx context.Context, immediate bool, data []byte) ([]byte, error) {
	t := &pending{nop: make(chan []byte, 1)}
	c.cmdMu.Lock()
	itt, cmdSN, exp, err := c.newTask(ctx, t, immediate)
	if err != nil {
		c.cmdMu.Unlock()
		return nil, err
	}
	p := &iscsi.PDU{}
	p.SetOpcode(iscsi.OpNOPOut, immediate)
	p.SetFinal(true)
	p.SetTaskTag(itt)
	p.SetUint32(20, 0xffffffff)
	p.SetUint32(24, cmdSN)
	p.SetUint32(28, exp)
	p.Data = data
	err = c.write(p)
	c.cmdMu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case d, ok := <-t.nop:
		if !ok {
			return nil, c.Err()
		}
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Conn) pinger() {
	defer c.wg.Done()
	tick := time.NewTicker(c.opts.NOPInterval / 2)
	defer tick.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-tick.C:
			c.mu.Lock()
			idle := time.Since(c.lastSend)
			c.mu.Unlock()
			if idle >= c.opts.NOPInterval {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.NOP(ctx, true, nil)
				cancel()
				if err != nil {
					return
				}
			}
		}
	}
}

// TaskManagement sends a task management function and returns the
// target's response code.
func (c *Conn) TaskManagement(ctx context.Context, fn byte, lun uint64, refTask uint32) (byte, error) {
	t := &pending{tmf: make(chan byte, 1)}
	itt, cmdSN, exp, err := c.newTask(ctx, t, true)
	if err != nil {
		return 0, err
	}
	p := &iscsi.PDU{}
	p.SetOpcode(iscsi.OpTaskMgmt, true)
	p.BHS[1] = 0x80 | fn&0x7f
	p.SetLUN(lunField(lun))
	p.SetTaskTag(itt)
	p.SetUint32(20, refTask)
	p.SetUint32(24, cmdSN)
	p.SetUint32(28, exp)
	p.SetUint32(32, cmdSN)
	if err := c.write(p); err != nil {
		return 0, err
	}
	select {
	case code, ok := <-t.tmf:
		if !ok {
			return 0, c.Err()
		}
		return code, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Discovered is one target a SendTargets answer named.
type Discovered struct {
	Name      string
	Addresses []string
}

// SendTargets asks for targets ("All" in a discovery session).
func (c *Conn) SendTargets(ctx context.Context, which string) ([]Discovered, error) {
	var data []byte
	ttt := uint32(0xffffffff)
	for {
		t := &pending{text: make(chan *iscsi.PDU, 1)}
		itt, cmdSN, exp, err := c.newTask(ctx, t, false)
		if err != nil {
			return nil, err
		}
		p := &iscsi.PDU{}
		p.SetOpcode(iscsi.OpText, false)
		p.SetFinal(true)
		p.SetTaskTag(itt)
		p.SetUint32(20, ttt)
		p.SetUint32(24, cmdSN)
		p.SetUint32(28, exp)
		if ttt == 0xffffffff {
			p.Data = iscsi.EncodeText([]iscsi.KV{{Key: "SendTargets", Value: which}})
		}
		if err := c.write(p); err != nil {
			return nil, err
		}
		var resp *iscsi.PDU
		select {
		case r, ok := <-t.text:
			if !ok {
				return nil, c.Err()
			}
			resp = r
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		data = append(data, resp.Data...)
		if resp.BHS[1]&0x40 == 0 {
			break
		}
		ttt = resp.Uint32(20)
	}
	var out []Discovered
	for _, field := range splitNUL(data) {
		k, v, _ := cutEq(field)
		switch k {
		case "TargetName":
			out = append(out, Discovered{Name: v})
		case "TargetAddress":
			if len(out) > 0 {
				out[len(out)-1].Addresses = append(out[len(out)-1].Addresses, v)
			}
		}
	}
	return out, nil
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

func cutEq(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Logout ends the session cleanly.
func (c *Conn) Logout(ctx context.Context) error {
	t := &pending{logout: make(chan bool, 1)}
	itt, cmdSN, exp, err := c.newTask(ctx, t, true)
	if err != nil {
		return err
	}
	p := &iscsi.PDU{}
	p.SetOpcode(iscsi.OpLogout, true)
	p.BHS[1] = 0x80
	p.SetTaskTag(itt)
	p.SetUint32(24, cmdSN)
	p.SetUint32(28, exp)
	if err := c.write(p); err != nil {
		return err
	}
	select {
	case ok, open := <-t.logout:
		c.Close()
		if !open {
			return fmt.Errorf("initiator: connection lost before the logout response: %w", c.Err())
		}
		if !ok {
			return errors.New("initiator: the target refused the logout")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
