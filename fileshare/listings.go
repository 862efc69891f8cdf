package fileshare

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/meta"
)

// A share keeps the listings it read of its directories, and keeps each
// whole as it changes its entries itself (create, mkdir, symlink, remove,
// rename): a create in a big directory does not list it again, and a
// lookup of a name a listing lacks is answered "no such file" without
// asking the store. Listings are trusted for AttrTTL (changes made by
// others in the bucket show after it, or at once with `share refresh`),
// and at any age while the store is away.
//
// Memory is bounded: the listings in use are held in memory up to
// maxListedInMemory entries in all; the others, and any listing over
// bigListing entries, are kept in the metadata store:
//
//	fslh/<share>/<dir>             when the listing was read: unix ns, BE64
//	fsle/<share>/<dir>\x00<name>   what name is: its type (1 file, 2
//	                               directory, 3 symbolic link)
//	fslc/<share>                   present while the listings above are
//	                               whole: set by a clean stop, deleted at
//	                               start
//
// The share's own changes to a listing kept in the metadata store wait in
// memory and are written in batches (after upload rounds, when memory is
// over its bound, at a clean stop): a change costs no synced transaction.
// A start after a crash finds no fslc key and drops every kept listing,
// since changes made before the crash may be missing from them.

// maxListedInMemory bounds the entries of the listings held in memory;
// bigListing is the size from which a listing goes to the metadata store
// as soon as it is read. Variables for tests.
var (
	maxListedInMemory = 1 << 18
	bigListing        = 1 << 16
)

// goneEntry marks, among the changes of a kept listing, a name removed.
const goneEntry FileType = 0xff

// memListing is a whole listing held in memory.
type memListing struct {
	at      time.Time
	entries map[string]FileType
	gen     uint64 // bumped by every change
	elem    *list.Element
	// sorted is entries' names in name order, built at the first
	// ReadDirNames and then kept by note name by name: smbd lists a
	// directory at every create, and sorting it each time was most of
	// the listing's cost. nil: not built.
	sorted []string
}

// sortedNames returns l's names in name order, building the order if
// it has none. The slice is l's own: the caller copies what it keeps
// before it lets attrMu go.
func (l *memListing) sortedNames() []string {
	if l.sorted == nil {
		l.sorted = slices.Sorted(maps.Keys(l.entries))
	}
	return l.sorted
}

// noteSorted keeps l.sorted, if built, in step with a name added or
// removed.
func (l *memListing) noteSorted(name string, present bool) {
	if l.sorted == nil {
		return
	}
	i, found := slices.BinarySearch(l.sorted, name)
	switch {
	case present && !found:
		l.sorted = slices.Insert(l.sorted, i, name)
	case !present && found:
		l.sorted = slices.Delete(l.sorted, i, i+1)
	}
}

// keptListing is a listing in the metadata store, with the changes the
// share made to it since it was written there.
type keptListing struct {
	at    time.Time
	delta map[string]FileType // goneEntry: removed
	gen   uint64
}

// dirCache holds a share's listings. Its methods are called with the
// share's attrMu held, except those that say otherwise.
type dirCache struct {
	s    *Share
	mem  map[string]*memListing
	lru  list.List // of paths, most recently used first
	n    int       // entries in mem, and changes in kept
	kept map[string]*keptListing
	// garbage are kept listings dropped whose keys are not deleted yet.
	garbage map[string]bool

	// saveMu orders the writes of listings to the metadata store; it
	// comes before attrMu.
	saveMu  sync.Mutex
	saving  bool // a save started for memory over its bound runs
	stopped bool // close saves the listings: a change now makes them not whole
	dirty   bool // a change came after stopped
	marked  bool // close wrote fslc
	stale   sync.Once
}

func newDirCache(s *Share) *dirCache {
	return &dirCache{s: s, mem: map[string]*memListing{}, kept: map[string]*keptListing{}, garbage: map[string]bool{}}
}

func listHeadPrefix(share string) []byte  { return []byte("fslh/" + share + "/") }
func listEntryPrefix(share string) []byte { return []byte("fsle/" + share + "/") }
func listCleanKey(share string) []byte    { return []byte("fslc/" + share) }

