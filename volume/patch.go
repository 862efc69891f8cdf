package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
)

// Small writes upload small. A cached chunk whose changes since its last
// upload are small goes up as a patch object (the bytes of its dirty
// extents, snapshots.Patch) instead of the whole chunk, and its map entry
// becomes a patched entry: the base (the chunk id of the last whole
// upload, or a hole) and the list of patches over it, in order. A read
// from the store fetches the base and applies the patches. When the list
// is long (or its bytes many), the uploader merges it and the new writes
// into one patch over the same base; when the changes are large, or the
// merged patch would be, it uploads the whole chunk again (compaction) and
// the entry becomes a plain chunk id. Superseded patches are garbage once
// no map names them, and garbage collection removes them.
//
// Snapshots and recovery points name whole chunks only, as they did before
// patches: they compact a patched chunk (fetch base and patches, upload the
// merged chunk) and record the compaction in the map if the entry did not
// change meanwhile. So restore, verify and `gatewayd restore` never see a
// patch.
//
// Order: the patch object is put before the map entry names it (a crash in
// between leaves an unreferenced patch: garbage); a compaction's chunk is
// put before the entry names it; patches the map no longer names are
// removed only by garbage collection, which keeps whatever a map, a pin or
// a manifest names.

// Thresholds of the patch uploads.
const (
	// patchMaxFraction: a chunk whose dirty bytes exceed 1/patchMaxFraction
	// of the chunk goes up whole.
	patchMaxFraction = 4
	// maxPatches is the longest patch list (a read from the store fetches
	// the base and every patch); the next upload merges the list and the
	// new writes into one patch.
	maxPatches = 8
	// patchBudgetFraction: when the patches of a chunk, with the new one,
	// would exceed 1/patchBudgetFraction of the chunk, the upload merges
	// them into one patch; when that one would too, the whole chunk goes
	// up (compaction).
	patchBudgetFraction = 2
)

// chunkEntry is a chunk map entry: a whole chunk (no patches), or a base
// (a chunk, or a hole) and patches over it.
type chunkEntry struct {
	base     snapshots.ChunkID
	baseHole bool
	patches  []patchRef
}

type patchRef struct {
	id   snapshots.ChunkID
	size uint32 // bytes of data in the patch
}

// A patched entry's encoding: version (1 byte, 1), flags (1 byte, bit 0:
// the base is a hole), base chunk id (32, zeroes for a hole), then for each
// patch its id (32) and data size (4, big-endian). A whole entry is the 32
// bytes of the chunk id, as before patches.
const (
	entryPatched    = 1
	entryFlagHole   = 1
	entryHeaderLen  = 2 + 32
	entryPatchBytes = 32 + 4
)

func parseEntry(b []byte) (chunkEntry, error) {
	var e chunkEntry
	if len(b) == len(e.base) {
		copy(e.base[:], b)
		return e, nil
	}
	if len(b) < entryHeaderLen+entryPatchBytes || (len(b)-entryHeaderLen)%entryPatchBytes != 0 ||
		b[0] != entryPatched || b[1]&^entryFlagHole != 0 {
		return e, errkind.Mark(errkind.Corrupt, fmt.Errorf("volume: chunk map entry of %d bytes", len(b)))
	}
	e.baseHole = b[1]&entryFlagHole != 0
	copy(e.base[:], b[2:])
	for r := b[entryHeaderLen:]; len(r) > 0; r = r[entryPatchBytes:] {
		var p patchRef
		copy(p.id[:], r)
		p.size = binary.BigEndian.Uint32(r[32:])
		e.patches = append(e.patches, p)
	}
	return e, nil
}

func (e chunkEntry) encode() []byte {
	if len(e.patches) == 0 {
		return append([]byte(nil), e.base[:]...)
	}
	b := make([]byte, 0, entryHeaderLen+entryPatchBytes*len(e.patches))
	var flags byte
	if e.baseHole {
		flags = entryFlagHole
	}
	b = append(b, entryPatched, flags)
	b = append(b, e.base[:]...)
	for _, p := range e.patches {
		b = append(b, p.id[:]...)
		b = binary.BigEndian.AppendUint32(b, p.size)
	}
	return b
}

// whole says the entry is one chunk, without patches.
func (e chunkEntry) whole() bool { return len(e.patches) == 0 }

// ids are the objects the entry names: its base chunk and its patches.
func (e chunkEntry) ids() []snapshots.ChunkID {
	var out []snapshots.ChunkID
	if !e.baseHole {
		out = append(out, e.base)
	}
	for _, p := range e.patches {
		out = append(out, p.id)
	}
	return out
}

