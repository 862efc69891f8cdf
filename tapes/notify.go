package tapes

import (
	"context"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
)

// commitWithEvent commits fn, the transaction that records a tape's new
// state, with the event of kind reporting it (Options.Events) queued in
// the same transaction: a kill at any moment keeps both or neither, so
// no state change goes unreported.
func (l *Library) commitWithEvent(ctx context.Context, fn func(meta.Txn) error, kind notify.Kind, in Info, at time.Time) error {
	e := notify.Event{ID: notify.StableID(string(kind), in.Barcode, at.UTC().Format(time.RFC3339Nano)), Kind: kind, Time: at,
		Tape: in.Barcode, Size: notify.Size(in.Used)}
	if err := notify.Update(ctx, l.opts.Events, l.opts.Meta, fn, e); err != nil {
		return err
	}
	if crashHook != nil {
		crashHook(string(kind))
	}
	return nil
}

// crashHook, when a test sets it, runs once a state change and its event
// are committed, with the event's kind: a kill there is the one a queue
// of events after the change would have lost.
var crashHook func(point string)
