package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// checkpointLock orders stored volumes' checkpoints against the ends of
// their chunk uploads.
type checkpointLock = sync.RWMutex

// counters are the manager-wide figures behind the metrics.
type counters struct {
	writes, bytesWritten        atomic.Uint64
	bytesUploaded, chunksUp     atomic.Uint64
	bytesDownloaded, chunksDown atomic.Uint64
	uploadErrors                atomic.Uint64
	chunksHydrated              atomic.Uint64
	patchesUp, compactions      atomic.Uint64
	patchMerges                 atomic.Uint64
	localWriteErrors            atomic.Uint64
}

// logAndApply makes rec durable in the journal, then runs apply with its
// LSN; the journal keeps the log from being trimmed past the record until
// apply has recorded the write as pending.
func (m *Manager) logAndApply(ctx context.Context, rec []byte, apply func(uploadbuffer.LSN) error) error {
	_, err := m.j.Append(ctx, rec, apply)
	return err
}

func objstoreGetAll(ctx context.Context, m *Manager, id snapshots.ChunkID) ([]byte, error) {
	b, err := objstore.GetAll(ctx, m.opts.Store, id.ObjectKey())
	if err == nil {
		m.counters.bytesDownloaded.Add(uint64(len(b)))
		m.counters.chunksDown.Add(1)
	}
	return b, err
}

func isMetaNotFound(err error) bool { return errors.Is(err, meta.ErrNotFound) }

// journalClient is the volumes' side of the journal: how a record is
// applied, which chunks wait for upload and how one goes up.
type journalClient struct{ m *Manager }

// Apply applies a replayed record to its volume.
func (c journalClient) Apply(ctx context.Context, lsn uploadbuffer.LSN, b []byte) error {
	rec, err := decodeRecord(b)
	if err != nil {
		return err
	}
	v := c.m.byID(rec.volume)
	if v == nil {
		return nil // volume deleted after the write
	}
	if rec.typ == recWrite {
		return v.apply(ctx, lsn, rec.data, rec.offset, recordDataOffset(rec.volume))
	}
	return v.applyUnmap(ctx, lsn, rec.offset, rec.length)
}

// Needs is the oldest record a pending chunk still needs.
func (c journalClient) Needs() (uploadbuffer.LSN, bool) {
	var lsn uploadbuffer.LSN
	ok := false
	for _, v := range c.m.List() {
		v.mu.Lock()
		for _, p := range v.pending {
			if !ok || p.minLSN < lsn {
				lsn, ok = p.minLSN, true
			}
		}
		v.mu.Unlock()
	}
	return lsn, ok
}

// Pending checkpoints stored volumes and lists the chunks waiting for
// upload: a stored volume's dirty set, a cached volume's pending chunks.
func (c journalClient) Pending(ctx context.Context) ([]uploadbuffer.Unit, error) {
	var units []uploadbuffer.Unit
	var firstErr error
	for _, v := range c.m.List() {
		if v.info.Kind == Stored {
			if err := v.checkpoint(ctx); err != nil && firstErr == nil {
				firstErr = err
			}
			idx, err := v.dirtySet(ctx)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for _, i := range idx {
				units = append(units, chunkUnit(v, i, time.Time{}))
			}
			continue
		}
		v.mu.Lock()
		for i, p := range v.pending {
			units = append(units, chunkUnit(v, i, p.lastWrite))
		}
		v.mu.Unlock()
	}
	sort.Slice(units, func(a, b int) bool { return units[a].Value.(uploadJob).index < units[b].Value.(uploadJob).index })
	return units, firstErr
}

func chunkUnit(v *Volume, index uint64, changed time.Time) uploadbuffer.Unit {
	return uploadbuffer.Unit{Key: fmt.Sprintf("%s/%d", v.info.ID, index), Changed: changed, Value: uploadJob{v, index}}
}

// Upload uploads one chunk.
func (c journalClient) Upload(ctx context.Context, u uploadbuffer.Unit) (int64, error) {
	j := u.Value.(uploadJob)
	if c.m.byID(j.v.info.ID) != j.v {
		return 0, nil // deleted since it was listed
	}
	n, err := j.v.uploadChunk(ctx, j.index, false)
	if err != nil {
		j.v.uploadErrors.Add(1)
		c.m.counters.uploadErrors.Add(1)
	}
	return n, err
}

// afterRound runs after each background round: health, recovery points,
// snapshot schedules and garbage collection.
func (m *Manager) afterRound(ctx context.Context, r uploadbuffer.RoundResult) {
	m.reportUploads(r.Err)
	m.recoveryPointsDue(ctx)
	m.housekeeping(ctx)
}

// recoveryPointsDue writes the recovery points of cached volumes whose
// interval has passed.
func (m *Manager) recoveryPointsDue(ctx context.Context) {
	now := m.opts.Clock.Now()
	for _, v := range m.List() {
		if v.info.Kind != Cached || now.Sub(time.Unix(0, v.lastRecoveryPoint.Load())) < m.opts.RecoveryPointInterval {
			continue
		}
		if m.j.Replaying() {
			return
		}
		if err := m.RecoveryPoint(ctx, v.info.ID); err != nil && ctx.Err() == nil {
			m.log.Warn("recovery point", "volume", v.info.Name, "err", err)
		}
	}
}

