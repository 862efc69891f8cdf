package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
)

// RetentionMode is how firmly an object is retained (S3 Object Lock).
type RetentionMode string

const (
	// Governance retention keeps an object from being deleted or
	// overwritten by anyone without the s3:BypassGovernanceRetention
	// permission (which gatewayd never asks for). Those with it can
	// shorten or remove the retention.
	Governance RetentionMode = "GOVERNANCE"
	// Compliance retention cannot be shortened or removed by anyone,
	// the bucket's owner included, until it ends.
	Compliance RetentionMode = "COMPLIANCE"
)

// ParseRetentionMode reads a mode as configurations write it:
// "governance" or "compliance", in any case.
func ParseRetentionMode(s string) (RetentionMode, error) {
	switch m := RetentionMode(upperASCII(s)); m {
	case Governance, Compliance:
		return m, nil
	}
	return "", errkind.Mark(errkind.Permanent, fmt.Errorf("retention mode %q: use governance or compliance", s))
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// Retention is an object's Object Lock retention: the object's data (this
// version of it) cannot be deleted or overwritten before Until. The zero
// Retention is none.
type Retention struct {
	Mode  RetentionMode `json:"mode,omitempty"`
	Until time.Time     `json:"until,omitzero"`
}

// IsZero reports whether r is no retention.
func (r Retention) IsZero() bool { return r.Mode == "" && r.Until.IsZero() }

// Holds reports whether r still retains its object at now.
func (r Retention) Holds(now time.Time) bool { return !r.IsZero() && r.Until.After(now) }

// Covers reports whether r retains its object at least as firmly and as
// long as want: a later or equal end, and compliance where want asks for it.
func (r Retention) Covers(want Retention) bool {
	if r.IsZero() {
		return want.IsZero()
	}
	if want.Mode == Compliance && r.Mode != Compliance {
		return false
	}
	return !r.Until.Before(want.Until)
}

// String is "GOVERNANCE until 2026-01-02T03:04:05Z" or "none".
func (r Retention) String() string {
	if r.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%s until %s", r.Mode, r.Until.UTC().Format(time.RFC3339))
}

// LockConfig is a bucket's Object Lock configuration.
type LockConfig struct {
	// Enabled: the bucket was created with Object Lock (and therefore
	// keeps versions). Without it no object can be retained.
	Enabled bool
	// DefaultRetention, when not zero, is what every new object of the
	// bucket gets unless its writer asks otherwise: its Until is then
	// meaningless and DefaultPeriod says how long.
	DefaultMode   RetentionMode
	DefaultPeriod time.Duration
}

// Retainer is implemented by stores that can keep objects from being
// deleted or overwritten until a date: S3 Object Lock, on a bucket created
// with it. It is the one place gatewayd retains data, for snapshots and
// tapes alike. The store's other calls are unchanged: on such a bucket a
// Delete of a retained object succeeds yet removes nothing (S3 hides the
// object behind a delete marker and keeps the retained version), and a Put
// over it keeps the retained version beside the new one. Purge is the call
// that really removes data, and the one that refuses while it is retained.
//
// Decorators always expose Retainer; through one over a store without it,
// ObjectLock reports Enabled false, Retention reports none, Purge is
// Delete, and PutRetained and Retain fail with an error wrapping
// ErrNoObjectLock. The package functions of the same names (ObjectLock,
// PutRetained, Retain, GetRetention, Purge) do the same for any Store.
type Retainer interface {
	// ObjectLock returns the bucket's Object Lock configuration.
	ObjectLock(ctx context.Context) (LockConfig, error)
	// PutRetained is Put of an object retained as ret from the moment it
	// exists: there is no instant at which it is stored unretained.
	PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret Retention) error
	// Retain sets the retention of key's current version (S3
	// PutObjectRetention). It lengthens, never shortens: an Until
	// earlier than the one the object has, or governance asked of a
	// compliance object, fails with an error wrapping ErrObjectLocked
	// and changes nothing (ExtendRetention treats an object already
	// retained long enough as done). A missing key is NotFound.
	Retain(ctx context.Context, key string, ret Retention) error
	// Retention returns the retention of key's current version: the zero
	// Retention when it has none. A missing key is NotFound.
	Retention(ctx context.Context, key string) (Retention, error)
	// Purge removes every version of key, current and kept (and S3's
	// delete markers). While a version is retained it fails with an
	// error wrapping ErrObjectLocked: the versions that were not retained
	// are gone, and the newest retained one is the object again (as S3
	// makes the newest remaining version current). Purging a missing key
	// is not an error.
	Purge(ctx context.Context, key string) error
}

