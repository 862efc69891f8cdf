package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/names"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
)

// A snapshot is the volume's data at the instant CreateSnapshot takes the
// volume's lock (see capture). At that instant the snapshot records the chunk map (chunks
// already uploaded, by id) and the set of chunks changed but not yet
// uploaded ("frozen"). Frozen chunks are then uploaded as they were at the
// instant: a write that reaches a frozen chunk first copies the chunk's
// content aside (copy-on-write), so writes continue at full speed while the
// snapshot is taken. Then the map pages that differ from the parent's and
// one manifest are uploaded: chunks, pages, manifest, in that order.

// cowState is the copy-on-write state of a snapshot being taken.
type cowState struct {
	frozen map[uint64]bool   // changed at the instant, content not yet taken
	saved  map[uint64][]byte // content at the instant of frozen chunks written since (nil: hole)
	// partial completes the saved copies of chunks that were cached only
	// where written: their bases are fetched when the chunk is taken.
	partial map[uint64]partialCopy
	pin     *pinSet // the snapshot's: holds the bases of partial copies
	// patched are the chunks whose map entry at the instant has patches
	// and that were not changed since their upload: the snapshot compacts
	// them from that entry (pinned), so a write meanwhile copies nothing.
	patched map[uint64]chunkEntry

	baseChunks int // chunks in the unexpanded base pages the snapshot names
}

// SnapshotOptions describe a snapshot to take.
type SnapshotOptions struct {
	Description string
	Schedule    string // set by the scheduler: which schedule took it
	// Lock, when not zero, locks the snapshot for that long (rounded up,
	// snapshots.LockEnd) with Object Lock: see snapshots/lock.go.
	Lock time.Duration
}

// SnapshotInfo is the gateway's record of a snapshot (meta snap/<id>).
type SnapshotInfo struct {
	ID          string    `json:"id"`
	VolumeID    string    `json:"volume_id"`
	VolumeName  string    `json:"volume_name"`
	VolumeKind  Kind      `json:"volume_kind"`
	Size        int64     `json:"size"`
	ChunkSize   int       `json:"chunk_size"`
	Created     time.Time `json:"created"`
	Description string    `json:"description,omitempty"`
	Schedule    string    `json:"schedule,omitempty"`
	Parent      string    `json:"parent,omitempty"`
	// Chunks counts the chunks that are not holes.
	Chunks int `json:"chunks"`
	// UploadedChunks and UploadedBytes are what taking it uploaded:
	// changed chunks, changed map pages and the manifest.
	UploadedChunks int                 `json:"uploaded_chunks"`
	UploadedBytes  int64               `json:"uploaded_bytes"`
	Pages          []snapshots.PageRef `json:"pages"`
	// Lock is a locked snapshot's retention: it cannot be deleted before
	// Lock.Until. Retained counts what locking it took: the objects it
	// needs, and the retention requests (PutObjectRetention) made for
	// those not already retained long enough.
	Lock     *objstore.Retention    `json:"lock,omitempty"`
	Retained *snapshots.RetainStats `json:"retained,omitempty"`
}

// ErrSnapshotNotFound is returned for an unknown snapshot id.
var ErrSnapshotNotFound = snapshots.ErrSnapshotNotFound

// Meta keys of the snapshot catalog: snap/<id> JSON SnapshotInfo.
func snapKey(id string) []byte { return []byte("snap/" + id) }

