package nfs4

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayd/gatewayd/meta"
)

// State across restarts (RFC 8881 sections 8.4.2 and 8.4.3). Opens and
// locks live in memory; after a restart the clients reclaim them (OPEN
// with CLAIM_PREVIOUS, LOCK with reclaim) during a grace period in which
// no new ones are granted. What the server keeps in the metadata store is
// what it needs to tell a reclaim it may accept from one it must refuse:
//
//   - nfs4/epoch: the server's instance, 4 bytes big-endian, one more at
//     each start (the first start draws it at random). It is the top half
//     of every client id and part of every session id and stateid, so
//     those of an earlier instance are stale (NFS4ERR_STALE_CLIENTID,
//     NFS4ERR_BADSESSION).
//   - nfs4/client/<co_ownerid>: one record per client that may hold
//     state: written before its first OPEN or its RECLAIM_COMPLETE is
//     answered, deleted when its client id goes (DESTROY_CLIENTID, lease
//     expiry, a new instance of the client confirmed), and at the end of a
//     grace period for the clients that did not come back in it. Version
//     1 (1 byte), the epoch it was written in (4), the client id (8).
//
// A start that finds records runs a grace period: OPEN and LOCK that are
// not reclaims, and LOCKT, get NFS4ERR_GRACE; the clients of the records
// reclaim; a reclaim from a client without a record is
// NFS4ERR_RECLAIM_BAD, one after the client's RECLAIM_COMPLETE or outside
// the grace period NFS4ERR_NO_GRACE. The period ends when each client of
// the records has sent RECLAIM_COMPLETE, or when its time is up (a
// reclaim near its end extends it a little, up to twice its length).

// Keys of the metadata store.
const (
	epochKey     = "nfs4/epoch"
	clientPrefix = "nfs4/client/"
)

func clientKey(owner string) []byte { return []byte(clientPrefix + owner) }

const recordVersion = 1

func encodeRecord(epoch uint32, id uint64) []byte {
	b := []byte{recordVersion}
	b = binary.BigEndian.AppendUint32(b, epoch)
	return binary.BigEndian.AppendUint64(b, id)
}

