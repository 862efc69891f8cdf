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

// counters are the manager-wide figures behind the metrics.
type counters struct {
	writes, bytesWritten        atomic.Uint64
	bytesUploaded, chunksUp     atomic.Uint64
	bytesDownloaded, chunksDown atomic.Uint64
	uploadErrors                atomic.Uint64
	chunksHydrated              atomic.Uint64
	localWriteErrors            atomic.Uint64
}

// logAndApply appends rec to the log and then runs apply with its LSN.
// Until apply has recorded the write as pending, trim must not pass it: the
// record is registered as in flight from before it gets its LSN.
func (m *Manager) logAndApply(ctx context.Context, rec []byte, apply func(uploadbuffer.LSN) error) error {
	if m.opts.Log.Used() > m.opts.Log.Capacity()/2 {
		m.kickUploader() // under pressure: do not wait for the next tick
	}
	floor := m.opts.Log.NextLSN() // the record's LSN will be at least this
	m.inflightMu.Lock()
	m.inflight[floor]++
	m.inflightMu.Unlock()
	defer func() {
		m.inflightMu.Lock()
		if m.inflight[floor]--; m.inflight[floor] == 0 {
			delete(m.inflight, floor)
		}
		m.inflightMu.Unlock()
	}()
	lsn, err := m.opts.Log.Append(ctx, rec)
	if err != nil {
		return fmt.Errorf("upload buffer: %w", err)
	}
	return apply(lsn)
}

func (m *Manager) kickUploader() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
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

func (m *Manager) uploadLoop() {
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-m.stop; cancel() }()
	for {
		select {
		case <-m.stop:
			return
		case <-m.kick:
		case <-m.opts.Clock.After(m.opts.UploadInterval):
		}
		if err := m.round(ctx, false); err != nil && ctx.Err() == nil {
			m.log.Warn("upload round", "err", err)
		}
		m.recoveryPointsDue(ctx)
		m.housekeeping(ctx)
	}
}

// recoveryPointsDue writes the recovery points of cached volumes whose
// interval has passed.
func (m *Manager) recoveryPointsDue(ctx context.Context) {
	now := m.opts.Clock.Now()
	for _, v := range m.List() {
		if v.info.Kind != Cached || now.Sub(time.Unix(0, v.lastRecoveryPoint.Load())) < m.opts.RecoveryPointInterval {
			continue
		}
		m.mu.Lock()
		replaying := m.replayFloor != 0
		m.mu.Unlock()
		if replaying {
			return
		}
		if err := m.RecoveryPoint(ctx, v.info.ID); err != nil && ctx.Err() == nil {
			m.log.Warn("recovery point", "volume", v.info.Name, "err", err)
		}
	}
}

// Drain uploads every pending chunk now, ignoring the settle time, and
// trims the log. It returns the first upload error. Snapshots and tests use it.
func (m *Manager) Drain(ctx context.Context) error {
	return m.round(ctx, true)
}

// underPressure says whether the log or the cache is more than half full
// of data waiting for upload, when waiting for chunks to settle costs more
// than it saves.
func (m *Manager) underPressure() bool {
	if m.opts.Log.Used() > m.opts.Log.Capacity()/2 {
		return true
	}
	st := m.opts.Cache.Stats()
	return st.Capacity > 0 && st.Dirty > st.Capacity/2
}

type uploadJob struct {
	v     *Volume
	index uint64
}

// round checkpoints stored volumes, uploads due chunks in parallel and
// trims the log.
func (m *Manager) round(ctx context.Context, all bool) error {
	m.roundMu.Lock()
	defer m.roundMu.Unlock()
	all = all || m.underPressure()
	now := m.opts.Clock.Now()
	var jobs []uploadJob
	var firstErr error
	for _, v := range m.List() {
		if v.info.Kind == Stored {
			if err := v.checkpoint(ctx); err != nil && firstErr == nil {
				firstErr = err
			}
			idx, err := v.dirtySet(ctx)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for _, i := range idx {
				jobs = append(jobs, uploadJob{v, i})
			}
			continue
		}
		v.mu.Lock()
		for i, p := range v.pending {
			if all || now.Sub(p.lastWrite) >= m.opts.SettleTime {
				jobs = append(jobs, uploadJob{v, i})
			}
		}
		v.mu.Unlock()
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].index < jobs[b].index })

	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan uploadJob)
	for w := 0; w < m.opts.Uploaders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if _, err := j.v.uploadChunk(ctx, j.index); err != nil {
					j.v.uploadErrors.Add(1)
					m.counters.uploadErrors.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		work <- j
	}
	close(work)
	wg.Wait()
	m.trim()
	m.reportUploads(firstErr)
	return firstErr
}

// trim releases log records no volume needs any more.
func (m *Manager) trim() {
	upTo := m.opts.Log.NextLSN()
	m.mu.Lock()
	if m.replayFloor != 0 && m.replayFloor < upTo {
		upTo = m.replayFloor
	}
	vols := make([]*Volume, 0, len(m.volumes))
	for _, v := range m.volumes {
		vols = append(vols, v)
	}
	m.mu.Unlock()
	m.inflightMu.Lock()
	for floor := range m.inflight {
		if floor < upTo {
			upTo = floor
		}
	}
	m.inflightMu.Unlock()
	for _, v := range vols {
		v.mu.Lock()
		for _, p := range v.pending {
			if p.minLSN < upTo {
				upTo = p.minLSN
			}
		}
		v.mu.Unlock()
	}
	if err := m.opts.Log.Trim(upTo); err != nil {
		m.log.Warn("trim upload buffer", "err", err)
	}
}

// chunkData reads a chunk's current content for upload, with its
// generation. ok is false when there is nothing to upload.
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
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("volume %s: dirty chunk %d not in cache: %w", v.info.Name, index, err)
	}
	return data, gen, cacheGen, true, nil
}

// uploadChunk uploads one chunk and, if no write changed it meanwhile,
// records it in the chunk map and releases it. It returns the bytes it put.
func (v *Volume) uploadChunk(ctx context.Context, index uint64) (int64, error) {
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
	if err := v.mergeBase(ctx, index); err != nil {
		return 0, err
	}
	data, gen, cacheGen, ok, err := v.chunkData(ctx, index)
	if err != nil || !ok {
		return 0, err
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
	v.mu.Lock()
	delete(v.gens, index)
	if v.info.Kind == Cached {
		delete(v.pending, index)
	}
	v.mu.Unlock()
	if v.info.Kind == Cached {
		if hole {
			// Nothing to keep: a hole reads as zeroes from the map.
			_ = m.opts.Cache.Drop(cache.Key{Volume: v.info.ID, Index: index})
		} else {
			m.opts.Cache.MarkClean(cache.Key{Volume: v.info.ID, Index: index}, cacheGen)
		}
	}
	v.lastUpload.Store(m.opts.Clock.Now().UnixNano())
	return put, nil
}

// checkpoint makes a stored volume's pending writes safe on its disk: fsync
// the disk, record the chunks in the dirty set in meta, and release their
// log records.
func (v *Volume) checkpoint(ctx context.Context) error {
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
		BytesDownloaded: m.counters.bytesDownloaded.Load(), ChunksDownloaded: m.counters.chunksDown.Load(),
		UploadErrors: m.counters.uploadErrors.Load(), LocalWriteErrors: m.counters.localWriteErrors.Load(),
		LogUsed: m.opts.Log.Used(), LogCapacity: m.opts.Log.Capacity(),
		Cache: m.opts.Cache.Stats(),
	}
}