func (c *dirCache) headKey(dir string) []byte { return append(listHeadPrefix(c.s.cfg.Name), dir...) }

// entriesKey is the prefix of directory dir's entries.
func (c *dirCache) entriesKey(dir string) []byte {
	return append(append(listEntryPrefix(c.s.cfg.Name), dir...), 0)
}

var typeBytes = map[FileType]byte{TypeFile: 1, TypeDir: 2, TypeSymlink: 3, TypeFIFO: 4, TypeSocket: 5, TypeBlock: 6, TypeChar: 7}

func typeOfByte(b []byte) FileType {
	if len(b) == 1 && b[0] >= 1 && b[0] <= 7 {
		return FileType(b[0]) // typeBytes: the type's own number
	}
	return TypeFile
}

// at returns when directory p's listing was read, if the share has one.
func (c *dirCache) at(p string) (time.Time, bool) {
	if l := c.mem[p]; l != nil {
		c.lru.MoveToFront(l.elem)
		return l.at, true
	}
	if k := c.kept[p]; k != nil {
		return k.at, true
	}
	return time.Time{}, false
}

// lookup says whether directory p's listing, which the share has, holds
// name, and as what (0: not known).
func (c *dirCache) lookup(p, name string) (FileType, bool) {
	if l := c.mem[p]; l != nil {
		t, ok := l.entries[name]
		return t, ok
	}
	k := c.kept[p]
	if k == nil {
		return 0, false
	}
	if t, ok := k.delta[name]; ok {
		return t, t != goneEntry
	}
	var t FileType
	found := false
	err := c.s.m.opts.Meta.View(context.Background(), func(tx meta.Txn) error {
		v, err := tx.Get(append(c.entriesKey(p), name...))
		if err == nil {
			t, found = typeOfByte(v), true
		} else if errors.Is(err, meta.ErrNotFound) {
			err = nil
		}
		return err
	})
	if err != nil {
		// Not known: the name may be there.
		c.s.m.log.Warn("file share: listing in the metadata store unreadable", "share", c.s.cfg.Name, "dir", p, "err", err)
		return 0, true
	}
	return t, found
}

// sorted returns directory p's listing as names in name order and their
// types, if the share holds it in memory (not for one in the metadata
// store). Both are the listing's own: the caller copies what it keeps
// before it lets attrMu go.
func (c *dirCache) sorted(p string) ([]string, map[string]FileType, bool) {
	l := c.mem[p]
	if l == nil {
		return nil, nil, false
	}
	c.lru.MoveToFront(l.elem)
	return l.sortedNames(), l.entries, true
}

// names returns a copy of directory p's listing (nil if the share has
// none, or cannot read it).
func (c *dirCache) names(p string) map[string]FileType {
	if l := c.mem[p]; l != nil {
		c.lru.MoveToFront(l.elem)
		return maps.Clone(l.entries)
	}
	k := c.kept[p]
	if k == nil {
		return nil
	}
	out := map[string]FileType{}
	prefix := c.entriesKey(p)
	err := c.s.m.opts.Meta.View(context.Background(), func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(key, v []byte) error {
			out[string(key[len(prefix):])] = typeOfByte(v)
			return nil
		})
	})
	if err != nil {
		c.s.m.log.Warn("file share: listing in the metadata store unreadable", "share", c.s.cfg.Name, "dir", p, "err", err)
		return nil
	}
	for name, t := range k.delta {
		if t == goneEntry {
			delete(out, name)
		} else {
			out[name] = t
		}
	}
	return out
}

// count returns how many entries directory p's listing has (-1: none).
func (c *dirCache) count(p string) int {
	if l := c.mem[p]; l != nil {
		return len(l.entries)
	}
	if c.kept[p] == nil {
		return -1
	}
	return len(c.names(p))
}

// changed notes a change of the listings after close saved them: the
// saved ones are not whole any more.
func (c *dirCache) changed() {
	if !c.stopped {
		return
	}
	c.dirty = true
	if !c.marked {
		return // close sees dirty
	}
	c.stale.Do(func() {
		go func() {
			_ = c.s.m.opts.Meta.Update(context.Background(), func(tx meta.Txn) error { return tx.Delete(listCleanKey(c.s.cfg.Name)) })
		}()
	})
}