func decodeRecord(b []byte) (epoch uint32, id uint64, valid bool) {
	if len(b) != 13 || b[0] != recordVersion {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint64(b[5:]), true
}

// Status codes of this file.
const (
	errGrace           = 10013
	errNoGrace         = 10033
	errReclaimBad      = 10034
	errReclaimConflict = 10035
)

// graceExtension: a reclaim leaves at least this much of the grace period
// (a client reclaiming many files near its end finishes).
const graceExtension = 10 * time.Second

// grace is the grace period after a start (under Server.mu).
type grace struct {
	end, limit time.Time // when it ends; the latest it may be extended to
	// known are the owners (co_ownerid) of the records found at the start:
	// true once a client of the owner sent RECLAIM_COMPLETE.
	known   map[string]bool
	pending int // known owners without RECLAIM_COMPLETE yet
}

// forget is a record to delete: the owner's, if it still names client id.
type forget struct {
	owner string
	id    uint64
}

// Recover makes the server keep its client records in store, so that
// clients reclaim their opens and locks after a restart. It reads the
// records an earlier instance left, starts the next epoch, and, if there
// were records, a grace period of graceTime (at least the lease time;
// 0 is the lease time). It is called once, before the first call.
func (s *Server) Recover(ctx context.Context, store meta.Store, graceTime time.Duration) error {
	graceTime = max(graceTime, s.opts.Lease)
	var epoch uint32
	known := map[string]bool{}
	var bad []string
	err := store.Update(ctx, func(tx meta.Txn) error {
		clear(known)
		bad = bad[:0]
		b, err := tx.Get([]byte(epochKey))
		switch {
		case err != nil && !errors.Is(err, meta.ErrNotFound):
			return err
		case len(b) == 4:
			epoch = binary.BigEndian.Uint32(b) + 1
		default: // the first start (or a value not of 4 bytes)
			var r [4]byte
			rand.Read(r[:])
			epoch = binary.BigEndian.Uint32(r[:])
		}
		if err := tx.Set([]byte(epochKey), binary.BigEndian.AppendUint32(nil, epoch)); err != nil {
			return err
		}
		return tx.Iterate([]byte(clientPrefix), func(k, v []byte) error {
			owner := string(k[len(clientPrefix):])
			if _, _, valid := decodeRecord(v); !valid {
				bad = append(bad, owner) // still a client that may reclaim
			}
			known[owner] = false
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("nfs4: read the client records: %w", err)
	}
	for _, o := range bad {
		s.log.Warn("nfs4: client record of an unknown format: its client may reclaim", "owner", fmt.Sprintf("%q", o))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store, s.boot = store, epoch
	if len(known) > 0 {
		now := s.opts.Now()
		s.grace = &grace{end: now.Add(graceTime), limit: now.Add(2 * graceTime), known: known, pending: len(known)}
		s.log.Info("nfs4: grace period: clients of the last instance may reclaim their opens and locks",
			"clients", len(known), "for", graceTime)
	}
	return nil
}

// inGrace says whether the grace period runs (under mu); it ends it once
// its time is up.
func (s *Server) inGrace(now time.Time) bool {
	g := s.grace
	switch {
	case g == nil:
		return false
	case now.Before(g.end):
		return true
	}
	s.endGrace(fmt.Sprintf("its time is up; %d of %d clients did not send RECLAIM_COMPLETE", g.pending, len(g.known)))
	return false
}

// endGrace ends the grace period (under mu): the records of the clients
// that did not come back in it go (purge, after the call).
func (s *Server) endGrace(why string) {
	s.grace = nil
	s.purge = true
	s.pendingWrites.Store(true)
	s.log.Info("nfs4: grace period ended", "why", why)
}

// mayReclaim says whether the current client may reclaim state now (under
// mu): ok, or the error of its reclaim.
func (x *exec) mayReclaim(now time.Time) uint32 {
	s, c := x.s, x.sess.client
	if !s.inGrace(now) || c.reclaimed {
		return errNoGrace
	}
	g := s.grace
	done, known := g.known[c.owner]
	switch {
	case !known:
		return errReclaimBad // it held no state before the restart
	case done:
		return errNoGrace // another client id of the owner finished reclaiming
	}
	if end := now.Add(graceExtension); end.After(g.end) {
		g.end = end
		if g.end.After(g.limit) {
			g.end = g.limit
		}
	}
	return ok
}

// mayLock says whether the current client may take a new open or lock
// (under mu): not in the grace period, and not before its RECLAIM_COMPLETE
// (RFC 8881 section 18.51.3).
func (x *exec) mayLock(now time.Time) uint32 {
	if x.s.inGrace(now) || !x.sess.client.reclaimed {
		return errGrace
	}
	return ok
}

// keep writes the client's record, unless it was written in this epoch,
// before the client's first OPEN or its RECLAIM_COMPLETE is answered.
func (x *exec) keep(c *client) uint32 {
	s := x.s
	if s.store == nil {
		return ok
	}
	s.mu.Lock()
	kept := c.kept
	s.mu.Unlock()
	if kept {
		return ok
	}
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	s.mu.Lock()
	kept, epoch := c.kept, s.boot
	s.mu.Unlock()
	if kept {
		return ok
	}
	err := s.store.Update(x.ctx, func(tx meta.Txn) error {
		return tx.Set(clientKey(c.owner), encodeRecord(epoch, c.id))
	})
	if err != nil {
		s.log.Error("nfs4: write a client record", "clientid", c.id, "err", err)
		return errServerFault
	}
	s.mu.Lock()
	c.kept = true
	if c.gone { // dropped while it was written
		s.forget = append(s.forget, forget{c.owner, c.id})
		s.pendingWrites.Store(true)
	}
	s.mu.Unlock()
	return ok
}

// writeRecords deletes the records of the clients dropped and, once a
// grace period ended, those of the clients that did not come back in it.
// It runs after a call, so that the records are gone when the call that
// dropped the client (DESTROY_CLIENTID) is answered.
func (s *Server) writeRecords(ctx context.Context) {
	if s.store == nil || !s.pendingWrites.Load() || !s.pendingWrites.Swap(false) {
		return
	}
	s.mu.Lock()
	list, purge, epoch := s.forget, s.purge, s.boot
	s.forget, s.purge = nil, false
	s.mu.Unlock()
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	// A record is deleted only if it is still the one meant: a newer
	// client of the owner may have written its own since.
	err := s.store.Update(ctx, func(tx meta.Txn) error {
		for _, f := range list {
			v, err := tx.Get(clientKey(f.owner))
			switch {
			case errors.Is(err, meta.ErrNotFound):
				continue
			case err != nil:
				return err
			}
			if _, id, valid := decodeRecord(v); valid && id != f.id {
				continue
			}
			if err := tx.Delete(clientKey(f.owner)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && purge {
		err = s.purgeRecords(ctx, epoch)
	}
	if err != nil {
		// Kept records only make clients that hold no state wait for a
		// grace period's end after the next start.
		s.log.Warn("nfs4: delete client records", "err", err)
	}
}

// purgeRecords deletes the records written before epoch: of clients that
// did not come back in the grace period (under recordMu). A transaction
// deletes a batch.
func (s *Server) purgeRecords(ctx context.Context, epoch uint32) error {
	const batch = 1024
	full := errors.New("batch full")
	for {
		var old [][]byte
		err := s.store.Update(ctx, func(tx meta.Txn) error {
			old = old[:0]
			err := tx.Iterate([]byte(clientPrefix), func(k, v []byte) error {
				if e, _, valid := decodeRecord(v); valid && e == epoch {
					return nil
				}
				old = append(old, k)
				if len(old) == batch {
					return full
				}
				return nil
			})
			if err != nil && !errors.Is(err, full) {
				return err
			}
			for _, k := range old {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || len(old) < batch {
			return err
		}
	}
}

// mayOpen checks an OPEN against the grace period: mayReclaim for a
// reclaim, mayLock for another.
func (x *exec) mayOpen(reclaim bool) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if reclaim {
		return x.mayReclaim(s.opts.Now())
	}
	return x.mayLock(s.opts.Now())
}
