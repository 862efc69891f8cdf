package fileshare

import (
	"context"
	"io"
	"sync"

	"github.com/gatewayd/gatewayd/objstore"
)

// Uploading only what changed.
//
// A file uploaded before (its object, with ETag base.etag, is the base its
// writes apply to) whose upload changes only some of its blocks is built
// by the store from the object's unchanged ranges and the changed blocks
// (objstore.Composer): the unchanged ranges are copied inside the store,
// only the changed blocks are sent. A block is unchanged when it is not
// dirty in the cache (dirty blocks stay so until an upload that read them
// succeeds: a write since the last upload, or one replayed after a crash)
// and lies wholly within the base's size (a truncation lowers that size,
// so blocks past it, zeroes now, are sent). The copies name the base's
// ETag: if the object changed beside the share, the compose is refused and
// the file is sent whole, as it is without a Composer, so the outcome is
// what it always was (also when the refusal comes from a retry after an
// attempt that composed the object and lost its answer: the file is then
// sent whole over an object that already holds it). On S3 a small change costs a part of at least 5 MiB
// (objstore/s3 fills it with copied bytes it reads), so a 4 KiB change in
// a 1 GiB file sends 5 MiB, not 1 GiB.

// composeMinCopy is the fewest unchanged bytes worth a compose: below it,
// the file is sent whole in one request or a few.
const composeMinCopy = 8 << 20

// putFile uploads a file's content as its object, with its attributes as
// metadata: by composing it from the unchanged ranges of its object and
// the changed blocks when it can (see above), else by sending body whole.
// It returns the bytes sent.
func (m *Manager) putFile(ctx context.Context, s *Share, key string, body io.ReadSeeker, r *fileReader, attr, base Attr) (int64, error) {
	if parts, sent := m.changedParts(s, key, r, attr, base); parts != nil {
		err := objstore.Compose(ctx, m.opts.Store, key, parts, attr.metadata())
		if err == nil {
			return sent, nil
		}
		if !objstore.IsPreconditionFailed(err) {
			return 0, err
		}
		m.log.Info("file share upload: the object changed beside the share since it was read; sending the file whole", "share", s.cfg.Name, "key", key, "err", err)
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
	}
	return attr.Size, objstore.PutWith(ctx, m.opts.Store, key, body, attr.Size, attr.metadata())
}

// changedParts lays a file out as copies of its object's unchanged blocks
// and data of the others, or returns nil when a compose is not worth it
// (or not possible: a new file, a store without Composer, an object still
// to be moved from another key). sent is the bytes of the data parts.
func (m *Manager) changedParts(s *Share, key string, r *fileReader, attr, base Attr) (parts []objstore.Part, sent int64) {
	if attr.Type != TypeFile || base.etag == "" || min(attr.Size, base.Size) < composeMinCopy {
		return nil, 0
	}
	if _, ok := m.opts.Store.(objstore.Composer); !ok || m.source(s.cfg.Name, key) != key {
		return nil, 0
	}
	dirty := map[int64]bool{}
	for _, k := range m.opts.Cache.Dirty() {
		if k.Volume == r.vol {
			dirty[int64(k.Index)] = true
		}
	}
	type run struct {
		copy   bool
		lo, hi int64
	}
	var runs []run
	copied := int64(0)
	for lo := int64(0); lo < attr.Size; lo += BlockSize {
		hi := min(lo+BlockSize, attr.Size)
		unchanged := !dirty[lo/BlockSize] && hi <= base.Size
		if unchanged {
			copied += hi - lo
		}
		if n := len(runs); n > 0 && runs[n-1].copy == unchanged {
			runs[n-1].hi = hi
			continue
		}
		runs = append(runs, run{copy: unchanged, lo: lo, hi: hi})
	}
	if copied < composeMinCopy {
		return nil, 0
	}
	at := fileAt{mu: new(sync.Mutex), r: r}
	for _, rn := range runs {
		if rn.copy {
			parts = append(parts, objstore.CopyPart(key, rn.lo, rn.hi-rn.lo, base.etag))
		} else {
			parts = append(parts, objstore.DataPart(io.NewSectionReader(at, rn.lo, rn.hi-rn.lo), rn.hi-rn.lo))
			sent += rn.hi - rn.lo
		}
	}
	return parts, sent
}

// fileAt reads a file at any offset through the upload's fileReader,
// one read at a time.
type fileAt struct {
	mu *sync.Mutex
	r  *fileReader
}

func (f fileAt) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(f.r, p)
}
