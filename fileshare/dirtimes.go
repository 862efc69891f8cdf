package fileshare

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
)

// A directory's mtime and ctime move whenever an entry is added to it,
// removed from it or renamed in or out of it (NFS clients decide from them
// whether their cached listing of the directory is stale; make and rsync
// read them too). Like a file's attributes, they end up in the metadata of
// the directory's marker object (gwd-mtime, gwd-ctime); a directory
// without a marker gets one. Between the change and that upload they are
// kept by the share (Share.times, by inode, so a rename of the directory
// keeps them) and, from the next upload round on, in the metadata store
// too:
//
//	fsdt/<share>/<ino BE64>   mtime, ctime: unix nanoseconds, BE64 each
//
// The root of a share has no marker unless its attributes were set (the
// marker would be an object at the share's prefix itself); without one,
// its times stay in the metadata store.
//
// so that a restart before the upload keeps them. Every way of reading a
// directory's attributes (Stat, ReadDir) lays them over what the store
// says, so GETATTR, READDIRPLUS and the SMB view give the same times.
//
// The upload rounds put them into the markers (a round takes one call per
// directory changed since the last round, whatever the number of entries
// changed), and once uploaded they are kept for AttrTTL more, so that a
// look that read the marker's old metadata just before still gives the
// new times.

// dirTime is a directory's times changed by the share, not yet (or only
// just) in its marker.
type dirTime struct {
	mtime, ctime time.Time
	gen          uint64    // bumped by every change
	saved        uint64    // the gen kept in the metadata store (0: none)
	uploaded     bool      // gen is in the marker's metadata
	local        uint64    // a gen of the root that has no marker: kept in the metadata store only
	at           time.Time // when it was uploaded
}

func dirTimesPrefix(share string) []byte { return []byte("fsdt/" + share + "/") }

func dirTimesKey(share string, ino uint64) []byte {
	return binary.BigEndian.AppendUint64(dirTimesPrefix(share), ino)
}

// entriesChanged notes that entries were added to, removed from or
// renamed in or out of directories dirs just now: their mtime and ctime
// become now.
func (s *Share) entriesChanged(ctx context.Context, dirs ...string) {
	now := s.now()
	for i, d := range dirs {
		if i > 0 && d == dirs[0] {
			continue
		}
		ino, err := s.inode(ctx, d)
		if err != nil {
			// The change is made; its directory's times only miss it.
			s.m.log.Warn("file share: directory times not updated", "share", s.cfg.Name, "dir", d, "err", err)
			continue
		}
		s.attrMu.Lock()
		t := s.times[ino]
		if t == nil {
			t = &dirTime{}
			s.times[ino] = t
		}
		t.mtime, t.ctime = now, now
		t.gen++
		t.uploaded = false
		s.attrMu.Unlock()
	}
}

// overlayTimes lays the times the share keeps for directory a over a.
func (s *Share) overlayTimes(a *Attr) {
	if a.Type != TypeDir {
		return
	}
	s.attrMu.Lock()
	if t := s.times[a.Ino]; t != nil {
		a.Mtime, a.Ctime = t.mtime, t.ctime
	}
	s.attrMu.Unlock()
}

// timesSet notes that directory ino's times were set with its other
// attributes (SetAttr): what SetAttr wrote (or logged) is the truth now.
func (s *Share) timesSet(a Attr) {
	if a.Type != TypeDir {
		return
	}
	s.attrMu.Lock()
	if t := s.times[a.Ino]; t != nil {
		t.mtime, t.ctime = a.Mtime, a.Ctime
		t.gen++
		t.uploaded, t.at = true, s.now()
	}
	s.attrMu.Unlock()
}

// keepsTimes says whether the share keeps times for directory ino.
func (s *Share) keepsTimes(ino uint64) bool {
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	return s.times[ino] != nil
}

// loadDirTimes reads the times kept in the metadata store (changes not
// uploaded before the last stop).
func (s *Share) loadDirTimes(ctx context.Context) error {
	prefix := dirTimesPrefix(s.cfg.Name)
	return s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(k, v []byte) error {
			if len(k) != len(prefix)+8 || len(v) != 16 {
				return nil // not ours to read: left for the next save to replace
			}
			ino := binary.BigEndian.Uint64(k[len(prefix):])
			s.times[ino] = &dirTime{
				mtime: time.Unix(0, int64(binary.BigEndian.Uint64(v))),
				ctime: time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))),
				gen:   1, saved: 1,
			}
			return nil
		})
	})
}

