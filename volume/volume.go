package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/internal/diskclaim"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// Volume is one block volume. Its methods are safe for concurrent use.
type Volume struct {
	m     *Manager
	locks chunkLocks
	// fetches orders the store reads of a chunk's base by cache misses
	// and merges, so concurrent misses of one chunk fetch it once; they
	// happen without the chunk lock, so writes never wait for the store.
	fetches chunkLocks
	disk    vfs.File // stored volumes
	// claim holds a stored volume's disk while it is open (disk.go);
	// nil on an FS other than the operating system's.
	claim   *diskclaim.Disk
	diskKey string // the disk's identity (disk.go), stored volumes

	mu      sync.Mutex
	info    Info
	pending map[uint64]pendingChunk // chunks whose log records are still needed
	gens    map[uint64]uint64       // write generation of chunks not yet uploaded
	// dirty are the byte ranges of cached chunks written since their
	// last upload (patch.go). Not stored: a replay rebuilds them.
	dirty   map[uint64][]cache.Extent
	nextGen uint64

	// writeCache mirrors info.WriteCache for the write path, which reads
	// it without mu; buffered is the LSN of the volume's last write
	// acknowledged before its sync (0: none since the volume opened), the
	// one Flush makes durable.
	writeCache atomic.Bool
	buffered   atomic.Uint64
	// inFlight is held for reading by a write from the moment it finds
	// the write cache on until its LSN is in buffered; SetWriteCache
	// takes it for writing before it flushes, so that flush covers every
	// buffered write acknowledged before it returns.
	inFlight sync.RWMutex

	lastUpload       atomic.Int64 // unix nanoseconds
	uploadErrors     atomic.Uint64
	localWriteErrors atomic.Uint64

	// base holds the snapshot pages a restored volume has not yet
	// expanded into its chunk map, by first chunk index (base.go); under mu.
	base      map[uint64]basePage
	pageLocks chunkLocks

	snapMu sync.Mutex // one snapshot of the volume at a time
	cow    *cowState  // the snapshot being taken, under mu

	// uploading holds a channel per chunk being uploaded, closed when the
	// upload ends, so the uploader and a snapshot never upload one chunk
	// twice at once.
	uploading map[uint64]chan struct{}

	hyd *hydration // stored volumes restored from a snapshot and not yet hydrated at open

	gone      chan struct{} // closed when the volume is closed or deleted
	closeOnce sync.Once

	rpMu              sync.Mutex                   // one recovery point at a time
	rpPages           map[uint64]snapshots.ChunkID // pages of the last recovery point
	lastRecoveryPoint atomic.Int64                 // unix nanoseconds
}

// pendingChunk is a chunk with writes the log must keep.
type pendingChunk struct {
	minLSN    uploadbuffer.LSN // oldest record still needed
	lastWrite time.Time        // for the settle time
}

func (m *Manager) openVolume(info Info) (*Volume, error) {
	v := &Volume{m: m, info: info, pending: map[uint64]pendingChunk{}, gens: map[uint64]uint64{}, dirty: map[uint64][]cache.Extent{}, gone: make(chan struct{}),
		uploading: map[uint64]chan struct{}{}}
	v.writeCache.Store(info.WriteCache)
	if info.Kind == Stored {
		if err := m.claimDisk(v); err != nil {
			return nil, err
		}
		f, err := m.opts.FS.OpenReadWrite(info.Disk)
		if err != nil {
			v.close()
			return nil, fmt.Errorf("volume %s: open disk: %w", info.Name, err)
		}
		v.disk = f
	}
	return v, nil
}

func (v *Volume) close() {
	v.closeOnce.Do(func() { close(v.gone) })
	if v.disk != nil {
		_ = v.disk.Close()
	}
	if v.claim != nil {
		_ = v.claim.Close() // after the disk: the claim outlives every write
	}
}

// Info returns the volume's description.
func (v *Volume) Info() Info {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.info
}

// Size is the volume size in bytes.
func (v *Volume) Size() int64 { return v.Info().Size }

