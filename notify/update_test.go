package notify_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
)

// Events joined to a caller's transaction are queued with its writes or
// not at all: a refused transaction queues nothing and returns the
// caller's error as it was; a repeated id commits the caller's writes and
// queues nothing again; a transaction of another store is refused.
func TestUpdateJoinsTransaction(t *testing.T) {
	md := mem.New()
	r := notifytest.NewReceiver(t, "")
	q := openQueue(t, md, notify.Options{Webhooks: []notify.Webhook{{URL: r.URL}}})
	ctx := context.Background()
	set := func(k string) func(meta.Txn) error {
		return func(tx meta.Txn) error { return tx.Set([]byte(k), []byte("v")) }
	}
	has := func(k string) bool {
		err := md.View(ctx, func(tx meta.Txn) error { _, err := tx.Get([]byte(k)); return err })
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	refused := errors.New("refused by the caller")
	err := q.Update(ctx, md, func(tx meta.Txn) error {
		_ = tx.Set([]byte("state/no"), []byte("v"))
		return refused
	}, notify.Event{ID: "no", Kind: notify.TapeArchived, Tape: "T1"})
	if err != refused {
		t.Fatalf("refused transaction: %v", err)
	}
	if has("state/no") {
		t.Fatal("a refused transaction's write committed")
	}
	if err := q.Update(ctx, md, set("state/a"), notify.Event{ID: "a", Kind: notify.TapeArchived, Tape: "T1"},
		notify.Event{ID: "b", Kind: notify.TapeRetrieved, Tape: "T1"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Update(ctx, md, set("state/b"), notify.Event{ID: "a", Kind: notify.TapeArchived, Tape: "T1"}); err != nil {
		t.Fatal(err)
	}
	if !has("state/a") || !has("state/b") {
		t.Fatal("a committed transaction's writes are missing")
	}
	if err := q.Update(ctx, mem.New(), set("state/c"), notify.Event{ID: "c", Kind: notify.TapeArchived}); err == nil {
		t.Fatal("events joined to another store's transaction")
	}
	got := waitFor(r, 2)
	evs, err := q.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" || len(evs) != 2 || evs[0].ID != "a" || evs[1].ID != "b" {
		t.Fatalf("posted %+v, kept %+v", got, evs)
	}
	if st := q.Stats(); st.Duplicates != 1 || st.Queued[notify.TapeArchived] != 1 || st.Queued[notify.TapeRetrieved] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The senders passed the seq of the refused transaction's event.
	if err := q.Publish(ctx, notify.Event{ID: "d", Kind: notify.FileDeleted}); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(r, 3); got[2].ID != "d" {
		t.Fatalf("after a refused transaction: %+v", got)
	}
}
