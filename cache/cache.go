// Package cache is the local chunk cache of cached volumes: chunks kept as
// files on local disk (through vfs), with a size limit. Clean chunks (equal
// to what is in the object store) are evicted least recently used first;
// dirty chunks (written, not yet uploaded) are pinned until the uploader
// marks them clean. When the cache is full of dirty chunks, writers of new
// chunks wait (backpressure); reads never wait for room.
//
// The cache is not durable and does not try to be: every acknowledged write
// is in the upload buffer, which is replayed after a crash. So the cache
// never fsyncs, and Open starts empty, removing whatever a previous run left.
//
// A write need not read the chunk it changes (WriteAt with a nil base): a
// chunk not cached becomes a partial entry, the bytes written plus the list
// of extents written, the rest of its file zeroes. A read of written bytes
// is served from it; any other read is a miss, and the caller fetches the
// chunk's base (its uploaded content) and merges it in (Merge: written
// extents win), after which the entry is whole. A partial entry is always
// dirty, so it is pinned, and Snapshot refuses it: the uploader merges
// first. The extent list lives in memory only. After a crash the cache
// starts empty and the upload buffer's replay writes every record again,
// which rebuilds the partial entries and their extents from the records.
//
// Bytes written once locally: a write whose bytes are durable in an upload
// buffer record already (WriteLogged, with the record's place) is not
// written into the chunk file. The entry keeps an overlay instead, spans of
// the chunk whose bytes are in records (newer spans cut older ones away),
// and reads, copies, merges and the partial extents see those bytes as if
// they were in the file; a chunk written only so has no file at all.
// MarkClean, after the upload, writes the overlay into the file (runs of
// touching spans with one write each; bytes overwritten meanwhile are not
// written at all) before it returns, so that the caller may then release
// the records; a dirty entry is never evicted, so the overlay lives only
// while its records are held. Past 256 spans an entry writes its overlay
// into its file at once, which bounds the overlay's memory. After a crash
// the replay's writes rebuild the overlay from the records, as they do
// the partial entries.
package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gatewayd/gatewayd/internal/backpressure"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/vfs"
)

// Key names a chunk: a volume and the chunk's index in it.
type Key struct {
	Volume string
	Index  uint64
}

// Options configure a Cache.
type Options struct {
	Capacity int64 // bytes of chunk data at most
	Logger   *slog.Logger
	// Health, when set, warns while writers wait because the cache is
	// full of data not yet uploaded.
	Health *health.Reporter
}

// ErrNotCached means the chunk is not in the cache.
var ErrNotCached = errkind.Mark(errkind.NotFound, errors.New("chunk not cached"))

// ErrPartial means the chunk is cached only in the places written: its
// base must be merged first (Merge).
var ErrPartial = errors.New("chunk cached only where written, base not merged")

// Stats are the cache's figures.
type Stats struct {
	Capacity, Used, Dirty int64
	Chunks, DirtyChunks   int
	PartialChunks         int // written in places, base not merged yet
	Hits, Misses          uint64
	Evictions             uint64
	Waits                 uint64 // writers that had to wait for room
	// Materialized is the bytes of overlay (writes kept in the upload
	// buffer) written into chunk files, at MarkClean or when an entry's
	// overlay grew past its bound.
	Materialized uint64
}

// HitPercent is the share of reads served from the cache, in percent
// (0 before the first read).
func (s Stats) HitPercent() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return 100 * float64(s.Hits) / float64(s.Hits+s.Misses)
}

