package retry

import (
	"bytes"
	"io"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
)

// Conditional puts are retried like Put, rewinding the reader; a lost
// condition is an answer, not a fault, and comes back after one attempt.
func TestConditionalPutsRetryFaultsNotPreconditions(t *testing.T) {
	fx := newFixture(failTimes(faulty.OpPut, "lease", 2, errkind.Retryable))
	cp := fx.s.(objstore.ConditionalPutter)
	data := []byte(`{"holder":"a"}`)
	r := bytes.NewReader(append([]byte("head:"), data...))
	r.Seek(5, io.SeekStart)
	var etag string
	err, _ := fx.run(func() (err error) {
		etag, err = cp.PutIfAbsent(t.Context(), "lease", r, int64(len(data)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := fx.f.Calls(faulty.OpPut); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if got, _ := objstore.GetAll(t.Context(), fx.inner, "lease"); !bytes.Equal(got, data) {
		t.Fatalf("stored %q, want %q", got, data)
	}

	for _, tc := range []struct {
		name string
		put  func() error
	}{
		{"put if absent over an object", func() error {
			_, err := cp.PutIfAbsent(t.Context(), "lease", bytes.NewReader(data), int64(len(data)))
			return err
		}},
		{"put if match with a stale ETag", func() error {
			_, err := cp.PutIfMatch(t.Context(), "lease", bytes.NewReader(data), int64(len(data)), etag+"x")
			return err
		}},
	} {
		before := fx.f.Calls(faulty.OpPut)
		err, waited := fx.run(tc.put)
		if !objstore.IsPreconditionFailed(err) {
			t.Fatalf("%s: %v, want a precondition failure", tc.name, err)
		}
		if n := fx.f.Calls(faulty.OpPut) - before; n != 1 || waited != 0 {
			t.Fatalf("%s: %d attempts over %v, want one at once", tc.name, n, waited)
		}
	}
}
