package objstore_test

import (
	"testing"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/fenced"
	"github.com/gatewayd/gatewayd/objstore/limiter"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
	"github.com/gatewayd/gatewayd/objstore/retry"
)

var decorators = map[string]func(objstore.Store) objstore.Store{
	"retry":   func(s objstore.Store) objstore.Store { return retry.New(s, retry.Options{}) },
	"limiter": func(s objstore.Store) objstore.Store { return limiter.New(s, limiter.Options{}).Store() },
	"faulty":  func(s objstore.Store) objstore.Store { return faulty.New(s, faulty.Options{}).Store() },
	"fenced":  func(s objstore.Store) objstore.Store { return fenced.New(s).Store() },
}

// TestRetainerThroughDecorators: Object Lock works through each decorator
// and through the daemon's stack of them, on the model of a locked bucket.
func TestRetainerThroughDecorators(t *testing.T) {
	for name, decorate := range decorators {
		t.Run(name, func(t *testing.T) {
			objstoretest.RunObjectLock(t, func(t *testing.T) objstore.Store { return decorate(mem.NewLocked(t.Name())) })
		})
	}
	t.Run("stacked", func(t *testing.T) {
		objstoretest.RunObjectLock(t, func(t *testing.T) objstore.Store {
			return decorators["fenced"](decorators["retry"](decorators["limiter"](mem.NewLocked(t.Name()))))
		})
	})
}

// capabilities names, bit by bit as LimitTo takes them, what a type
// assertion on s finds.
func capabilities(s objstore.Store) (set uint8, always string) {
	for i, ok := range []bool{
		is[objstore.Copier](s),
		is[objstore.StorageClasser](s),
		is[objstore.MetadataPutter](s),
		is[objstore.Composer](s),
	} {
		if ok {
			set |= 1 << i
		}
	}
	if !is[objstore.DirLister](s) {
		always += " no DirLister"
	}
	if !is[objstore.ConditionalPutter](s) {
		always += " no ConditionalPutter"
	}
	if !is[objstore.Retainer](s) {
		always += " no Retainer"
	}
	return set, always
}

func is[T any](s objstore.Store) bool {
	_, ok := s.(T)
	return ok
}

// TestLimitCapabilities: for every set of optional capabilities a store
// may have, each decorator on such a store has exactly that set, and
// DirLister, ConditionalPutter and Retainer always.
func TestLimitCapabilities(t *testing.T) {
	// A decorator on a store with every capability has them all.
	full, ok := decorators["retry"](mem.New("")).(objstore.Full)
	if !ok {
		t.Fatal("retry on mem is not an objstore.Full")
	}
	for set := range objstore.AllCapabilities + 1 {
		inner := objstore.LimitTo(full, set)
		if inner == nil {
			t.Fatalf("no view for %04b", set)
		}
		if got, always := capabilities(inner); got != set || always != "" {
			t.Fatalf("the view for %04b has %04b%s", set, got, always)
		}
		for name, decorate := range decorators {
			if got, always := capabilities(decorate(inner)); got != set || always != "" {
				t.Errorf("%s on a store with %04b has %04b%s", name, set, got, always)
			}
		}
		// A decorator on a decorator, as the daemon stacks them.
		s := decorators["retry"](decorators["limiter"](decorators["fenced"](inner)))
		if got, _ := capabilities(s); got != set {
			t.Errorf("stacked decorators on a store with %04b have %04b", set, got)
		}
	}
}
