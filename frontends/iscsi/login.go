package iscsi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Login stages (RFC 7143 section 11.12).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// Login status class and detail (RFC 7143 section 11.13.5).
const (
	LoginSuccess          = 0x0000
	LoginInitiatorError   = 0x0200
	LoginAuthFailure      = 0x0201 // authentication failed (CHAP)
	LoginAuthzFailure     = 0x0202 // the initiator may not use this target
	LoginNotFound         = 0x0203 // no such target
	LoginUnsupportedVer   = 0x0205
	LoginMissingParameter = 0x0207
	LoginSessionNotFound  = 0x020a
	LoginTargetError      = 0x0300

	statusInitiatorError   = LoginInitiatorError
	statusAuthFailure      = LoginAuthFailure
	statusAuthzFailure     = LoginAuthzFailure
	statusNotFound         = LoginNotFound
	statusMissingParameter = LoginMissingParameter
	statusSessionNotFound  = LoginSessionNotFound
	statusUnsupportedVer   = LoginUnsupportedVer
)

// loginTimeout bounds a whole login, so a silent peer cannot hold a
// connection open before it has authenticated.
const loginTimeout = 30 * time.Second

// loginState is one connection's login in progress.
type loginState struct {
	s   *Server
	nc  net.Conn
	r   *bufio.Reader
	log *slog.Logger

	isid       [6]byte
	tsih       uint16
	itt        uint32
	cid        uint16
	cmdSN      uint32
	statSN     uint32
	initiator  string
	discovery  bool
	target     *Target
	neg        negotiator
	stage      int
	authDone   bool
	chapPassed bool // the initiator answered a CHAP challenge correctly
	firstReply bool
	// CHAP progress.
	chapAlgo      bool
	chapID        byte
	chapChallenge []byte
	sentTPGT      bool
}

// loginError ends a login with a status for the initiator.
type loginError struct {
	status uint16
	msg    string
}

func (e *loginError) Error() string { return fmt.Sprintf("login status 0x%04x: %s", e.status, e.msg) }

func refuse(status uint16, format string, args ...any) error {
	return &loginError{status, fmt.Sprintf(format, args...)}
}

// login runs the login phase on nc. It returns the new session, or nil
// and the reason when the login was refused (the initiator got a status)
// or the connection failed.
func (s *Server) login(nc net.Conn, log *slog.Logger) (*session, error) {
	nc.SetDeadline(time.Now().Add(loginTimeout))
	ls := &loginState{s: s, nc: nc, r: bufio.NewReaderSize(nc, 64<<10), log: log, neg: negotiator{p: defaultParams()}}
	first := true
	for {
		req, err := ls.readRequest(first)
		if err != nil {
			return nil, err
		}
		kvs, err := ParseText(req.Data)
		if err != nil {
			return nil, ls.refuseWith(req, refuse(statusInitiatorError, "%v", err))
		}
		resp, done, err := ls.step(req, kvs, first)
		first = false
		if err != nil {
			return nil, ls.refuseWith(req, err)
		}
		var ss *session
		if done {
			// Registered before the initiator hears of it, so an older
			// session of the same initiator port is gone first.
			ss = newSession(ls)
			s.register(ss)
		}
		if err := ls.send(resp); err != nil {
			if ss != nil {
				s.unregister(ss)
			}
			return nil, err
		}
		if done {
			nc.SetDeadline(time.Time{})
			return ss, nil
		}
	}
}

// readRequest reads one login request, joining a text split over several
// PDUs with the C bit.
func (ls *loginState) readRequest(first bool) (*PDU, error) {
	var joined *PDU
	for {
		p, err := ReadPDU(ls.r, Digests{}, TargetMaxRecv)
		if err != nil {
			return nil, err
		}
		if p.Opcode() != OpLogin {
			if first {
				return nil, fmt.Errorf("iscsi: first PDU is %v, not a login request", p.Opcode())
			}
			return nil, fmt.Errorf("iscsi: %v during login", p.Opcode())
		}
		if joined == nil {
			joined = p
		} else {
			joined.Data = append(joined.Data, p.Data...)
			if len(joined.Data) > 64<<10 {
				return nil, errors.New("iscsi: login text longer than 64 KiB")
			}
		}
		if p.BHS[1]&0x40 == 0 { // C bit clear: the text is complete
			return joined, nil
		}
		// Acknowledge the partial text with an empty response.
		ack := ls.response(p, false)
		if err := ls.send(ack); err != nil {
			return nil, err
		}
	}
}

