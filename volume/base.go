package volume

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/snapshots"
)

// A volume restored from a snapshot starts with the snapshot's map pages
// as its base: meta holds one key per page (vbase/<id>/<first>), not one
// per chunk, so creating the volume costs the same at 1 GiB as at 1 TiB.
// A page is expanded into the volume's chunk map (and, for a stored
// volume, its hydration set) the first time anything touches a chunk in
// it: a read, a write, an unmap, the background hydration. Until then a
// snapshot or recovery point of the volume names the base page itself, and
// garbage collection treats it as live.
//
// Every path that changes a chunk's map entry expands its page first, so
// an expansion never overwrites an entry written after it.

// basePage is a page of the snapshot a volume was restored from, not yet
// expanded.
type basePage struct {
	ID      snapshots.ChunkID
	Entries int // chunks that are not holes
}

func basePrefix(id string) []byte { return []byte("vbase/" + id + "/") }

func baseKey(id string, first uint64) []byte { return binaryKey(basePrefix(id), first) }

func encodeBasePage(p basePage) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), p.ID[:]...), uint32(p.Entries))
}

func decodeBasePage(b []byte) (basePage, error) {
	if len(b) != 36 {
		return basePage{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("volume: base page entry of %d bytes", len(b)))
	}
	var p basePage
	copy(p.ID[:], b)
	p.Entries = int(binary.BigEndian.Uint32(b[32:]))
	return p, nil
}

// loadBase reads a volume's unexpanded base pages.
func (v *Volume) loadBase(ctx context.Context) error {
	prefix := basePrefix(v.info.ID)
	base := map[uint64]basePage{}
	err := v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(k, val []byte) error {
			first, err := indexFromKey(prefix, k)
			if err != nil {
				return err
			}
			p, err := decodeBasePage(val)
			base[first] = p
			return err
		})
	})
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.base = base
	v.mu.Unlock()
	return nil
}

// readBase fetches the pages a snapshot names, in parallel, checking each,
// and returns them as base pages.
func (m *Manager) readBase(ctx context.Context, man snapshots.Manifest) (map[uint64]basePage, error) {
	out := make(map[uint64]basePage, len(man.Pages))
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	chunks := uint64((man.Size + int64(man.ChunkSize) - 1) / int64(man.ChunkSize))
	for _, ref := range man.Pages {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p, err := snapshots.ReadPage(ctx, m.opts.Store, m.opts.Codec, ref)
			if err == nil {
				for off := range p.Entries {
					if p.First+uint64(off) >= chunks {
						err = errkind.Mark(errkind.Corrupt, fmt.Errorf("map page %s names chunk %d beyond the volume's %d chunks", ref.ID, p.First+uint64(off), chunks))
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			out[ref.First] = basePage{ID: ref.ID, Entries: len(p.Entries)}
		}()
	}
	wg.Wait()
	return out, firstErr
}

// writeBase records a new volume's base pages, in transactions of bounded
// size.
func (m *Manager) writeBase(ctx context.Context, volumeID string, base map[uint64]basePage) error {
	firsts := make([]uint64, 0, len(base))
	for f := range base {
		firsts = append(firsts, f)
	}
	sort.Slice(firsts, func(a, b int) bool { return firsts[a] < firsts[b] })
	for len(firsts) > 0 {
		batch := firsts[:min(len(firsts), meta.MaxTxnWrites)]
		firsts = firsts[len(batch):]
		err := m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			for _, f := range batch {
				if err := tx.Set(baseKey(volumeID, f), encodeBasePage(base[f])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("record the snapshot's map pages: %w", err)
		}
	}
	return nil
}

// expandPageOf expands the base page holding chunk index, if there is one.
// Safe to call with the chunk locked.
func (v *Volume) expandPageOf(ctx context.Context, index uint64) error {
	first := index - index%snapshots.PageEntries
	v.mu.Lock()
	_, ok := v.base[first]
	v.mu.Unlock()
	if !ok {
		return nil
	}
	unlock := v.pageLocks.lock(first)
	defer unlock()
	v.mu.Lock()
	bp, ok := v.base[first]
	v.mu.Unlock()
	if !ok {
		return nil // expanded meanwhile
	}
	p, err := snapshots.ReadPage(ctx, v.m.opts.Store, v.m.opts.Codec, snapshots.PageRef{First: first, ID: bp.ID})
	if err != nil {
		return fmt.Errorf("volume %s: map page for chunk %d: %w", v.info.Name, index, err)
	}
	stored := v.info.Kind == Stored
	err = v.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		for off, id := range p.Entries {
			i := first + uint64(off)
			if err := tx.Set(mapKey(v.info.ID, i), id[:]); err != nil {
				return err
			}
			if stored {
				if err := tx.Set(hydrationKey(v.info.ID, i), nil); err != nil {
					return err
				}
			}
		}
		return tx.Delete(baseKey(v.info.ID, first))
	})
	if err != nil {
		return fmt.Errorf("volume %s: expand map page %d: %w", v.info.Name, first, err)
	}
	// Meta first, memory after (see capture).
	if stored && v.hyd != nil {
		v.hyd.mu.Lock()
		for off := range p.Entries {
			v.hyd.pending[first+uint64(off)] = true
		}
		v.hyd.mu.Unlock()
	}
	v.mu.Lock()
	delete(v.base, first)
	v.mu.Unlock()
	return nil
}

// baseRefs returns the unexpanded base pages as manifest page refs and the
// chunks they hold. Called with v.mu held.
func (v *Volume) baseRefsLocked() ([]snapshots.PageRef, int) {
	refs := make([]snapshots.PageRef, 0, len(v.base))
	n := 0
	for first, bp := range v.base {
		refs = append(refs, snapshots.PageRef{First: first, ID: bp.ID})
		n += bp.Entries
	}
	sort.Slice(refs, func(a, b int) bool { return refs[a].First < refs[b].First })
	return refs, n
}

// withBase merges a map's pages with base pages; where both cover a page
// (an expansion in progress), the base page wins: until the volume's
// memory says it is expanded, nothing has changed it.
func withBase(refs, base []snapshots.PageRef) []snapshots.PageRef {
	inBase := map[uint64]bool{}
	for _, r := range base {
		inBase[r.First] = true
	}
	out := append([]snapshots.PageRef(nil), base...)
	for _, r := range refs {
		if !inBase[r.First] {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].First < out[b].First })
	return out
}
