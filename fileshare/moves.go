package fileshare

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Renaming an object the store cannot take right now (it is away) is a
// record in the share log, like a remove (deletes.go): the share shows the
// object at its new name at once, and the uploader copies it to the new
// key, then deletes the old key, when the store is back, in log order with
// the removes. A second record says the move was done. A replay repeats a
// move not marked done: the copy again (the old key is deleted only after
// the copy is confirmed, so it still holds the object), or nothing when
// the old key is gone (the move was done before the crash; nothing is
// written at a key with a move pending).
//
//	rename:  length of the old key (2), the old key, the new key
//	renamed: the same (the rename before it is done)
const (
	recRename  byte = 8
	recRenamed byte = 9
)

// move is a rename waiting for the store.
type move struct {
	share, from, to string
	lsn             uploadbuffer.LSN
}

func encodeMove(from, to string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(from)))
	return append(append(b, from...), to...)
}

func decodeMove(b []byte) (from, to string, ok bool) {
	if len(b) < 2 {
		return "", "", false
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 || len(b) < 2+n+1 {
		return "", "", false
	}
	return string(b[2 : 2+n]), string(b[2+n:]), true
}

// deferMove records that the object at from is now at to, to be moved in
// the store later.
func (m *Manager) deferMove(ctx context.Context, share, from, to string) error {
	rec := record{typ: recRename, share: share, data: encodeMove(from, to)}
	return m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
		m.filesMu.Lock()
		m.moves[lsn] = move{share: share, from: from, to: to, lsn: lsn}
		m.filesMu.Unlock()
		return nil
	})
}

// moveDone forgets the oldest pending move of share from from to to (a
// renamed record, live or replayed).
func (m *Manager) moveDone(share, from, to string) {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	var first uploadbuffer.LSN
	found := false
	for lsn, mv := range m.moves {
		if mv.share == share && mv.from == from && mv.to == to && (!found || lsn < first) {
			first, found = lsn, true
		}
	}
	if found {
		delete(m.moves, first)
	}
}

// keyState says, for key of share, whether its object is hidden (the last
// pending change of the key removed it or moved it away) and whether any
// remove or move of it is pending. The caller holds filesMu.
func (m *Manager) keyState(share, key string) (hidden, pending bool) {
	var gone, into uploadbuffer.LSN // the last change taking the object away, bringing one in
	var hasGone, hasInto bool
	if lsn, ok := m.deletes[deleteKey(share, key)]; ok {
		gone, hasGone = lsn, true
	}
	for lsn, mv := range m.moves {
		if mv.share != share {
			continue
		}
		if mv.from == key && (!hasGone || lsn > gone) {
			gone, hasGone = lsn, true
		}
		if mv.to == key && (!hasInto || lsn > into) {
			into, hasInto = lsn, true
		}
	}
	return hasGone && (!hasInto || gone > into), hasGone || hasInto
}

// pendingKey says whether a remove or a move of key waits for the store:
// nothing may be written at key before it is done.
func (m *Manager) pendingKey(share, key string) bool {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	if len(m.deletes) == 0 && len(m.moves) == 0 {
		return false
	}
	_, pending := m.keyState(share, key)
	return pending
}

// source returns the key of the store object shown at key: for a pending
// move to key, the key it moves from (followed back through earlier
// pending moves), else key itself.
func (m *Manager) source(share, key string) string {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	if len(m.moves) == 0 {
		return key
	}
	k, before := key, ^uploadbuffer.LSN(0)
	for range len(m.moves) {
		var best move
		found := false
		for lsn, mv := range m.moves {
			if mv.share == share && mv.to == k && lsn < before && (!found || lsn > best.lsn) {
				best, found = mv, true
			}
		}
		if !found {
			break
		}
		k, before = best.from, best.lsn
	}
	return k
}