func (ls *loginState) response(req *PDU, transit bool) *PDU {
	resp := &PDU{}
	resp.SetOpcode(OpLoginResp, false)
	csg := (req.BHS[1] >> 2) & 3
	nsg := req.BHS[1] & 3
	resp.BHS[1] = csg << 2
	if transit {
		resp.BHS[1] |= 0x80 | nsg
	}
	copy(resp.BHS[8:14], ls.isid[:])
	binary.BigEndian.PutUint16(resp.BHS[14:], ls.tsih)
	resp.SetTaskTag(ls.itt)
	resp.SetUint32(24, ls.statSN)
	resp.SetUint32(28, ls.cmdSN)
	resp.SetUint32(32, ls.cmdSN+uint32(ls.s.cfg.QueueDepth)-1)
	return resp
}

func (ls *loginState) send(p *PDU) error {
	b, err := p.Marshal(Digests{})
	if err != nil {
		return err
	}
	_, err = ls.nc.Write(b)
	return err
}

// refuseWith answers a refused login with its status and returns the
// error for the log.
func (ls *loginState) refuseWith(req *PDU, err error) error {
	var le *loginError
	if !errors.As(err, &le) {
		le = &loginError{statusInitiatorError, err.Error()}
	}
	resp := ls.response(req, false)
	resp.BHS[36] = byte(le.status >> 8)
	resp.BHS[37] = byte(le.status)
	binary.BigEndian.PutUint16(resp.BHS[14:], 0)
	ls.send(resp)
	return le
}

// step answers one login request.
func (ls *loginState) step(req *PDU, kvs []KV, first bool) (*PDU, bool, error) {
	transit := req.BHS[1]&0x80 != 0
	csg := int(req.BHS[1]>>2) & 3
	nsg := int(req.BHS[1]) & 3
	if req.BHS[1]&0x40 != 0 && transit {
		return nil, false, refuse(statusInitiatorError, "T and C bits both set")
	}
	if first {
		if req.BHS[2] != 0 && req.BHS[3] > 0 { // version-max, version-min
			return nil, false, refuse(statusUnsupportedVer, "no common version")
		}
		copy(ls.isid[:], req.BHS[8:14])
		ls.tsih = binary.BigEndian.Uint16(req.BHS[14:])
		ls.itt = req.TaskTag()
		ls.cid = binary.BigEndian.Uint16(req.BHS[20:])
		ls.cmdSN = req.Uint32(24)
		ls.statSN = req.Uint32(28) // ExpStatSN: start where the initiator expects
		ls.stage = csg
		if ls.tsih != 0 {
			// Adding a connection to a session: one connection per
			// session is all this target offers.
			return nil, false, refuse(statusSessionNotFound, "MaxConnections=1: no connection can join session %d", ls.tsih)
		}
		if err := ls.identify(kvs); err != nil {
			return nil, false, err
		}
	} else if req.TaskTag() != ls.itt {
		return nil, false, refuse(statusInitiatorError, "initiator task tag changed during login")
	}
	if csg != ls.stage || csg == 2 || csg == stageFullFeature {
		return nil, false, refuse(statusInitiatorError, "unexpected login stage %d (expected %d)", csg, ls.stage)
	}
	var out []KV
	if !ls.sentTPGT && !ls.discovery {
		out = append(out, KV{"TargetPortalGroupTag", "1"})
		ls.sentTPGT = true
	}
	var err error
	switch csg {
	case stageSecurity:
		out, err = ls.security(kvs, out)
	case stageOperational:
		out, err = ls.operational(kvs, out)
	}
	if err != nil {
		return nil, false, err
	}
	// Agree to move on when the initiator asks and this stage is done.
	canTransit := transit && (csg != stageSecurity || ls.authDone)
	if canTransit && nsg <= csg {
		return nil, false, refuse(statusInitiatorError, "login cannot go from stage %d to %d", csg, nsg)
	}
	if canTransit && nsg == 2 {
		return nil, false, refuse(statusInitiatorError, "login stage 2 is reserved")
	}
	if canTransit && nsg == stageFullFeature && !ls.neg.declared {
		out = append(out, KV{"MaxRecvDataSegmentLength", strconv.Itoa(TargetMaxRecv)})
		ls.neg.declared = true
	}
	if canTransit && csg == stageSecurity || csg == stageOperational {
		// A target with CHAP admits no one who skipped or failed it,
		// whichever stage the initiator started in.
		if ls.auth().CHAPUser != "" && !ls.chapPassed {
			return nil, false, refuse(statusAuthFailure, "target requires CHAP; the initiator did not authenticate")
		}
	}
	resp := ls.response(req, canTransit)
	done := false
	if canTransit {
		ls.stage = nsg
		if nsg == stageFullFeature {
			done = true
			ls.tsih = ls.s.allocTSIH()
			binary.BigEndian.PutUint16(resp.BHS[14:], ls.tsih)
		}
	}
	resp.Data = EncodeText(out)
	return resp, done, nil
}