func (v *Volume) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off+n > v.Size() {
		return fmt.Errorf("volume %s: [%d, %d): %w", v.info.Name, off, off+n, ErrOutOfRange)
	}
	return nil
}

// forEachChunk calls fn for each chunk piece of [off, off+n).
func (v *Volume) forEachChunk(off, n int64, fn func(index uint64, chunkOff, bufOff, length int64) error) error {
	cs := int64(v.info.ChunkSize)
	for done := int64(0); done < n; {
		pos := off + done
		index, inChunk := uint64(pos/cs), pos%cs
		length := min(cs-inChunk, n-done)
		if err := fn(index, inChunk, done, length); err != nil {
			return err
		}
		done += length
	}
	return nil
}

// ReadAt fills p from offset off.
func (v *Volume) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := v.checkRange(off, int64(len(p))); err != nil {
		return err
	}
	if v.info.Kind == Stored {
		if v.hydrating() {
			// Chunks not yet on the disk are fetched first, ahead of the
			// background hydration.
			err := v.forEachChunk(off, int64(len(p)), func(index uint64, _, _, _ int64) error {
				unlock := v.locks.lock(index)
				defer unlock()
				return v.ensureHydrated(ctx, index)
			})
			if err != nil {
				return err
			}
		}
		if _, err := v.disk.ReadAt(p, off); err != nil {
			return fmt.Errorf("volume %s: read disk: %w", v.info.Name, err)
		}
		return nil
	}
	return v.forEachChunk(off, int64(len(p)), func(index uint64, chunkOff, bufOff, length int64) error {
		return v.readCached(ctx, index, p[bufOff:bufOff+length], chunkOff)
	})
}

func (v *Volume) readCached(ctx context.Context, index uint64, p []byte, off int64) error {
	c := v.m.opts.Cache
	key := cache.Key{Volume: v.info.ID, Index: index}
	if ok, err := c.ReadAt(key, p, off); ok || err != nil {
		return err
	}
	// Miss (or bytes a partial chunk does not hold): one fetch of a chunk
	// at a time, so concurrent misses of one chunk fetch it once.
	unlock := v.fetches.lock(index)
	defer unlock()
	if ok, err := c.ReadAt(key, p, off); ok || err != nil {
		return err
	}
	return v.withBase(ctx, index, func(base []byte) error {
		// A partial chunk becomes whole and serves the read.
		if _, err := c.Merge(key, base); err != nil {
			return v.cacheFailed(index, err)
		}
		if ok, err := c.ReadAt(key, p, off); ok || err != nil {
			return err
		}
		// Not cached: the base is the chunk.
		if base == nil {
			clear(p)
			return nil
		}
		if err := c.PutClean(key, base); err != nil {
			// The read is served from base all the same; a failing cache
			// disk still shows in health.
			_ = v.cacheFailed(index, err)
		}
		copy(p, base[off:])
		return nil
	})
}

// cacheFailed reports a failed cache write and returns it.
func (v *Volume) cacheFailed(index uint64, err error) error {
	if isLocalIOError(err) {
		v.m.localWriteFailed(v, fmt.Sprintf("cache chunk %d", index), err)
	} else {
		v.m.log.Warn("cache insert failed", "volume", v.info.Name, "chunk", index, "err", err)
	}
	return err
}