type entry struct {
	key   Key
	path  string // its file's
	size  int64
	dirty bool
	gen   uint64
	// writing counts writes in progress; a chunk being written cannot be
	// marked clean, whatever generation the caller saw.
	writing int
	lru     *list.Element // in Cache.clean when clean, nil when dirty
	mu      sync.RWMutex  // guards the file's content and written
	// partial is set while the entry holds only the extents in written
	// and the rest of the chunk is its base, not merged yet; a partial
	// entry is dirty. Changed under both mu and Cache.mu.
	partial bool
	written extents // under mu; nil when whole
	// spans are the overlay (overlay.go): ranges whose bytes are in log
	// records, not in the file. Under mu; only a dirty entry has any.
	spans spans
	// file says the chunk file exists, size bytes long; without it every
	// byte outside spans is zero. Under mu.
	file bool
	// forgotten is set (under handles.mu) when the entry leaves the
	// cache: its path is no longer its own.
	forgotten bool
}

// Cache is the chunk cache. It is safe for concurrent use.
//
// Lock order: an entry's mu before c.mu. c.mu is only held for index
// updates, never across file I/O or base fetches.
type Cache struct {
	fs    vfs.FS
	dir   string
	opts  Options
	files *handles

	mu      sync.Mutex
	room    *backpressure.Waiters // woken when space is freed
	entries map[Key]*entry
	// byVolume indexes entries by volume, so that dropping a volume (a
	// share's file is one) costs its own chunks, not a walk of the cache.
	byVolume map[string]map[uint64]*entry
	clean    *list.List // front = most recently used
	used     int64      // bytes of all entries, including reservations
	dirty    int64
	nextGen  uint64
	stats    Stats
	partial  int // partial entries
	closed   bool

	materialized atomic.Uint64 // bytes of overlay written into chunk files
}