// identify handles the first request's InitiatorName, SessionType and
// TargetName.
func (ls *loginState) identify(kvs []KV) error {
	get := func(k string) (string, bool) {
		for _, kv := range kvs {
			if kv.Key == k {
				return kv.Value, true
			}
		}
		return "", false
	}
	name, ok := get("InitiatorName")
	if !ok || name == "" {
		return refuse(statusMissingParameter, "InitiatorName missing")
	}
	ls.initiator = name
	st, _ := get("SessionType")
	switch st {
	case "", "Normal":
	case "Discovery":
		ls.discovery = true
	default:
		return refuse(statusInitiatorError, "unknown SessionType %q", st)
	}
	if ls.discovery {
		return nil
	}
	tn, ok := get("TargetName")
	if !ok || tn == "" {
		return refuse(statusMissingParameter, "TargetName missing")
	}
	t := ls.s.target(tn)
	if t == nil {
		return refuse(statusNotFound, "no target %q", tn)
	}
	if !t.allows(name) {
		return refuse(statusAuthzFailure, "initiator %q is not allowed on %q", name, tn)
	}
	ls.target = t
	return nil
}

func (ls *loginState) auth() Auth {
	if ls.target == nil {
		return Auth{}
	}
	return ls.target.Auth
}

// security runs the security negotiation stage: AuthMethod and CHAP.
func (ls *loginState) security(kvs []KV, out []KV) ([]KV, error) {
	auth := ls.auth()
	needCHAP := auth.CHAPUser != ""
	for _, kv := range kvs {
		switch kv.Key {
		case "InitiatorName", "SessionType", "TargetName", "InitiatorAlias":
			continue
		case "AuthMethod":
			offered := map[string]bool{}
			for _, m := range splitList(kv.Value) {
				offered[m] = true
			}
			switch {
			case needCHAP && offered["CHAP"]:
				out = append(out, KV{"AuthMethod", "CHAP"})
			case needCHAP:
				return nil, refuse(statusAuthFailure, "target requires CHAP; initiator offered %q", kv.Value)
			case offered["None"]:
				out = append(out, KV{"AuthMethod", "None"})
				ls.authDone = true
			default:
				return nil, refuse(statusAuthFailure, "initiator offered no method this target accepts (%q)", kv.Value)
			}
		case "CHAP_A":
			if !needCHAP {
				return nil, refuse(statusInitiatorError, "CHAP_A without CHAP")
			}
			md5 := false
			for _, a := range splitList(kv.Value) {
				if a == "5" {
					md5 = true
				}
			}
			if !md5 {
				out = append(out, KV{"CHAP_A", "Reject"})
				return nil, refuse(statusAuthFailure, "no common CHAP algorithm in %q", kv.Value)
			}
			ls.chapAlgo = true
			ls.chapID, ls.chapChallenge = NewChallenge()
			out = append(out, KV{"CHAP_A", "5"}, KV{"CHAP_I", strconv.Itoa(int(ls.chapID))},
				KV{"CHAP_C", EncodeBinary(ls.chapChallenge)})
		case "CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C":
			// handled together below
		default:
			r, known, err := ls.neg.operational(kv)
			if err != nil {
				return nil, refuse(statusInitiatorError, "%v", err)
			}
			if !known {
				r = KV{kv.Key, "NotUnderstood"}
			}
			out = append(out, r)
		}
	}
	if !needCHAP {
		if !ls.authDone {
			// No AuthMethod offered: the target needs none.
			ls.authDone = true
		}
		return out, nil
	}
	vals := map[string]string{}
	for _, kv := range kvs {
		vals[kv.Key] = kv.Value
	}
	if _, ok := vals["CHAP_R"]; !ok {
		if _, ok := vals["CHAP_N"]; ok {
			return nil, refuse(statusAuthFailure, "CHAP_N without CHAP_R")
		}
		return out, nil
	}
	if !ls.chapAlgo {
		return nil, refuse(statusAuthFailure, "CHAP response before challenge")
	}
	resp, err := DecodeBinary(vals["CHAP_R"])
	if err != nil {
		return nil, refuse(statusAuthFailure, "CHAP_R: %v", err)
	}
	if vals["CHAP_N"] != auth.CHAPUser || !chapVerify(ls.chapID, auth.CHAPSecret, ls.chapChallenge, resp) {
		return nil, refuse(statusAuthFailure, "CHAP authentication failed for user %q", vals["CHAP_N"])
	}
	ls.chapChallenge = nil // a challenge answers once
	ls.chapPassed = true
	if cs, ok := vals["CHAP_C"]; ok {
		if auth.MutualUser == "" {
			return nil, refuse(statusAuthFailure, "initiator asked for mutual CHAP; target has no mutual secret")
		}
		id, err := strconv.ParseUint(vals["CHAP_I"], 0, 8)
		if err != nil {
			return nil, refuse(statusAuthFailure, "bad CHAP_I %q", vals["CHAP_I"])
		}
		c, err := DecodeBinary(cs)
		if err != nil || len(c) == 0 || len(c) > 1024 {
			return nil, refuse(statusAuthFailure, "bad CHAP_C")
		}
		out = append(out, KV{"CHAP_N", auth.MutualUser}, KV{"CHAP_R", EncodeBinary(CHAPResponse(byte(id), auth.MutualSecret, c))})
	}
	ls.authDone = true
	return out, nil
}

func splitList(v string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == ',' {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return out
}

// operational runs the operational negotiation stage.
func (ls *loginState) operational(kvs []KV, out []KV) ([]KV, error) {
	for _, kv := range kvs {
		switch kv.Key {
		case "InitiatorName", "SessionType", "TargetName", "InitiatorAlias", "AuthMethod":
			continue
		}
		r, known, err := ls.neg.operational(kv)
		if err != nil {
			return nil, refuse(statusInitiatorError, "%v", err)
		}
		if !known {
			out = append(out, KV{kv.Key, "NotUnderstood"})
			continue
		}
		out = append(out, r)
	}
	if !ls.neg.declared {
		out = append(out, KV{"MaxRecvDataSegmentLength", strconv.Itoa(TargetMaxRecv)})
		ls.neg.declared = true
	}
	return out, nil
}

func (s *Server) allocTSIH() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextTSIH++
	if s.nextTSIH == 0 {
		s.nextTSIH = 1
	}
	return s.nextTSIH
}
