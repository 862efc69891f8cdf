package fileshare

import (
	"context"
	"errors"
	"strings"

	"github.com/gatewayd/gatewayd/objstore"
)

// A replayed creation asks whether its object is in the store: a file
// uploaded before the crash whose records the log still holds changes from
// its object (its later changes apply to it, and attributes set on the
// object since, which the log does not hold, stay), while a file not
// uploaded is rebuilt from the log. The replay learns it from one listing
// of the object's directory, read the first time a creation there asks and
// kept until the replay ends, rather than from a request per file: a
// restart after many files were made and not uploaded (a tree being
// copied, then kill -9) asks the store once per directory (a page of a
// listing per thousand entries), not once per file. Nothing writes to the
// store during the replay, so a listing read once stays true until it
// ends.
//
// The listings held are bounded (replayListedMax names in all); a
// directory with more is asked about key by key.

// replayListedMax bounds the names the replay's listings hold. A variable
// for tests.
var replayListedMax = 1 << 18

// replayObjects answers, during a replay, whether objects are in the
// store. It is used by the replay alone, one record at a time.
type replayObjects struct {
	store objstore.Store
	dirs  map[string]*replayDir // by prefix
	n     int                   // names held in dirs
}

type replayDir struct {
	names map[string]bool // the objects directly below the prefix, by the rest of their key ("": the prefix itself, a marker)
	big   bool            // more names than the bound: asked key by key
	err   error           // the listing failed (the store is away)
}

func newReplayObjects(store objstore.Store) *replayObjects {
	return &replayObjects{store: store, dirs: map[string]*replayDir{}}
}

// errBigListing stops a listing past the bound.
var errBigListing = errors.New("listing past the bound")

// exists says whether the store holds key: a file's or symbolic link's
// object, or a directory's marker (key ends in "/"). An error is the
// store's, when it could not be asked.
func (r *replayObjects) exists(ctx context.Context, key string) (bool, error) {
	// A marker is found in the listing of its own prefix (which a
	// directory made with files in it needs too), an object in its
	// parent's.
	prefix := key
	if !strings.HasSuffix(key, "/") {
		prefix = key[:strings.LastIndexByte(key, '/')+1]
	}
	d := r.dirs[prefix]
	if d == nil {
		d = r.list(ctx, prefix)
	}
	switch {
	case d.err != nil:
		return false, d.err
	case d.big:
		return statExists(ctx, r.store, key)
	}
	return d.names[key[len(prefix):]], nil
}

// list reads the directory below prefix and holds it, dropping the
// listings held before when the bound would be passed.
func (r *replayObjects) list(ctx context.Context, prefix string) *replayDir {
	d := &replayDir{names: map[string]bool{}}
	err := objstore.ListDir(ctx, r.store, prefix, func(oi objstore.ObjectInfo, isPrefix bool) error {
		if isPrefix {
			return nil
		}
		if len(d.names) >= replayListedMax {
			return errBigListing
		}
		d.names[oi.Key[len(prefix):]] = true
		return nil
	})
	switch {
	case errors.Is(err, errBigListing):
		d.names, d.big = nil, true
	case err != nil:
		d.names, d.err = nil, err
	case r.n+len(d.names) > replayListedMax:
		// The listings held go; what is known of directories held
		// without names (big, or not read) stays.
		for p, old := range r.dirs {
			if old.names != nil {
				delete(r.dirs, p)
			}
		}
		r.n = 0
	}
	r.n += len(d.names)
	r.dirs[prefix] = d
	return d
}

// statExists asks the store whether it holds key.
func statExists(ctx context.Context, store objstore.Store, key string) (bool, error) {
	_, err := store.Stat(ctx, key)
	if objstore.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
