package snapshots

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// Problem is one object of a snapshot that is missing or does not
// authenticate.
type Problem struct {
	Object string `json:"object"`          // object key
	What   string `json:"what"`            // "missing" or "corrupt" or "error"
	Chunk  *int64 `json:"chunk,omitempty"` // chunk index, for chunks
	Err    string `json:"error"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Snapshot      string    `json:"snapshot"`
	Pages         int       `json:"pages"`
	Chunks        int       `json:"chunks"` // distinct chunks checked
	BytesChecked  int64     `json:"bytes_checked"`
	Problems      []Problem `json:"problems"`
	ManifestError string    `json:"manifest_error,omitempty"`
}

// OK says whether every object was present and authentic.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 && r.ManifestError == "" }

// Verify fetches and authenticates the manifest at key, every page it names
// and every chunk those name, with parallel downloads. It never stops at
// the first problem: the report lists each missing or corrupt object.
func Verify(ctx context.Context, store objstore.Store, codec *Codec, key string, parallel int) (VerifyReport, error) {
	rep := VerifyReport{Snapshot: key}
	man, err := ReadManifest(ctx, store, codec, key)
	if err != nil {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		rep.ManifestError = err.Error()
		rep.Problems = append(rep.Problems, problem(key, nil, err))
		return rep, nil
	}
	byID := map[ChunkID][]uint64{}
	for _, ref := range man.Pages {
		p, err := ReadPage(ctx, store, codec, ref)
		rep.Pages++
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.Problems = append(rep.Problems, problem(PageKey(ref.ID), nil, err))
			continue
		}
		for off, id := range p.Entries {
			byID[id] = append(byID[id], p.First+uint64(off))
		}
	}
	ids := make([]ChunkID, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return byID[ids[i]][0] < byID[ids[j]][0] })
	rep.Chunks = len(ids)

	var mu sync.Mutex
	work := make(chan ChunkID)
	var wg sync.WaitGroup
	for range max(parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				data, err := ReadChunk(ctx, store, codec, id, man.ChunkSize)
				mu.Lock()
				if err != nil && ctx.Err() == nil {
					index := int64(byID[id][0])
					rep.Problems = append(rep.Problems, problem(id.ObjectKey(), &index, err))
				}
				rep.BytesChecked += int64(len(data))
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		work <- id
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return rep.Problems[i].Object < rep.Problems[j].Object })
	return rep, nil
}

func problem(object string, chunk *int64, err error) Problem {
	what := "error"
	switch {
	case objstore.IsNotFound(err):
		what = "missing"
	case errkind.IsCorrupt(err):
		what = "corrupt"
	}
	return Problem{Object: object, What: what, Chunk: chunk, Err: err.Error()}
}

// ErrSnapshotNotFound is returned for a snapshot id with no manifest.
var ErrSnapshotNotFound = errkind.Mark(errkind.NotFound, errors.New("no such snapshot"))

// OpenSnapshot reads snapshot id's manifest, with a clear error when it
// does not exist.
func OpenSnapshot(ctx context.Context, store objstore.Store, codec *Codec, id string) (Manifest, error) {
	if !ValidSnapshotID(id) {
		return Manifest{}, errkind.Mark(errkind.Permanent, fmt.Errorf("%q is not a snapshot id (snap- and 16 hex digits)", id))
	}
	man, err := ReadManifest(ctx, store, codec, SnapshotKey(id))
	if objstore.IsNotFound(err) {
		return man, fmt.Errorf("snapshot %s: %w", id, ErrSnapshotNotFound)
	}
	if err != nil {
		return man, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if man.Kind != "snapshot" {
		return man, errkind.Mark(errkind.Corrupt, fmt.Errorf("snapshot %s: manifest of kind %q", id, man.Kind))
	}
	return man, nil
}
