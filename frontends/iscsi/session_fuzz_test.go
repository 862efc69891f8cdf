package iscsi

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi/sbc"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

type fuzzDisk struct {
	mu sync.Mutex
	b  []byte
}

func (d *fuzzDisk) ReadAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(p, d.b[off:])
	return nil
}

func (d *fuzzDisk) WriteAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.b[off:], p)
	return nil
}

func (d *fuzzDisk) Unmap(_ context.Context, off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.b[off : off+n])
	return nil
}

// WriteThrough is WriteAt: the disk has no write cache.
func (d *fuzzDisk) WriteThrough(ctx context.Context, p []byte, off int64) error {
	return d.WriteAt(ctx, p, off)
}

func (d *fuzzDisk) Flush(context.Context) error { return nil }
func (d *fuzzDisk) Size() int64                 { return int64(len(d.b)) }

func pduBytes(p *PDU) []byte {
	b, err := p.Marshal(Digests{})
	if err != nil {
		panic(err)
	}
	return b
}

// fuzzSeed is a whole well-formed session: login, commands with immediate
// and solicited data, NOP, SendTargets, task management and logout.
func fuzzSeed(chap bool) []byte {
	var out []byte
	login := &PDU{}
	login.SetOpcode(OpLogin, true)
	login.BHS[1] = 0x80 | 0x04 | 0x03
	login.BHS[8] = 0x80
	login.SetTaskTag(1)
	login.Data = EncodeText([]KV{{"InitiatorName", "iqn.2024-01.io.gatewayd:fuzz"}, {"TargetName", "iqn.2024-01.io.gatewayd:fuzz"},
		{"SessionType", "Normal"}, {"ImmediateData", "Yes"}, {"InitialR2T", "No"}, {"MaxBurstLength", "4096"},
		{"FirstBurstLength", "1024"}, {"MaxRecvDataSegmentLength", "1024"}, {"HeaderDigest", "None"}, {"X-Unknown", "1"}})
	if chap {
		login.BHS[1] = 0x01 // security stage, not transiting
		login.Data = EncodeText([]KV{{"InitiatorName", "iqn.2024-01.io.gatewayd:fuzz"}, {"TargetName", "iqn.2024-01.io.gatewayd:fuzz"},
			{"AuthMethod", "CHAP,None"}})
		out = append(out, pduBytes(login)...)
		login.Data = EncodeText([]KV{{"CHAP_A", "5"}})
		out = append(out, pduBytes(login)...)
		login.BHS[1] = 0x80 | 0x01
		login.Data = EncodeText([]KV{{"CHAP_N", "user"}, {"CHAP_R", "0x00112233445566778899aabbccddeeff"}})
	}
	out = append(out, pduBytes(login)...)
	cmdSN := uint32(0)
	cmd := func(cdb []byte, flags byte, edtl uint32, data []byte) {
		p := &PDU{}
		p.SetOpcode(OpSCSICommand, false)
		p.BHS[1] = flags
		p.SetTaskTag(100 + cmdSN)
		p.SetUint32(20, edtl)
		p.SetUint32(24, cmdSN)
		cmdSN++
		copy(p.BHS[32:], cdb)
		p.Data = data
		out = append(out, pduBytes(p)...)
	}
	cmd([]byte{0x00, 0, 0, 0, 0, 0}, 0x80, 0, nil)
	write := []byte{0x2a, 0, 0, 0, 0, 1, 0, 0, 4, 0}
	cmd(write, 0x20, 2048, make([]byte, 1024)) // immediate data, unsolicited Data-Out follows
	do := &PDU{}
	do.SetOpcode(OpDataOut, false)
	do.SetFinal(true)
	do.SetTaskTag(100 + cmdSN - 1)
	do.SetUint32(20, reservedTag)
	do.SetUint32(40, 1024)
	do.Data = make([]byte, 1024)
	out = append(out, pduBytes(do)...)
	cmd([]byte{0x28, 0, 0, 0, 0, 1, 0, 0, 4, 0}, 0xc0, 2048, nil)
	cmd([]byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, 0xc0, 32, nil)
	nop := &PDU{}
	nop.SetOpcode(OpNOPOut, true)
	nop.SetFinal(true)
	nop.SetTaskTag(7)
	nop.SetUint32(20, reservedTag)
	nop.Data = []byte("ping")
	out = append(out, pduBytes(nop)...)
	text := &PDU{}
	text.SetOpcode(OpText, true)
	text.SetFinal(true)
	text.SetTaskTag(8)
	text.SetUint32(20, reservedTag)
	text.Data = EncodeText([]KV{{"SendTargets", "All"}})
	out = append(out, pduBytes(text)...)
	tmf := &PDU{}
	tmf.SetOpcode(OpTaskMgmt, true)
	tmf.BHS[1] = 0x80 | 5
	tmf.SetTaskTag(9)
	out = append(out, pduBytes(tmf)...)
	logout := &PDU{}
	logout.SetOpcode(OpLogout, true)
	logout.BHS[1] = 0x80
	logout.SetTaskTag(10)
	binary.BigEndian.PutUint32(logout.BHS[24:], cmdSN)
	out = append(out, pduBytes(logout)...)
	return out
}

// FuzzSession feeds arbitrary bytes to a target connection as if from an
// initiator: login text negotiation, CHAP, PDU framing, command windows,
// R2T/Data-Out sequencing and task management all see hostile input. The
// target must neither panic nor hang.
func FuzzSession(f *testing.F) {
	f.Add(fuzzSeed(false), false)
	f.Add(fuzzSeed(true), true)
	f.Fuzz(func(t *testing.T, in []byte, chap bool) {
		srv := NewServer(Config{NOPInterval: time.Hour, NOPTimeout: time.Hour})
		lu := sbc.NewLU(&fuzzDisk{b: make([]byte, 1<<20)}, sbc.Options{Serial: "fuzz"}, nil)
		target := &Target{Name: "iqn.2024-01.io.gatewayd:fuzz", LUNs: map[uint64]*scsi.LU{0: lu}}
		if chap {
			target.Auth = Auth{CHAPUser: "user", CHAPSecret: "secret-secret"}
		}
		if err := srv.SetTarget(target); err != nil {
			t.Fatal(err)
		}
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.handle(a)
			close(done)
		}()
		go io.Copy(io.Discard, b)
		b.SetWriteDeadline(time.Now().Add(5 * time.Second))
		b.Write(in)
		b.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the target did not finish with a closed connection")
		}
		srv.Close()
	})
}