func (e chunkEntry) patchBytes() int64 {
	n := int64(0)
	for _, p := range e.patches {
		n += int64(p.size)
	}
	return n
}

// target is where the next patch over e applies, or patch number seq.
func (v *Volume) target(index uint64, e chunkEntry, seq int) snapshots.PatchTarget {
	return snapshots.PatchTarget{Volume: v.info.ID, Index: index, ChunkSize: v.info.ChunkSize, Base: e.base, BaseHole: e.baseHole, Seq: seq}
}

// readEntry reads and assembles the chunk a map entry names: its base
// (zeroes for a hole) with its patches applied.
func (v *Volume) readEntry(ctx context.Context, index uint64, e chunkEntry) ([]byte, error) {
	// The patches are fetched while the base is.
	var patches []snapshots.Patch
	var perr error
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		patches, perr = v.readPatches(ctx, index, e)
	}()
	defer func() { <-fetched }()
	var data []byte
	if e.baseHole {
		data = make([]byte, v.info.ChunkSize)
	} else {
		blob, err := objstoreGetAll(ctx, v.m, e.base)
		if err != nil {
			return nil, fmt.Errorf("volume %s chunk %d: %w", v.info.Name, index, err)
		}
		if data, err = v.m.opts.Codec.Decode(e.base, blob); err != nil {
			return nil, fmt.Errorf("volume %s chunk %d: %w", v.info.Name, index, err)
		}
		if len(data) != v.info.ChunkSize {
			// Short chunks are not written; pad defensively for the last chunk.
			data = append(data, make([]byte, v.info.ChunkSize-len(data))...)
		}
	}
	<-fetched
	if perr != nil {
		return nil, perr
	}
	for _, p := range patches {
		p.Apply(data)
	}
	return data, nil
}

