package retry

import (
	"bytes"
	"io"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// A compose that fails after reading part of its data readers is tried
// again with every reader rewound to where it started.
func TestComposeRetriesRewindReaders(t *testing.T) {
	ctx := t.Context()
	inner := mem.New("")
	src := []byte("0123456789")
	if err := objstore.PutBytes(ctx, inner, "src", src); err != nil {
		t.Fatal(err)
	}
	failures := 2
	f := faulty.New(inner, faulty.Options{Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpCompose && failures > 0 {
			failures--
			return errkind.Mark(errkind.Retryable, faulty.ErrInjected)
		}
		return nil
	}})
	s := New(f.Store(), Options{BaseDelay: 1, MaxDelay: 1})
	a := bytes.NewReader([]byte("..abcdef"))
	a.Seek(2, io.SeekStart)
	b := bytes.NewReader([]byte("XYZ"))
	parts := []objstore.Part{objstore.DataPart(a, 6), objstore.CopyPart("src", 2, 5, ""), objstore.DataPart(b, 3)}
	if err := objstore.Compose(ctx, s, "dst", parts, nil); err != nil {
		t.Fatal(err)
	}
	if f.Injected(faulty.OpCompose) != 2 {
		t.Fatalf("%d faults injected, want 2", f.Injected(faulty.OpCompose))
	}
	got, err := objstore.GetAll(ctx, s, "dst")
	if err != nil || string(got) != "abcdef23456XYZ" {
		t.Fatalf("composed %q (%v)", got, err)
	}
}

// A decorator exposes Composer exactly when the store under it has it.
func TestComposerPassesThroughOnlyWhenThere(t *testing.T) {
	if _, ok := New(mem.New(""), Options{}).(objstore.Composer); !ok {
		t.Fatal("Composer hidden")
	}
	plain := struct{ objstore.Store }{mem.New("")}
	s := New(plain, Options{})
	if _, ok := s.(objstore.Composer); ok {
		t.Fatal("Composer exposed over a store without it")
	}
	for _, want := range []bool{true, false} {
		var inner objstore.Store = plain
		if want {
			inner = struct {
				objstore.Store
				objstore.Composer
				objstore.StorageClasser
			}{plain, mem.New(""), mem.New("")}
		}
		s := New(inner, Options{})
		_, composes := s.(objstore.Composer)
		_, classes := s.(objstore.StorageClasser)
		_, copies := s.(objstore.Copier)
		if composes != want || classes != want || copies {
			t.Fatalf("over a store with Composer %v: Composer %v, StorageClasser %v, Copier %v", want, composes, classes, copies)
		}
	}
}