// withBase fetches a cached volume's chunk base, its content in the
// object store (nil for a hole: the chunk map has no entry, and the store
// is not asked), and calls use with it under the chunk lock. The store read
// happens without the chunk lock, so writes to the chunk go on meanwhile;
// if the chunk's map entry changed during the read (an upload or an unmap
// of the chunk), the base is fetched again. While the map entry stays, it
// is the base of whatever the cache holds of the chunk: writes change the
// cache, and only an upload of the merged chunk or an unmap, both under
// the chunk lock, change the map's content (a compaction by a snapshot or
// a recovery point replaces a patched entry by a chunk of the same
// content, without the lock).
func (v *Volume) withBase(ctx context.Context, index uint64, use func(base []byte) error) error {
	if err := v.expandPageOf(ctx, index); err != nil {
		return err
	}
	for {
		unlock := v.locks.lock(index)
		raw, err := v.mapEntry(ctx, index)
		unlock()
		if err != nil {
			return err
		}
		var base []byte
		var ferr error
		if raw != nil {
			base, ferr = v.fetchChunk(ctx, index, raw)
			if ferr != nil && !errkind.IsNotFound(ferr) {
				return ferr
			}
		}
		unlock = v.locks.lock(index)
		now, err := v.mapEntry(ctx, index)
		if ferr != nil {
			// An object of an entry replaced meanwhile (a compaction's
			// patches, an older chunk) may be collected: look again. Of
			// the current entry, it is missing.
			unlock()
			if err == nil && bytes.Equal(now, raw) {
				return ferr
			}
			if err != nil {
				return err
			}
			continue
		}
		if err == nil && bytes.Equal(now, raw) {
			err = use(base)
			unlock()
			return err
		}
		unlock()
		if err != nil {
			return err
		}
	}
}

// mergeBase makes a partly written cached chunk whole, merging it with its
// base, for an upload. A write meanwhile waits for no store read.
func (v *Volume) mergeBase(ctx context.Context, index uint64) error {
	if v.info.Kind != Cached {
		return nil
	}
	key := cache.Key{Volume: v.info.ID, Index: index}
	if !v.m.opts.Cache.Partial(key) {
		return nil
	}
	unlock := v.fetches.lock(index)
	defer unlock()
	return v.withBase(ctx, index, func(base []byte) error {
		if _, err := v.m.opts.Cache.Merge(key, base); err != nil {
			return v.cacheFailed(index, err)
		}
		return nil
	})
}

// cachedChunk returns a copy of a cached chunk's content, merging a partly
// written one with its base first: called with the chunk locked, when the
// content is needed at once (a snapshot's copy of a chunk about to change).
func (v *Volume) cachedChunk(ctx context.Context, index uint64) ([]byte, error) {
	key := cache.Key{Volume: v.info.ID, Index: index}
	data, _, err := v.m.opts.Cache.Snapshot(key)
	if errors.Is(err, cache.ErrNotCached) {
		return v.fetch(ctx, index)
	}
	if errors.Is(err, cache.ErrPartial) {
		base, ferr := v.fetch(ctx, index)
		if ferr != nil {
			return nil, ferr
		}
		if _, err := v.m.opts.Cache.Merge(key, base); err != nil {
			return nil, v.cacheFailed(index, err)
		}
		data, _, err = v.m.opts.Cache.Snapshot(key)
	}
	return data, err
}

// partialCopy is what a snapshot keeps of a chunk cached only where
// written, besides the copy of its bytes: the extents written and the
// chunk's base at that moment, fetched and merged when the snapshot takes
// the chunk, not in the latency of the write that made the copy.
type partialCopy struct {
	written []cache.Extent
	base    chunkEntry
	hole    bool // the base is zeroes
}

// keepChunk returns a copy of a chunk's content for a snapshot, called
// with the chunk locked before it changes: of a chunk cached only where
// written, the bytes written and, in pc, how to complete them.
func (v *Volume) keepChunk(ctx context.Context, index uint64) (data []byte, pc *partialCopy, err error) {
	if v.info.Kind == Cached {
		data, written, err := v.m.opts.Cache.SnapshotPartial(cache.Key{Volume: v.info.ID, Index: index})
		if err == nil && written != nil {
			// The map entry is the base of what the cache holds (see withBase).
			raw, err := v.mapEntry(ctx, index)
			if err != nil {
				return nil, nil, err
			}
			pc = &partialCopy{written: written, hole: raw == nil}
			if raw != nil {
				if pc.base, err = parseEntry(raw); err != nil {
					return nil, nil, err
				}
			}
			return data, pc, nil
		}
		if !errors.Is(err, cache.ErrNotCached) {
			return data, nil, err
		}
	}
	data, err = v.currentChunk(ctx, index)
	return data, nil, err
}