// note records a change the share made in directory p, if it has p's
// listing: name is now there as t, or gone.
func (c *dirCache) note(p, name string, t FileType, present bool) {
	c.changed()
	if l := c.mem[p]; l != nil {
		_, had := l.entries[name]
		if present {
			l.entries[name] = t
			if !had {
				c.n++
				l.noteSorted(name, true)
			}
		} else if had {
			delete(l.entries, name)
			c.n--
			l.noteSorted(name, false)
		}
		l.gen++
		c.over()
		return
	}
	k := c.kept[p]
	if k == nil {
		return
	}
	if _, had := k.delta[name]; !had {
		c.n++
	}
	if present {
		k.delta[name] = t
	} else {
		k.delta[name] = goneEntry
	}
	k.gen++
	c.over()
}

// set makes entries (which it keeps) directory p's listing, read at at.
// A listing over bigListing entries must go through keep instead.
func (c *dirCache) set(p string, entries map[string]FileType, at time.Time) {
	c.changed()
	c.drop(p)
	l := &memListing{at: at, entries: entries}
	l.elem = c.lru.PushFront(p)
	c.mem[p] = l
	c.n += len(entries)
	c.over()
}

// drop forgets directory p's listing.
func (c *dirCache) drop(p string) {
	c.changed()
	c.remove(p)
}

// remove is drop without noting a change (a listing moving to the
// metadata store).
func (c *dirCache) remove(p string) {
	if l := c.mem[p]; l != nil {
		c.n -= len(l.entries)
		c.lru.Remove(l.elem)
		delete(c.mem, p)
	}
	if k := c.kept[p]; k != nil {
		c.n -= len(k.delta)
		delete(c.kept, p)
		c.garbage[p] = true
	}
}

// dropTree forgets the listings of p and of every directory below it.
func (c *dirCache) dropTree(p string) {
	for _, d := range c.under(p) {
		c.drop(d)
	}
}

// under returns the directories at or below p with a listing.
func (c *dirCache) under(p string) []string {
	var out []string
	in := func(d string) bool { return p == "" || d == p || strings.HasPrefix(d, p+"/") }
	for d := range c.mem {
		if in(d) {
			out = append(out, d)
		}
	}
	for d := range c.kept {
		if in(d) {
			out = append(out, d)
		}
	}
	return out
}

// move moves the listings of from and of every directory below it to the
// same paths under to (a rename the store has not seen yet). Nothing at or
// below to has a listing (the caller dropped them).
func (c *dirCache) move(from, to string) {
	for _, d := range c.under(from) {
		at, _ := c.at(d)
		names := c.names(d)
		c.drop(d)
		if names != nil {
			c.set(to+d[len(from):], names, at)
		}
	}
}

// over starts a save of listings to the metadata store when memory holds
// more entries than its bound.
func (c *dirCache) over() {
	if c.n <= maxListedInMemory || c.saving || c.stopped {
		return
	}
	c.saving = true
	go func() {
		err := c.save(context.Background(), false)
		c.s.attrMu.Lock()
		c.saving = false
		c.s.attrMu.Unlock()
		if err != nil {
			c.s.m.log.Warn("file share: listings not saved", "share", c.s.cfg.Name, "err", err)
		}
	}()
}

// keep writes entries as directory p's listing, read at at, to the
// metadata store and makes it the share's listing of p. It is called
// without attrMu; put, when not nil, runs under attrMu once the listing
// is the share's (the changes that came meanwhile).
func (c *dirCache) keep(ctx context.Context, p string, entries map[string]FileType, at time.Time, put func()) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	if err := c.write(ctx, p, entries, at); err != nil {
		return err
	}
	c.s.attrMu.Lock()
	defer c.s.attrMu.Unlock()
	c.drop(p)
	delete(c.garbage, p)
	c.kept[p] = &keptListing{at: at, delta: map[string]FileType{}}
	if put != nil {
		put()
	}
	return nil
}

