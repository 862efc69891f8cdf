package fileshare

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// The inode table gives every path of a share a number that stays with it
// across renames and restarts (NFS file handles are built from it).
//
//	fshare/<share>           JSON Config
//	fsi/<share>/<ino BE64>   path ("" for the root, inode 1)
//	fsp/<share>/<path>       ino BE64
//	fsn/<share>              next inode number, BE64

// RootIno is the inode of a share's root directory.
const RootIno = 1

// ErrStale is returned for an inode that no longer names a path.
var ErrStale = errkind.Mark(errkind.NotFound, errors.New("stale file handle"))

func shareKey(name string) []byte    { return []byte("fshare/" + name) }
func inoPrefix(share string) []byte  { return []byte("fsi/" + share + "/") }
func pathPrefix(share string) []byte { return []byte("fsp/" + share + "/") }
func nextKey(share string) []byte    { return []byte("fsn/" + share) }

func inoKey(share string, ino uint64) []byte {
	return binary.BigEndian.AppendUint64(inoPrefix(share), ino)
}

func pathKey(share, p string) []byte { return append(pathPrefix(share), p...) }

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func isNotFound(err error) bool { return errors.Is(err, meta.ErrNotFound) }

// New paths get their inodes without a metadata transaction of their own:
// the creation's log record carries the inode and the path, and the share
// writes the mappings of the paths made since (in newInodes) to the table
// in one transaction at the next upload round, or before anything that
// reads or changes the table's entries in the store (a rename, a remove,
// inodes for paths found in the store). Until then the log keeps the
// creation's record (Needs), and a replay puts a mapping a crash lost back
// (restoreInode).
//
// The table's next inode number (fsn) is written only with the mappings,
// and only up to the lowest inode not yet written, so that it also says
// which mappings are durable: every inode below it had its mapping
// written (it may have been renamed or removed since), none at or above
// it did. A replayed creation whose inode the table lacks was removed
// when its inode is below fsn, else its mapping was lost in a crash.

// newInodes are a share's inodes given since its table was last written
// (under inoMu).
type newInodes struct {
	next    uint64                  // the next inode to give; 0: not read from the table yet
	pending map[string]pendingInode // path -> inode not in the table yet
	// unsynced: a change of the table answered Written is not synced yet
	// (updateTable).
	unsynced atomic.Bool
}

type pendingInode struct {
	ino uint64
	lsn uploadbuffer.LSN // the creation's record (0: not logged yet)
}

// nextIno returns the next inode number to give, reading the table's at
// the first call (inoMu held).
func (s *Share) nextIno(ctx context.Context) (uint64, error) {
	if s.newIno.next == 0 {
		next, err := s.tableNext(ctx)
		if err != nil {
			return 0, err
		}
		s.newIno.next = max(s.newIno.next, next)
	}
	return s.newIno.next, nil
}

// tableNext reads the table's next inode number.
func (s *Share) tableNext(ctx context.Context) (uint64, error) {
	next := uint64(RootIno + 1)
	err := s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get(nextKey(s.cfg.Name))
		if err == nil && len(b) == 8 {
			next = max(next, binary.BigEndian.Uint64(b))
		} else if err != nil && !isNotFound(err) {
			return err
		}
		return nil
	})
	return next, err
}

// allocate gives p the next inode number, to be written to the table
// later (inoMu held).
func (s *Share) allocate(ctx context.Context, p string) (uint64, error) {
	ino, err := s.nextIno(ctx)
	if err != nil {
		return 0, err
	}
	s.newIno.next++
	if s.newIno.pending == nil {
		s.newIno.pending = map[string]pendingInode{}
	}
	s.newIno.pending[p] = pendingInode{ino: ino}
	s.byPath[p], s.byIno[ino] = ino, p
	return ino, nil
}

// newInode returns the inode of a path being created: the one it has if
// the table names it already, else a new one that reaches the table
// later. The caller logs the creation with it and then calls logged.
func (s *Share) newInode(ctx context.Context, p string) (uint64, error) {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	if ino, ok := s.byPath[p]; ok {
		return ino, nil
	}
	found, err := s.tableInodes(ctx, []string{p})
	if err != nil {
		return 0, err
	}
	if ino := found[0]; ino != 0 {
		s.byPath[p], s.byIno[ino] = ino, p
		return ino, nil
	}
	return s.allocate(ctx, p)
}

// tableInodes reads the inode the table maps each path to (0: none).
func (s *Share) tableInodes(ctx context.Context, paths []string) ([]uint64, error) {
	out := make([]uint64, len(paths))
	err := s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		for i, p := range paths {
			if b, err := tx.Get(pathKey(s.cfg.Name, p)); err == nil && len(b) == 8 {
				out[i] = binary.BigEndian.Uint64(b)
			} else if err != nil && !isNotFound(err) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("share %s: inode table: %w", s.cfg.Name, err)
	}
	return out, nil
}