// complete merges a kept partial copy with its base.
func (v *Volume) complete(ctx context.Context, index uint64, data []byte, pc partialCopy) ([]byte, error) {
	if pc.hole {
		return data, nil // zeroes around the writes already
	}
	base, err := v.readEntry(ctx, index, pc.base)
	if err != nil {
		return nil, err
	}
	for _, x := range pc.written {
		copy(base[x.Off:x.End], data[x.Off:x.End])
	}
	return base, nil
}

// fetch returns the uploaded content of a chunk, or nil for a hole.
func (v *Volume) fetch(ctx context.Context, index uint64) ([]byte, error) {
	if err := v.expandPageOf(ctx, index); err != nil {
		return nil, err
	}
	raw, err := v.mapEntry(ctx, index)
	if err != nil || raw == nil {
		return nil, err
	}
	return v.fetchChunk(ctx, index, raw)
}

// mapEntry returns a chunk's map entry, nil for a hole. The chunk's base
// page must be expanded.
func (v *Volume) mapEntry(ctx context.Context, index uint64) ([]byte, error) {
	var raw []byte
	err := v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		var err error
		raw, err = tx.Get(mapKey(v.info.ID, index))
		return err
	})
	if isMetaNotFound(err) {
		return nil, nil
	}
	return raw, err
}

// fetchChunk reads the chunk a map entry names: its chunk, or its base
// with its patches applied.
func (v *Volume) fetchChunk(ctx context.Context, index uint64, raw []byte) ([]byte, error) {
	e, err := parseEntry(raw)
	if err != nil {
		return nil, fmt.Errorf("volume %s chunk %d: %w", v.info.Name, index, err)
	}
	return v.readEntry(ctx, index, e)
}

// WriteAt writes p at off. It returns once the write is durable, or, with
// the volume's write cache on (Info.WriteCache), once it is applied: it is
// then durable when the next Flush returns (or a later WriteThrough, or an
// Unmap: the log is written in order).
func (v *Volume) WriteAt(ctx context.Context, p []byte, off int64) error {
	v.inFlight.RLock()
	if !v.writeCache.Load() {
		v.inFlight.RUnlock()
		return v.write(ctx, p, off, false)
	}
	defer v.inFlight.RUnlock()
	return v.write(ctx, p, off, true)
}

// WriteThrough writes p at off and returns once the write, and every
// write acknowledged before it, is durable, write cache or not (a write
// with FUA).
func (v *Volume) WriteThrough(ctx context.Context, p []byte, off int64) error {
	return v.write(ctx, p, off, false)
}

// write logs and applies a write: its record synced before the apply, or
// buffered (applied at once, synced with the next group commit).
func (v *Volume) write(ctx context.Context, p []byte, off int64, buffered bool) error {
	if err := v.checkRange(off, int64(len(p))); err != nil {
		return err
	}
	v.m.counters.writes.Add(1)
	v.m.counters.bytesWritten.Add(uint64(len(p)))
	rec := encodeRecord(recWrite, v.info.ID, off, p, int64(len(p)))
	dataOff := recordDataOffset(v.info.ID)
	if !buffered {
		return v.m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error { return v.apply(ctx, lsn, p, off, dataOff) })
	}
	lsn, err := v.m.j.AppendBuffered(ctx, rec, func(lsn uploadbuffer.LSN) error {
		return v.applyWrite(ctx, lsn, p, off, dataOff, true)
	})
	for last := v.buffered.Load(); uint64(lsn) > last && !v.buffered.CompareAndSwap(last, uint64(lsn)); {
		last = v.buffered.Load()
	}
	return err
}

// apply puts a logged write onto the cache or disk (also used by replay);
// p is at dataOff in record lsn.
func (v *Volume) apply(ctx context.Context, lsn uploadbuffer.LSN, p []byte, off, dataOff int64) error {
	return v.applyWrite(ctx, lsn, p, off, dataOff, false)
}

// noRecord is the dataOff of bytes that are in no record (an unmap's zeroes).
const noRecord = -1