// Open starts an empty cache in dir, removing anything there.
func Open(fs vfs.FS, dir string, opts Options) (*Cache, error) {
	if opts.Capacity <= 0 {
		return nil, errors.New("cache: capacity must be positive")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Only a directory this cache made (it holds the marker) or an empty
	// one is cleared: a mistyped cache.dir must not wipe someone's files.
	if names, err := fs.List(dir); err == nil && len(names) > 0 {
		if _, err := fs.Stat(filepath.Join(dir, markerFile)); err != nil {
			return nil, fmt.Errorf("cache: directory %s is not empty and was not made by gatewayd's cache; choose an empty or new directory", dir)
		}
	}
	if err := removeAll(fs, dir); err != nil {
		return nil, fmt.Errorf("cache: clear %s: %w", dir, err)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	marker, err := fs.Create(filepath.Join(dir, markerFile))
	if err == nil {
		err = marker.Sync()
		marker.Close()
	}
	if err == nil {
		err = fs.SyncDir(dir) // the marker must outlive a crash, or the next Open refuses the directory
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{fs: fs, dir: dir, opts: opts, entries: map[Key]*entry{}, byVolume: map[string]map[uint64]*entry{}, clean: list.New(), files: newHandles(fs)}
	c.room = backpressure.New(&c.mu, opts.Health, "cache full of data not yet uploaded: writes wait")
	return c, nil
}

// markerFile marks a directory as this cache's own, safe to clear.
const markerFile = ".gatewayd-cache"

// removeAll deletes dir's contents recursively through fs.
func removeAll(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		if _, serr := fs.Stat(dir); serr != nil {
			return nil // no directory: nothing to remove
		}
		return err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := fs.Stat(p); err == nil && fi.IsDir() {
			if err := removeAll(fs, p); err != nil {
				return err
			}
		}
		if err := fs.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cache) volumeDir(volume string) string { return filepath.Join(c.dir, volume) }

func (c *Cache) path(k Key) string {
	return filepath.Join(c.volumeDir(k.Volume), strconv.FormatUint(k.Index, 16))
}

// newEntry makes the entry of key (its path is computed once, not per I/O).
func (c *Cache) newEntry(key Key, size int64, dirty bool) *entry {
	return &entry{key: key, path: c.path(key), size: size, dirty: dirty}
}

// ReadAt copies p from the cached chunk at off; ok is false on a miss,
// which includes a partial entry that does not hold all of [off, off+len(p)).
func (c *Cache) ReadAt(key Key, p []byte, off int64) (bool, error) {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		c.stats.Misses++
		c.mu.Unlock()
		return false, nil
	}
	counted := !e.partial // a whole entry stays whole: a hit
	if counted {
		c.stats.Hits++
	}
	if e.lru != nil {
		c.clean.MoveToFront(e.lru)
	}
	c.mu.Unlock()
	// Not under c.mu: a writer may hold e.mu while it fetches the chunk's
	// base from the object store.
	e.mu.RLock()
	defer e.mu.RUnlock()
	if off < 0 || off+int64(len(p)) > e.size {
		return true, fmt.Errorf("cache: read [%d,%d) outside chunk of %d bytes", off, off+int64(len(p)), e.size)
	}
	if !counted {
		hit := !e.partial || e.written.covers(off, off+int64(len(p)))
		c.mu.Lock()
		if hit {
			c.stats.Hits++
		} else {
			c.stats.Misses++
		}
		c.mu.Unlock()
		if !hit {
			return false, nil
		}
	}
	if err := c.readEntry(e, p, off); err != nil {
		if c.gone(key, e) {
			return false, nil // evicted or dropped meanwhile: a miss
		}
		return true, err
	}
	return true, nil
}

// gone reports whether e is no longer key's entry.
func (c *Cache) gone(key Key, e *entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key] != e
}

// evictLocked removes LRU clean chunks until need more bytes fit. It
// reports whether they do. Called with c.mu held.
func (c *Cache) evictLocked(need int64) bool {
	for c.used+need > c.opts.Capacity {
		back := c.clean.Back()
		if back == nil {
			return false
		}
		e := back.Value.(*entry)
		c.removeLocked(e)
		c.stats.Evictions++
	}
	return true
}

// removeLocked drops e from the index and its file. Called with c.mu held.
func (c *Cache) removeLocked(e *entry) {
	if e.lru != nil {
		c.clean.Remove(e.lru)
		e.lru = nil
	}
	if e.dirty {
		c.dirty -= e.size
	}
	if e.partial {
		c.partial--
	}
	c.deleteLocked(e.key)
	c.used -= e.size
	// Readers that still hold e find the file gone and count a miss.
	c.files.forget(e)
	_ = c.fs.Remove(e.path)
	c.room.Broadcast()
}

// insertLocked adds e under key to the entries and their volume index.
func (c *Cache) insertLocked(key Key, e *entry) {
	c.entries[key] = e
	vol := c.byVolume[key.Volume]
	if vol == nil {
		vol = map[uint64]*entry{}
		c.byVolume[key.Volume] = vol
	}
	vol[key.Index] = e
}

// deleteLocked removes key from the entries and their volume index.
func (c *Cache) deleteLocked(key Key) {
	delete(c.entries, key)
	if vol := c.byVolume[key.Volume]; vol != nil {
		delete(vol, key.Index)
		if len(vol) == 0 {
			delete(c.byVolume, key.Volume)
		}
	}
}

// PutClean inserts a whole clean chunk. If there is no room because the
// cache is full of dirty data, the chunk is simply not cached. A chunk
// already cached (perhaps dirty, with newer data) is left alone.
func (c *Cache) PutClean(key Key, data []byte) error {
	c.mu.Lock()
	if c.entries[key] != nil || c.closed {
		c.mu.Unlock()
		return nil
	}
	size := int64(len(data))
	if !c.evictLocked(size) {
		c.mu.Unlock()
		return nil
	}
	e := c.newEntry(key, size, false)
	e.mu.Lock()
	c.insertLocked(key, e)
	c.used += size
	c.mu.Unlock()

	err := c.writeFile(e, data)
	e.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.entries[key] == e {
			c.deleteLocked(key)
			c.used -= size
			c.room.Broadcast()
		}
		return err
	}
	if c.entries[key] == e && !e.dirty {
		e.lru = c.clean.PushFront(e)
	}
	return nil
}

func (c *Cache) writeFile(e *entry, data []byte) error {
	return c.writeSparse(e, len(data), data, 0)
}