// ErrNoObjectLock is wrapped by the error of a retention asked of a store
// or bucket without Object Lock.
var ErrNoObjectLock = errors.New("the bucket has no Object Lock")

// ErrObjectLocked is wrapped by the error of a call refused because an
// object is retained: a Purge before the retention ends, a Retain that
// would shorten it.
var ErrObjectLocked = errors.New("object is retained (Object Lock)")

// IsObjectLocked reports whether err is a refusal because of retention.
func IsObjectLocked(err error) bool { return errors.Is(err, ErrObjectLocked) }

// ObjectLocked returns the error of op on key refused by retention; why
// says more (the retention, the server's message).
func ObjectLocked(s fmt.Stringer, op, key, why string) error {
	return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: %w: %s", s, op, key, ErrObjectLocked, why))
}

// NoObjectLock returns the error of a retention asked of s, which has none.
func NoObjectLock(s fmt.Stringer, op, key string) error {
	return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: %w", s, op, key, ErrNoObjectLock))
}

// CheckRetention checks a retention a caller asks for.
func CheckRetention(s fmt.Stringer, op, key string, ret Retention) error {
	if ret.Mode != Governance && ret.Mode != Compliance {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: retention mode %q: use GOVERNANCE or COMPLIANCE", s, op, key, ret.Mode))
	}
	if ret.Until.IsZero() {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: retention without an end date", s, op, key))
	}
	return nil
}

// InnerRetainer returns inner's Retainer for a decorator to forward to,
// or one that has no Object Lock.
func InnerRetainer(inner Store) Retainer {
	if r, ok := inner.(Retainer); ok {
		return r
	}
	return noRetainer{inner}
}

type noRetainer struct{ s Store }

func (n noRetainer) ObjectLock(ctx context.Context) (LockConfig, error) { return LockConfig{}, nil }

func (n noRetainer) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret Retention) error {
	return NoObjectLock(n.s, "put", key)
}

func (n noRetainer) Retain(ctx context.Context, key string, ret Retention) error {
	return NoObjectLock(n.s, "retain", key)
}

func (n noRetainer) Retention(ctx context.Context, key string) (Retention, error) {
	_, err := n.s.Stat(ctx, key)
	return Retention{}, err
}

func (n noRetainer) Purge(ctx context.Context, key string) error { return n.s.Delete(ctx, key) }

// ObjectLock returns s's bucket's Object Lock configuration (Enabled
// false for a store without Retainer).
func ObjectLock(ctx context.Context, s Store) (LockConfig, error) {
	return InnerRetainer(s).ObjectLock(ctx)
}

// PutRetained stores b under key retained as ret, through s's Retainer.
func PutRetained(ctx context.Context, s Store, key string, r io.ReadSeeker, size int64, ret Retention) error {
	return InnerRetainer(s).PutRetained(ctx, key, r, size, ret)
}

// Retain sets key's retention through s's Retainer (see Retainer.Retain).
func Retain(ctx context.Context, s Store, key string, ret Retention) error {
	return InnerRetainer(s).Retain(ctx, key, ret)
}

// GetRetention returns key's retention through s's Retainer (none on a
// store without one).
func GetRetention(ctx context.Context, s Store, key string) (Retention, error) {
	return InnerRetainer(s).Retention(ctx, key)
}

// Purge removes every version of key through s's Retainer (Delete on a
// store without one).
func Purge(ctx context.Context, s Store, key string) error {
	return InnerRetainer(s).Purge(ctx, key)
}

// ExtendRetention makes sure key is retained at least as ret says: one
// Retain call, and, when the store refuses it because the object is
// already retained longer (or in compliance mode), the retention it has.
// It returns the retention key has afterwards.
func ExtendRetention(ctx context.Context, s Store, key string, ret Retention) (Retention, error) {
	err := Retain(ctx, s, key, ret)
	if err == nil {
		return ret, nil
	}
	if !IsObjectLocked(err) {
		return Retention{}, err
	}
	cur, gerr := GetRetention(ctx, s, key)
	if gerr != nil {
		return Retention{}, fmt.Errorf("%w (and reading its retention: %v)", err, gerr)
	}
	if !cur.Covers(ret) {
		return cur, err
	}
	return cur, nil
}