// Drain uploads every pending chunk now, ignoring the settle time and
// before any background upload, and trims the log. It returns the first
// upload error. Snapshots and tests use it.
func (m *Manager) Drain(ctx context.Context) error {
	return m.j.Flush(ctx, nil)
}

// round runs one upload round now: every pending chunk with all set (as
// Drain), else those that are due.
func (m *Manager) round(ctx context.Context, all bool) error {
	if all {
		return m.j.Flush(ctx, nil)
	}
	return m.j.Round(ctx)
}

type uploadJob struct {
	v     *Volume
	index uint64
}

// chunkData reads a chunk's current content for upload, with its
// generation. ok is false when there is nothing to upload. A cached chunk
// may be partial again although mergeBase just ran: mergeBase looks
// without the chunk lock, and a chunk it found whole and clean (uploaded
// by another upload it waited for, a snapshot's or a round's) or not
// cached can be evicted and written in places before chunkData locks it.
// err is then cache.ErrPartial, and the caller merges again.
func (v *Volume) chunkData(ctx context.Context, index uint64) (data []byte, gen uint64, cacheGen uint64, ok bool, err error) {
	unlock := v.locks.lock(index)
	defer unlock()
	v.mu.Lock()
	gen = v.gens[index]
	_, pending := v.pending[index]
	size := v.info.Size
	v.mu.Unlock()
	if v.info.Kind == Stored {
		if gen == 0 && !pending {
			// Not written since its last upload, unless it is in the
			// dirty set from before a restart (or from the disk it was
			// made on): another upload may have taken it already.
			dirty, err := v.isDirty(ctx, index)
			if err != nil || !dirty {
				return nil, 0, 0, false, err
			}
		}
		cs := int64(v.info.ChunkSize)
		data = make([]byte, cs)
		start := int64(index) * cs
		n := min(cs, size-start)
		if n <= 0 {
			return nil, 0, 0, false, nil // beyond the end: nothing to upload
		}
		if _, err := v.disk.ReadAt(data[:n], start); err != nil {
			return nil, 0, 0, false, fmt.Errorf("volume %s: read disk chunk %d: %w", v.info.Name, index, err)
		}
		return data, gen, 0, true, nil
	}
	if gen == 0 {
		return nil, 0, 0, false, nil // unmapped since it was queued
	}
	data, cacheGen, err = v.m.opts.Cache.Snapshot(cache.Key{Volume: v.info.ID, Index: index})
	if errors.Is(err, cache.ErrPartial) {
		return nil, 0, 0, false, err
	}
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("volume %s: dirty chunk %d not in cache: %w", v.info.Name, index, err)
	}
	return data, gen, cacheGen, true, nil
}

// uploadChunk uploads one chunk and, if no write changed it meanwhile,
// records it in the chunk map and releases it. It returns the bytes it put.
// A cached chunk with small changes goes up as a patch (patch.go), unless
// whole is set.
func (v *Volume) uploadChunk(ctx context.Context, index uint64, whole bool) (int64, error) {
	m := v.m
	for {
		v.mu.Lock()
		busy := v.uploading[index]
		if busy == nil {
			done := make(chan struct{})
			v.uploading[index] = done
			v.mu.Unlock()
			defer func() {
				v.mu.Lock()
				delete(v.uploading, index)
				v.mu.Unlock()
				close(done)
			}()
			break
		}
		v.mu.Unlock()
		select { // another upload of it is running: wait, then look again
		case <-busy:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if !whole {
		if put, done, err := v.uploadPatch(ctx, index); done || err != nil {
			return put, err
		}
	}
	var data []byte
	var gen, cacheGen uint64
	var err error
	for {
		if err := v.mergeBase(ctx, index); err != nil {
			return 0, err
		}
		if m.afterMergeBase != nil {
			m.afterMergeBase(index)
		}
		var ok bool
		data, gen, cacheGen, ok, err = v.chunkData(ctx, index)
		if errors.Is(err, cache.ErrPartial) {
			// The merge found the chunk whole or not cached, and a write
			// meanwhile made it partial again: merge that one.
			continue
		}
		if err != nil || !ok {
			return 0, err
		}
		break
	}
	var put int64
	var id snapshots.ChunkID
	hole := snapshots.IsZero(data)
	if !hole {
		var blob []byte
		id, blob, err = m.opts.Codec.Encode(data)
		if err != nil {
			return 0, err
		}
		// Pinned from before the upload until the map records it, so a
		// concurrent garbage collection keeps it.
		pin := m.pin()
		pin.add(id)
		defer m.unpin(pin)
		if err := m.opts.Store.Put(ctx, id.ObjectKey(), bytes.NewReader(blob), int64(len(blob))); err != nil {
			return 0, fmt.Errorf("volume %s: upload chunk %d: %w", v.info.Name, index, err)
		}
		m.counters.bytesUploaded.Add(uint64(len(blob)))
		m.counters.chunksUp.Add(1)
		put = int64(len(blob))
	}

	if v.info.Kind == Stored {
		// A checkpoint compares generations across its disk sync: the
		// generation is not dropped in between (checkpoint).
		m.checkpoints.RLock()
		defer m.checkpoints.RUnlock()
	}
	unlock := v.locks.lock(index)
	defer unlock()
	v.mu.Lock()
	current := v.gens[index]
	v.mu.Unlock()
	if current != gen {
		return put, nil // written again since: the newer data goes up next round
	}
	err = m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		if hole {
			if err := tx.Delete(mapKey(v.info.ID, index)); err != nil {
				return err
			}
		} else if err := tx.Set(mapKey(v.info.ID, index), id[:]); err != nil {
			return err
		}
		if v.info.Kind == Stored {
			return tx.Delete(dirtyKey(v.info.ID, index))
		}
		return nil
	})
	if err != nil {
		return put, fmt.Errorf("volume %s: record chunk %d: %w", v.info.Name, index, err)
	}
	v.uploaded(index, cacheGen, hole)
	return put, nil
}