// WriteAt writes p at off into the chunk, marking it dirty. A chunk not in
// the cache starts from base() (which returns nil for zeroes); with a nil
// base it is not read at all: the chunk becomes a partial entry holding the
// extent written, unless p covers it all. A write to a partial entry adds
// its extent, and the entry is whole once the extents cover the chunk.
// Admitting a new chunk when the cache is full of dirty data waits until
// room is freed or ctx ends.
func (c *Cache) WriteAt(ctx context.Context, key Key, chunkSize int, p []byte, off int64, base func() ([]byte, error)) error {
	return c.write(ctx, key, chunkSize, p, off, base, nil, false)
}

// WriteLogged is WriteAt for bytes that are durable in a log record
// already (src): the chunk's file is not written, the cache notes where
// the bytes are (its overlay) and reads them from there, until MarkClean
// writes them into the file. p must hold the bytes src names; the cache
// does not keep it. A base a partial write needs is written into the file
// as WriteAt does (it is in no record).
func (c *Cache) WriteLogged(ctx context.Context, key Key, chunkSize int, p []byte, off int64, base func() ([]byte, error), src Source) error {
	return c.write(ctx, key, chunkSize, p, off, base, &src, false)
}

// WriteReplayed is WriteLogged (WriteAt with a nil src) for a record
// replayed from the log at start, and it never waits for room: it admits
// a new chunk over capacity if clean ones cannot make room. Such a record
// is durable already and the log's capacity bounds how many there are,
// while room comes only from uploads, which may start after the replay:
// waiting would never end. The cache may then hold more than its capacity
// until uploads make its chunks clean (MarkClean evicts down to it); new
// writes wait for room as usual.
func (c *Cache) WriteReplayed(ctx context.Context, key Key, chunkSize int, p []byte, off int64, base func() ([]byte, error), src *Source) error {
	return c.write(ctx, key, chunkSize, p, off, base, src, true)
}

func (c *Cache) write(ctx context.Context, key Key, chunkSize int, p []byte, off int64, base func() ([]byte, error), src *Source, over bool) error {
	end := off + int64(len(p))
	if off < 0 || end > int64(chunkSize) {
		return fmt.Errorf("cache: write [%d,%d) outside chunk of %d bytes", off, end, chunkSize)
	}
	for {
		c.mu.Lock()
		e := c.entries[key]
		if e == nil {
			e, err := c.admitLocked(ctx, key, int64(chunkSize), over)
			if errors.Is(err, errRetry) {
				c.mu.Unlock()
				continue
			}
			if err != nil {
				c.mu.Unlock()
				return err
			}
			e.writing++
			// e is locked and reserved: fill it from base outside c.mu.
			c.mu.Unlock()
			whole := off == 0 && len(p) == chunkSize
			partial := base == nil && !whole
			switch {
			case src != nil:
				if !partial && !whole {
					err = c.fillBase(e, base)
				}
				if err == nil {
					e.spans = spans{{off, end, *src}}
				}
			case partial:
				err = c.writeSparse(e, chunkSize, p, off)
			default:
				err = c.fill(e, chunkSize, p, off, base)
			}
			c.mu.Lock()
			if err == nil && partial && c.entries[key] == e {
				e.partial, e.written = true, extents{{off, end}}
				c.partial++
			}
			e.writing--
			c.nextGen++
			e.gen = c.nextGen
			if err != nil && c.entries[key] == e {
				c.removeLocked(e)
			}
			c.mu.Unlock()
			e.mu.Unlock()
			return err
		}
		if e.lru != nil { // clean to dirty: pinned from now on
			c.clean.Remove(e.lru)
			e.lru = nil
		}
		if !e.dirty {
			e.dirty = true
			c.dirty += e.size
		}
		e.writing++
		c.mu.Unlock()
		e.mu.Lock()
		var err error
		switch {
		case end > e.size:
			err = fmt.Errorf("cache: write beyond cached chunk of %d bytes", e.size)
		case src != nil:
			e.spans = e.spans.add(off, end, *src)
			if len(e.spans) > maxSpans {
				err = c.materialize(e)
			}
		default:
			if err = c.writeInto(e, p, off); err == nil {
				e.spans = e.spans.cut(off, end)
			}
		}
		whole := false
		if err == nil && e.partial {
			e.written = e.written.add(off, end)
			whole = e.written.covers(0, e.size)
		}
		c.mu.Lock()
		if whole && e.partial {
			e.partial, e.written = false, nil
			if c.entries[key] == e {
				c.partial--
			}
		}
		e.writing--
		c.nextGen++
		e.gen = c.nextGen
		current := c.entries[key] == e
		c.mu.Unlock()
		e.mu.Unlock()
		if !current && (err == nil || errors.Is(err, errForgotten)) {
			continue // dropped while we waited for it: write into a new entry
		}
		return err
	}
}