// write replaces directory p's listing in the metadata store, writing
// only what differs from what the store holds there (a listing read again
// after the attribute TTL changes little). The caller holds saveMu.
func (c *dirCache) write(ctx context.Context, p string, entries map[string]FileType, at time.Time) error {
	prefix := c.entriesKey(p)
	names := slices.Sorted(maps.Keys(entries))
	var gone [][]byte // keys of names no longer there
	var changed []int // indexes in names of names new or of another type
	i := 0
	err := c.s.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		// Both in bytewise order: merged as they come.
		return tx.Iterate(prefix, func(k, v []byte) error {
			name := string(k[len(prefix):])
			for ; i < len(names) && names[i] < name; i++ {
				changed = append(changed, i)
			}
			switch {
			case i < len(names) && names[i] == name:
				if typeOfByte(v) != entries[name] {
					changed = append(changed, i)
				}
				i++
			default:
				gone = append(gone, k)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for ; i < len(names); i++ {
		changed = append(changed, i)
	}
	w := c.batch(ctx)
	for _, k := range gone {
		if err := w.del(k); err != nil {
			return err
		}
	}
	for _, j := range changed {
		if err := w.set(append(append([]byte(nil), prefix...), names[j]...), []byte{typeBytes[entries[names[j]]]}); err != nil {
			return err
		}
	}
	if err := w.set(c.headKey(p), be64(uint64(at.UnixNano()))); err != nil {
		return err
	}
	return w.flush()
}

// save writes listings to the metadata store: with all, every listing
// held in memory and every change of a kept one (a clean stop); else,
// until memory is within three quarters of its bound, the least recently
// used listings and the changes of kept ones. Then it deletes the keys of
// the kept listings dropped.
func (c *dirCache) save(ctx context.Context, all bool) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	type memJob struct {
		p       string
		entries map[string]FileType
		at      time.Time
		gen     uint64
	}
	type deltaJob struct {
		p     string
		delta map[string]FileType
	}
	var mems []memJob
	var deltas []deltaJob
	var garbage []string
	c.s.attrMu.Lock()
	n := c.n
	for p, k := range c.kept {
		if len(k.delta) > 0 && (all || n > maxListedInMemory*3/4) {
			deltas = append(deltas, deltaJob{p, maps.Clone(k.delta)})
			n -= len(k.delta)
		}
	}
	for e := c.lru.Back(); e != nil && (all || n > maxListedInMemory*3/4); e = e.Prev() {
		p := e.Value.(string)
		l := c.mem[p]
		mems = append(mems, memJob{p, maps.Clone(l.entries), l.at, l.gen})
		n -= len(l.entries)
	}
	for p := range c.garbage {
		garbage = append(garbage, p)
	}
	c.s.attrMu.Unlock()

	md := c.s.m.opts.Meta
	// The dropped ones first: a listing written below never shares its
	// keys with an old one.
	for _, p := range garbage {
		c.s.attrMu.Lock()
		_, back := c.kept[p]
		c.s.attrMu.Unlock()
		if back {
			continue
		}
		if err := meta.DeletePrefix(ctx, md, c.entriesKey(p)); err != nil {
			return err
		}
		if err := md.Update(ctx, func(tx meta.Txn) error { return tx.Delete(c.headKey(p)) }); err != nil {
			return err
		}
		c.s.attrMu.Lock()
		if c.kept[p] == nil {
			delete(c.garbage, p)
		}
		c.s.attrMu.Unlock()
	}
	for _, d := range deltas {
		prefix := c.entriesKey(d.p)
		err := md.Update(ctx, func(tx meta.Txn) error {
			for name, t := range d.delta {
				k := append(append([]byte(nil), prefix...), name...)
				var err error
				if t == goneEntry {
					err = tx.Delete(k)
				} else {
					err = tx.Set(k, []byte{typeBytes[t]})
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.s.attrMu.Lock()
		if k := c.kept[d.p]; k != nil {
			for name, t := range d.delta {
				if k.delta[name] == t {
					delete(k.delta, name)
					c.n--
				}
			}
		}
		c.s.attrMu.Unlock()
	}
	// Listings held in memory, many to a transaction.
	w := c.batch(ctx)
	for _, j := range mems {
		prefix := c.entriesKey(j.p)
		for name, t := range j.entries {
			if err := w.set(append(append([]byte(nil), prefix...), name...), []byte{typeBytes[t]}); err != nil {
				return err
			}
		}
		if err := w.set(c.headKey(j.p), be64(uint64(j.at.UnixNano()))); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	c.s.attrMu.Lock()
	for _, j := range mems {
		if l := c.mem[j.p]; l != nil && l.gen == j.gen && l.at.Equal(j.at) {
			c.remove(j.p)
			c.kept[j.p] = &keptListing{at: j.at, delta: map[string]FileType{}}
		} else if c.kept[j.p] == nil {
			c.garbage[j.p] = true // changed or dropped meanwhile: what was written goes
		}
	}
	c.s.attrMu.Unlock()
	return nil
}

// batchWriter writes keys to the metadata store, many to a transaction.
type batchWriter struct {
	ctx  context.Context
	md   meta.Store
	kvs  [][2][]byte
	size int
}

func (c *dirCache) batch(ctx context.Context) *batchWriter {
	return &batchWriter{ctx: ctx, md: c.s.m.opts.Meta}
}

// del deletes k (a nil value in kvs).
func (w *batchWriter) del(k []byte) error { return w.set(k, nil) }

func (w *batchWriter) set(k, v []byte) error {
	w.kvs = append(w.kvs, [2][]byte{k, v})
	if w.size += len(k) + len(v); len(w.kvs) == meta.MaxTxnWrites || w.size > meta.MaxTxnBytes/2 {
		return w.flush()
	}
	return nil
}

func (w *batchWriter) flush() error {
	if len(w.kvs) == 0 {
		return nil
	}
	err := w.md.Update(w.ctx, func(tx meta.Txn) error {
		for _, kv := range w.kvs {
			var err error
			if kv[1] == nil {
				err = tx.Delete(kv[0])
			} else {
				err = tx.Set(kv[0], kv[1])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	w.kvs, w.size = w.kvs[:0], 0
	return err
}

// load reads the listings kept by the last clean stop; after a crash it
// drops them. From then on, a crash leaves them to be dropped.
func (c *dirCache) load(ctx context.Context) error {
	md := c.s.m.opts.Meta
	clean := false
	err := md.View(ctx, func(tx meta.Txn) error {
		_, err := tx.Get(listCleanKey(c.s.cfg.Name))
		if err == nil {
			clean = true
		} else if errors.Is(err, meta.ErrNotFound) {
			err = nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if !clean {
		for _, prefix := range [][]byte{listEntryPrefix(c.s.cfg.Name), listHeadPrefix(c.s.cfg.Name)} {
			if err := meta.DeletePrefix(ctx, md, prefix); err != nil {
				return err
			}
		}
		return nil
	}
	prefix := listHeadPrefix(c.s.cfg.Name)
	err = md.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(k, v []byte) error {
			if len(v) == 8 {
				at := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				c.kept[string(k[len(prefix):])] = &keptListing{at: at, delta: map[string]FileType{}}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	return md.Update(ctx, func(tx meta.Txn) error { return tx.Delete(listCleanKey(c.s.cfg.Name)) })
}

// close saves every listing and marks them whole for the next start.
func (c *dirCache) close(ctx context.Context) error {
	c.s.attrMu.Lock()
	c.stopped = true
	c.s.attrMu.Unlock()
	if err := c.save(ctx, true); err != nil {
		return err
	}
	md := c.s.m.opts.Meta
	if err := md.Update(ctx, func(tx meta.Txn) error { return tx.Set(listCleanKey(c.s.cfg.Name), []byte{1}) }); err != nil {
		return err
	}
	c.s.attrMu.Lock()
	c.marked = true
	dirty := c.dirty
	c.s.attrMu.Unlock()
	if dirty {
		// Changed while saving: not whole.
		return md.Update(ctx, func(tx meta.Txn) error { return tx.Delete(listCleanKey(c.s.cfg.Name)) })
	}
	return nil
}

// clear forgets every listing.
func (c *dirCache) clear() { c.dropTree("") }