// checkpoint makes a stored volume's pending writes safe on its disk: fsync
// the disk, record the chunks in the dirty set in meta, and release their
// log records.
func (v *Volume) checkpoint(ctx context.Context) error {
	// Uploads of other rounds run meanwhile; one that dropped a chunk's
	// generation between the copy below and the comparison at the end
	// would keep the chunk pending past this checkpoint.
	v.m.checkpoints.Lock()
	defer v.m.checkpoints.Unlock()
	v.mu.Lock()
	if len(v.pending) == 0 {
		v.mu.Unlock()
		return nil
	}
	snap := make(map[uint64]uint64, len(v.pending))
	for i := range v.pending {
		snap[i] = v.gens[i]
	}
	v.mu.Unlock()
	// Chunks hydrated before these writes must be recorded as on the disk
	// before the log forgets the writes (see hydrate.go).
	if err := v.commitHydrated(ctx); err != nil {
		return err
	}
	if err := v.disk.Sync(); err != nil {
		v.m.localWriteFailed(v, "sync", err)
		return fmt.Errorf("volume %s: sync disk: %w", v.info.Name, err)
	}
	indexes := make([]uint64, 0, len(snap))
	for i := range snap {
		indexes = append(indexes, i)
	}
	for len(indexes) > 0 {
		batch := indexes[:min(len(indexes), meta.MaxTxnWrites)]
		indexes = indexes[len(batch):]
		err := v.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			for _, i := range batch {
				if err := tx.Set(dirtyKey(v.info.ID, i), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("volume %s: record dirty chunks: %w", v.info.Name, err)
		}
	}
	v.mu.Lock()
	for i, g := range snap {
		// A write after the snapshot may have missed the fsync: keep it.
		if v.gens[i] == g {
			delete(v.pending, i)
		}
	}
	v.mu.Unlock()
	return nil
}

func (v *Volume) isDirty(ctx context.Context, index uint64) (bool, error) {
	err := v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		_, err := tx.Get(dirtyKey(v.info.ID, index))
		return err
	})
	if isMetaNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// dirtySet lists a stored volume's chunks waiting for upload.
func (v *Volume) dirtySet(ctx context.Context) ([]uint64, error) {
	var out []uint64
	prefix := dirtyPrefix(v.info.ID)
	err := v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(k, _ []byte) error {
			i, err := indexFromKey(prefix, k)
			if err != nil {
				return err
			}
			out = append(out, i)
			return nil
		})
	})
	return out, err
}

// ManagerStats are the figures behind the gateway's metrics.
type ManagerStats struct {
	Writes, BytesWritten              uint64
	BytesUploaded, ChunksUploaded     uint64
	PatchesUploaded, Compactions      uint64 // patch objects put; patched chunks uploaded whole by snapshots and recovery points
	PatchMerges                       uint64 // patch lists merged into one patch
	BytesDownloaded, ChunksDownloaded uint64
	UploadErrors                      uint64
	LocalWriteErrors                  uint64 // failed writes and syncs of stored volumes' disks and the cache
	LogUsed, LogCapacity              int64
	Cache                             cache.Stats
}

// Stats returns the manager-wide figures.
func (m *Manager) Stats() ManagerStats {
	return ManagerStats{
		Writes: m.counters.writes.Load(), BytesWritten: m.counters.bytesWritten.Load(),
		BytesUploaded: m.counters.bytesUploaded.Load(), ChunksUploaded: m.counters.chunksUp.Load(),
		PatchesUploaded: m.counters.patchesUp.Load(), Compactions: m.counters.compactions.Load(), PatchMerges: m.counters.patchMerges.Load(),
		BytesDownloaded: m.counters.bytesDownloaded.Load(), ChunksDownloaded: m.counters.chunksDown.Load(),
		UploadErrors: m.counters.uploadErrors.Load(), LocalWriteErrors: m.counters.localWriteErrors.Load(),
		LogUsed: m.opts.Log.Used(), LogCapacity: m.opts.Log.Capacity(),
		Cache: m.opts.Cache.Stats(),
	}
}
