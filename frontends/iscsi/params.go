package iscsi

import (
	"fmt"
	"strconv"
	"strings"
)

// Params are a session's negotiated operational parameters (RFC 7143
// section 13).
type Params struct {
	HeaderDigest, DataDigest bool
	// MaxRecvDataSegmentLength the initiator declared: the largest data
	// segment the target may send it.
	InitiatorMaxRecv  int
	MaxBurstLength    int
	FirstBurstLength  int
	InitialR2T        bool
	ImmediateData     bool
	MaxOutstandingR2T int
	DefaultTime2Wait  int
	Time2Retain       int
}

// Target-side limits and preferences.
const (
	// TargetMaxRecv is the MaxRecvDataSegmentLength the target declares.
	TargetMaxRecv       = 256 << 10
	targetMaxBurst      = 16 << 20
	targetFirstBurst    = 256 << 10
	targetMaxR2T        = 16
	defaultInitiatorMax = 8192 // RFC 7143: assumed until declared
	minDataSegment      = 512
	maxDataSegment      = 1<<24 - 1
)

func defaultParams() Params {
	return Params{
		InitiatorMaxRecv: defaultInitiatorMax, MaxBurstLength: 262144, FirstBurstLength: 65536,
		InitialR2T: true, ImmediateData: true, MaxOutstandingR2T: 1, DefaultTime2Wait: 2, Time2Retain: 0,
	}
}

// negotiator answers the operational keys of one login.
type negotiator struct {
	p        Params
	declared bool // our MaxRecvDataSegmentLength has been sent
}

// errNegotiation is an initiator error in a key's value.
type errNegotiation struct{ key, msg string }

func (e *errNegotiation) Error() string { return fmt.Sprintf("iscsi: key %s: %s", e.key, e.msg) }

func parseNumber(key, v string, lo, hi int) (int, error) {
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil || int(n) < lo || int(n) > hi {
		return 0, &errNegotiation{key, fmt.Sprintf("value %q out of range %d..%d", v, lo, hi)}
	}
	return int(n), nil
}

func parseBool(key, v string) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return false, &errNegotiation{key, fmt.Sprintf("value %q is not Yes or No", v)}
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// operational answers one operational key; ok false means the key is not
// an operational key this negotiator knows.
func (n *negotiator) operational(kv KV) (KV, bool, error) {
	k, v := kv.Key, kv.Value
	switch k {
	case "HeaderDigest", "DataDigest":
		choice := ""
		for _, opt := range strings.Split(v, ",") {
			if opt == "CRC32C" || opt == "None" {
				choice = opt
				break
			}
		}
		if choice == "" {
			return KV{k, "Reject"}, true, nil
		}
		if k == "HeaderDigest" {
			n.p.HeaderDigest = choice == "CRC32C"
		} else {
			n.p.DataDigest = choice == "CRC32C"
		}
		return KV{k, choice}, true, nil
	case "MaxConnections":
		if _, err := parseNumber(k, v, 1, 65535); err != nil {
			return KV{}, true, err
		}
		return KV{k, "1"}, true, nil
	case "InitialR2T":
		b, err := parseBool(k, v)
		if err != nil {
			return KV{}, true, err
		}
		n.p.InitialR2T = b // OR with ours (No)
		return KV{k, yesNo(b)}, true, nil
	case "ImmediateData":
		b, err := parseBool(k, v)
		if err != nil {
			return KV{}, true, err
		}
		n.p.ImmediateData = b // AND with ours (Yes)
		return KV{k, yesNo(b)}, true, nil
	case "MaxRecvDataSegmentLength":
		x, err := parseNumber(k, v, minDataSegment, maxDataSegment)
		if err != nil {
			return KV{}, true, err
		}
		n.p.InitiatorMaxRecv = x
		n.declared = true
		return KV{k, strconv.Itoa(TargetMaxRecv)}, true, nil
	case "MaxBurstLength":
		x, err := parseNumber(k, v, minDataSegment, maxDataSegment)
		if err != nil {
			return KV{}, true, err
		}
		n.p.MaxBurstLength = min(x, targetMaxBurst)
		if n.p.FirstBurstLength > n.p.MaxBurstLength {
			n.p.FirstBurstLength = n.p.MaxBurstLength
		}
		return KV{k, strconv.Itoa(n.p.MaxBurstLength)}, true, nil
	case "FirstBurstLength":
		x, err := parseNumber(k, v, minDataSegment, maxDataSegment)
		if err != nil {
			return KV{}, true, err
		}
		n.p.FirstBurstLength = min(x, targetFirstBurst, n.p.MaxBurstLength)
		return KV{k, strconv.Itoa(min(x, targetFirstBurst))}, true, nil
	case "MaxOutstandingR2T":
		x, err := parseNumber(k, v, 1, 65535)
		if err != nil {
			return KV{}, true, err
		}
		n.p.MaxOutstandingR2T = min(x, targetMaxR2T)
		return KV{k, strconv.Itoa(n.p.MaxOutstandingR2T)}, true, nil
	case "DefaultTime2Wait":
		x, err := parseNumber(k, v, 0, 3600)
		if err != nil {
			return KV{}, true, err
		}
		n.p.DefaultTime2Wait = max(x, 2)
		return KV{k, strconv.Itoa(n.p.DefaultTime2Wait)}, true, nil
	case "DefaultTime2Retain":
		x, err := parseNumber(k, v, 0, 3600)
		if err != nil {
			return KV{}, true, err
		}
		n.p.Time2Retain = min(x, 0) // error recovery level 0 keeps nothing
		return KV{k, strconv.Itoa(n.p.Time2Retain)}, true, nil
	case "DataPDUInOrder", "DataSequenceInOrder":
		if _, err := parseBool(k, v); err != nil {
			return KV{}, true, err
		}
		return KV{k, "Yes"}, true, nil // OR with ours: in order
	case "ErrorRecoveryLevel":
		if _, err := parseNumber(k, v, 0, 2); err != nil {
			return KV{}, true, err
		}
		return KV{k, "0"}, true, nil
	case "IFMarker", "OFMarker":
		return KV{k, "No"}, true, nil
	case "IFMarkInt", "OFMarkInt":
		return KV{k, "Reject"}, true, nil
	case "TaskReporting":
		return KV{k, "RFC3720"}, true, nil
	case "iSCSIProtocolLevel":
		return KV{k, "0"}, true, nil
	}
	return KV{}, false, nil
}

// finish fixes the relations between keys once negotiation ends.
func (n *negotiator) finish() Params {
	if n.p.FirstBurstLength > n.p.MaxBurstLength {
		n.p.FirstBurstLength = n.p.MaxBurstLength
	}
	return n.p
}
