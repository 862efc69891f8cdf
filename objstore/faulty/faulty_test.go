package faulty_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
)

// Without faults the decorator is transparent.
func TestConformanceWithoutFaults(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store {
		return faulty.New(mem.New(t.Name()), faulty.Options{}).Store()
	})
}

func TestRateIsSeededAndClassified(t *testing.T) {
	count := func(kind, want errkind.Kind) (int, []bool) {
		f := faulty.New(mem.New(""), faulty.Options{Seed: 42, Rates: map[faulty.Op]float64{faulty.OpStat: 0.3}, Kind: kind})
		s := f.Store()
		var pattern []bool
		for range 1000 {
			_, err := s.Stat(t.Context(), "k")
			injected := errors.Is(err, faulty.ErrInjected)
			pattern = append(pattern, injected)
			if injected && errkind.Of(err) != want {
				t.Fatalf("injected %v, want kind %v", errkind.Of(err), want)
			}
			if !injected && !objstore.IsNotFound(err) {
				t.Fatalf("a call not injected returned %v", err)
			}
		}
		if f.Calls(faulty.OpStat) != 1000 {
			t.Fatalf("calls: %d", f.Calls(faulty.OpStat))
		}
		return f.Injected(faulty.OpStat), pattern
	}
	n, p1 := count(errkind.Unknown, errkind.Retryable) // the default
	if n < 250 || n > 350 {
		t.Fatalf("%d of 1000 calls failed at rate 0.3", n)
	}
	_, p2 := count(errkind.Permanent, errkind.Permanent)
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatal("the same seed gave different faults")
		}
	}
}

func TestHookAndPutConsumesReader(t *testing.T) {
	inner := mem.New("")
	f := faulty.New(inner, faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpPut && key == "bad" {
			return errors.New("no")
		}
		return nil
	}})
	s := f.Store()
	r := bytes.NewReader(make([]byte, 1000))
	err := s.Put(t.Context(), "bad", r, 1000)
	if !errkind.IsRetryable(err) {
		t.Fatalf("hook error: %v (%v), want it marked retryable", err, errkind.Of(err))
	}
	if r.Len() == 1000 {
		t.Fatal("a failed put left its reader untouched; retries would not need to rewind")
	}
	if _, err := inner.Stat(t.Context(), "bad"); !objstore.IsNotFound(err) {
		t.Fatalf("a put failed before the call reached the store: %v", err)
	}
	if err := objstore.PutBytes(t.Context(), s, "good", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if f.Injected(faulty.OpPut) != 1 || f.Calls(faulty.OpPut) != 2 {
		t.Fatalf("injected %d of %d puts", f.Injected(faulty.OpPut), f.Calls(faulty.OpPut))
	}
	// A hook may return a classified error; its class is kept.
	f.SetHook(func(faulty.Op, string) error { return errkind.Mark(errkind.Corrupt, errors.New("bad data")) })
	if _, err := s.Stat(t.Context(), "good"); !errkind.IsCorrupt(err) {
		t.Fatalf("hook's corrupt error came back as %v", errkind.Of(err))
	}
}

func TestAfterCall(t *testing.T) {
	inner := mem.New("")
	f := faulty.New(inner, faulty.Options{AfterCall: true, Rates: map[faulty.Op]float64{faulty.OpPut: 1, faulty.OpDelete: 1, faulty.OpCopy: 1}})
	s := f.Store()
	if err := objstore.PutBytes(t.Context(), s, "k", []byte("v")); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("put: %v", err)
	}
	if _, err := inner.Stat(t.Context(), "k"); err != nil {
		t.Fatalf("with AfterCall the put must have happened: %v", err)
	}
	if err := s.(objstore.Copier).Copy(t.Context(), "k", "k2"); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("copy: %v", err)
	}
	if err := s.Delete(t.Context(), "k"); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := inner.Stat(t.Context(), "k"); !objstore.IsNotFound(err) {
		t.Fatalf("with AfterCall the delete must have happened: %v", err)
	}
	if _, err := inner.Stat(t.Context(), "k2"); err != nil {
		t.Fatalf("with AfterCall the copy must have happened: %v", err)
	}
}

func TestTruncatedGet(t *testing.T) {
	inner := mem.New("")
	objstore.PutBytes(t.Context(), inner, "big", bytes.Repeat([]byte("x"), 1000))
	objstore.PutBytes(t.Context(), inner, "small", []byte("tiny"))
	f := faulty.New(inner, faulty.Options{Rates: map[faulty.Op]float64{faulty.OpTruncate: 1}, TruncateAfter: 300})
	for key, want := range map[string]int{"big": 300, "small": 4} {
		rc, err := f.Store().Get(t.Context(), key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if len(b) != want || !errkind.IsRetryable(err) || !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("%s: read %d bytes, error %v; want %d bytes and a retryable injected error", key, len(b), err, want)
		}
	}
}

func TestListEntryFault(t *testing.T) {
	inner := mem.New("")
	for i := range 5 {
		objstore.PutBytes(t.Context(), inner, fmt.Sprint("k", i), nil)
	}
	f := faulty.New(inner, faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpListEntry && key == "k3" {
			return errors.New("connection reset")
		}
		return nil
	}})
	var seen []string
	err := f.Store().List(t.Context(), "", func(oi objstore.ObjectInfo) error { seen = append(seen, oi.Key); return nil })
	if !errkind.IsRetryable(err) || len(seen) != 3 {
		t.Fatalf("list: saw %q, error %v; want k0..k2 then a retryable error", seen, err)
	}
}

func TestCapabilitiesFollowInner(t *testing.T) {
	if _, ok := faulty.New(mem.New(""), faulty.Options{}).Store().(objstore.Copier); !ok {
		t.Fatal("faulty(mem) is not a Copier")
	}
	plain := struct{ objstore.Store }{mem.New("")}
	s := faulty.New(plain, faulty.Options{}).Store()
	if _, ok := s.(objstore.Copier); ok {
		t.Fatal("faulty(store without Copy) claims to be a Copier")
	}
	if _, ok := s.(objstore.StorageClasser); ok {
		t.Fatal("faulty(store without classes) claims to be a StorageClasser")
	}
}
