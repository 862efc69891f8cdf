package fileshare

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gatewayd/gatewayd/meta"
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
// A directory with contents is one record holding every object of its
// tree (each file, symlink and directory marker), so a crash keeps the
// whole rename or none of it; its objects are moved one by one, each as
// above, and a replay after a crash in the middle repeats the move of
// those not done yet and skips those done.
//
//	rename:  length of the old key (2), the old key, the new key;
//	         or, for several objects, 0 (2), then for each: length of the
//	         old key (2), the old key, length of the new key (2), the new key
//	renamed: the same (the rename before it is done)
const (
	recRename  byte = 8
	recRenamed byte = 9
)

// keyMove is one object's move: from its old key to its new one.
type keyMove struct{ from, to string }

// move is a rename waiting for the store: one record, one or more objects.
type move struct {
	share string
	keys  []keyMove
	lsn   uploadbuffer.LSN
}

func encodeMoves(keys []keyMove) []byte {
	if len(keys) == 1 {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(keys[0].from)))
		return append(append(b, keys[0].from...), keys[0].to...)
	}
	b := binary.BigEndian.AppendUint16(nil, 0)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.from)))
		b = append(b, k.from...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.to)))
		b = append(b, k.to...)
	}
	return b
}

func decodeMoves(b []byte) ([]keyMove, bool) {
	if len(b) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if n != 0 {
		if len(b) < 2+n+1 {
			return nil, false
		}
		return []keyMove{{from: string(b[2 : 2+n]), to: string(b[2+n:])}}, true
	}
	var keys []keyMove
	key := func() (string, bool) {
		if len(b) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(b))
		if n == 0 || len(b) < 2+n {
			return "", false
		}
		k := string(b[2 : 2+n])
		b = b[2+n:]
		return k, true
	}
	for b = b[2:]; len(b) > 0; {
		from, ok1 := key()
		to, ok2 := key()
		if !ok1 || !ok2 {
			return nil, false
		}
		keys = append(keys, keyMove{from, to})
	}
	return keys, len(keys) > 0
}

// deferMoves records, in one record, that each object of keys is now at
// its new key, to be moved in the store later.
func (m *Manager) deferMoves(ctx context.Context, share string, keys []keyMove) error {
	rec := record{typ: recRename, share: share, data: encodeMoves(keys)}
	return m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
		m.addMove(share, lsn, keys)
		return nil
	})
}

// keyRef is a pending move that names a key: out of it or into it, and
// the key at the other end. Manager.moveRefs holds them by key, so the
// state of one key does not take a look at every object of every move.
type keyRef struct {
	lsn   uploadbuffer.LSN
	out   bool
	other string
}

// addMove notes a rename waiting for the store (recorded now or replayed).
func (m *Manager) addMove(share string, lsn uploadbuffer.LSN, keys []keyMove) {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	m.moves[lsn] = move{share: share, keys: keys, lsn: lsn}
	if m.moveRefs == nil {
		m.moveRefs = map[string][]keyRef{}
	}
	for _, k := range keys {
		from, to := deleteKey(share, k.from), deleteKey(share, k.to)
		m.moveRefs[from] = append(m.moveRefs[from], keyRef{lsn: lsn, out: true, other: k.to})
		m.moveRefs[to] = append(m.moveRefs[to], keyRef{lsn: lsn, other: k.from})
	}
}

// dropMove forgets a pending move (done). The caller holds filesMu.
func (m *Manager) dropMove(lsn uploadbuffer.LSN) {
	mv, ok := m.moves[lsn]
	if !ok {
		return
	}
	delete(m.moves, lsn)
	for _, k := range mv.keys {
		for _, key := range []string{k.from, k.to} {
			dk := deleteKey(mv.share, key)
			refs := slices.DeleteFunc(m.moveRefs[dk], func(r keyRef) bool { return r.lsn == lsn })
			if len(refs) == 0 {
				delete(m.moveRefs, dk)
			} else {
				m.moveRefs[dk] = refs
			}
		}
	}
}

