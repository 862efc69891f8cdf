package volume

import (
	"bytes"
	"context"
	"fmt"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
)

// A cached volume's recovery point is a manifest at volumes/<id>/head
// naming the map pages of its uploaded chunks, written at an interval, so
// the volume can be rebuilt from the bucket alone.

// RecoveryPointKey is where a volume's latest recovery point is stored.
func RecoveryPointKey(volumeID string) string { return "volumes/" + volumeID + "/head" }

// RecoveryPoint uploads everything pending, then writes the volume's
// recovery point. Pages equal to those of the previous recovery point are
// not uploaded again.
func (m *Manager) RecoveryPoint(ctx context.Context, nameOrID string) error {
	v, err := m.Get(nameOrID)
	if err != nil {
		return err
	}
	if err := m.Drain(ctx); err != nil {
		return fmt.Errorf("volume %s: recovery point: %w", v.info.Name, err)
	}
	return v.writeRecoveryPoint(ctx)
}

func (v *Volume) writeRecoveryPoint(ctx context.Context) error {
	m := v.m
	v.rpMu.Lock()
	defer v.rpMu.Unlock()
	info := v.Info()
	// A recovery point of before a crash is reported before the next one
	// replaces it.
	if err := m.settleRecoveryPoint(ctx, info.ID); err != nil {
		return err
	}
	created := m.opts.Clock.Now().UTC()
	man := snapshots.Manifest{
		Version: 1, Kind: "recovery-point", VolumeID: info.ID, VolumeName: info.Name,
		Size: info.Size, ChunkSize: info.ChunkSize, Created: created,
	}
	pages := map[uint64]snapshots.ChunkID{}
	cur := snapshots.Page{First: ^uint64(0)}
	pin := m.pin() // pages are live before the manifest names them
	defer m.unpin(pin)
	flush := func() error {
		if len(cur.Entries) == 0 {
			return nil
		}
		id, blob, err := m.opts.Codec.SealPage(cur)
		if err != nil {
			return err
		}
		pin.add(id)
		if v.rpPages[cur.First] != id {
			if err := m.opts.Store.Put(ctx, snapshots.PageKey(id), bytes.NewReader(blob), int64(len(blob))); err != nil {
				return err
			}
		}
		pages[cur.First] = id
		man.Pages = append(man.Pages, snapshots.PageRef{First: cur.First, ID: id})
		return nil
	}
	// The map is read in one consistent view; pages go up as they fill,
	// in index order, so memory holds one page at a time. A patched chunk
	// is compacted: the manifest names whole chunks only.
	var compacted []compaction
	err := m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return iterateMap(tx, info.ID, func(index uint64, e chunkEntry) error {
			id := e.base
			if !e.whole() {
				for _, pid := range e.ids() {
					pin.add(pid)
				}
				var hole bool
				var err error
				if id, hole, _, err = v.wholeChunk(ctx, index, e, pin); err != nil {
					return err
				}
				compacted = append(compacted, compaction{index, e.encode(), id, hole})
				if hole {
					return nil
				}
			}
			first := index - index%snapshots.PageEntries
			if first != cur.First {
				if err := flush(); err != nil {
					return err
				}
				cur = snapshots.Page{First: first, Entries: map[uint32]snapshots.ChunkID{}}
			}
			cur.Entries[uint32(index-first)] = id
			return nil
		})
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("volume %s: recovery point pages: %w", info.Name, err)
	}
	v.mu.Lock()
	base, _ := v.baseRefsLocked()
	v.mu.Unlock()
	man.Pages = withBase(man.Pages, base)
	for _, r := range base {
		pin.add(r.ID)
		pages[r.First] = r.ID
	}
	blob, err := m.opts.Codec.SealManifest(RecoveryPointKey(info.ID), man)
	if err != nil {
		return err
	}
	ev := event(notify.Event{Kind: notify.VolumeRecoveryPoint, Time: created, Volume: info.Name, VolumeID: info.ID, Size: notify.Size(info.Size)})
	if err := m.noteRecoveryPoint(ctx, ev); err != nil {
		return fmt.Errorf("volume %s: recovery point: %w", info.Name, err)
	}
	if err := objstore.PutBytes(ctx, m.opts.Store, RecoveryPointKey(info.ID), blob); err != nil {
		// The intent stays: a PUT whose answer was lost may have written
		// it, which the next settling finds out.
		return fmt.Errorf("volume %s: recovery point manifest: %w", info.Name, err)
	}
	v.rpPages = pages
	v.lastRecoveryPoint.Store(created.UnixNano())
	if m.crashHook != nil {
		m.crashHook(string(notify.VolumeRecoveryPoint))
	}
	if err := m.reportRecoveryPoint(ctx, ev); err != nil {
		// The intent stays, settled at the next start or recovery point.
		m.log.Error("volume event not queued; tried again before the next recovery point", "kind", ev.Kind, "volume", info.Name, "err", err)
	}
	// The map keeps the compacted chunks, so the next recovery point does
	// not compact them again; the patches become garbage.
	for _, c := range compacted {
		if err := v.commitCompaction(ctx, c.index, c.raw, c.id, c.hole); err != nil {
			return fmt.Errorf("volume %s: record compacted chunk %d: %w", info.Name, c.index, err)
		}
	}
	return nil
}

// compaction is a patched map entry (raw) uploaded whole as id.
type compaction struct {
	index uint64
	raw   []byte
	id    snapshots.ChunkID
	hole  bool
}

// ReadRecoveryPoint reads a volume's latest recovery point from the object
// store alone: its manifest and the chunk id of every index that is not a hole.
func ReadRecoveryPoint(ctx context.Context, store objstore.Store, codec *snapshots.Codec, volumeID string) (snapshots.Manifest, map[uint64]snapshots.ChunkID, error) {
	key := RecoveryPointKey(volumeID)
	blob, err := objstore.GetAll(ctx, store, key)
	if err != nil {
		return snapshots.Manifest{}, nil, err
	}
	man, err := codec.OpenManifest(key, blob)
	if err != nil {
		return man, nil, err
	}
	ids := map[uint64]snapshots.ChunkID{}
	for _, ref := range man.Pages {
		b, err := objstore.GetAll(ctx, store, snapshots.PageKey(ref.ID))
		if err != nil {
			return man, nil, err
		}
		p, err := codec.OpenPage(ref.ID, b)
		if err != nil {
			return man, nil, err
		}
		if p.First != ref.First {
			return man, nil, fmt.Errorf("recovery point %s: page %s covers %d, manifest says %d", key, ref.ID, p.First, ref.First)
		}
		for off, id := range p.Entries {
			ids[p.First+uint64(off)] = id
		}
	}
	return man, ids, nil
}
