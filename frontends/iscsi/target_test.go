package iscsi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/frontends/iscsi/sbc"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// memDisk is an in-memory sbc.Backend; gate, when set, holds reads of
// the block at gateOff until it is closed (a slow object-store miss).
type memDisk struct {
	mu      sync.RWMutex
	b       []byte
	gateOff int64
	gate    chan struct{}
}

func (m *memDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	if m.gate != nil && off == m.gateOff {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	copy(p, m.b[off:])
	return nil
}

func (m *memDisk) WriteAt(_ context.Context, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.b[off:], p)
	return nil
}

func (m *memDisk) Unmap(_ context.Context, off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.b[off : off+n])
	return nil
}

// WriteThrough is WriteAt: the disk has no write cache.
func (m *memDisk) WriteThrough(ctx context.Context, p []byte, off int64) error {
	return m.WriteAt(ctx, p, off)
}

func (m *memDisk) Flush(context.Context) error { return nil }
func (m *memDisk) Size() int64                 { return int64(len(m.b)) }

const targetName = "iqn.2024-01.io.gatewayd:test"

type fixture struct {
	srv  *iscsi.Server
	addr string
	disk *memDisk
}

func start(t *testing.T, cfg iscsi.Config, auth iscsi.Auth) *fixture {
	t.Helper()
	disk := &memDisk{b: make([]byte, 64<<20)}
	return serve(t, cfg, disk, disk, iscsi.Target{Auth: auth})
}

// serve serves target (named targetName, LUN 0 a disk on b) on a local
// port.
func serve(t *testing.T, cfg iscsi.Config, b sbc.Backend, disk *memDisk, target iscsi.Target) *fixture {
	t.Helper()
	srv := iscsi.NewServer(cfg)
	target.Name = targetName
	target.LUNs = map[uint64]*scsi.LU{0: sbc.NewLU(b, sbc.Options{Name: "test", Serial: "vol-test"}, nil)}
	if err := srv.SetTarget(&target); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &fixture{srv: srv, addr: ln.Addr().String(), disk: disk}
}