// replayMove applies a replayed rename or renamed record.
func (m *Manager) replayMove(share string, lsn uploadbuffer.LSN, r record) {
	keys, _ := decodeMoves(r.data) // checked by decodeRecord
	if r.typ == recRename {
		m.addMove(share, lsn, keys)
	} else {
		m.moveDone(share, keys)
	}
}

// moveDone forgets the oldest pending move of share of the objects keys
// (a renamed record, live or replayed).
func (m *Manager) moveDone(share string, keys []keyMove) {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	var first uploadbuffer.LSN
	found := false
	for lsn, mv := range m.moves {
		if mv.share == share && slices.Equal(mv.keys, keys) && (!found || lsn < first) {
			first, found = lsn, true
		}
	}
	if found {
		m.dropMove(first)
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
	for _, r := range m.moveRefs[deleteKey(share, key)] {
		if r.out && (!hasGone || r.lsn > gone) {
			gone, hasGone = r.lsn, true
		}
		if !r.out && (!hasInto || r.lsn > into) {
			into, hasInto = r.lsn, true
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
		var best keyRef
		found := false
		for _, r := range m.moveRefs[deleteKey(share, k)] {
			if !r.out && r.lsn < before && (!found || r.lsn > best.lsn) {
				best, found = r, true
			}
		}
		if !found {
			break
		}
		k, before = best.other, best.lsn
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

// movedIn returns what pending moves show directly in the directory
// whose keys start with prefix, whatever is in the store there: the key
// of each object moved there, and for an object moved deeper, the key
// of the directory holding it here (ending in "/").
func (m *Manager) movedIn(share, prefix string) []string {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	in := map[string]bool{}
	for _, mv := range m.moves {
		if mv.share != share {
			continue
		}
		for _, km := range mv.keys {
			if !strings.HasPrefix(km.to, prefix) {
				continue
			}
			if hidden, _ := m.keyState(share, km.to); hidden {
				continue
			}
			k := km.to
			if i := strings.IndexByte(k[len(prefix):], '/'); i >= 0 {
				k = k[:len(prefix)+i+1] // a directory here, or the directory itself
			}
			in[k] = true
		}
	}
	return slices.Collect(maps.Keys(in))
}

// settleMove copies each object of a pending move to its new key,
// confirms the copy and deletes the old key, then records the move done.
func (m *Manager) settleMove(ctx context.Context, mv move) error {
	copier, ok := m.opts.Store.(objstore.Copier)
	if !ok {
		return fmt.Errorf("rename needs an object store that copies: %w", ErrNotSupp)
	}
	defer m.sidecarUses.copying()() // (xattrgc.go)
	for _, k := range mv.keys {
		err := copier.Copy(ctx, k.from, k.to)
		switch {
		case objstore.IsNotFound(err):
			// The old key is gone: the move was done before a crash (or
			// the object was deleted outside the gateway, or a
			// directory has no marker). Nothing to delete.
		case err != nil:
			m.storeFailed(ctx, err)
			return fmt.Errorf("share %s: move %s to %s: %w", mv.share, k.from, k.to, err)
		default:
			if _, err := m.opts.Store.Stat(ctx, k.to); err != nil {
				m.storeFailed(ctx, err)
				return fmt.Errorf("share %s: move %s to %s: the copy: %w", mv.share, k.from, k.to, err)
			}
			crash("file.renamed:copied")
			// Reported before the old key goes: a crash after this
			// repeats the copy and the event, with the same id.
			if err := m.notifyRenamed(ctx, mv, k); err != nil {
				return err
			}
			crash("file.renamed:queued")
			if err := m.opts.Store.Delete(ctx, k.from); err != nil {
				m.storeFailed(ctx, err)
				return fmt.Errorf("share %s: move %s to %s: delete: %w", mv.share, k.from, k.to, err)
			}
			crash("file.renamed:store")
		}
		if moveHook != nil {
			moveHook(k)
		}
	}
	m.storeBack()
	rec := record{typ: recRenamed, share: mv.share, data: encodeMoves(mv.keys)}
	return m.logAndApply(ctx, rec, func(uploadbuffer.LSN) error {
		m.filesMu.Lock()
		m.dropMove(mv.lsn)
		m.filesMu.Unlock()
		return nil
	})
}

// moveHook, when a test sets it, runs after each object of a move is
// moved in the store.
var moveHook func(keyMove)

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

// knownTree returns the objects of directory from, and their keys under
// to, from what the share knows of the tree while the store is away: the
// listings it keeps of from and of every directory below (at any age),
// and the files and directories made there and not uploaded yet (these
// have no object: their upload puts them at their new path). If part of
// the tree was never listed, what it holds is not known: the rename is
// refused, with storeErr, and nothing changes.
func (s *Share) knownTree(from, to string, storeErr error) ([]keyMove, error) {
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	var keys []keyMove
	var walk func(d string) error
	walk = func(d string) error {
		nd := to + d[len(from):]
		if _, unborn := s.unborn[d]; !unborn {
			keys = append(keys, keyMove{s.key(d) + "/", s.key(nd) + "/"}) // its marker, if it has one
		}
		listed := s.dirs.names(d)
		if listed == nil {
			return fmt.Errorf("rename %s, a directory with contents: the object store is unreachable and %s was never listed, so what it holds is not known; nothing changed: %w", from, d, storeErr)
		}
		names := maps.Clone(listed)
		s.addUnborn(d, names)
		for _, name := range slices.Sorted(maps.Keys(names)) {
			p, t := joinPath(d, name), names[name]
			if t == 0 {
				t = listed[name] // made here, not uploaded yet
			}
			_, unborn := s.unborn[p]
			_, listed := s.dirs.at(p)
			switch {
			case t == TypeDir || t == 0 && listed:
				if err := walk(p); err != nil {
					return err
				}
			case !unborn:
				keys = append(keys, keyMove{s.key(p), s.key(joinPath(nd, name))})
			}
		}
		return nil
	}
	if err := walk(from); err != nil {
		return nil, err
	}
	return keys, nil
}

// storeMoves maps the keys of a directory's objects, which start with
// fromPrefix, to the same keys under toPrefix.
func storeMoves(keys []string, fromPrefix, toPrefix string) []keyMove {
	out := make([]keyMove, len(keys))
	for i, k := range keys {
		out[i] = keyMove{k, toPrefix + strings.TrimPrefix(k, fromPrefix)}
	}
	return out
}

// moveCached moves what the share keeps of directory from and everything
// below it (attributes, listings, files not uploaded yet) to the same
// paths under to, for a rename the store has not seen yet. Nothing at or
// below to is cached (the caller forgot it).
func (s *Share) moveCached(from, to string) {
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	under := func(k string) (string, bool) {
		if k == from || strings.HasPrefix(k, from+"/") {
			return to + k[len(from):], true
		}
		return "", false
	}
	rekey(s.attrs, under)
	s.dirs.move(from, to)
	rekey(s.unborn, under)
}

// rekey moves the entries of m whose keys under maps to their new keys.
func rekey[V any](m map[string]V, under func(string) (string, bool)) {
	moved := map[string]V{}
	for k, v := range m {
		if nk, ok := under(k); ok {
			moved[nk] = v
			delete(m, k)
		}
	}
	maps.Copy(m, moved)
}

// forgetAttr drops what the share cached of p: a look during replay,
// before the log's later records (a rename that brings an object to p)
// are known.
func (s *Share) forgetAttr(p string) {
	s.attrMu.Lock()
	s.dropAttrLocked(p)
	s.attrMu.Unlock()
}

// A rename the store has not seen is a record in the log, then a change
// of the inode table (in the metadata store): a crash between the two
// would leave the log moving the objects while the table still names the
// old paths, and the replayed changes of the files inside would find no
// file at those paths. So the rename first notes its intent in the table
// (fsm/<share>/<from>: to), and clears it once the table is changed; a
// start after a crash completes the table's change when the log holds the
// rename (finishMoves), else (nothing was moved, nothing acknowledged)
// drops the intent.
func intentPrefix(share string) []byte { return []byte("fsm/" + share + "/") }

func (s *Share) noteMoveIntent(ctx context.Context, from, to string) error {
	return s.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		return tx.Set(append(intentPrefix(s.cfg.Name), from...), []byte(to))
	})
}

// logMove records a rename the store has not seen: its intent in the
// inode table, then the moves of its objects (if any) in the log.
func (s *Share) logMove(ctx context.Context, from, to string, keys []keyMove) error {
	if err := s.noteMoveIntent(ctx, from, to); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	return s.m.deferMoves(ctx, s.cfg.Name, keys)
}

// renameCutHook, when a test sets it, runs before a rename that went
// through the log changes the inode table; an error ends the rename there,
// as a crash would.
var renameCutHook func() error

// finishRename gives the inodes of from and below the paths under to, then
// clears the rename's intent if it noted one.
func (s *Share) finishRename(ctx context.Context, from, to string, intent bool) error {
	if intent && renameCutHook != nil {
		if err := renameCutHook(); err != nil {
			return err
		}
	}
	if err := s.moveInodes(ctx, from, to); err != nil {
		return err
	}
	if !intent {
		return nil
	}
	return s.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		return tx.Delete(append(intentPrefix(s.cfg.Name), from...))
	})
}

