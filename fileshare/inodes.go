package fileshare

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
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

// inodes returns the inode of each path, assigning new ones in one
// transaction for paths that have none.
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
	for len(missing) > 0 {
		batch := missing[:min(len(missing), meta.MaxTxnWrites/3)]
		missing = missing[len(batch):]
		err := s.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			next := uint64(RootIno + 1)
			if b, err := tx.Get(nextKey(s.cfg.Name)); err == nil && len(b) == 8 {
				next = binary.BigEndian.Uint64(b)
			} else if err != nil && !isNotFound(err) {
				return err
			}
			for _, i := range batch {
				p := paths[i]
				if b, err := tx.Get(pathKey(s.cfg.Name, p)); err == nil && len(b) == 8 {
					out[i] = binary.BigEndian.Uint64(b)
					continue
				} else if err != nil && !isNotFound(err) {
					return err
				}
				out[i] = next
				next++
				if err := tx.Set(pathKey(s.cfg.Name, p), be64(out[i])); err != nil {
					return err
				}
				if err := tx.Set(inoKey(s.cfg.Name, out[i]), []byte(p)); err != nil {
					return err
				}
			}
			return tx.Set(nextKey(s.cfg.Name), be64(next))
		})
		if err != nil {
			return nil, fmt.Errorf("share %s: inode table: %w", s.cfg.Name, err)
		}
		for _, i := range batch {
			s.byPath[paths[i]] = out[i]
			s.byIno[out[i]] = paths[i]
		}
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
// inode table.
func (s *Share) forget(ctx context.Context, p string) error {
	return s.movePaths(ctx, p, "", true)
}

// moveInodes gives the inodes of from (and everything below it) the paths
// under to, so handles held on them stay valid after a rename. Inodes that
// were at to (an overwritten file) are forgotten.
func (s *Share) moveInodes(ctx context.Context, from, to string) error {
	if err := s.forget(ctx, to); err != nil {
		return err
	}
	return s.movePaths(ctx, from, to, false)
}

func (s *Share) movePaths(ctx context.Context, from, to string, drop bool) error {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	type pair struct {
		path string
		ino  uint64
	}
	var found []pair
	err := s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
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
	})
	if err != nil {
		return err
	}
	for len(found) > 0 {
		batch := found[:min(len(found), meta.MaxTxnWrites/4)]
		found = found[len(batch):]
		err := s.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
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
