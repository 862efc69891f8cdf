// Package errkind classifies errors by what the caller must do about them:
// retry later, give up, treat as absent, or report as corruption.
//
// Packages wrap their errors with one of the Mark functions; callers ask with
// the Is functions, which see through fmt.Errorf("%w") chains.
package errkind

import "errors"

// Kind is what a caller must do about an error.
type Kind int

const (
	// Unknown errors carry no classification; treat them as permanent.
	Unknown Kind = iota
	// Retryable errors are transient: the same call may succeed later
	// (throttling, 5xx, connection reset, timeout).
	Retryable
	// Permanent errors will not go away by retrying (access denied,
	// missing bucket, invalid request).
	Permanent
	// NotFound means the named thing does not exist.
	NotFound
	// Corrupt means data was read but failed to authenticate or decode.
	Corrupt
	// PreconditionFailed means a conditional write found the object not
	// in the state it required (someone else wrote it first). Retrying
	// the same call cannot succeed; the caller reads the object again.
	PreconditionFailed
)

func (k Kind) String() string {
	switch k {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case NotFound:
		return "not-found"
	case Corrupt:
		return "corrupt"
	case PreconditionFailed:
		return "precondition-failed"
	}
	return "unknown"
}

type kinded struct {
	kind Kind
	err  error
}

func (e *kinded) Error() string { return e.err.Error() }
func (e *kinded) Unwrap() error { return e.err }

// Mark wraps err with kind k. A nil err stays nil.
func Mark(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &kinded{kind: k, err: err}
}

// Of returns the outermost classification found in err's chain.
func Of(err error) Kind {
	var k *kinded
	if errors.As(err, &k) {
		return k.kind
	}
	return Unknown
}

// IsRetryable reports whether err is marked Retryable.
func IsRetryable(err error) bool { return Of(err) == Retryable }

// IsNotFound reports whether err is marked NotFound.
func IsNotFound(err error) bool { return Of(err) == NotFound }

// IsCorrupt reports whether err is marked Corrupt.
func IsCorrupt(err error) bool { return Of(err) == Corrupt }

// IsPreconditionFailed reports whether err is marked PreconditionFailed.
func IsPreconditionFailed(err error) bool { return Of(err) == PreconditionFailed }

// IsPermanent reports whether err is marked Permanent.
func IsPermanent(err error) bool { return Of(err) == Permanent }