// CreateSnapshot takes a point-in-time, crash-consistent snapshot of a
// volume and uploads it. Writes continue meanwhile.
func (m *Manager) CreateSnapshot(ctx context.Context, nameOrID string, o SnapshotOptions) (SnapshotInfo, error) {
	if o.Description != "" {
		if err := names.Check("snapshot description", o.Description); err != nil {
			return SnapshotInfo{}, err
		}
	}
	if err := m.checkLock(o.Lock); err != nil {
		return SnapshotInfo{}, err
	}
	v, err := m.Get(nameOrID)
	if err != nil {
		return SnapshotInfo{}, err
	}
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	parent, err := m.latestSnapshot(ctx, v.info.ID)
	if err != nil {
		return SnapshotInfo{}, err
	}
	pin := m.pin()
	defer m.unpin(pin)
	known := map[snapshots.ChunkID]bool{}
	for _, ref := range parent.Pages {
		known[ref.ID] = true
		pin.add(ref.ID)
	}

	if v.info.Kind == Stored {
		// Move pending writes to the dirty set first, so chunks the
		// snapshot uploads are not queued for upload again.
		if err := v.checkpoint(ctx); err != nil {
			return SnapshotInfo{}, err
		}
	}
	info, ids, base, cow, err := v.capture(ctx, pin)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if m.afterCapture != nil {
		m.afterCapture()
	}
	defer func() {
		v.mu.Lock()
		v.cow = nil
		v.mu.Unlock()
	}()
	si := SnapshotInfo{
		ID: snapshots.NewSnapshotID(), VolumeID: info.ID, VolumeName: info.Name, VolumeKind: info.Kind,
		Size: info.Size, ChunkSize: info.ChunkSize, Created: info.Created,
		Description: o.Description, Schedule: o.Schedule, Parent: parent.ID,
	}
	si.Created = m.opts.Clock.Now().UTC()
	err = v.takeFrozen(ctx, cow, ids, pin, &si)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("volume %s: snapshot: %w", info.Name, err)
	}
	si.Chunks = len(ids) + cow.baseChunks

	refs, st, err := snapshots.WritePages(ctx, m.opts.Store, m.opts.Codec, ids, known, pin.add)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("volume %s: snapshot: %w", info.Name, err)
	}
	refs = withBase(refs, base)
	si.Pages = refs
	si.UploadedBytes += st.BytesWritten
	man := snapshots.Manifest{
		Version: 1, Kind: "snapshot", VolumeID: info.ID, VolumeName: info.Name,
		Size: info.Size, ChunkSize: info.ChunkSize, Created: si.Created, Pages: refs,
		Parent: si.Parent, Description: si.Description, Schedule: si.Schedule, VolumeKind: string(info.Kind),
	}
	key := snapshots.SnapshotKey(si.ID)
	if o.Lock > 0 {
		// Everything the manifest names is retained before it exists.
		ret := objstore.Retention{Mode: m.opts.ObjectLock, Until: snapshots.LockEnd(si.Created, o.Lock)}
		keys, err := snapshots.SnapshotObjects(ctx, m.opts.Store, m.opts.Codec, refs, ids, base)
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("volume %s: snapshot lock: %w", info.Name, err)
		}
		rs, err := snapshots.RetainObjects(ctx, m.opts.Store, m.retained, keys, ret, m.opts.Uploaders)
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("volume %s: snapshot lock: %w", info.Name, err)
		}
		si.Lock, si.Retained, man.Lock = &ret, &rs, &ret
	}
	blob, err := m.opts.Codec.SealManifest(key, man)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if si.Lock != nil {
		err = objstore.PutRetained(ctx, m.opts.Store, key, bytes.NewReader(blob), int64(len(blob)), *si.Lock)
	} else {
		err = objstore.PutBytes(ctx, m.opts.Store, key, blob)
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("volume %s: snapshot manifest: %w", info.Name, err)
	}
	si.UploadedBytes += int64(len(blob))
	// Completed, and reported, by one transaction.
	if err := m.putSnapshotInfo(ctx, si, event(notify.Event{Kind: notify.VolumeSnapshot, Time: si.Created, Volume: info.Name,
		VolumeID: info.ID, Snapshot: si.ID, Size: notify.Size(info.Size)})); err != nil {
		return SnapshotInfo{}, err
	}
	if m.crashHook != nil {
		m.crashHook(string(notify.VolumeSnapshot))
	}
	m.log.Info("snapshot taken", "volume", info.Name, "snapshot", si.ID, "chunks", si.Chunks,
		"uploaded_chunks", si.UploadedChunks, "uploaded_bytes", si.UploadedBytes)
	if si.Lock != nil {
		m.log.Info("snapshot locked", "snapshot", si.ID, "until", si.Lock.Until, "mode", si.Lock.Mode,
			"objects", si.Retained.Objects, "retention_requests", si.Retained.Retained)
	}
	return si, nil
}