// applyWrite puts a write onto the cache or disk; p is at dataOff in
// record lsn (noRecord: in none), and buffered says the record may not be
// durable yet.
func (v *Volume) applyWrite(ctx context.Context, lsn uploadbuffer.LSN, p []byte, off, dataOff int64, buffered bool) error {
	return v.forEachChunk(off, int64(len(p)), func(index uint64, chunkOff, bufOff, length int64) error {
		unlock := v.locks.lock(index)
		defer unlock()
		if err := v.beforeChange(ctx, index); err != nil {
			return err
		}
		if buffered && v.info.Kind == Stored && !v.isPending(index) {
			// A stored volume's disk is its data, and survives a crash
			// that loses the record: a chunk not yet known to differ
			// from its upload changes on the disk only once a record
			// saying so is durable, so a replay marks it again.
			if err := v.m.j.Log().Sync(ctx, lsn); err != nil {
				return fmt.Errorf("volume %s: write chunk %d: %w", v.info.Name, index, err)
			}
			buffered = false
		}
		piece := p[bufOff : bufOff+length]
		var err error
		if v.info.Kind == Stored {
			_, err = v.disk.WriteAt(piece, int64(index)*int64(v.info.ChunkSize)+chunkOff)
		} else {
			// No base: a chunk not cached records the extent written and
			// is merged with its base when it is read or uploaded, so a
			// write never waits for the object store. The bytes stay in
			// the log record until the chunk is uploaded: the cache reads
			// them from there, and writes them into its file once, after
			// the upload (MarkClean).
			key := cache.Key{Volume: v.info.ID, Index: index}
			if dataOff == noRecord {
				err = v.m.opts.Cache.WriteAt(ctx, key, v.info.ChunkSize, piece, chunkOff, nil)
			} else {
				src := cache.Source{R: v.m.j.Log(), LSN: lsn, Off: dataOff + bufOff}
				err = v.m.opts.Cache.WriteLogged(ctx, key, v.info.ChunkSize, piece, chunkOff, nil, src)
			}
			if err == nil {
				v.addDirty(index, chunkOff, chunkOff+length)
			}
		}
		if err != nil {
			if v.info.Kind == Stored || isLocalIOError(err) {
				v.m.localWriteFailed(v, fmt.Sprintf("write chunk %d", index), err)
			}
			return fmt.Errorf("volume %s: write chunk %d: %w", v.info.Name, index, err)
		}
		v.markPending(index, lsn)
		return nil
	})
}

// isPending says whether chunk index has writes the log still holds.
// Called with the chunk lock held.
func (v *Volume) isPending(index uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.pending[index]
	return ok
}

// markPending records that chunk index changed at lsn. Called with the
// chunk lock held.
func (v *Volume) markPending(index uint64, lsn uploadbuffer.LSN) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.pending[index]
	if !ok || lsn < p.minLSN {
		p.minLSN = lsn
	}
	p.lastWrite = v.m.opts.Clock.Now()
	v.pending[index] = p
	v.nextGen++
	v.gens[index] = v.nextGen
}

// Flush makes every write acknowledged before it durable: it waits for
// the sync of the volume's last buffered write (write cache on). Without
// buffered writes there is nothing to wait for: each write was durable
// when acknowledged. Frontends call it for SYNCHRONIZE CACHE.
func (v *Volume) Flush(ctx context.Context) error {
	lsn := uploadbuffer.LSN(v.buffered.Load())
	if lsn == 0 {
		return ctx.Err()
	}
	if err := v.m.j.Log().Sync(ctx, lsn); err != nil {
		return fmt.Errorf("volume %s: flush: %w", v.info.Name, err)
	}
	return nil
}

// SetWriteCache turns the volume's write cache on or off and records it
// with the volume. Turned off, it returns once the writes acknowledged
// before are durable: it waits for the buffered writes in flight (begun
// with the cache on) to be acknowledged, then flushes. If that flush
// fails, the setting is stored all the same: it returns the volume's Info
// with the error (a zero Info when the setting was not stored).
func (m *Manager) SetWriteCache(ctx context.Context, nameOrID string, on bool) (Info, error) {
	v, err := m.Get(nameOrID)
	if err != nil {
		return Info{}, err
	}
	v.mu.Lock()
	info := v.info
	info.WriteCache = on
	if err := m.putInfo(ctx, info); err != nil {
		v.mu.Unlock()
		return Info{}, err
	}
	v.info.WriteCache = on
	v.writeCache.Store(on)
	v.mu.Unlock()
	if !on {
		v.inFlight.Lock()
		// Held for writing once: every buffered write in flight has ended.
		v.inFlight.Unlock()
		return info, v.Flush(ctx)
	}
	return info, nil
}

