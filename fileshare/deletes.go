package fileshare

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Removing an object the store cannot take right now (it is away) is a
// record in the share log, like a write: the share acts as if the object
// were gone, and the uploader deletes it when the store is back, before
// anything else goes to that key. A second record says the delete was
// done, so a replay after a crash does not repeat it over a newer object.
//
//	remove:  the object's key
//	removed: the object's key (the remove before it is done)
const (
	recRemove  byte = 6
	recRemoved byte = 7
)

func deleteKey(share, key string) string { return share + "\x00" + key }

// deleteNow deletes key of share in the store now (a remove). With events
// on, the delete goes through the log like one the store cannot take now
// and is done at once by settleDeletes, which reports it: a kill after the
// delete leaves the remove record in the log, whose replay deletes again
// and queues the event with the same id. A delete that fails there waits
// in the log for the next upload round.
func (m *Manager) deleteNow(ctx context.Context, share, key string) error {
	if m.opts.Events == nil {
		return m.opts.Store.Delete(ctx, key)
	}
	if err := m.deferDelete(ctx, share, key); err != nil {
		return err
	}
	if err := m.settleDeletes(ctx, share); err != nil {
		m.log.Warn("file share: a remove waits for the next upload round", "share", share, "key", key, "err", err)
	}
	return nil
}

// deferDelete records that key is removed, to be deleted in the store
// later.
func (m *Manager) deferDelete(ctx context.Context, share, key string) error {
	rec := record{typ: recRemove, share: share, data: []byte(key)}
	return m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
		m.filesMu.Lock()
		m.deletes[deleteKey(share, key)] = lsn
		m.filesMu.Unlock()
		return nil
	})
}

// deleting says whether key of share is removed (or moved away) and not
// yet deleted in the store: reads of the store must not show it.
func (m *Manager) deleting(share, key string) bool {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	if len(m.deletes) == 0 && len(m.moves) == 0 {
		return false
	}
	hidden, _ := m.keyState(share, key)
	return hidden
}

// settleDeletes does in the store, in log order, the removes and moves
// of share that wait for it (moves.go), and records each as done. It runs
// before anything is written at those keys.
func (m *Manager) settleDeletes(ctx context.Context, share string) error {
	// One settling of a share at a time: the uploader and a rename may
	// each ask for it.
	settle := &m.ns(share).settle
	settle.Lock()
	defer settle.Unlock()
	type op struct {
		lsn uploadbuffer.LSN
		key string // a remove
		mv  move   // else a move
	}
	m.filesMu.Lock()
	var ops []op
	for dk, lsn := range m.deletes {
		if sh, k, _ := strings.Cut(dk, "\x00"); sh == share {
			ops = append(ops, op{lsn: lsn, key: k})
		}
	}
	for lsn, mv := range m.moves {
		if mv.share == share {
			ops = append(ops, op{lsn: lsn, mv: mv})
		}
	}
	m.filesMu.Unlock()
	sort.Slice(ops, func(i, j int) bool { return ops[i].lsn < ops[j].lsn })
	// The removed records are written without a sync each and synced
	// once, before their removes leave m.deletes (which lets the trim pass
	// them) and before a move or an upload can write at their keys: a
	// round of many removes costs one sync, not one each.
	var done []op
	finish := func() error {
		if len(done) == 0 {
			return nil
		}
		if err := m.j.Sync(ctx); err != nil {
			return err
		}
		m.filesMu.Lock()
		for _, o := range done {
			if m.deletes[deleteKey(share, o.key)] == o.lsn {
				delete(m.deletes, deleteKey(share, o.key))
			}
		}
		m.filesMu.Unlock()
		done = done[:0]
		return nil
	}
	written := WithDurability(ctx, Written)
	for _, o := range ops {
		if o.key == "" {
			if err := finish(); err != nil {
				return err
			}
			if err := m.settleMove(ctx, o.mv); err != nil {
				return err
			}
			continue
		}
		k := o.key
		if err := m.opts.Store.Delete(ctx, k); err != nil {
			m.storeFailed(ctx, err)
			return errors.Join(fmt.Errorf("share %s: delete %s: %w", share, k, err), finish())
		}
		m.storeBack()
		crash("file.deleted:store")
		// Before the removed record: a replay that deletes again names
		// the event alike, and one not queued (a kill, a failure) is
		// queued by the next try.
		if err := m.notifyDeleted(ctx, share, k, notify.StableID(string(notify.FileDeleted), share, k, strconv.FormatUint(uint64(o.lsn), 10))); err != nil {
			return errors.Join(err, finish())
		}
		crash("file.deleted:queued")
		rec := record{typ: recRemoved, share: share, data: []byte(k)}
		if err := m.logAndApply(written, rec, func(uploadbuffer.LSN) error { return nil }); err != nil {
			return errors.Join(err, finish())
		}
		done = append(done, o)
	}
	return finish()
}