// capture records the volume's state at one instant: the uploaded chunk
// map and the chunks changed since, which become copy-on-write.
//
// It holds v.mu throughout, which makes the instant: every change records
// itself in meta first and in v.mu's maps after (an upload commits the map
// entry, then forgets the chunk's generation; a checkpoint records the
// dirty set, then forgets the pending writes), so a chunk whose change is
// not yet in the map read here is still in gens, pending or the dirty set.
func (v *Volume) capture(ctx context.Context, pin *pinSet) (Info, snapshots.ChunkMap, []snapshots.PageRef, *cowState, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	info := v.info
	ids := snapshots.ChunkMap{}
	cow := &cowState{frozen: map[uint64]bool{}, saved: map[uint64][]byte{}, partial: map[uint64]partialCopy{}, pin: pin,
		patched: map[uint64]chunkEntry{}}
	// One view for the map and the dirty set: an upload commits both at once.
	err := v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		err := iterateMap(tx, info.ID, func(index uint64, e chunkEntry) error {
			if !e.whole() {
				// A patched chunk: compacted when the snapshot takes
				// it, from what it names now (pinned: kept by GC).
				cow.patched[index] = e
				for _, id := range e.ids() {
					pin.add(id)
				}
				return nil
			}
			ids[index] = e.base
			return nil
		})
		if err != nil || info.Kind != Stored {
			return err
		}
		prefix := dirtyPrefix(info.ID)
		return tx.Iterate(prefix, func(k, _ []byte) error {
			i, err := indexFromKey(prefix, k)
			cow.frozen[i] = true
			return err
		})
	})
	if err != nil {
		return info, nil, nil, nil, err
	}
	// Unexpanded base pages are named as they are; map entries in their
	// range (an expansion in progress) are the same chunks.
	base, baseChunks := v.baseRefsLocked()
	cow.baseChunks = baseChunks
	for _, r := range base {
		pin.add(r.ID)
		for i := r.First; i < r.First+snapshots.PageEntries; i++ {
			if _, ok := ids[i]; ok {
				delete(ids, i)
			}
		}
	}
	for i := range v.pending {
		cow.frozen[i] = true
	}
	for i := range v.gens {
		cow.frozen[i] = true
	}
	for i := range cow.frozen {
		delete(cow.patched, i) // changed since: taken as frozen chunks are
	}
	v.cow = cow
	for _, id := range ids {
		pin.add(id)
	}
	return info, ids, base, cow, nil
}

// beforeChange runs with chunk index locked, before a write or unmap
// changes it: a stored volume's chunk is hydrated first, and a chunk a
// snapshot still needs is copied aside.
func (v *Volume) beforeChange(ctx context.Context, index uint64) error {
	if err := v.expandPageOf(ctx, index); err != nil {
		return err
	}
	if v.info.Kind == Stored && v.hydrating() {
		if err := v.ensureHydrated(ctx, index); err != nil {
			return err
		}
	}
	v.mu.Lock()
	c := v.cow
	need := false
	if c != nil && c.frozen[index] {
		_, done := c.saved[index]
		need = !done
	}
	v.mu.Unlock()
	if !need {
		return nil
	}
	data, pc, err := v.keepChunk(ctx, index)
	if err != nil {
		return fmt.Errorf("volume %s: keep chunk %d for a snapshot: %w", v.info.Name, index, err)
	}
	if pc != nil && !pc.hole {
		for _, id := range pc.base.ids() {
			c.pin.add(id) // before the upload of the change replaces it in the map
		}
	}
	v.mu.Lock()
	if v.cow == c {
		c.saved[index] = data
		if pc != nil {
			c.partial[index] = *pc
		}
	}
	v.mu.Unlock()
	return nil
}

