package snapshots

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// A repository's snapshots are manifests under snapshots/<id>; their map
// pages and chunks are shared with every other manifest. The functions here
// read and write them given only the object store and the codec, so the
// daemon and the stand-alone disaster-recovery restore use the same code.

// SnapshotPrefix is where snapshot manifests live.
const SnapshotPrefix = "snapshots/"

// SnapshotKey is the object key of snapshot id's manifest.
func SnapshotKey(id string) string { return SnapshotPrefix + id }

// NewSnapshotID returns a fresh snapshot id: "snap-" and 16 hex digits.
func NewSnapshotID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "snap-" + hex.EncodeToString(b)
}

// ValidSnapshotID says whether s has the form NewSnapshotID gives.
func ValidSnapshotID(s string) bool {
	if len(s) != 21 || !strings.HasPrefix(s, "snap-") {
		return false
	}
	_, err := hex.DecodeString(s[5:])
	return err == nil && strings.ToLower(s) == s
}

// ChunkMap is a volume's chunks at one point: chunk index to chunk id.
// Absent indexes are holes.
type ChunkMap map[uint64]ChunkID

// Pages splits m into map pages, in index order.
func (m ChunkMap) Pages() []Page {
	byFirst := map[uint64]*Page{}
	for index, id := range m {
		first := index - index%PageEntries
		p := byFirst[first]
		if p == nil {
			p = &Page{First: first, Entries: map[uint32]ChunkID{}}
			byFirst[first] = p
		}
		p.Entries[uint32(index-first)] = id
	}
	out := make([]Page, 0, len(byFirst))
	for _, p := range byFirst {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].First < out[j].First })
	return out
}

// WriteStats count what writing a manifest's tree uploaded.
type WriteStats struct {
	PagesWritten int
	BytesWritten int64
}

// WritePages seals m's pages and uploads those not in known (page ids the
// caller knows exist, such as the parent manifest's), returning the refs
// for a manifest. pin, if not nil, is told each page id before its upload
// or its existence check, so garbage collection keeps it.
func WritePages(ctx context.Context, store objstore.Store, codec *Codec, m ChunkMap, known map[ChunkID]bool, pin func(ChunkID)) ([]PageRef, WriteStats, error) {
	var st WriteStats
	var refs []PageRef
	for _, p := range m.Pages() {
		id, blob, err := codec.SealPage(p)
		if err != nil {
			return nil, st, err
		}
		if pin != nil {
			pin(id)
		}
		if !known[id] {
			// A page equal to one already stored (another volume's, a
			// restored volume's source) is not uploaded again.
			if _, err := store.Stat(ctx, PageKey(id)); err == nil {
				refs = append(refs, PageRef{First: p.First, ID: id})
				continue
			}
			if err := store.Put(ctx, PageKey(id), bytes.NewReader(blob), int64(len(blob))); err != nil {
				return nil, st, fmt.Errorf("upload map page: %w", err)
			}
			st.PagesWritten++
			st.BytesWritten += int64(len(blob))
		}
		refs = append(refs, PageRef{First: p.First, ID: id})
	}
	return refs, st, nil
}

// ReadManifest fetches and opens the manifest at key.
func ReadManifest(ctx context.Context, store objstore.Store, codec *Codec, key string) (Manifest, error) {
	blob, err := objstore.GetAll(ctx, store, key)
	if err != nil {
		return Manifest{}, err
	}
	return codec.OpenManifest(key, blob)
}

// ReadChunkMap fetches every page a manifest names and returns its chunk map.
func ReadChunkMap(ctx context.Context, store objstore.Store, codec *Codec, man Manifest) (ChunkMap, error) {
	out := ChunkMap{}
	chunks := uint64(0)
	if man.ChunkSize > 0 {
		chunks = uint64((man.Size + int64(man.ChunkSize) - 1) / int64(man.ChunkSize))
	}
	for _, ref := range man.Pages {
		p, err := ReadPage(ctx, store, codec, ref)
		if err != nil {
			return nil, err
		}
		for off, id := range p.Entries {
			index := p.First + uint64(off)
			if index >= chunks {
				return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("map page %s names chunk %d beyond the volume's %d chunks", ref.ID, index, chunks))
			}
			out[index] = id
		}
	}
	return out, nil
}

// ReadPage fetches and opens one page, checking it covers what ref says.
func ReadPage(ctx context.Context, store objstore.Store, codec *Codec, ref PageRef) (Page, error) {
	b, err := objstore.GetAll(ctx, store, PageKey(ref.ID))
	if err != nil {
		return Page{}, fmt.Errorf("map page %s: %w", ref.ID, err)
	}
	p, err := codec.OpenPage(ref.ID, b)
	if err != nil {
		return Page{}, err
	}
	if p.First != ref.First {
		return Page{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("map page %s covers chunk %d, the manifest says %d", ref.ID, p.First, ref.First))
	}
	return p, nil
}

// ReadChunk fetches and authenticates one chunk, padded to size bytes.
func ReadChunk(ctx context.Context, store objstore.Store, codec *Codec, id ChunkID, size int) ([]byte, error) {
	blob, err := objstore.GetAll(ctx, store, id.ObjectKey())
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	data, err := codec.Decode(id, blob)
	if err != nil {
		return nil, err
	}
	if len(data) > size {
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("chunk %s holds %d bytes, more than the chunk size %d", id, len(data), size))
	}
	if len(data) < size {
		data = append(data, make([]byte, size-len(data))...)
	}
	return data, nil
}

// ListSnapshots reads every snapshot manifest in the repository. A manifest
// that fails to open is returned in bad rather than stopping the listing.
func ListSnapshots(ctx context.Context, store objstore.Store, codec *Codec) (good []Listed, bad []Listed, err error) {
	var keys []string
	err = store.List(ctx, SnapshotPrefix, func(oi objstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, key := range keys {
		man, err := ReadManifest(ctx, store, codec, key)
		l := Listed{ID: strings.TrimPrefix(key, SnapshotPrefix), Manifest: man, Err: err}
		if err != nil {
			bad = append(bad, l)
		} else {
			good = append(good, l)
		}
	}
	sort.Slice(good, func(i, j int) bool { return good[i].Manifest.Created.Before(good[j].Manifest.Created) })
	return good, bad, nil
}

// Listed is one snapshot found in the bucket.
type Listed struct {
	ID       string
	Manifest Manifest
	Err      error
}
