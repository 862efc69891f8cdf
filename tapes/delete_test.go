package tapes_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/tapes"
)

// TestDeleteFailsMidway: a delete whose object deletes fail after some
// objects are gone leaves the tape listed as deleting, out of its slot,
// neither opened nor moved, across a restart; a delete asked again
// removes what is left and the record.
func TestDeleteFailsMidway(t *testing.T) {
	e := newEnv(t)
	e.start()
	bcs := e.create(2, 8<<20)
	victim := bcs[1] // the highest number: a new tape would take it
	tp := e.open(victim)
	var m model
	writeMixed(t, tp, &m, 21, 40)
	if err := tp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.lib.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := objectKeys(t, e.store, victim)
	if len(before) < 4 {
		t.Fatalf("tape objects before the delete: %v", before)
	}
	// The third object delete fails, and every one after it.
	var deletes atomic.Int32
	injected := errors.New("store refuses deletes")
	e.cut.SetHook(func(op faulty.Op, key string) error {
		if op == faulty.OpDelete && strings.HasPrefix(key, "tapes/"+victim+"/") && deletes.Add(1) > 2 {
			return injected
		}
		return nil
	})
	err := e.lib.Delete(ctx, victim)
	if !errors.Is(err, injected) || !strings.Contains(err.Error(), "deleting") {
		t.Fatalf("delete with failing object deletes: %v", err)
	}
	left := objectKeys(t, e.store, victim)
	if len(left) == 0 || len(left) >= len(before) {
		t.Fatalf("objects left after the failed delete: %d of %d", len(left), len(before))
	}
	for _, k := range left {
		if strings.HasSuffix(k, "/index") {
			t.Fatalf("the index root outlived a failed delete: %v", left)
		}
	}
	check := func(when string) {
		t.Helper()
		list, err := e.lib.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var found *tapes.Info
		for i := range list {
			if list[i].Barcode == victim {
				found = &list[i]
			}
		}
		if found == nil || found.State != tapes.StateDeleting || found.Place != (tapes.Element{}) {
			t.Fatalf("%s: the partly deleted tape in the list: %+v", when, found)
		}
		inv, err := e.lib.Inventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, bc := range inv.Slots {
			if bc == victim {
				t.Fatalf("%s: the partly deleted tape is in slot %d", when, i)
			}
		}
		if _, err := e.lib.Open(ctx, victim); !errors.Is(err, tapes.ErrNoTape) {
			t.Fatalf("%s: open of a partly deleted tape: %v", when, err)
		}
		if err := e.lib.Archive(ctx, victim); err == nil {
			t.Fatalf("%s: a partly deleted tape archived", when)
		}
		if _, err := e.lib.AssignPool(ctx, victim, "", false); err != nil {
			t.Fatalf("%s: assign to the pool it has: %v", when, err)
		}
	}
	check("after the failed delete")
	e.cut.SetHook(nil)
	e.restart()
	check("after a restart")
	// A new tape does not take the partly deleted tape's barcode.
	if more := e.create(1, 4<<20); more[0] != "GW0003L5" {
		t.Fatalf("next barcode %v", more)
	}
	if err := e.lib.Delete(ctx, victim); err != nil {
		t.Fatalf("delete asked again: %v", err)
	}
	if left := objectKeys(t, e.store, victim); len(left) != 0 {
		t.Fatalf("objects left after the second delete: %v", left)
	}
	list, _ := e.lib.List(ctx)
	for _, in := range list {
		if in.Barcode == victim {
			t.Fatalf("deleted tape still listed: %+v", in)
		}
	}
	if len(list) != 2 {
		t.Fatalf("list after the delete: %+v", list)
	}
	if err := e.lib.Delete(ctx, victim); !errors.Is(err, tapes.ErrNoTape) {
		t.Fatalf("delete of a deleted tape: %v", err)
	}
}

func objectKeys(t *testing.T, s objstore.Store, bc string) []string {
	t.Helper()
	var keys []string
	if err := s.List(ctx, "tapes/"+bc+"/", func(oi objstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}