// logged notes the record of p's creation: the log keeps it until p's
// inode is in the table.
func (s *Share) logged(p string, ino uint64, lsn uploadbuffer.LSN) {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	if pi, ok := s.newIno.pending[p]; ok && pi.ino == ino && pi.lsn == 0 {
		pi.lsn = lsn
		s.newIno.pending[p] = pi
	}
}

// restoreInode puts back, during replay, the mapping of a path whose
// creation record lsn the log holds and the table lacks. It reports false
// when the inode was removed since (the table's next number is past it).
func (s *Share) restoreInode(ctx context.Context, p string, ino uint64, lsn uploadbuffer.LSN) (bool, error) {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	durable, err := s.tableNext(ctx)
	if err != nil {
		return false, err
	}
	if ino < durable {
		return false, nil
	}
	if _, err := s.nextIno(ctx); err != nil {
		return false, err
	}
	s.newIno.next = max(s.newIno.next, ino+1)
	if old, ok := s.byPath[p]; ok && old != ino {
		delete(s.byIno, old)
	}
	if s.newIno.pending == nil {
		s.newIno.pending = map[string]pendingInode{}
	}
	s.newIno.pending[p] = pendingInode{ino: ino, lsn: lsn}
	s.byPath[p], s.byIno[ino] = ino, p
	return true, nil
}

// needs returns the oldest creation record whose inode is not in the
// table yet.
func (s *Share) needs() (uploadbuffer.LSN, bool) {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	upTo, ok := ^uploadbuffer.LSN(0), false
	for _, pi := range s.newIno.pending {
		if pi.lsn != 0 {
			upTo, ok = min(upTo, pi.lsn), true
		}
	}
	return upTo, ok
}

// saveInodes writes the inodes given since the last write to the table.
func (s *Share) saveInodes(ctx context.Context) error {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	return s.saveInodesLocked(ctx)
}

// saveInodesLocked is saveInodes with inoMu held. The mappings go in
// inode order, each transaction setting the table's next number to the
// lowest inode still to write (or past every inode given, the last).
func (s *Share) saveInodesLocked(ctx context.Context) error {
	if len(s.newIno.pending) == 0 {
		return nil
	}
	type entry struct {
		path string
		ino  uint64
	}
	all := make([]entry, 0, len(s.newIno.pending))
	for p, pi := range s.newIno.pending {
		all = append(all, entry{p, pi.ino})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ino < all[j].ino })
	for len(all) > 0 {
		// As many as one transaction takes: two writes each, and the
		// next number.
		n, size := 0, len(nextKey(s.cfg.Name))+8
		for n < len(all) && n < meta.MaxTxnWrites/2-1 {
			e := all[n]
			size += len(pathKey(s.cfg.Name, e.path)) + 8 + len(inoKey(s.cfg.Name, e.ino)) + len(e.path)
			if size > meta.MaxTxnBytes && n > 0 {
				break
			}
			n++
		}
		batch := all[:n]
		all = all[n:]
		next := s.newIno.next
		if len(all) > 0 {
			next = all[0].ino
		}
		err := s.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			for _, e := range batch {
				if err := tx.Set(pathKey(s.cfg.Name, e.path), be64(e.ino)); err != nil {
					return err
				}
				if err := tx.Set(inoKey(s.cfg.Name, e.ino), []byte(e.path)); err != nil {
					return err
				}
			}
			return tx.Set(nextKey(s.cfg.Name), be64(next))
		})
		if err != nil {
			return fmt.Errorf("share %s: inode table: %w", s.cfg.Name, err)
		}
		for _, e := range batch {
			delete(s.newIno.pending, e.path)
		}
	}
	return nil
}

// inodes returns the inode of each path, giving new ones to paths that
// have none and writing them to the table (with every other new one)
// before it returns.
func (s *Share) inodes(ctx context.Context, paths []string) ([]uint64, error) {
	out := make([]uint64, len(paths))
	var missing []int
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	for i, p := range paths {
		if p == "" {
			out[i] = RootIno
			continue
		}
		if ino, ok := s.byPath[p]; ok {
			out[i] = ino
			continue
		}
		missing = append(missing, i)
	}
	if len(missing) == 0 {
		return out, nil
	}
	lookup := make([]string, len(missing))
	for j, i := range missing {
		lookup[j] = paths[i]
	}
	found, err := s.tableInodes(ctx, lookup)
	if err != nil {
		return nil, err
	}
	for j, i := range missing {
		p := paths[i]
		if out[i] = found[j]; out[i] != 0 {
			s.byPath[p], s.byIno[out[i]] = out[i], p
			continue
		}
		if ino, ok := s.byPath[p]; ok { // the same path twice in paths
			out[i] = ino
			continue
		}
		if out[i], err = s.allocate(ctx, p); err != nil {
			return nil, fmt.Errorf("share %s: inode table: %w", s.cfg.Name, err)
		}
	}
	if err := s.saveInodesLocked(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Share) inode(ctx context.Context, p string) (uint64, error) {
	inos, err := s.inodes(ctx, []string{p})
	if err != nil {
		return 0, err
	}
	return inos[0], nil
}

// PathOf returns the path inode ino names now.
func (s *Share) PathOf(ctx context.Context, ino uint64) (string, error) {
	if ino == RootIno {
		return "", nil
	}
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	if p, ok := s.byIno[ino]; ok {
		return p, nil
	}
	var p string
	err := s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get(inoKey(s.cfg.Name, ino))
		p = string(b)
		return err
	})
	if isNotFound(err) {
		return "", fmt.Errorf("share %s inode %d: %w", s.cfg.Name, ino, ErrStale)
	}
	if err != nil {
		return "", err
	}
	s.byIno[ino], s.byPath[p] = p, ino
	return p, nil
}