// Unmap discards [off, off+n): the range reads as zeroes afterwards, and
// whole chunks become holes in the object store.
func (v *Volume) Unmap(ctx context.Context, off, n int64) error {
	if err := v.checkRange(off, n); err != nil {
		return err
	}
	return v.m.logAndApply(ctx, encodeRecord(recUnmap, v.info.ID, off, nil, n), func(lsn uploadbuffer.LSN) error {
		return v.applyUnmap(ctx, lsn, off, n)
	})
}

// zeroChunk is shared by unmaps of whole chunks.
var zeroChunk = make([]byte, snapshots.MaxChunkSize)

func (v *Volume) applyUnmap(ctx context.Context, lsn uploadbuffer.LSN, off, n int64) error {
	cs := int64(v.info.ChunkSize)
	return v.forEachChunk(off, n, func(index uint64, chunkOff, _, length int64) error {
		if length < cs || v.info.Kind == Stored {
			// A partial chunk, or a stored volume's disk: write zeroes;
			// the uploader turns an all-zero chunk into a hole.
			return v.applyWrite(ctx, lsn, zeroChunk[:length], int64(index)*cs+chunkOff, noRecord, false)
		}
		// A whole cached chunk: drop it and its map entry now.
		unlock := v.locks.lock(index)
		defer unlock()
		if err := v.beforeChange(ctx, index); err != nil {
			return err
		}
		if err := v.m.opts.Cache.Drop(cache.Key{Volume: v.info.ID, Index: index}); err != nil {
			return err
		}
		err := v.m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete(mapKey(v.info.ID, index)) })
		if err != nil {
			return err
		}
		v.mu.Lock()
		delete(v.pending, index)
		delete(v.gens, index) // an upload in flight for it will find its generation gone
		delete(v.dirty, index)
		v.mu.Unlock()
		return nil
	})
}

// Stats are a volume's figures for `volume info` and metrics.
type Stats struct {
	PendingChunks int       `json:"pending_chunks"` // chunks with writes not yet uploaded (cached) or checkpointed (stored)
	DirtyBytes    int64     `json:"dirty_bytes"`
	LastUpload    time.Time `json:"last_upload,omitzero"`
	// LastRecoveryPoint is when the volume's data was last recorded in the
	// object store as a manifest (cached volumes).
	LastRecoveryPoint time.Time `json:"last_recovery_point,omitzero"`
	UploadErrors      uint64    `json:"upload_errors"`
	// LocalWriteErrors counts failed writes and syncs of the volume's data
	// on local disk (its disk, or the cache) since the gateway started.
	LocalWriteErrors uint64 `json:"local_write_errors"`
	// Hydration is a restored stored volume's copy of its snapshot onto
	// its disk; absent for other volumes.
	Hydration *HydrationStatus `json:"hydration,omitempty"`
}

// Stats returns the volume's current figures.
func (v *Volume) Stats(ctx context.Context) Stats {
	v.mu.Lock()
	s := Stats{PendingChunks: len(v.pending), UploadErrors: v.uploadErrors.Load(), LocalWriteErrors: v.localWriteErrors.Load()}
	dirty := len(v.gens)
	v.mu.Unlock()
	s.DirtyBytes = int64(dirty) * int64(v.info.ChunkSize)
	s.Hydration = v.hydrationStatus()
	if t := v.lastUpload.Load(); t != 0 {
		s.LastUpload = time.Unix(0, t).UTC()
	}
	if t := v.lastRecoveryPoint.Load(); t != 0 {
		s.LastRecoveryPoint = time.Unix(0, t).UTC()
	}
	return s
}
