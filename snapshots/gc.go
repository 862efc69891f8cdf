package snapshots

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// Garbage collection removes chunks, map pages and patches that no manifest
// and no live volume references. Manifests never name patches: a patch is
// live only while a volume's chunk map (a root from ExtraRoots) names it.
//
// The rules that make it safe while snapshots are taken and volumes written
// (docs/format.md, "Garbage collection"):
//  1. Candidates are listed first, with their modification times. An
//     object written after the listing is never a candidate.
//  2. Then every manifest (snapshots/ and volumes/*/head) is read with its
//     pages, and then the caller's roots: the chunk maps of live volumes and
//     the objects of snapshots being written. If any manifest or page cannot
//     be read, GC stops without deleting anything: a mark that may be
//     incomplete must not drive a sweep.
//  3. A candidate is deleted only if it is unmarked and older than the
//     grace period. Writers upload a chunk before they record it anywhere,
//     so a chunk uploaded just before the listing and recorded just after
//     the mark is young and survives.

// Roots are ids live outside the repository's manifests.
type Roots struct {
	Chunks map[ChunkID]bool // live ids (chunks, or pages whose chunks are live otherwise)
	Pages  map[ChunkID]bool // live map pages: GC reads them and keeps their chunks too
}

// GCOptions tune a collection.
type GCOptions struct {
	Grace time.Duration
	Now   func() time.Time
	// ExtraRoots is called after the manifests are read.
	ExtraRoots func(context.Context) (Roots, error)
	DryRun     bool
	// ObjectLock: the bucket has Object Lock. Candidates are then
	// removed with every version (objstore.Purge), and those retained
	// (the record says so, or the store refuses) are skipped and counted
	// in KeptLocked: a retained object never fails a collection.
	ObjectLock bool
	Record     *RetentionRecord
}

// GCStats report a collection.
type GCStats struct {
	Manifests    int   `json:"manifests"`
	Candidates   int   `json:"candidates"`
	Live         int   `json:"live"`
	KeptYoung    int   `json:"kept_young"`            // unreferenced but inside the grace period
	KeptLocked   int   `json:"kept_locked,omitempty"` // unreferenced but retained (Object Lock)
	Deleted      int   `json:"deleted"`
	BytesDeleted int64 `json:"bytes_deleted"`
	DryRun       bool  `json:"dry_run,omitempty"`
}

type candidate struct {
	key  string
	size int64
	mod  time.Time
	page bool
}

// CollectGarbage runs one mark and sweep over the repository.
func CollectGarbage(ctx context.Context, store objstore.Store, codec *Codec, opts GCOptions) (GCStats, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	st := GCStats{DryRun: opts.DryRun}
	cands := map[ChunkID]candidate{}
	for _, prefix := range []string{"chunks/", "maps/", "patches/"} {
		err := store.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
			id, err := ParseChunkID(path.Base(oi.Key))
			if err != nil || oi.Key != objectKeyFor(prefix, id) {
				return nil // not ours: leave it
			}
			cands[id] = candidate{key: oi.Key, size: oi.Size, mod: oi.ModTime, page: prefix == "maps/"}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("gc: list %s: %w", prefix, err)
		}
	}
	st.Candidates = len(cands)
	listedAt := now()

	live := map[ChunkID]bool{}
	var manifests []string
	for _, prefix := range []string{SnapshotPrefix, "volumes/"} {
		err := store.List(ctx, prefix, func(oi objstore.ObjectInfo) error {
			if prefix == SnapshotPrefix || path.Base(oi.Key) == "head" {
				manifests = append(manifests, oi.Key)
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("gc: list %s: %w", prefix, err)
		}
	}
	seenPages := map[ChunkID]bool{}
	for _, key := range manifests {
		man, err := ReadManifest(ctx, store, codec, key)
		if objstore.IsNotFound(err) {
			continue // deleted since the listing: nothing of it to keep
		}
		if err != nil {
			return st, fmt.Errorf("gc: stopped without deleting anything: manifest %s: %w", key, err)
		}
		st.Manifests++
		for _, ref := range man.Pages {
			live[ref.ID] = true
			if seenPages[ref.ID] {
				continue
			}
			seenPages[ref.ID] = true
			p, err := ReadPage(ctx, store, codec, ref)
			if err != nil {
				return st, fmt.Errorf("gc: stopped without deleting anything: manifest %s: %w", key, err)
			}
			for _, id := range p.Entries {
				live[id] = true
			}
		}
	}
	if opts.ExtraRoots != nil {
		roots, err := opts.ExtraRoots(ctx)
		if err != nil {
			return st, fmt.Errorf("gc: stopped without deleting anything: live volumes: %w", err)
		}
		for id := range roots.Chunks {
			live[id] = true
		}
		for id := range roots.Pages {
			live[id] = true
			if seenPages[id] {
				continue
			}
			seenPages[id] = true
			b, err := objstore.GetAll(ctx, store, PageKey(id))
			if err == nil {
				var p Page
				if p, err = codec.OpenPage(id, b); err == nil {
					for _, cid := range p.Entries {
						live[cid] = true
					}
				}
			}
			if err != nil {
				return st, fmt.Errorf("gc: stopped without deleting anything: map page %s of a restored volume: %w", id, err)
			}
		}
	}

	var dead []candidate
	for id, c := range cands {
		if live[id] {
			st.Live++
			continue
		}
		if listedAt.Sub(c.mod) < opts.Grace {
			st.KeptYoung++
			continue
		}
		dead = append(dead, c)
	}
	var known []objstore.Retention
	if opts.ObjectLock {
		keys := make([]string, len(dead))
		for i, c := range dead {
			keys[i] = c.key
		}
		var err error
		if known, err = opts.Record.Known(ctx, keys); err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
	}
	for i, c := range dead {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if opts.ObjectLock && known[i].Holds(now()) {
			st.KeptLocked++
			continue
		}
		if !opts.DryRun {
			if err := removeObject(ctx, store, opts, c.key); objstore.IsObjectLocked(err) {
				st.KeptLocked++
				continue
			} else if err != nil {
				return st, fmt.Errorf("gc: delete %s: %w", c.key, err)
			}
		}
		st.Deleted++
		st.BytesDeleted += c.size
	}
	return st, nil
}

// removeObject deletes key, with every version of it when the bucket has
// Object Lock (where a plain delete removes nothing).
func removeObject(ctx context.Context, store objstore.Store, opts GCOptions, key string) error {
	if !opts.ObjectLock {
		return store.Delete(ctx, key)
	}
	if err := objstore.Purge(ctx, store, key); err != nil {
		return err
	}
	return opts.Record.Forget(ctx, key)
}

func objectKeyFor(prefix string, id ChunkID) string {
	switch prefix {
	case "maps/":
		return PageKey(id)
	case "patches/":
		return PatchKey(id)
	}
	return id.ObjectKey()
}