// writeInto writes p at off into e's file. Called with e.mu held (write).
func (c *Cache) writeInto(e *entry, p []byte, off int64) error {
	h, err := c.ensureFile(e)
	if err != nil {
		return err
	}
	defer c.files.release(h)
	if _, err := h.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("cache: write chunk: %w", err)
	}
	return nil
}

// admitLocked reserves room for a new dirty chunk, waiting for it if
// needed (with over set, not waiting: over capacity if clean chunks cannot
// make room), and returns its entry locked. Called and returns with c.mu
// held.
func (c *Cache) admitLocked(ctx context.Context, key Key, size int64, over bool) (*entry, error) {
	if size > c.opts.Capacity {
		return nil, fmt.Errorf("cache: a chunk of %d bytes exceeds the cache capacity %d", size, c.opts.Capacity)
	}
	taken := false
	err := c.room.Wait(ctx, func() bool {
		taken = c.entries[key] != nil
		return taken || c.closed || c.evictLocked(size) || over
	})
	if err != nil {
		return nil, err
	}
	if taken {
		return nil, errRetry // someone else admitted it meanwhile: a hit now
	}
	if c.closed {
		return nil, errors.New("cache: closed")
	}
	e := c.newEntry(key, size, true)
	e.mu.Lock()
	c.insertLocked(key, e)
	c.used += size
	c.dirty += size
	return e, nil
}

var errRetry = errors.New("cache: retry")

func (c *Cache) fill(e *entry, chunkSize int, p []byte, off int64, base func() ([]byte, error)) error {
	if off == 0 && len(p) == chunkSize {
		return c.writeFile(e, p) // the whole chunk: no copy
	}
	b, err := base()
	if err != nil {
		return err
	}
	data := make([]byte, chunkSize)
	copy(data, b)
	copy(data[off:], p)
	return c.writeFile(e, data)
}

// fillBase writes a new entry's base into its file; a nil base (zeroes)
// needs no file.
func (c *Cache) fillBase(e *entry, base func() ([]byte, error)) error {
	b, err := base()
	if err != nil || b == nil {
		return err
	}
	return c.writeSparse(e, int(e.size), b[:min(len(b), int(e.size))], 0)
}

