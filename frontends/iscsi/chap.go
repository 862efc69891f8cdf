package iscsi

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// CHAP with MD5 (RFC 1994, RFC 7143 section 12.1.3): the response to
// identifier I and challenge C under secret S is MD5(I || S || C).

// CHAPResponse computes the CHAP (MD5) response to identifier id and
// challenge under secret; initiators use it, and the target to verify.
func CHAPResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// chapVerify compares a response in constant time.
func chapVerify(id byte, secret string, challenge, response []byte) bool {
	want := CHAPResponse(id, secret, challenge)
	return subtle.ConstantTimeCompare(want, response) == 1
}

// EncodeBinary is the hex form of an iSCSI binary value.
func EncodeBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// DecodeBinary accepts the hex (0x) and base64 (0b) forms of RFC 7143
// section 6.1.
func DecodeBinary(s string) ([]byte, error) {
	switch {
	case len(s) > 2 && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")):
		h := s[2:]
		if len(h)%2 == 1 {
			h = "0" + h
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("%w: bad hex value", ErrText)
		}
		return b, nil
	case len(s) > 2 && (strings.HasPrefix(s, "0b") || strings.HasPrefix(s, "0B")):
		b, err := base64.StdEncoding.DecodeString(s[2:])
		if err != nil {
			return nil, fmt.Errorf("%w: bad base64 value", ErrText)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: binary value without 0x or 0b prefix", ErrText)
}

// NewChallenge returns a fresh CHAP identifier and 16-byte challenge.
func NewChallenge() (byte, []byte) {
	b := make([]byte, 17)
	if _, err := rand.Read(b); err != nil {
		panic("iscsi: no randomness: " + err.Error())
	}
	return b[0], b[1:]
}

// MinCHAPSecret and MaxCHAPSecret bound secrets: RFC 7143 section 12.1.3
// asks for at least 96 bits; initiators such as open-iscsi take at most
// 16 bytes on some versions, so the range 12-16 works everywhere and 12-255
// is accepted.
const (
	MinCHAPSecret = 12
	MaxCHAPSecret = 255
)

// ValidateCHAP checks a user name and secret pair for configuration.
func ValidateCHAP(user, secret string) error {
	if user == "" {
		return fmt.Errorf("iscsi: CHAP user name is empty")
	}
	if len(user) > 255 || strings.ContainsAny(user, "\x00=") {
		return fmt.Errorf("iscsi: CHAP user name must be 1-255 bytes without NUL or '='")
	}
	if len(secret) < MinCHAPSecret || len(secret) > MaxCHAPSecret {
		return fmt.Errorf("iscsi: CHAP secret must be %d to %d bytes long (got %d)", MinCHAPSecret, MaxCHAPSecret, len(secret))
	}
	return nil
}
