package iscsi

import (
	"bytes"
	"errors"
	"fmt"
)

// KV is one key=value pair of login or text negotiation (RFC 7143 section 6).
type KV struct {
	Key, Value string
}

// Limits from RFC 7143 section 6.1: keys up to 63 bytes, values up to 255
// bytes (8192 for a few keys, e.g. CHAP's binary values, which take the
// larger limit here for all), and a bound on pairs per PDU sequence so a
// peer cannot make the target keep unbounded state.
const (
	maxKeyLen   = 63
	maxValueLen = 8192
	maxPairs    = 512
)

// ErrText is wrapped by every malformed-text error; the login answers it
// with an initiator error status.
var ErrText = errors.New("iscsi: malformed text parameters")

// ParseText splits a text data segment into key=value pairs. Each pair is
// terminated by a NUL; trailing padding NULs are allowed. Duplicate keys
// are an error (RFC 7143 section 6.1: a key must not repeat in one negotiation).
func ParseText(data []byte) ([]KV, error) {
	data = bytes.TrimRight(data, "\x00")
	if len(data) == 0 {
		return nil, nil
	}
	var out []KV
	seen := map[string]bool{}
	for _, field := range bytes.Split(data, []byte{0}) {
		k, v, ok := bytes.Cut(field, []byte{'='})
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: %q has no '='", ErrText, clip(field))
		case len(k) == 0 || len(k) > maxKeyLen:
			return nil, fmt.Errorf("%w: key of %d bytes", ErrText, len(k))
		case len(v) > maxValueLen:
			return nil, fmt.Errorf("%w: value of %q is %d bytes", ErrText, k, len(v))
		case !validKey(k):
			return nil, fmt.Errorf("%w: key %q has characters outside the standard set", ErrText, clip(k))
		case seen[string(k)]:
			return nil, fmt.Errorf("%w: key %q repeated", ErrText, k)
		}
		if len(out) == maxPairs {
			return nil, fmt.Errorf("%w: more than %d pairs", ErrText, maxPairs)
		}
		seen[string(k)] = true
		out = append(out, KV{Key: string(k), Value: string(v)})
	}
	return out, nil
}

// validKey: letters, digits, '.', '-', '+', '@', '_' (RFC 7143 section 6.1
// standard-label characters, plus the X- and X# extension prefixes).
func validKey(k []byte) bool {
	for _, c := range k {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '+' || c == '@' || c == '_' || c == '#'
		if !ok {
			return false
		}
	}
	return true
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// EncodeText renders pairs as a text data segment, each NUL-terminated.
func EncodeText(pairs []KV) []byte {
	var b bytes.Buffer
	for _, p := range pairs {
		b.WriteString(p.Key)
		b.WriteByte('=')
		b.WriteString(p.Value)
		b.WriteByte(0)
	}
	return b.Bytes()
}