func dial(t *testing.T, f *fixture, o initiator.Options) *initiator.Conn {
	t.Helper()
	if o.TargetName == "" && !o.Discovery {
		o.TargetName = targetName
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := initiator.Dial(ctx, f.addr, o)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return c
}

func read16(lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

func write16(lba uint64, blocks uint32) []byte {
	cdb := read16(lba, blocks)
	cdb[0] = 0x8a
	return cdb
}

// clearUA consumes the power-on unit attention every new nexus gets.
func clearUA(t *testing.T, c *initiator.Conn) {
	t.Helper()
	r, err := c.Command(ctx(t), 0, make([]byte, 6), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if key, asc, _ := scsi.ParseSense(r.Sense); r.Status != 0x02 || key != scsi.KeyUnitAttention || asc != scsi.ASCPowerOnReset {
		t.Fatalf("first command: status %#x sense %x, want POWER ON unit attention", r.Status, r.Sense)
	}
}

// good checks a command ended with GOOD status: good(t)(c.Command(...)).
func good(t *testing.T) func(*initiator.Response, error) *initiator.Response {
	return func(r *initiator.Response, err error) *initiator.Response {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 0 {
			key, asc, _ := scsi.ParseSense(r.Sense)
			t.Fatalf("status %#x, sense key %#x asc %#04x", r.Status, key, asc)
		}
		return r
	}
}

// TestReadWriteEveryNegotiation writes and reads back data larger than
// every burst and segment limit under each combination of digests,
// immediate data and InitialR2T, so immediate data, unsolicited Data-Out,
// R2T sequences and multi-PDU Data-In all carry real bytes.
func TestReadWriteEveryNegotiation(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	for _, digests := range []bool{false, true} {
		for _, immediate := range []bool{false, true} {
			for _, initialR2T := range []bool{false, true} {
				name := fmt.Sprintf("digests=%v/immediate=%v/initialR2T=%v", digests, immediate, initialR2T)
				t.Run(name, func(t *testing.T) {
					c := dial(t, f, initiator.Options{HeaderDigest: digests, DataDigest: digests, ImmediateData: immediate,
						InitialR2T: initialR2T, MaxBurstLength: 128 << 10, FirstBurstLength: 64 << 10, MaxRecvDataSegmentLength: 8192})
					clearUA(t, c)
					data := make([]byte, 1<<20+4096)
					rand.Read(data)
					lba := uint64(4096)
					good(t)(c.Command(ctx(t), 0, write16(lba, uint32(len(data)/512)), data, 0))
					r := good(t)(c.Command(ctx(t), 0, read16(lba, uint32(len(data)/512)), nil, len(data)))
					if !bytes.Equal(r.Data, data) {
						t.Fatal("data read back differs from data written")
					}
					if !bytes.Equal(f.disk.b[lba*512:lba*512+uint64(len(data))], data) {
						t.Fatal("the backend does not hold the data written")
					}
					if err := c.Logout(ctx(t)); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

func TestConcurrentCommands(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	c := dial(t, f, initiator.Options{ImmediateData: true})
	clearUA(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(i)}, 4096)
			lba := uint64(i * 8)
			if r, err := c.Command(ctx(t), 0, write16(lba, 8), data, 0); err != nil || r.Status != 0 {
				errs <- fmt.Errorf("write %d: %v %+v", i, err, r)
				return
			}
			r, err := c.Command(ctx(t), 0, read16(lba, 8), nil, 4096)
			if err != nil || r.Status != 0 || !bytes.Equal(r.Data, data) {
				errs <- fmt.Errorf("read %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSlowCommandDoesNotStallOthers: a read stuck on a slow backend must
// not hold up later commands on the same connection.
func TestSlowCommandDoesNotStallOthers(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	f.disk.gateOff = 512 * 1000
	f.disk.gate = make(chan struct{})
	c := dial(t, f, initiator.Options{})
	clearUA(t, c)
	slow := make(chan error, 1)
	go func() {
		r, err := c.Command(ctx(t), 0, read16(1000, 1), nil, 512)
		if err == nil && r.Status != 0 {
			err = fmt.Errorf("status %#x", r.Status)
		}
		slow <- err
	}()
	for i := 0; i < 20; i++ {
		good(t)(c.Command(ctx(t), 0, read16(uint64(i), 1), nil, 512))
	}
	select {
	case err := <-slow:
		t.Fatalf("the gated read finished before its gate opened: %v", err)
	default:
	}
	close(f.disk.gate)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

func TestCHAP(t *testing.T) {
	auth := iscsi.Auth{CHAPUser: "alice", CHAPSecret: "alice-secret-1", MutualUser: "target", MutualSecret: "target-secret-2",
		Initiators: []string{"iqn.2024-01.io.gatewayd:allowed"}}
	f := start(t, iscsi.Config{}, auth)
	allowed := "iqn.2024-01.io.gatewayd:allowed"
	loginErr := func(o initiator.Options) error {
		if o.TargetName == "" {
			o.TargetName = targetName
		}
		c, err := initiator.Dial(ctx(t), f.addr, o)
		if err == nil {
			c.Close()
		}
		return err
	}
	wantStatus := func(t *testing.T, err error, status uint16) {
		t.Helper()
		var le *initiator.LoginError
		if !errors.As(err, &le) || le.Status != status {
			t.Fatalf("login: %v, want status %#04x", err, status)
		}
	}
	t.Run("one-way", func(t *testing.T) {
		c := dial(t, f, initiator.Options{InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: "alice-secret-1"})
		clearUA(t, c)
	})
	t.Run("mutual", func(t *testing.T) {
		c := dial(t, f, initiator.Options{InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: "alice-secret-1",
			MutualUser: "target", MutualSecret: "target-secret-2"})
		clearUA(t, c)
	})
	t.Run("mutual with the wrong target secret", func(t *testing.T) {
		err := loginErr(initiator.Options{InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: "alice-secret-1", MutualSecret: "not-the-secret"})
		if err == nil || err.Error() != "iscsi: target failed mutual CHAP authentication" {
			t.Fatalf("login: %v, want the initiator to refuse the target", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		wantStatus(t, loginErr(initiator.Options{InitiatorName: allowed, CHAPUser: "alice", CHAPSecret: "wrong-secret-9"}), iscsi.LoginAuthFailure)
	})
	t.Run("wrong user", func(t *testing.T) {
		wantStatus(t, loginErr(initiator.Options{InitiatorName: allowed, CHAPUser: "mallory", CHAPSecret: "alice-secret-1"}), iscsi.LoginAuthFailure)
	})
	t.Run("no CHAP on a CHAP target", func(t *testing.T) {
		wantStatus(t, loginErr(initiator.Options{InitiatorName: allowed}), iscsi.LoginAuthFailure)
	})
	t.Run("initiator not allowed", func(t *testing.T) {
		wantStatus(t, loginErr(initiator.Options{InitiatorName: "iqn.2024-01.io.gatewayd:other", CHAPUser: "alice", CHAPSecret: "alice-secret-1"}), iscsi.LoginAuthzFailure)
	})
	t.Run("no such target", func(t *testing.T) {
		wantStatus(t, loginErr(initiator.Options{InitiatorName: allowed, TargetName: "iqn.2024-01.io.gatewayd:nope"}), iscsi.LoginNotFound)
	})
	t.Run("discovery hides targets from other initiators", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			want int
		}{{allowed, 1}, {"iqn.2024-01.io.gatewayd:other", 0}} {
			c := dial(t, f, initiator.Options{Discovery: true, InitiatorName: tc.name})
			got, err := c.SendTargets(ctx(t), "All")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || (tc.want == 1 && (got[0].Name != targetName || len(got[0].Addresses) != 1 || got[0].Addresses[0] != f.addr+",1")) {
				t.Fatalf("SendTargets for %s: %+v", tc.name, got)
			}
		}
	})
}

// TestIdleSessionSurvives keeps sessions idle for a minute: one whose
// initiator pings every few seconds (as libiscsi and open-iscsi do) and
// one that only answers the target's pings. Both must still work.
func TestIdleSessionSurvives(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a minute")
	}
	t.Parallel()
	f := start(t, iscsi.Config{NOPInterval: 5 * time.Second, NOPTimeout: 10 * time.Second}, iscsi.Auth{})
	pinging := dial(t, f, initiator.Options{NOPInterval: 3 * time.Second})
	quiet := dial(t, f, initiator.Options{})
	clearUA(t, pinging)
	clearUA(t, quiet)
	time.Sleep(60 * time.Second)
	good(t)(pinging.Command(ctx(t), 0, read16(0, 1), nil, 512))
	good(t)(quiet.Command(ctx(t), 0, read16(0, 1), nil, 512))
	if quiet.NOPIns == 0 {
		t.Fatal("the target never pinged the quiet session")
	}
}

// TestDeadPeerIsDropped: a connection that stops answering is closed
// after NOPInterval + NOPTimeout, and its session disappears.
func TestDeadPeerIsDropped(t *testing.T) {
	f := start(t, iscsi.Config{NOPInterval: 100 * time.Millisecond, NOPTimeout: 200 * time.Millisecond}, iscsi.Auth{})
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rawLogin(t, nc)
	if n := len(f.srv.Sessions()); n != 1 {
		t.Fatalf("%d sessions after login", n)
	}
	// Never read or answer again: the target's pings go unanswered.
	deadline := time.Now().Add(5 * time.Minute)
	for len(f.srv.Sessions()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the silent session was never dropped")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawLogin logs in on nc by hand (no initiator goroutines to answer pings).
func rawLogin(t *testing.T, nc net.Conn) {
	t.Helper()
	p := &iscsi.PDU{}
	p.SetOpcode(iscsi.OpLogin, true)
	p.BHS[1] = 0x80 | 0x04 | 0x03 // transit, CSG operational, NSG full feature
	p.BHS[8] = 0x80
	p.SetTaskTag(1)
	p.Data = iscsi.EncodeText([]iscsi.KV{{Key: "InitiatorName", Value: "iqn.2024-01.io.gatewayd:raw"},
		{Key: "TargetName", Value: targetName}, {Key: "SessionType", Value: "Normal"}})
	b, _ := p.Marshal(iscsi.Digests{})
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	resp, err := iscsi.ReadPDU(nc, iscsi.Digests{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Opcode() != iscsi.OpLoginResp || resp.BHS[36] != 0 || resp.BHS[1]&0x80 == 0 {
		t.Fatalf("raw login: %v status %#x flags %#x", resp.Opcode(), resp.BHS[36:38], resp.BHS[1])
	}
}

// TestMalformedInputKeepsServing sends broken PDUs on several connections;
// each is rejected or dropped, and the target keeps serving others.
func TestMalformedInputKeepsServing(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	cases := map[string]func(net.Conn){
		"garbage before login": func(nc net.Conn) { nc.Write(bytes.Repeat([]byte{0xff}, 4096)) },
		"data segment over the limit": func(nc net.Conn) {
			rawLogin(t, nc)
			hdr := make([]byte, 48)
			hdr[0] = 0x01
			hdr[5], hdr[6], hdr[7] = 0xff, 0xff, 0xff
			nc.Write(hdr)
		},
		"unknown opcode": func(nc net.Conn) {
			rawLogin(t, nc)
			hdr := make([]byte, 48)
			hdr[0] = 0x1c
			nc.Write(hdr)
			// A Reject comes back and the connection stays up.
			p, err := iscsi.ReadPDU(nc, iscsi.Digests{}, 1<<20)
			if err != nil || p.Opcode() != iscsi.OpReject {
				t.Errorf("unknown opcode: %v %v, want a Reject", p, err)
			}
		},
		"login in full feature phase": func(nc net.Conn) {
			rawLogin(t, nc)
			p := &iscsi.PDU{}
			p.SetOpcode(iscsi.OpLogin, true)
			b, _ := p.Marshal(iscsi.Digests{})
			nc.Write(b)
			r, err := iscsi.ReadPDU(nc, iscsi.Digests{}, 1<<20)
			if err != nil || r.Opcode() != iscsi.OpReject {
				t.Errorf("second login: %v %v, want a Reject", r, err)
			}
		},
		"truncated header": func(nc net.Conn) { nc.Write([]byte{0x43, 0x87, 0, 0}) },
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			fn(nc)
			nc.Close()
		})
	}
	c := dial(t, f, initiator.Options{})
	clearUA(t, c)
	good(t)(c.Command(ctx(t), 0, read16(0, 1), nil, 512))
}

// TestAbortAndReset covers task management: ABORT TASK of a command stuck
// in the backend suppresses its response; LUN RESET leaves a unit
// attention for the next command.
func TestAbortAndReset(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	f.disk.gateOff = 512 * 77
	f.disk.gate = make(chan struct{})
	c := dial(t, f, initiator.Options{})
	clearUA(t, c)
	cctx, cancel := context.WithCancel(ctx(t))
	stuck := make(chan error, 1)
	go func() {
		_, err := c.Command(cctx, 0, read16(77, 1), nil, 512)
		stuck <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the read reach the backend
	// The stuck read was the second task this connection sent.
	code, err := c.TaskManagement(ctx(t), 1, 0, 2)
	if err != nil || code != 0 {
		t.Fatalf("ABORT TASK: code %d err %v", code, err)
	}
	code, err = c.TaskManagement(ctx(t), 1, 0, 99)
	if err != nil || code != 1 {
		t.Fatalf("ABORT TASK of an unknown task: code %d err %v, want 1 (task does not exist)", code, err)
	}
	select {
	case err := <-stuck:
		t.Fatalf("the aborted read got an answer: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	<-stuck
	code, err = c.TaskManagement(ctx(t), 5, 0, 0)
	if err != nil || code != 0 {
		t.Fatalf("LUN RESET: code %d err %v", code, err)
	}
	r, err := c.Command(ctx(t), 0, make([]byte, 6), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if key, asc, _ := scsi.ParseSense(r.Sense); key != scsi.KeyUnitAttention || asc != scsi.ASCBusDeviceResetOccurred {
		t.Fatalf("after LUN RESET: status %#x key %#x asc %#04x", r.Status, key, asc)
	}
	code, err = c.TaskManagement(ctx(t), 5, 9, 0)
	if err != nil || code != 2 {
		t.Fatalf("LUN RESET of a missing LUN: code %d err %v, want 2", code, err)
	}
}

func TestNOPAndReportLUNs(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	c := dial(t, f, initiator.Options{})
	for _, immediate := range []bool{true, false} {
		echo, err := c.NOP(ctx(t), immediate, []byte("ping data"))
		if err != nil || string(echo) != "ping data" {
			t.Fatalf("NOP (immediate=%v): %q %v", immediate, echo, err)
		}
	}
	cdb := make([]byte, 12)
	cdb[0] = 0xa0
	binary.BigEndian.PutUint32(cdb[6:], 64)
	r := good(t)(c.Command(ctx(t), 0, cdb, nil, 64))
	if len(r.Data) != 16 || binary.BigEndian.Uint32(r.Data) != 8 || !bytes.Equal(r.Data[8:], make([]byte, 8)) {
		t.Fatalf("REPORT LUNS: %x", r.Data)
	}
	// A missing LUN: INQUIRY says so, other commands fail with LUN NOT SUPPORTED.
	inq := []byte{0x12, 0, 0, 0, 36, 0}
	r = good(t)(c.Command(ctx(t), 5, inq, nil, 36))
	if r.Data[0] != 0x7f {
		t.Fatalf("INQUIRY of a missing LUN: peripheral byte %#x", r.Data[0])
	}
	r, err := c.Command(ctx(t), 5, read16(0, 1), nil, 512)
	if err != nil {
		t.Fatal(err)
	}
	if key, asc, _ := scsi.ParseSense(r.Sense); key != scsi.KeyIllegalRequest || asc != scsi.ASCLUNNotSupported {
		t.Fatalf("READ of a missing LUN: %x", r.Sense)
	}
}

func TestResiduals(t *testing.T) {
	f := start(t, iscsi.Config{}, iscsi.Auth{})
	c := dial(t, f, initiator.Options{})
	clearUA(t, c)
	r := good(t)(c.CommandEDTL(ctx(t), 0, read16(0, 2), nil, 512, 512))
	if !r.Overflow || r.Residual != 512 || len(r.Data) != 512 {
		t.Fatalf("read 2 blocks into 512 bytes: %+v", r)
	}
	r = good(t)(c.CommandEDTL(ctx(t), 0, read16(0, 1), nil, 4096, 4096))
	if !r.Underflow || r.Residual != 4096-512 || len(r.Data) != 512 {
		t.Fatalf("read 1 block into 4096 bytes: %+v", r)
	}
}
