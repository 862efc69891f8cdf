package volume

import (
	"context"
	"strconv"

	"github.com/gatewayd/gatewayd/notify"
)

// notify publishes a volume's event (Options.Events), after the work it
// reports is in the store. A failure to queue it is logged: the work
// stands.
func (m *Manager) notify(ctx context.Context, e notify.Event) {
	if m.opts.Events == nil {
		return
	}
	if e.ID == "" {
		e.ID = notify.StableID(string(e.Kind), e.VolumeID, e.Snapshot, strconv.FormatInt(e.Time.UnixNano(), 10))
	}
	if err := m.opts.Events.Publish(context.WithoutCancel(ctx), e); err != nil {
		m.log.Error("volume event not queued", "kind", e.Kind, "volume", e.Volume, "err", err)
	}
}