// forget drops p (and, for a directory, everything below it) from the
// inode table. file says p is no directory: nothing is below it.
func (s *Share) forget(ctx context.Context, p string, file bool) error {
	return s.movePaths(ctx, p, "", true, file)
}

// moveInodes gives the inodes of from (and everything below it) the paths
// under to, so handles held on them stay valid after a rename. Inodes that
// were at to (an overwritten file) are forgotten.
func (s *Share) moveInodes(ctx context.Context, from, to string) error {
	if err := s.forget(ctx, to, false); err != nil {
		return err
	}
	return s.movePaths(ctx, from, to, false, false)
}

func (s *Share) movePaths(ctx context.Context, from, to string, drop, file bool) error {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	// The entries to change are read from the table: the new ones first.
	if err := s.saveInodesLocked(ctx); err != nil {
		return err
	}
	type pair struct {
		path string
		ino  uint64
	}
	var found []pair
	if ino, ok := s.byPath[from]; ok && file {
		// The table maps from as byPath does (the new inodes are saved
		// above), and nothing is below a file: no read of the table, whose
		// iterator was most of this call's CPU in a remove.
		found = append(found, pair{from, ino})
	} else if err := s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		if b, err := tx.Get(pathKey(s.cfg.Name, from)); err == nil && len(b) == 8 {
			found = append(found, pair{from, binary.BigEndian.Uint64(b)})
		} else if err != nil && !isNotFound(err) {
			return err
		}
		prefix := pathKey(s.cfg.Name, from+"/")
		return tx.Iterate(prefix, func(k, v []byte) error {
			if len(v) == 8 {
				found = append(found, pair{string(k[len(pathPrefix(s.cfg.Name)):]), binary.BigEndian.Uint64(v)})
			}
			return nil
		})
	}); err != nil {
		return err
	}
	for len(found) > 0 {
		batch := found[:min(len(found), meta.MaxTxnWrites/4)]
		found = found[len(batch):]
		err := s.updateTable(ctx, func(tx meta.Txn) error {
			for _, f := range batch {
				if err := tx.Delete(pathKey(s.cfg.Name, f.path)); err != nil {
					return err
				}
				if drop {
					if err := tx.Delete(inoKey(s.cfg.Name, f.ino)); err != nil {
						return err
					}
					continue
				}
				np := to + strings.TrimPrefix(f.path, from)
				if err := tx.Set(pathKey(s.cfg.Name, np), be64(f.ino)); err != nil {
					return err
				}
				if err := tx.Set(inoKey(s.cfg.Name, f.ino), []byte(np)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("share %s: inode table: %w", s.cfg.Name, err)
		}
		for _, f := range batch {
			delete(s.byPath, f.path)
			delete(s.byIno, f.ino)
			if !drop {
				np := to + strings.TrimPrefix(f.path, from)
				s.byPath[np], s.byIno[f.ino] = f.ino, np
			}
		}
	}
	return nil
}

// updateTable commits a change of the inode table. For a caller that asks
// for Written (a remove through the SMB view) it does not wait for the
// metadata store's sync when the store can commit without one
// (meta.Unsynced): the change survives a kill of the process, as the
// log's written records do, and the share's next Sync makes it durable.
func (s *Share) updateTable(ctx context.Context, fn func(meta.Txn) error) error {
	u, ok := s.m.opts.Meta.(meta.Unsynced)
	if !ok || durabilityOf(ctx) != Written {
		return s.m.opts.Meta.Update(ctx, fn)
	}
	if err := u.UpdateUnsynced(ctx, fn); err != nil {
		return err
	}
	s.newIno.unsynced.Store(true)
	return nil
}

// syncTable makes the table's changes updateTable left unsynced durable.
func (s *Share) syncTable(ctx context.Context) error {
	if !s.newIno.unsynced.Swap(false) {
		return nil
	}
	if err := s.m.opts.Meta.(meta.Unsynced).Sync(ctx); err != nil {
		s.newIno.unsynced.Store(true)
		return err
	}
	return nil
}