// readPatches reads and opens the patches of a map entry, all at once.
func (v *Volume) readPatches(ctx context.Context, index uint64, e chunkEntry) ([]snapshots.Patch, error) {
	out := make([]snapshots.Patch, len(e.patches))
	errs := make([]error, len(e.patches))
	var wg sync.WaitGroup
	for seq := range e.patches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[seq], errs[seq] = v.readPatch(ctx, index, e, seq)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// readPatch reads and opens patch number seq of a map entry.
func (v *Volume) readPatch(ctx context.Context, index uint64, e chunkEntry, seq int) (snapshots.Patch, error) {
	id := e.patches[seq].id
	blob, err := objstore.GetAll(ctx, v.m.opts.Store, snapshots.PatchKey(id))
	if err != nil {
		return snapshots.Patch{}, fmt.Errorf("volume %s chunk %d: patch %d: %w", v.info.Name, index, seq, err)
	}
	v.m.counters.bytesDownloaded.Add(uint64(len(blob)))
	p, err := v.m.opts.Codec.OpenPatch(id, blob, v.target(index, e, seq))
	if err != nil {
		return p, fmt.Errorf("volume %s chunk %d: %w", v.info.Name, index, err)
	}
	return p, nil
}

// mergePatches returns the extents of one patch equal to e's patches
// followed by the new writes (dirty, their bytes one after the other in
// data), and its size in bytes: what replaces a full patch list.
func (v *Volume) mergePatches(ctx context.Context, index uint64, e chunkEntry, dirty []cache.Extent, data []byte) ([]snapshots.PatchExtent, int64, error) {
	buf := make([]byte, v.info.ChunkSize)
	var xs []cache.Extent
	patches, err := v.readPatches(ctx, index, e)
	if err != nil {
		return nil, 0, err
	}
	for _, p := range patches {
		p.Apply(buf)
		for _, x := range p.Extents {
			xs = cache.AddExtent(xs, int64(x.Off), int64(x.Off+len(x.Data)))
		}
	}
	for _, x := range dirty { // newest last: they win
		l := x.End - x.Off
		copy(buf[x.Off:x.End], data[:l])
		data = data[l:]
		xs = cache.AddExtent(xs, x.Off, x.End)
	}
	out := make([]snapshots.PatchExtent, 0, len(xs))
	size := int64(0)
	for _, x := range xs {
		out = append(out, snapshots.PatchExtent{Off: int(x.Off), Data: buf[x.Off:x.End]})
		size += x.End - x.Off
	}
	return out, size, nil
}

// uploadPatch uploads the dirty extents of a cached chunk as a patch and
// records it in the chunk's map entry, when they are small and the patch
// list is short. done is false when the chunk should go up whole instead.
func (v *Volume) uploadPatch(ctx context.Context, index uint64) (put int64, done bool, err error) {
	m := v.m
	if v.info.Kind != Cached || m.opts.WholeChunkUploads {
		return 0, false, nil
	}
	key := cache.Key{Volume: v.info.ID, Index: index}
	cs := int64(v.info.ChunkSize)
	if err := v.expandPageOf(ctx, index); err != nil {
		return 0, false, err
	}
	unlock := v.locks.lock(index)
	v.mu.Lock()
	gen := v.gens[index]
	dirty := append([]cache.Extent(nil), v.dirty[index]...)
	v.mu.Unlock()
	if gen == 0 {
		unlock()
		return 0, true, nil // unmapped since it was queued: nothing to upload
	}
	raw, err := v.mapEntry(ctx, index)
	if err != nil {
		unlock()
		return 0, false, err
	}
	e := chunkEntry{baseHole: true} // no entry: the base is a hole
	if raw != nil {
		if e, err = parseEntry(raw); err != nil {
			unlock()
			return 0, false, err
		}
	} else if _, err := m.opts.Cache.Merge(key, nil); err != nil {
		// A partial entry over a hole is whole with zeroes around its
		// writes, and stays cached after the upload.
		unlock()
		return 0, false, v.cacheFailed(index, err)
	}
	n := int64(0)
	for _, x := range dirty {
		n += x.End - x.Off
	}
	if n == 0 || n*patchMaxFraction > cs {
		unlock()
		return 0, false, nil
	}
	// A full list, or one past its budget, is merged with the new writes
	// into one patch over the same base, if that patch fits the budget.
	merge := len(e.patches) >= maxPatches || (e.patchBytes()+n)*patchBudgetFraction > cs
	data, cacheGen, ok, err := m.opts.Cache.ReadExtents(key, dirty)
	unlock()
	if err != nil || !ok {
		return 0, false, err
	}
	p := snapshots.Patch{Target: v.target(index, e, len(e.patches))}
	if merge {
		var size int64
		if p.Extents, size, err = v.mergePatches(ctx, index, e, dirty, data); err != nil || size*patchBudgetFraction > cs {
			return 0, false, err // too much changed: the whole chunk goes up
		}
		p.Target.Seq, n = 0, size
	} else {
		for _, x := range dirty {
			l := x.End - x.Off
			p.Extents = append(p.Extents, snapshots.PatchExtent{Off: int(x.Off), Data: data[:l]})
			data = data[l:]
		}
	}
	id, blob, err := m.opts.Codec.SealPatch(p)
	if err != nil {
		return 0, false, err
	}
	pin := m.pin() // from before the put until the map names it
	pin.add(id)
	defer m.unpin(pin)
	if err := m.opts.Store.Put(ctx, snapshots.PatchKey(id), bytes.NewReader(blob), int64(len(blob))); err != nil {
		return 0, false, fmt.Errorf("volume %s: upload patch of chunk %d: %w", v.info.Name, index, err)
	}
	m.counters.bytesUploaded.Add(uint64(len(blob)))
	m.counters.patchesUp.Add(1)
	put = int64(len(blob))
	if m.afterPatchPut != nil {
		m.afterPatchPut()
	}

	unlock = v.locks.lock(index)
	defer unlock()
	v.mu.Lock()
	current := v.gens[index]
	v.mu.Unlock()
	if current != gen {
		return put, true, nil // written again since: the newer data goes up next round
	}
	if merge {
		e.patches = nil // the merged patch replaces them
		m.counters.patchMerges.Add(1)
	}
	e.patches = append(e.patches, patchRef{id: id, size: uint32(n)})
	ok, err = v.casEntry(ctx, index, raw, e.encode())
	if err != nil {
		return put, true, fmt.Errorf("volume %s: record patch of chunk %d: %w", v.info.Name, index, err)
	}
	if !ok {
		return put, true, nil // compacted meanwhile: the next round patches the new base
	}
	v.uploaded(index, cacheGen, false)
	return put, true, nil
}

// uploaded releases a cached chunk whose content the map now records:
// the cache entry becomes clean (a partial one, whose base the cache does
// not hold, is dropped: the store has it all), and the chunk stops being
// pending, which lets the log be trimmed past its writes. Called with the
// chunk lock held, after the map was updated.
func (v *Volume) uploaded(index uint64, cacheGen uint64, hole bool) {
	m := v.m
	key := cache.Key{Volume: v.info.ID, Index: index}
	if v.info.Kind == Cached {
		// Before the chunk stops being pending: MarkClean writes the bytes
		// the cache kept in the log into the chunk file first.
		if hole || m.opts.Cache.Partial(key) {
			// Nothing to keep: a hole reads as zeroes from the map, and a
			// partial entry's writes are in the store now.
			_ = m.opts.Cache.Drop(key)
		} else if _, err := m.opts.Cache.MarkClean(key, cacheGen); err != nil {
			// The chunk is in the store and the cache dropped it: the
			// failing disk only shows in health.
			_ = v.cacheFailed(index, err)
		}
	}
	v.mu.Lock()
	delete(v.gens, index)
	delete(v.dirty, index)
	if v.info.Kind == Cached {
		delete(v.pending, index)
	}
	v.mu.Unlock()
	v.lastUpload.Store(m.opts.Clock.Now().UnixNano())
}

// wholeChunk returns the id of the whole chunk a patched entry names,
// uploading the merged chunk (pinned in pin, so garbage collection keeps
// it until a map or manifest names it); hole says it merged to zeroes.
func (v *Volume) wholeChunk(ctx context.Context, index uint64, e chunkEntry, pin *pinSet) (id snapshots.ChunkID, hole bool, put int64, err error) {
	if e.whole() {
		return e.base, false, 0, nil
	}
	data, err := v.readEntry(ctx, index, e)
	if err != nil {
		return id, false, 0, err
	}
	if snapshots.IsZero(data) {
		return id, true, 0, nil
	}
	id, blob, err := v.m.opts.Codec.Encode(data)
	if err != nil {
		return id, false, 0, err
	}
	pin.add(id)
	if err := v.m.opts.Store.Put(ctx, id.ObjectKey(), bytes.NewReader(blob), int64(len(blob))); err != nil {
		return id, false, 0, fmt.Errorf("volume %s: upload compacted chunk %d: %w", v.info.Name, index, err)
	}
	v.m.counters.bytesUploaded.Add(uint64(len(blob)))
	v.m.counters.chunksUp.Add(1)
	v.m.counters.compactions.Add(1)
	return id, false, int64(len(blob)), nil
}

// commitCompaction replaces a patched map entry by the whole chunk it
// was compacted to (or deletes it for a hole), if the entry is still raw.
// It takes no chunk lock (it runs in the uploader's loop, which a writer
// waiting for cache room under its chunk lock waits for): the comparison
// and the change are one transaction, and an upload's patch commits the
// same way (casEntry), so neither overwrites the other.
func (v *Volume) commitCompaction(ctx context.Context, index uint64, raw []byte, id snapshots.ChunkID, hole bool) error {
	var next []byte
	if !hole {
		next = id[:]
	}
	ok, err := v.casEntry(ctx, index, raw, next)
	if ok && v.m.afterCompaction != nil {
		v.m.afterCompaction()
	}
	return err
}

// casEntry sets chunk index's map entry to next (nil: delete it) if it is
// old (nil: absent), in one transaction; ok says it did.
func (v *Volume) casEntry(ctx context.Context, index uint64, old, next []byte) (ok bool, err error) {
	key := mapKey(v.info.ID, index)
	err = v.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		ok = false
		now, err := tx.Get(key)
		if isMetaNotFound(err) {
			now, err = nil, nil
		}
		if err != nil || !bytes.Equal(now, old) || (now == nil) != (old == nil) {
			return err // changed meanwhile: the newer entry stays
		}
		ok = true
		if next == nil {
			return tx.Delete(key)
		}
		return tx.Set(key, next)
	})
	return ok && err == nil, err
}

// addDirty records [off, end) of chunk index as changed since its last
// upload. Called with the chunk lock held.
func (v *Volume) addDirty(index uint64, off, end int64) {
	if v.info.Kind != Cached {
		return
	}
	v.mu.Lock()
	x := cache.AddExtent(v.dirty[index], off, end)
	if len(x) > maxDirtyExtents {
		// Bounded memory: one extent over them all. More than was
		// written goes up (the chunk's current bytes, so nothing wrong),
		// or, partly cached, the whole chunk does.
		x = append(x[:0], cache.Extent{Off: x[0].Off, End: x[len(x)-1].End})
	}
	v.dirty[index] = x
	v.mu.Unlock()
}

// maxDirtyExtents bounds the extents kept per chunk.
const maxDirtyExtents = 256