// currentChunk returns a copy of a chunk's current content (nil for a
// hole). Called with the chunk locked.
func (v *Volume) currentChunk(ctx context.Context, index uint64) ([]byte, error) {
	cs := int64(v.info.ChunkSize)
	if v.info.Kind == Stored {
		data := make([]byte, cs)
		start := int64(index) * cs
		n := min(cs, v.Size()-start)
		if n > 0 {
			if _, err := v.disk.ReadAt(data[:n], start); err != nil {
				return nil, err
			}
		}
		return data, nil
	}
	return v.cachedChunk(ctx, index)
}

// takeFrozen uploads the frozen chunks as they were at the instant and
// puts their ids into ids. A chunk nobody wrote since goes through the
// ordinary upload, which also records it in the volume's map; a chunk
// written since is uploaded from the copy kept aside.
func (v *Volume) takeFrozen(ctx context.Context, cow *cowState, ids snapshots.ChunkMap, pin *pinSet, si *SnapshotInfo) error {
	v.mu.Lock()
	work := make([]uint64, 0, len(cow.frozen)+len(cow.patched))
	for i := range cow.frozen {
		work = append(work, i)
	}
	for i := range cow.patched {
		work = append(work, i)
	}
	v.mu.Unlock()
	sort.Slice(work, func(a, b int) bool { return work[a] < work[b] })

	var mu sync.Mutex
	var firstErr error
	jobs := make(chan uint64)
	var wg sync.WaitGroup
	for range v.m.opts.Uploaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for index := range jobs {
				id, hole, put, err := v.takeOne(ctx, cow, pin, index)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					if hole {
						delete(ids, index)
					} else {
						ids[index] = id
						pin.add(id)
					}
					if put > 0 {
						si.UploadedChunks++
						si.UploadedBytes += put
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, index := range work {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- index
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func (v *Volume) takeOne(ctx context.Context, cow *cowState, pin *pinSet, index uint64) (id snapshots.ChunkID, hole bool, put int64, err error) {
	if index*uint64(v.info.ChunkSize) >= uint64(v.Size()) {
		return id, true, 0, nil
	}
	v.mu.Lock()
	e, patched := cow.patched[index]
	v.mu.Unlock()
	if patched {
		return v.takeEntry(ctx, index, e.encode(), pin, 0)
	}
	put, err = v.uploadChunk(ctx, index, true)
	if err != nil {
		return id, false, 0, err
	}
	unlock := v.locks.lock(index)
	v.mu.Lock()
	data, saved := cow.saved[index]
	pc, partial := cow.partial[index]
	delete(cow.saved, index)
	delete(cow.partial, index)
	delete(cow.frozen, index)
	gen := v.gens[index]
	v.mu.Unlock()
	if !saved && gen != 0 && v.info.Kind == Cached {
		// Not uploaded (the upload found no change recorded) yet not
		// written since the instant: take the cached content as it is.
		data, err = v.currentChunk(ctx, index)
		saved = err == nil
	}
	if !saved && err == nil {
		// Nobody wrote it since the instant, so the map entry the upload
		// just recorded is its content at the instant.
		var raw []byte
		err = v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
			var err error
			raw, err = tx.Get(mapKey(v.info.ID, index))
			return err
		})
		unlock()
		if isMetaNotFound(err) {
			return id, true, put, nil
		}
		if err != nil {
			return id, false, put, err
		}
		return v.takeEntry(ctx, index, raw, pin, put)
	}
	unlock()
	if err == nil && partial {
		data, err = v.complete(ctx, index, data, pc)
	}
	if err != nil {
		return id, false, put, err
	}
	if data == nil || snapshots.IsZero(data) {
		return id, true, put, nil
	}
	id, blob, err := v.m.opts.Codec.Encode(data)
	if err != nil {
		return id, false, put, err
	}
	pin.add(id) // before the upload: see CollectGarbage
	if err := v.m.opts.Store.Put(ctx, id.ObjectKey(), bytes.NewReader(blob), int64(len(blob))); err != nil {
		return id, false, put, fmt.Errorf("upload chunk %d: %w", index, err)
	}
	v.m.counters.bytesUploaded.Add(uint64(len(blob)))
	v.m.counters.chunksUp.Add(1)
	return id, false, put + int64(len(blob)), nil
}

// takeEntry returns the whole chunk a map entry names for a snapshot: a
// patched one is compacted (uploaded merged, and recorded in the map if
// the entry did not change meanwhile).
func (v *Volume) takeEntry(ctx context.Context, index uint64, raw []byte, pin *pinSet, put int64) (snapshots.ChunkID, bool, int64, error) {
	e, err := parseEntry(raw)
	if err != nil {
		return snapshots.ChunkID{}, false, put, err
	}
	if e.whole() {
		return e.base, false, put, nil
	}
	for _, id := range e.ids() {
		pin.add(id)
	}
	id, hole, n, err := v.wholeChunk(ctx, index, e, pin)
	if err == nil {
		err = v.commitCompaction(ctx, index, raw, id, hole)
	}
	return id, hole, put + n, err
}

func (m *Manager) putSnapshotInfo(ctx context.Context, si SnapshotInfo, es ...notify.Event) error {
	b, err := json.Marshal(si)
	if err != nil {
		return err
	}
	return notify.Update(ctx, m.opts.Events, m.opts.Meta, func(tx meta.Txn) error { return tx.Set(snapKey(si.ID), b) }, es...)
}

// Snapshots lists the catalog's snapshots, oldest first; volume, if not
// empty, keeps those of one volume (by name or id).
func (m *Manager) Snapshots(ctx context.Context, volume string) ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	err := m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate([]byte("snap/"), func(_, val []byte) error {
			var si SnapshotInfo
			if err := json.Unmarshal(val, &si); err != nil {
				return errkind.Mark(errkind.Corrupt, fmt.Errorf("snapshot catalog: %w", err))
			}
			if volume == "" || si.VolumeName == volume || si.VolumeID == volume {
				out = append(out, si)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// Snapshot returns one snapshot from the catalog.
func (m *Manager) Snapshot(ctx context.Context, id string) (SnapshotInfo, error) {
	var si SnapshotInfo
	err := m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get(snapKey(id))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &si)
	})
	if isMetaNotFound(err) {
		return si, fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	return si, err
}

func (m *Manager) latestSnapshot(ctx context.Context, volumeID string) (SnapshotInfo, error) {
	all, err := m.Snapshots(ctx, volumeID)
	if err != nil || len(all) == 0 {
		return SnapshotInfo{}, err
	}
	return all[len(all)-1], nil
}

// DeleteSnapshot removes a snapshot's manifest and catalog entry. Its
// chunks and pages stay until garbage collection finds nothing else uses
// them.
//
// A locked snapshot is refused until its lock ends, with the date. On a
// bucket with Object Lock the manifest is removed with every version of it
// (a plain delete there removes nothing).
func (m *Manager) DeleteSnapshot(ctx context.Context, id string) error {
	si, err := m.Snapshot(ctx, id)
	if err != nil {
		return err
	}
	if si.Lock != nil && si.Lock.Holds(m.opts.Clock.Now()) {
		return snapshots.LockedError(id, *si.Lock)
	}
	key := snapshots.SnapshotKey(id)
	if m.opts.ObjectLock != "" {
		err = objstore.Purge(ctx, m.opts.Store, key)
		if objstore.IsObjectLocked(err) {
			// Retained longer than the catalog says (by another
			// gateway of the bucket, or the store's clock is behind
			// ours): the store's word stands.
			if ret, rerr := objstore.GetRetention(ctx, m.opts.Store, key); rerr == nil && !ret.IsZero() {
				return snapshots.LockedError(id, ret)
			}
		}
	} else {
		err = m.opts.Store.Delete(ctx, key)
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: delete manifest: %w", id, err)
	}
	return m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete(snapKey(id)) })
}

// checkLock checks a lock period asked of a snapshot.
func (m *Manager) checkLock(lock time.Duration) error {
	if err := snapshots.CheckLockPeriod(lock); err != nil {
		return err
	}
	if lock > 0 && m.opts.ObjectLock == "" {
		return errkind.Mark(errkind.Permanent, errors.New("snapshot lock: this gateway's bucket has no Object Lock (initialise it on a bucket created with Object Lock: gatewayd init --object-lock)"))
	}
	return nil
}

// pinSet holds ids an operation in progress depends on before any
// manifest names them, so garbage collection keeps them.
type pinSet struct {
	mu  sync.Mutex
	ids map[snapshots.ChunkID]bool
}

func (p *pinSet) add(id snapshots.ChunkID) {
	p.mu.Lock()
	p.ids[id] = true
	p.mu.Unlock()
}

func (m *Manager) pin() *pinSet {
	p := &pinSet{ids: map[snapshots.ChunkID]bool{}}
	m.pinsMu.Lock()
	m.pins[p] = true
	m.pinsMu.Unlock()
	return p
}

// unpin drops a pin set, or, while a collection runs, keeps it until the
// collection ends: GC reads the pins last, and must see every pin that
// existed while it ran.
func (m *Manager) unpin(p *pinSet) {
	m.pinsMu.Lock()
	if m.gcRunning {
		m.retired = append(m.retired, p)
	} else {
		delete(m.pins, p)
	}
	m.pinsMu.Unlock()
}

// CollectGarbage removes chunks and pages that no manifest, no volume and
// no snapshot or restore in progress references, and that are older than
// grace. One collection runs at a time.
func (m *Manager) CollectGarbage(ctx context.Context, grace time.Duration, dryRun bool) (snapshots.GCStats, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	m.pinsMu.Lock()
	m.gcRunning = true
	m.pinsMu.Unlock()
	defer func() {
		m.pinsMu.Lock()
		m.gcRunning = false
		for _, p := range m.retired {
			delete(m.pins, p)
		}
		m.retired = nil
		m.pinsMu.Unlock()
	}()
	st, err := snapshots.CollectGarbage(ctx, m.opts.Store, m.opts.Codec, snapshots.GCOptions{
		Grace: grace, Now: m.opts.Clock.Now, ExtraRoots: m.GCRoots, DryRun: dryRun,
		ObjectLock: m.opts.ObjectLock != "", Record: m.retained,
	})
	if err == nil {
		m.log.Info("garbage collected", "deleted", st.Deleted, "bytes", st.BytesDeleted, "live", st.Live, "kept_young", st.KeptYoung,
			"kept_locked", st.KeptLocked, "dry_run", dryRun)
	}
	return st, err
}

// GCRoots returns the ids live outside the repository's manifests: every
// volume's chunk map and the objects of snapshots and restores in
// progress. Garbage collection calls it after reading the manifests.
func (m *Manager) GCRoots(ctx context.Context) (snapshots.Roots, error) {
	roots := snapshots.Roots{Chunks: map[snapshots.ChunkID]bool{}, Pages: map[snapshots.ChunkID]bool{}}
	m.pinsMu.Lock()
	for p := range m.pins {
		p.mu.Lock()
		for id := range p.ids {
			roots.Chunks[id] = true
		}
		p.mu.Unlock()
	}
	m.pinsMu.Unlock()
	for _, v := range m.List() {
		v.mu.Lock()
		for _, bp := range v.base {
			roots.Pages[bp.ID] = true // GC reads it for its chunks
		}
		v.mu.Unlock()
	}
	err := m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate([]byte("vmap/"), func(k, val []byte) error {
			e, err := parseEntry(val)
			if err != nil {
				return fmt.Errorf("%w (key %q)", err, strings.ToValidUTF8(string(k), "?"))
			}
			for _, id := range e.ids() {
				roots.Chunks[id] = true // a patched chunk's base and patches
			}
			return nil
		})
	})
	// Pins hold page ids too: GC treats every root as live whatever its
	// kind, and reads the pages in roots.Pages for the chunks they name.
	return roots, err
}