// writeSparse makes e's chunk file of chunkSize bytes holding p at off and
// zeroes (a sparse file where the filesystem can) elsewhere.
func (c *Cache) writeSparse(e *entry, chunkSize int, p []byte, off int64) error {
	if err := c.fs.MkdirAll(c.volumeDir(e.key.Volume), 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	f, err := c.fs.Create(e.path)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if _, err := f.WriteAt(p, off); err != nil {
		f.Close()
		return fmt.Errorf("cache: write chunk: %w", err)
	}
	if off+int64(len(p)) < int64(chunkSize) {
		if err := f.Truncate(int64(chunkSize)); err != nil {
			f.Close()
			return fmt.Errorf("cache: write chunk: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cache: write chunk: %w", err)
	}
	e.file = true
	return nil
}

// Partial reports whether key is cached as a partial entry.
func (c *Cache) Partial(key Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	return e != nil && e.partial
}

// Merge completes a partial entry with its base, the chunk's content before
// the writes the entry holds (nil: zeroes): the base fills every range not
// written, and the entry is whole from then on, still dirty. It reports
// whether key had a partial entry. The caller must make sure base is the
// content the entry's writes were made on (the volume checks its chunk map
// did not change while it fetched base).
func (c *Cache) Merge(key Key, base []byte) (bool, error) {
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e == nil {
		return false, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	ok := c.entries[key] == e && e.partial
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	// The ranges not written are zeroes in the file: a hole needs no write.
	if base != nil {
		h, err := c.ensureFile(e)
		if err != nil {
			return false, err
		}
		for _, g := range e.written.gaps(e.size) {
			end := min(g.End, int64(len(base)))
			if g.Off >= end {
				continue
			}
			if _, err := h.f.WriteAt(base[g.Off:end], g.Off); err != nil {
				c.files.release(h)
				return false, fmt.Errorf("cache: merge chunk: %w", err)
			}
		}
		c.files.release(h)
	}
	c.mu.Lock()
	e.partial, e.written = false, nil
	if c.entries[key] == e {
		c.partial--
	}
	c.mu.Unlock()
	return true, nil
}

// Dirty returns the keys of dirty chunks.
func (c *Cache) Dirty() []Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Key
	for k, e := range c.entries {
		if e.dirty {
			out = append(out, k)
		}
	}
	return out
}

// Snapshot returns a copy of a cached chunk and its generation. A partial
// entry is refused (ErrPartial).
func (c *Cache) Snapshot(key Key) ([]byte, uint64, error) {
	data, _, gen, err := c.snapshot(key, false, -1)
	return data, gen, err
}

// SnapshotHead is Snapshot of the chunk's first n bytes (all of it if n
// is negative or past its end): a small file's upload reads the bytes it
// has, not a zeroed chunk of BlockSize.
func (c *Cache) SnapshotHead(key Key, n int64) ([]byte, uint64, error) {
	data, _, gen, err := c.snapshot(key, false, n)
	return data, gen, err
}

// SnapshotPartial returns a copy of a cached chunk and, for a partial
// entry, the extents it holds (nil for a whole entry): the rest of the copy
// is zeroes, for the caller to fill from the chunk's base.
func (c *Cache) SnapshotPartial(key Key) ([]byte, []Extent, error) {
	data, written, _, err := c.snapshot(key, true, -1)
	return data, written, err
}

// rlockEntry returns key's entry with its mu read-locked, and its
// generation, or nil when key is not cached.
func (c *Cache) rlockEntry(key Key) (*entry, uint64) {
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e == nil {
		return nil, 0
	}
	e.mu.RLock()
	c.mu.Lock()
	gen, current := e.gen, c.entries[key] == e
	c.mu.Unlock()
	if !current {
		e.mu.RUnlock()
		return nil, 0
	}
	return e, gen
}

// snapshot copies a chunk (its first n bytes, when 0 <= n < its size),
// and a partial entry's extents if partialOK (else it refuses the entry).
func (c *Cache) snapshot(key Key, partialOK bool, n int64) ([]byte, []Extent, uint64, error) {
	e, gen := c.rlockEntry(key)
	if e == nil {
		return nil, nil, 0, fmt.Errorf("cache: %v: %w", key, ErrNotCached)
	}
	defer e.mu.RUnlock()
	var written []Extent
	if e.partial {
		if !partialOK {
			return nil, nil, 0, fmt.Errorf("cache: %v: %w", key, ErrPartial)
		}
		written = e.written.clone()
	}
	if n < 0 || n > e.size {
		n = e.size
	}
	data := make([]byte, n)
	if err := c.readEntry(e, data, 0); err != nil {
		return nil, nil, 0, err
	}
	return data, written, gen, nil
}

// ReadExtents returns the bytes of a cached chunk in each of xs, one
// after the other in one buffer, and the entry's generation (for
// MarkClean): what a patch of the chunk uploads. ok is false when the
// chunk is not cached or, partial, does not hold all of xs.
func (c *Cache) ReadExtents(key Key, xs []Extent) (data []byte, gen uint64, ok bool, err error) {
	e, gen := c.rlockEntry(key)
	if e == nil {
		return nil, 0, false, nil
	}
	defer e.mu.RUnlock()
	n := int64(0)
	for _, x := range xs {
		if x.Off < 0 || x.End > e.size || x.Off >= x.End {
			return nil, 0, false, fmt.Errorf("cache: extent [%d,%d) outside chunk of %d bytes", x.Off, x.End, e.size)
		}
		if e.partial && !e.written.covers(x.Off, x.End) {
			return nil, 0, false, nil
		}
		n += x.End - x.Off
	}
	data = make([]byte, n)
	at := int64(0)
	for _, x := range xs {
		if err := c.readEntry(e, data[at:at+x.End-x.Off], x.Off); err != nil {
			return nil, 0, false, err
		}
		at += x.End - x.Off
	}
	return data, gen, true, nil
}

// MarkClean marks key clean if no write changed it since generation gen.
// Either way it first writes the entry's overlay into its file, so that
// once it returns the cache reads none of the log records the entry's
// writes were kept in: the caller may release them. If that write fails,
// MarkClean returns the error (a local disk's: the chunk is still in the
// store) and an entry still at gen is dropped, since the caller uploaded
// it as it is; a newer one keeps its overlay, and the records of its
// writes must stay.
func (c *Cache) MarkClean(key Key, gen uint64) (bool, error) {
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e == nil {
		return false, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	err := c.materialize(e)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[key] != e {
		return false, nil
	}
	if err != nil {
		if e.gen == gen && e.writing == 0 {
			c.removeLocked(e)
		}
		return false, err
	}
	if e.gen != gen || e.writing > 0 || e.partial {
		return false, nil
	}
	if e.dirty {
		e.dirty = false
		c.dirty -= e.size
		e.lru = c.clean.PushFront(e)
		c.room.Broadcast()
		// Over capacity after a replay (WriteReplayed): back within it.
		c.evictLocked(0)
	}
	return true, nil
}

// Drop removes a chunk, dirty or not.
func (c *Cache) Drop(key Key) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		c.removeLocked(e)
	}
	return nil
}

// DropVolume removes all of a volume's chunks.
func (c *Cache) DropVolume(volume string) error {
	c.mu.Lock()
	for _, e := range c.byVolume[volume] {
		c.removeLocked(e)
	}
	c.mu.Unlock()
	return removeAll(c.fs, c.volumeDir(volume))
}

// DropVolumes removes the chunks of every volume match accepts.
func (c *Cache) DropVolumes(match func(volume string) bool) error {
	c.mu.Lock()
	vols := map[string]bool{}
	for v, es := range c.byVolume {
		if match(v) {
			for _, e := range es {
				c.removeLocked(e)
			}
			vols[v] = true
		}
	}
	c.mu.Unlock()
	for v := range vols {
		if err := removeAll(c.fs, c.volumeDir(v)); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the current figures.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Waits = c.room.Total()
	s.Capacity, s.Used, s.Dirty = c.opts.Capacity, c.used, c.dirty
	s.Chunks = len(c.entries)
	s.DirtyChunks = len(c.entries) - c.clean.Len()
	s.PartialChunks = c.partial
	s.Materialized = c.materialized.Load()
	return s
}

// UnderPressure says whether more than half the cache holds data waiting
// for upload: waiting for it to settle then costs more than it saves, and
// writes are close to waiting for room.
func (c *Cache) UnderPressure() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts.Capacity > 0 && c.dirty > c.opts.Capacity/2
}

// Close releases waiters; the cache's files stay until the next Open.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.room.Broadcast()
	c.mu.Unlock()
	c.files.closeAll()
	return nil
}