// statObject stats the store object shown at key: for a pending move to
// key, the object it moves, or the one at key once the move is done (a
// move done before a crash and not recorded).
func (m *Manager) statObject(ctx context.Context, share, key string) (objstore.ObjectInfo, error) {
	src := m.source(share, key)
	oi, err := m.opts.Store.Stat(ctx, src)
	if src != key && objstore.IsNotFound(err) {
		oi, err = m.opts.Store.Stat(ctx, key)
	}
	return oi, err
}

// movedIn returns the keys of share that pending moves show at, whatever
// is in the store there, with the key prefix given.
func (m *Manager) movedIn(share, prefix string) []string {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	var out []string
	for _, mv := range m.moves {
		if mv.share == share && strings.HasPrefix(mv.to, prefix) {
			if hidden, _ := m.keyState(share, mv.to); !hidden {
				out = append(out, mv.to)
			}
		}
	}
	return out
}

// settleMove copies the object of a pending move to its new key, confirms
// the copy, deletes the old key and records the move done.
func (m *Manager) settleMove(ctx context.Context, mv move) error {
	copier, ok := m.opts.Store.(objstore.Copier)
	if !ok {
		return fmt.Errorf("rename needs an object store that copies: %w", ErrNotSupp)
	}
	err := copier.Copy(ctx, mv.from, mv.to)
	switch {
	case objstore.IsNotFound(err):
		// The old key is gone: the move was done before a crash (or the
		// object was deleted outside the gateway). Nothing to delete.
	case err != nil:
		m.storeFailed(ctx, err)
		return fmt.Errorf("share %s: move %s to %s: %w", mv.share, mv.from, mv.to, err)
	default:
		if _, err := m.opts.Store.Stat(ctx, mv.to); err != nil {
			m.storeFailed(ctx, err)
			return fmt.Errorf("share %s: move %s to %s: the copy: %w", mv.share, mv.from, mv.to, err)
		}
		if err := m.opts.Store.Delete(ctx, mv.from); err != nil {
			m.storeFailed(ctx, err)
			return fmt.Errorf("share %s: move %s to %s: delete: %w", mv.share, mv.from, mv.to, err)
		}
	}
	m.storeBack()
	rec := record{typ: recRenamed, share: mv.share, data: encodeMove(mv.from, mv.to)}
	return m.logAndApply(ctx, rec, func(uploadbuffer.LSN) error {
		m.filesMu.Lock()
		delete(m.moves, mv.lsn)
		m.filesMu.Unlock()
		return nil
	})
}

// laterRecord is a replayed record of a file the store could not tell
// about (a restart while it is away); it is applied when the store is
// back, and holds the log until then.
type laterRecord struct {
	lsn uploadbuffer.LSN
	rec record
}

// applyLaterIfAny applies the replayed records that wait for the store,
// if there are any; those it cannot apply yet keep waiting.
func (m *Manager) applyLaterIfAny(ctx context.Context) {
	m.filesMu.Lock()
	n := len(m.later)
	m.filesMu.Unlock()
	if n > 0 && !m.storeAway() { // else a later round tries again
		_ = m.applyLater(ctx)
	}
}

// applyLater applies the replayed records that waited for the store, in
// log order, until one still cannot be applied.
func (m *Manager) applyLater(ctx context.Context) error {
	m.laterMu.Lock() // one at a time: a record is applied once
	defer m.laterMu.Unlock()
	m.filesMu.Lock()
	later := m.later
	m.filesMu.Unlock()
	if len(later) == 0 {
		return nil
	}
	done := 0
	var err error
	for _, lr := range later {
		var wait bool
		if wait, err = m.replayFileRecord(ctx, lr.lsn, lr.rec); err != nil || wait {
			if err == nil {
				err = fmt.Errorf("share %s: replayed change of a file: the store is away", lr.rec.share)
			}
			break
		}
		done++
	}
	m.filesMu.Lock()
	m.later = m.later[done:]
	m.filesMu.Unlock()
	return err
}
