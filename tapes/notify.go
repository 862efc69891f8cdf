package tapes

import (
	"context"
	"time"

	"github.com/gatewayd/gatewayd/notify"
)

// notify publishes a tape's event (Options.Events) once its new state is
// recorded. A failure to queue it is logged: the state stands.
func (l *Library) notify(ctx context.Context, kind notify.Kind, in Info, at time.Time) {
	if l.opts.Events == nil {
		return
	}
	e := notify.Event{ID: notify.StableID(string(kind), in.Barcode, at.UTC().Format(time.RFC3339Nano)), Kind: kind, Time: at,
		Tape: in.Barcode, Size: notify.Size(in.Used)}
	if err := l.opts.Events.Publish(context.WithoutCancel(ctx), e); err != nil {
		l.log.Error("tape event not queued", "kind", kind, "tape", in.Barcode, "err", err)
	}
}
