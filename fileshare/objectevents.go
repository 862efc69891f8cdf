package fileshare

import (
	"strings"
)

// Changes made in the bucket by others (bucket event notifications,
// bucketevents/) are applied to the share they fall under here: the share
// forgets what it cached of the object and keeps its cached listings whole,
// without listing the store again.
//
// Conflict rule: local changes win. An event for a path with changes not
// yet in the store (a write, a create, a remove or a rename waiting for the
// upload) changes nothing; it is logged, and the share's version is the
// one uploaded next.

// ObjectChange is one change of an object in the bucket.
type ObjectChange struct {
	// Key is the object's key relative to the gateway's prefix in the
	// bucket (what share prefixes are relative to).
	Key     string
	Removed bool   // deleted, else created or overwritten
	ETag    string // of the new object, when the event carries it
}

// ChangeOutcome says what applying an ObjectChange did.
type ChangeOutcome int

const (
	ChangeApplied   ChangeOutcome = iota // the share sees the change now
	ChangeOwn                            // the share already knows this object (its own upload)
	ChangeLocalWins                      // local changes not yet uploaded: ignored, logged
	ChangeNoShare                        // no share holds the key
	ChangeBadKey                         // the key names no path a share can show
)

func (o ChangeOutcome) String() string {
	return [...]string{"applied", "own", "local_wins", "no_share", "bad_key"}[o]
}

// OnChange subscribes fn to be called with the path of every change
// applied to the share from the bucket (an event or a refresh: then the
// path may be a directory, and the change anything below it), after the
// share's caches reflect it: protocol frontends with caches of their own
// (the kernel's, for a FUSE view; NFSv4.1 clients holding delegations)
// drop what they hold of that path. fn must not block. stop ends the
// subscription.
func (s *Share) OnChange(fn func(p string)) (stop func()) {
	return s.onChange.add(nil, fn)
}

// changed calls the share's change subscribers with p.
func (s *Share) changed(p string) { s.onChange.call(nil, p) }

// ShareOf returns the share whose prefix holds key (the longest prefix,
// shares may nest) and the path of key in it.
func (m *Manager) ShareOf(key string) (*Share, string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *Share
	for _, s := range m.shares {
		if strings.HasPrefix(key, s.cfg.Prefix) && (best == nil || len(s.cfg.Prefix) > len(best.cfg.Prefix)) {
			best = s
		}
	}
	if best == nil {
		return nil, "", false
	}
	return best, strings.TrimPrefix(key, best.cfg.Prefix), true
}

// ApplyObjectChange applies a change made in the bucket to the share that
// holds its key.
func (m *Manager) ApplyObjectChange(ch ObjectChange) ChangeOutcome {
	s, rel, ok := m.ShareOf(ch.Key)
	if !ok {
		return ChangeNoShare
	}
	marker := strings.HasSuffix(rel, "/")
	p, err := cleanPath(strings.TrimSuffix(rel, "/"))
	if err != nil || strings.HasPrefix(rel, "/") || (p == "" && !marker) {
		return ChangeBadKey
	}
	t := TypeFile
	if marker {
		t = TypeDir
	}
	if s.localChanges(p) {
		m.log.Info("file share: bucket change of a path with local changes not yet uploaded: local changes win",
			"share", s.cfg.Name, "path", "/"+p, "key", ch.Key, "removed", ch.Removed, "etag", ch.ETag)
		return ChangeLocalWins
	}
	out := s.applyChange(p, t, ch)
	if out == ChangeApplied {
		s.changed(p)
	}
	return out
}

// localChanges says whether p has changes the store has not seen yet.
func (s *Share) localChanges(p string) bool {
	s.attrMu.Lock()
	_, unborn := s.unborn[p]
	s.attrMu.Unlock()
	if unborn {
		return true
	}
	s.inoMu.Lock()
	ino, known := s.byPath[p]
	s.inoMu.Unlock()
	key := s.key(p)
	m := s.m
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	if known {
		if _, dirty := m.files[fileKey{s.cfg.Name, ino}]; dirty {
			return true
		}
	}
	if len(m.deletes) == 0 && len(m.moves) == 0 {
		return false
	}
	_, pf := m.keyState(s.cfg.Name, key)
	_, pd := m.keyState(s.cfg.Name, key+"/")
	return pf || pd
}

// applyChange updates the share's caches for a change of p (as t) made in
// the bucket.
func (s *Share) applyChange(p string, t FileType, ch ObjectChange) ChangeOutcome {
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	c, cached := s.attrs[p]
	if !ch.Removed && t == TypeFile && cached && c.exists && ch.ETag != "" && sameETag(c.attr.etag, ch.ETag) {
		// The share's own upload (or a change it has seen): nothing to do.
		return ChangeOwn
	}
	if p == "" {
		return ChangeOwn // the root's marker: the root always exists
	}
	s.dropAttrLocked(p)
	if ch.Removed {
		if t == TypeDir {
			// A directory marker removed: the directory may live on,
			// implied by keys below it; its parent's listing is read again.
			s.dirs.drop(parentOf(p))
			return ChangeApplied
		}
		s.noteEntry(p, 0, false)
		return ChangeApplied
	}
	if t == TypeFile {
		// What was a directory here (read before) is a file now.
		s.dirs.drop(p)
	}
	s.noteEntry(p, t, true)
	// Its parents exist now, whether the share had seen them or not.
	for d := parentOf(p); d != ""; d = parentOf(d) {
		if a, ok := s.attrs[d]; ok && !a.exists {
			s.dropAttrLocked(d)
		}
		s.noteEntry(d, TypeDir, true)
	}
	return ChangeApplied
}

// sameETag compares ETags with or without their quotes.
func sameETag(a, b string) bool {
	return strings.Trim(a, `"`) == strings.Trim(b, `"`)
}

// RefreshAll forgets every share's cached attributes and listings (the
// TTL path): what to do when changes were missed.
func (m *Manager) RefreshAll() {
	m.mu.Lock()
	shares := make([]*Share, 0, len(m.shares))
	for _, s := range m.shares {
		shares = append(shares, s)
	}
	m.mu.Unlock()
	for _, s := range shares {
		_ = s.Refresh("", true) // which tells the frontends (changed)
	}
}