// finishMoves settles the renames a crash cut between their log record
// and the inode table, once the log is replayed: a rename the log holds
// (a move or a delete of an object from its old key still pending) gets
// its inodes moved; the intents of the others are dropped.
func (m *Manager) finishMoves(ctx context.Context) error {
	for _, cfg := range m.List() {
		s, err := m.Get(cfg.Name)
		if err != nil {
			continue
		}
		prefix := intentPrefix(cfg.Name)
		var intents [][2]string
		err = m.opts.Meta.View(ctx, func(tx meta.Txn) error {
			return tx.Iterate(prefix, func(k, v []byte) error {
				intents = append(intents, [2]string{string(k[len(prefix):]), string(v)})
				return nil
			})
		})
		if err != nil {
			return err
		}
		for _, in := range intents {
			from, to := in[0], in[1]
			if m.moveLogged(cfg.Name, s.key(from), s.key(to)) {
				m.log.Warn("file share: completing a rename a crash cut before its inodes moved", "share", cfg.Name, "from", from, "to", to)
				if err := s.completeMove(ctx, from, to); err != nil {
					return err
				}
				// What the replay cached and made of the old paths is
				// under the new ones, or forgotten.
				s.moveCached(from, to)
				_ = s.Refresh("", true)
			}
			err := m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete(append(prefix, from...)) })
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// moveLogged says whether the log holds, pending, the rename of path
// fromKey (a file's key, or a directory's prefix) to toKey: a move of
// that object or of one below it, or the delete of the old key of a file
// already copied.
func (m *Manager) moveLogged(share, fromKey, toKey string) bool {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	if _, ok := m.deletes[deleteKey(share, fromKey)]; ok {
		return true
	}
	for _, mv := range m.moves {
		if mv.share != share {
			continue
		}
		for _, k := range mv.keys {
			if k.from == fromKey && k.to == toKey ||
				strings.HasPrefix(k.from, fromKey+"/") && k.to == toKey+k.from[len(fromKey):] {
				return true
			}
		}
	}
	return false
}

// completeMove does the inode table's part of a rename cut by a crash: as
// moveInodes if it had not begun (from is still in the table; a file the
// rename replaced at to is forgotten, and its replayed changes with it),
// else the rest of it.
func (s *Share) completeMove(ctx context.Context, from, to string) error {
	var began bool
	var replaced uint64
	err := s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		_, err := tx.Get(pathKey(s.cfg.Name, from))
		if isNotFound(err) {
			began, err = true, nil
		}
		if err != nil {
			return err
		}
		if b, err := tx.Get(pathKey(s.cfg.Name, to)); err == nil && len(b) == 8 {
			replaced = binary.BigEndian.Uint64(b)
		} else if err != nil && !isNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if began {
		return s.movePaths(ctx, from, to, false, false)
	}
	if replaced != 0 {
		s.m.cancel(s.cfg.Name, replaced)
		_ = s.m.opts.Cache.DropVolume(cacheVolume(s.cfg.Name, replaced))
	}
	return s.moveInodes(ctx, from, to)
}