// uploadDirTimes puts the changed times of the directories of share
// (every share if "") into their markers' metadata, then saves the ones
// still waiting in the metadata store. It returns the first error.
func (m *Manager) uploadDirTimes(ctx context.Context, share string) error {
	var firstErr error
	for _, c := range m.List() {
		if share != "" && c.Name != share {
			continue
		}
		s, err := m.Get(c.Name)
		if err != nil {
			continue
		}
		if m.storeAway() {
			// The store failed within the TTL: the times wait (kept below)
			// rather than make a call bound to fail every round.
		} else if err := s.uploadTimes(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
		if err := s.saveTimes(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// uploadTimes puts each changed directory's times into its marker. It
// stops at the first store failure (the store is away: the rest wait for
// the next round).
func (s *Share) uploadTimes(ctx context.Context) error {
	type job struct {
		ino uint64
		gen uint64
	}
	var jobs []job
	s.attrMu.Lock()
	for ino, t := range s.times {
		if !t.uploaded && t.local != t.gen {
			jobs = append(jobs, job{ino, t.gen})
		}
	}
	s.attrMu.Unlock()
	for _, j := range jobs {
		err := s.uploadTime(ctx, j.ino, j.gen)
		if err != nil && s.m.storeFailed(ctx, err) {
			return fmt.Errorf("share %s: directory times: %w", s.cfg.Name, err)
		}
		if err != nil && !isNotExist(err) && !errors.Is(err, ErrStale) {
			return fmt.Errorf("share %s: directory times: %w", s.cfg.Name, err)
		}
	}
	return nil
}

// uploadTime puts directory ino's times (of change gen) into its marker,
// holding its path against a rename or remove meanwhile.
func (s *Share) uploadTime(ctx context.Context, ino, gen uint64) error {
	drop := func() {
		s.attrMu.Lock()
		if t := s.times[ino]; t != nil && t.gen == gen {
			t.uploaded, t.at = true, time.Time{} // gone: nothing to keep
		}
		s.attrMu.Unlock()
	}
	var p string
	for {
		q, err := s.PathOf(ctx, ino)
		if errors.Is(err, ErrStale) {
			drop() // removed
			return nil
		}
		if err != nil {
			return err
		}
		unlock := s.m.ns(s.cfg.Name).upload(q)
		if r, err := s.PathOf(ctx, ino); err == nil && r == q {
			defer unlock()
			p = q
			break
		}
		unlock()
	}
	s.dirMetaMu.Lock()
	defer s.dirMetaMu.Unlock()
	s.attrMu.Lock()
	_, unborn := s.unborn[p]
	s.attrMu.Unlock()
	key := s.objectKey(p, TypeDir)
	if p == "" {
		key = s.cfg.Prefix
	}
	if unborn || s.m.dirtyState(s.cfg.Name, ino) != nil || s.m.pendingKey(s.cfg.Name, key) {
		return nil // its marker's own upload, or a rename or remove of it, first
	}
	a, err := s.statNow(ctx, p)
	if isNotExist(err) {
		drop()
		return nil
	}
	if err != nil {
		return err
	}
	if a.Type != TypeDir || a.Ino != ino {
		drop()
		return nil
	}
	release, err := s.m.sealXattrs(ctx, &a)
	if err != nil {
		return err
	}
	defer release()
	mp := s.m.opts.Store.(objstore.MetadataPutter)
	err = mp.SetMeta(ctx, key, a.metadata())
	if objstore.IsNotFound(err) && p == "" {
		// The root has no marker (an object at the share's prefix
		// itself) unless its attributes were set: its times stay in the
		// metadata store.
		s.attrMu.Lock()
		if t := s.times[ino]; t != nil && t.gen == gen {
			t.local = gen
		}
		s.attrMu.Unlock()
		return nil
	}
	if objstore.IsNotFound(err) {
		// An implicit directory gets a marker to carry its times.
		err = mp.PutMeta(ctx, key, bytes.NewReader(nil), 0, a.metadata())
	}
	if err != nil {
		return err
	}
	s.m.storeBack()
	s.attrMu.Lock()
	s.setAttrLocked(p, a, true)
	if t := s.times[ino]; t != nil && t.gen == gen {
		t.uploaded, t.at = true, s.now()
	}
	s.attrMu.Unlock()
	return nil
}

// saveTimes keeps the times not uploaded yet in the metadata store, drops
// the ones uploaded from it, and forgets those uploaded more than AttrTTL
// ago.
func (s *Share) saveTimes(ctx context.Context) error {
	type op struct {
		ino          uint64
		gen          uint64
		set          bool
		mtime, ctime time.Time
	}
	var ops []op
	now := s.now()
	s.attrMu.Lock()
	for ino, t := range s.times {
		switch {
		case !t.uploaded && t.saved != t.gen:
			ops = append(ops, op{ino: ino, gen: t.gen, set: true, mtime: t.mtime, ctime: t.ctime})
		case t.uploaded && t.saved != 0:
			ops = append(ops, op{ino: ino, gen: t.gen})
		case t.uploaded && now.Sub(t.at) >= s.m.opts.AttrTTL:
			delete(s.times, ino)
		}
	}
	s.attrMu.Unlock()
	for len(ops) > 0 {
		batch := ops[:min(len(ops), meta.MaxTxnWrites)]
		ops = ops[len(batch):]
		err := s.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			for _, o := range batch {
				k := dirTimesKey(s.cfg.Name, o.ino)
				if !o.set {
					if err := tx.Delete(k); err != nil {
						return err
					}
					continue
				}
				v := binary.BigEndian.AppendUint64(nil, uint64(o.mtime.UnixNano()))
				v = binary.BigEndian.AppendUint64(v, uint64(o.ctime.UnixNano()))
				if err := tx.Set(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("share %s: directory times: %w", s.cfg.Name, err)
		}
		s.attrMu.Lock()
		for _, o := range batch {
			if t := s.times[o.ino]; t != nil && t.gen == o.gen {
				if o.set {
					t.saved = o.gen
				} else {
					t.saved = 0
				}
			}
		}
		s.attrMu.Unlock()
	}
	return nil
}

// dropTimes forgets the times of a removed directory.
func (s *Share) dropTimes(ino uint64) {
	s.attrMu.Lock()
	if t := s.times[ino]; t != nil {
		t.gen++
		t.uploaded, t.at = true, time.Time{}
	}
	s.attrMu.Unlock()
}
