package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
)

// Events out (Options.Events), none lost to a kill:
//
//   - A snapshot is completed by the transaction that puts it in the
//     catalog; its event is queued in that same transaction.
//   - A recovery point is written by a PUT of its manifest, outside the
//     metadata store. Its event is noted first, as an intent in meta
//     (volev/<volume id>: the event's JSON); once the manifest is in the
//     store, one transaction queues the event and drops the intent. An
//     intent found later (at the start after a kill, or before the
//     volume's next recovery point) is settled from the store: the
//     manifest there is the one the intent names (the same creation time),
//     so its event is queued, with the same id; or it is not, and the
//     intent goes. An intent that cannot be settled (the store away) waits
//     for the next try.

// event gives e a stable id: the same volume, snapshot and time give the
// same one.
func event(e notify.Event) notify.Event {
	if e.ID == "" {
		e.ID = notify.StableID(string(e.Kind), e.VolumeID, e.Snapshot, strconv.FormatInt(e.Time.UnixNano(), 10))
	}
	return e
}

func intentKey(volumeID string) []byte { return []byte("volev/" + volumeID) }

// noteRecoveryPoint notes the intent to report e, the recovery point
// about to be written.
func (m *Manager) noteRecoveryPoint(ctx context.Context, e notify.Event) error {
	if m.opts.Events == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set(intentKey(e.VolumeID), b) })
}

// reportRecoveryPoint queues e, the recovery point written, and drops its
// intent, in one transaction.
func (m *Manager) reportRecoveryPoint(ctx context.Context, e notify.Event) error {
	if m.opts.Events == nil {
		return nil
	}
	return m.opts.Events.Update(ctx, m.opts.Meta, func(tx meta.Txn) error { return tx.Delete(intentKey(e.VolumeID)) }, e)
}

// settleRecoveryPoint settles the intent of volume volumeID, if there is
// one (see above).
func (m *Manager) settleRecoveryPoint(ctx context.Context, volumeID string) error {
	if m.opts.Events == nil {
		return nil
	}
	var e notify.Event
	err := m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get(intentKey(volumeID))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &e)
	})
	if errors.Is(err, meta.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume %s: the event of a recovery point: %w", volumeID, err)
	}
	key := RecoveryPointKey(volumeID)
	var written time.Time
	blob, err := objstore.GetAll(ctx, m.opts.Store, key)
	if err == nil {
		man, err := m.opts.Codec.OpenManifest(key, blob)
		if err != nil {
			return fmt.Errorf("volume %s: the event of a recovery point: %w", volumeID, err)
		}
		written = man.Created
	} else if !objstore.IsNotFound(err) {
		return fmt.Errorf("volume %s: the event of a recovery point: %w", volumeID, err)
	}
	if written.Equal(e.Time) {
		m.log.Warn("volume: reporting a recovery point written before a crash", "volume", e.Volume, "created", e.Time)
		return m.reportRecoveryPoint(ctx, e)
	}
	return m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete(intentKey(volumeID)) })
}

// settleRecoveryPoints settles the intents of every volume, logging what
// must wait for another try.
func (m *Manager) settleRecoveryPoints(ctx context.Context) {
	for _, v := range m.List() {
		if err := m.settleRecoveryPoint(ctx, v.info.ID); err != nil {
			m.log.Warn("volume event not settled; tried again before the next recovery point", "volume", v.info.Name, "err", err)
		}
	}
}
