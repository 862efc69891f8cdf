package iscsi

import (
	"net"
	"strconv"
)

// textContinuation holds the rest of a text response too long for one PDU.
type textContinuation struct {
	itt, ttt uint32
	rest     []byte
}

// textRequest answers Text requests: SendTargets (discovery, RFC 7143
// appendix C) and NotUnderstood for anything else.
func (ss *session) textRequest(p *PDU) error {
	if p.BHS[1]&0x40 != 0 {
		return ss.protocolError(p, rejectProtocolError, "continued text requests are not supported")
	}
	ttt := p.Uint32(20)
	ss.mu.Lock()
	cont := ss.text
	ss.mu.Unlock()
	var data []byte
	if ttt != reservedTag {
		if cont == nil || cont.ttt != ttt || cont.itt != p.TaskTag() {
			return ss.protocolError(p, rejectInvalidField, "text request with unknown target transfer tag")
		}
		data = cont.rest
	} else {
		kvs, err := ParseText(p.Data)
		if err != nil {
			return ss.protocolError(p, rejectProtocolError, "%v", err)
		}
		var out []KV
		for _, kv := range kvs {
			if kv.Key != "SendTargets" {
				out = append(out, KV{kv.Key, "NotUnderstood"})
				continue
			}
			out = append(out, ss.sendTargets(kv.Value)...)
		}
		data = EncodeText(out)
	}
	r := &PDU{}
	r.SetOpcode(OpTextResp, false)
	r.SetTaskTag(p.TaskTag())
	r.SetLUN(p.LUN())
	max := ss.params.InitiatorMaxRecv
	ss.mu.Lock()
	if len(data) > max {
		ss.nextTTT++
		next := ss.nextTTT & 0x7fffffff
		ss.text = &textContinuation{itt: p.TaskTag(), ttt: next, rest: data[max:]}
		data = data[:max]
		r.BHS[1] = 0x40
		r.SetUint32(20, next)
	} else {
		ss.text = nil
		r.BHS[1] = 0x80
		r.SetUint32(20, reservedTag)
	}
	ss.mu.Unlock()
	r.Data = data
	return ss.send(r, true)
}

// sendTargets lists the targets this initiator may log in to, each with
// the portal address the connection came in on.
func (ss *session) sendTargets(which string) []KV {
	var names []string
	switch {
	case which == "All" && ss.discovery:
		names = ss.s.Targets()
	case which == "" && ss.target != nil:
		names = []string{ss.target.Name}
	case which != "" && which != "All":
		names = []string{which}
	}
	addr := portalAddress(ss.nc.LocalAddr())
	var out []KV
	for _, n := range names {
		t := ss.s.target(n)
		if t == nil || !t.allows(ss.initiator) {
			continue
		}
		out = append(out, KV{"TargetName", n}, KV{"TargetAddress", addr + ",1"})
	}
	return out
}

func portalAddress(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return net.JoinHostPort(ta.IP.String(), strconv.Itoa(ta.Port))
	}
	return a.String()
}
