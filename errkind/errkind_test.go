package errkind

import (
	"errors"
	"fmt"
	"testing"
)

func TestMarkSurvivesWrapping(t *testing.T) {
	base := errors.New("boom")
	err := fmt.Errorf("put chunks/ab: %w", Mark(Retryable, base))
	if !IsRetryable(err) || IsPermanent(err) || Of(err) != Retryable {
		t.Fatalf("kind of wrapped error = %v", Of(err))
	}
	if !errors.Is(err, base) {
		t.Fatal("Mark hides the original error from errors.Is")
	}
	if err.Error() != "put chunks/ab: boom" {
		t.Fatalf("Mark changed the message: %q", err)
	}
	// The outermost mark decides.
	if got := Of(Mark(Corrupt, err)); got != Corrupt {
		t.Fatalf("re-marked kind = %v", got)
	}
	if Mark(NotFound, nil) != nil {
		t.Fatal("Mark(nil) is not nil")
	}
	if pf := fmt.Errorf("renew: %w", Mark(PreconditionFailed, base)); !IsPreconditionFailed(pf) || IsRetryable(pf) || IsPermanent(pf) {
		t.Fatalf("kind of a precondition failure = %v", Of(pf))
	}
	if Of(base) != Unknown || Of(nil) != Unknown {
		t.Fatal("unmarked errors must be Unknown")
	}
	for k, s := range map[Kind]string{Unknown: "unknown", Retryable: "retryable", Permanent: "permanent", NotFound: "not-found", Corrupt: "corrupt", PreconditionFailed: "precondition-failed"} {
		if k.String() != s {
			t.Errorf("%d.String() = %q", k, k.String())
		}
	}
}
