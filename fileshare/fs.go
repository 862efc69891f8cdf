package fileshare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// Attributes and listings read from the store are trusted for AttrTTL;
// the share's own changes update them at once. While the store is away
// (a call failed after its retries) they are trusted at any age: the
// gateway keeps working from what it knows.
type cachedAttr struct {
	attr   Attr
	exists bool
	at     time.Time
}

// fresh says whether what was read from the store at at may be used.
func (s *Share) fresh(at time.Time) bool {
	return s.freshAt(at, s.now(), s.m.storeAway())
}

// freshAt is fresh with the time and whether the store is away read
// once, for a loop over many entries.
func (s *Share) freshAt(at, now time.Time, away bool) bool {
	return now.Sub(at) < s.m.opts.AttrTTL || away
}

// DirEntry is one name in a directory.
type DirEntry struct {
	Name string
	Attr Attr
}

func (s *Share) key(p string) string { return s.cfg.Prefix + p }

func (s *Share) now() time.Time { return s.m.opts.Clock.Now() }

func (s *Share) defaults(t FileType) Attr {
	a := Attr{Type: t, Mode: s.cfg.FileMode, UID: s.cfg.UID, GID: s.cfg.GID, Mtime: s.cfg.Created, Ctime: s.cfg.Created}
	if t == TypeDir {
		a.Mode = s.cfg.DirMode
	}
	return a
}

// Stat returns p's attributes.
func (s *Share) Stat(ctx context.Context, p string) (Attr, error) {
	// Changes replayed while the store was away come before any new one
	// (every change of a file starts with its Stat).
	s.m.applyLaterIfAny(ctx)
	return s.statNow(ctx, p)
}

// statNow is Stat without applying the replayed changes that wait.
func (s *Share) statNow(ctx context.Context, p string) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	for try := 0; ; try++ {
		gen := s.attrGenNow(p)
		a, err := s.stat(ctx, p)
		if err != nil {
			return Attr{}, err
		}
		if a.Ino, err = s.inode(ctx, p); err != nil {
			return Attr{}, err
		}
		if st := s.m.dirtyState(s.cfg.Name, a.Ino); st != nil {
			st.overlay(&a)
		} else {
			// An upload that retired the file's state after the look
			// read its attributes (from the store or the cache) remembered
			// the object it put: what was read may be the one before, so
			// it is read again. A change's state is created from this
			// Stat, and a size past the object's would read beyond it.
			// (A few tries: other paths share p's count of changes.)
			if s.attrGenNow(p) != gen && try < 16 {
				if err := ctx.Err(); err != nil {
					return Attr{}, err
				}
				continue
			}
			if a.Type == TypeFile {
				s.checkETag(a)
			}
		}
		s.overlayTimes(&a)
		return a, nil
	}
}

// replacedETag is the ETag recorded for a file whose object another
// application replaced as it was uploaded: no object has it, so the next
// stat drops the cached blocks.
const replacedETag = "\x00replaced"

// checkETag drops the cached blocks of a file whose object changed in the
// store since they were read (another application overwrote it).
func (s *Share) checkETag(a Attr) {
	if a.etag == "" {
		return
	}
	s.attrMu.Lock()
	old := s.etags[a.Ino]
	s.etags[a.Ino] = a.etag
	s.attrMu.Unlock()
	if old != "" && old != a.etag {
		_ = s.m.opts.Cache.DropVolume(cacheVolume(s.cfg.Name, a.Ino))
	}
}

func (s *Share) stat(ctx context.Context, p string) (Attr, error) {
	s.attrMu.Lock()
	gen := s.attrGen(p)
	c, ok := s.attrs[p]
	ino, unborn := s.unborn[p]
	lt, found, known := s.listedAs(p)
	// What the parent's listing says counts when p's own attributes are
	// not known, or older than it may be used.
	useListing := (!ok || !s.fresh(c.at)) && !unborn && known
	absent := useListing && !found
	s.attrMu.Unlock()
	if unborn {
		// Created, not yet uploaded: the store has no object yet; the
		// file's state holds its attributes.
		if st := s.m.dirtyState(s.cfg.Name, ino); st != nil {
			a := Attr{Type: TypeFile}
			st.overlay(&a)
			return a, nil
		}
		// No state: the first upload ended since unborn was read (it
		// retires the state and takes the path off unborn in one hold
		// of filesMu, which dirtyState took after it). The path is
		// known as uploaded now: what was made, not a file with the
		// share's defaults (a directory read as a regular file).
		s.attrMu.Lock()
		c, ok = s.attrs[p]
		_, unborn = s.unborn[p]
		absent = (!ok || !s.fresh(c.at)) && !unborn && s.unlisted(p)
		s.attrMu.Unlock()
		if unborn {
			return s.defaults(TypeFile), nil
		}
	}
	if ok && s.fresh(c.at) {
		if !c.exists {
			return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
		}
		return c.attr, nil
	}
	if absent {
		// The parent's listing, kept whole, lacks the name.
		return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
	}
	if useListing && found && lt != 0 && lt != goneEntry {
		// The parent's listing says what p is: one HEAD of its object or
		// marker, not a listing to see whether a directory has keys.
		return s.entryAttr(ctx, p, lt)
	}
	a, exists, err := s.statStore(ctx, p)
	if err != nil {
		if !s.m.storeFailed(ctx, err) {
			return Attr{}, err
		}
		// The store is away: what the share last knew of p, or of its
		// parent's names.
		if ok && c.exists {
			return c.attr, nil
		}
		s.attrMu.Lock()
		absent = s.unlisted(p)
		s.attrMu.Unlock()
		if ok || absent {
			return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
		}
		return Attr{}, err
	}
	s.m.storeBack()
	s.rememberRead(p, a, exists, gen)
	if !exists {
		return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
	}
	return a, nil
}

// statStore asks the store: the object p (a file or symlink), else the
// marker p/ or any key below p/ (a directory).
func (s *Share) statStore(ctx context.Context, p string) (Attr, bool, error) {
	if p != "" {
		oi, err := s.m.statObject(ctx, s.cfg.Name, s.key(p))
		if err == nil && s.m.deleting(s.cfg.Name, s.key(p)) {
			err = errRemoved
		}
		if err == nil {
			a := s.defaults(TypeFile)
			a.Size, a.Mtime, a.Ctime, a.etag = oi.Size, oi.ModTime, oi.ModTime, oi.ETag
			a.applyMetadata(oi.Metadata)
			return a, true, nil
		}
		if !objstore.IsNotFound(err) && err != errRemoved {
			return Attr{}, false, err
		}
	}
	a, marked, err := s.marker(ctx, p)
	switch {
	case err != nil:
		return Attr{}, false, err
	case marked:
		return a, true, nil
	}
	if p == "" {
		return a, true, nil // the root always exists
	}
	if len(s.m.movedIn(s.cfg.Name, s.key(p)+"/")) > 0 {
		return a, true, nil // objects renamed into it wait for the store
	}
	found := false
	stop := fmt.Errorf("found")
	err = objstore.ListDir(ctx, s.m.opts.Store, s.key(p)+"/", func(oi objstore.ObjectInfo, _ bool) error {
		if s.m.deleting(s.cfg.Name, oi.Key) {
			return nil
		}
		found = true
		return stop
	})
	if err != nil && err != stop {
		return Attr{}, false, err
	}
	return a, found, nil
}

// marker reads directory p's attributes from its marker object; without
// one (a directory implied by the keys below it) they are the defaults.
func (s *Share) marker(ctx context.Context, p string) (a Attr, marked bool, err error) {
	a = s.defaults(TypeDir)
	key := s.key(p) + "/"
	if p == "" {
		key = s.cfg.Prefix
	}
	oi, err := s.m.statObject(ctx, s.cfg.Name, key)
	switch {
	case err == nil && s.m.deleting(s.cfg.Name, key):
		return a, false, nil
	case err == nil:
		a.Mtime, a.Ctime = oi.ModTime, oi.ModTime
		a.applyMetadata(oi.Metadata)
		return a, true, nil
	case objstore.IsNotFound(err):
		return a, false, nil
	}
	return Attr{}, false, err
}

// statMarker is marker for a directory known to exist (a listing shows it).
func (s *Share) statMarker(ctx context.Context, p string) (Attr, error) {
	a, _, err := s.marker(ctx, p)
	return a, err
}

// unlisted says whether p's parent has a listing that may be used and
// that lacks p's name. The caller holds attrMu.
func (s *Share) unlisted(p string) bool {
	_, found, known := s.listedAs(p)
	return known && !found
}

// listedAs says what the listing of p's parent says of p, when the share
// has one that may be used (known): whether it holds p's name, and as
// what (0: not known). The caller holds attrMu.
func (s *Share) listedAs(p string) (t FileType, found, known bool) {
	if p == "" {
		return 0, false, false
	}
	at, ok := s.dirs.at(parentOf(p))
	if !ok || !s.fresh(at) {
		return 0, false, false
	}
	t, found = s.dirs.lookup(parentOf(p), baseName(p))
	return t, found, true
}

// errRemoved stands for "not found" for an object removed whose delete in
// the store is not done yet.
var errRemoved = errors.New("removed")

// errPending stands for a store call not made: a change of the same key
// waits in the log, and this one goes after it.
var errPending = errors.New("pending")

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// noteEntry keeps the cached listing of p's parent whole after a change
// the share made itself: p is now there (as t) or gone. The caller holds
// attrMu.
func (s *Share) noteEntry(p string, t FileType, present bool) {
	if p == "" {
		return
	}
	s.dirs.note(parentOf(p), baseName(p), t, present)
}

// known records that the share made directory p itself: it is empty, a
// listing the share keeps whole from then on.
func (s *Share) known(p string) {
	s.dirs.set(p, map[string]FileType{}, s.now())
}

func (s *Share) remember(p string, a Attr, exists bool) {
	s.attrMu.Lock()
	s.setAttrLocked(p, a, exists)
	s.attrMu.Unlock()
}

// rememberRead is remember for what a look at the store read: kept only
// if no change of p's cached attributes came since gen (attrGen) was read
// before the look. An upload that ends meanwhile remembers the object it
// put; the look may have read the one it replaced, which must not
// overwrite it.
func (s *Share) rememberRead(p string, a Attr, exists bool, gen uint64) {
	s.attrMu.Lock()
	if s.attrGen(p) == gen {
		s.attrs[p] = cachedAttr{attr: a, exists: exists, at: s.now()}
	}
	s.attrMu.Unlock()
}

// attrGen changes whenever p's cached attributes change other than by a
// look at the store (which may then be older than the change). attrMu is
// held.
func (s *Share) attrGen(p string) uint64 {
	return s.attrEpoch + s.attrGens[attrBucket(p)]
}

// attrGenNow is attrGen, taking attrMu.
func (s *Share) attrGenNow(p string) uint64 {
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	return s.attrGen(p)
}

// attrBucket is p's bucket of attrGens: FNV-1a, without an allocation.
func attrBucket(p string) int {
	h := uint32(2166136261)
	for i := 0; i < len(p); i++ {
		h ^= uint32(p[i])
		h *= 16777619
	}
	return int(h % attrBuckets)
}

const attrBuckets = 64

// setAttrLocked caches a change's attributes of p; attrMu is held.
func (s *Share) setAttrLocked(p string, a Attr, exists bool) {
	s.bumpAttrGen(p)
	s.attrs[p] = cachedAttr{attr: a, exists: exists, at: s.now()}
}

// dropAttrLocked forgets p's cached attributes; attrMu is held.
func (s *Share) dropAttrLocked(p string) {
	s.bumpAttrGen(p)
	delete(s.attrs, p)
}

func (s *Share) bumpAttrGen(p string) { s.attrGens[attrBucket(p)]++ }

// invalidateTree forgets everything cached at or below p; the parent's
// listing loses p's name.
func (s *Share) invalidateTree(p string) {
	s.attrMu.Lock()
	s.attrEpoch++
	below := p + "/"
	for k := range s.attrs {
		if k == p || strings.HasPrefix(k, below) {
			delete(s.attrs, k)
		}
	}
	s.dirs.dropTree(p)
	s.noteEntry(p, 0, false)
	s.attrMu.Unlock()
}

// invalidateFile is invalidateTree for a path that is not a directory:
// nothing below it is cached and it has no listing, so no walk of the
// whole cache (a remove of each of many small files walked it every
// time).
func (s *Share) invalidateFile(p string) {
	s.attrMu.Lock()
	s.dropAttrLocked(p)
	s.noteEntry(p, 0, false)
	s.attrMu.Unlock()
}

// Refresh forgets the cached attributes and listing of p (with
// recursive, of everything below it too), so the next look asks the store:
// objects put, changed or deleted directly in S3 appear at once. The
// frontends hear of it (OnChange) and drop what they cached of p too.
func (s *Share) Refresh(p string, recursive bool) error {
	p, err := cleanPath(p)
	if err != nil {
		return err
	}
	if !recursive {
		s.attrMu.Lock()
		s.attrEpoch++
		delete(s.attrs, p)
		s.dirs.drop(p)
		if p != "" {
			s.dirs.drop(parentOf(p))
		}
		for k := range s.attrs {
			if parentOf(k) == p && k != p {
				delete(s.attrs, k) // the entries the listing shows
			}
		}
		s.attrMu.Unlock()
		s.changed(p)
		return nil
	}
	if p == "" {
		s.attrMu.Lock()
		s.attrs = map[string]cachedAttr{}
		s.attrEpoch++
		s.dirs.clear()
		s.attrMu.Unlock()
	} else {
		s.invalidateTree(p)
	}
	s.changed(p)
	return nil
}

// ReadDir lists a directory, by name. Every entry carries the attributes
// Stat gives for it (the stored mode, owner and times, not the share's
// defaults): clients decide access from what a listing says.
func (s *Share) ReadDir(ctx context.Context, p string) ([]DirEntry, error) {
	p, names, err := s.dirNames(ctx, p)
	if err != nil {
		return nil, err
	}
	if listedHook != nil {
		listedHook()
	}
	entries := make([]DirEntry, 0, len(names))
	paths := make([]string, 0, len(names))
	for name := range names {
		entries = append(entries, DirEntry{Name: name})
		paths = append(paths, joinPath(p, name))
	}
	inos, err := s.inodes(ctx, paths)
	if err != nil {
		return nil, err
	}
	// Attributes not known (or too old) are read from the store, a few at
	// a time.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		gone     = make([]bool, len(entries))
		gens     = make([]uint64, len(entries))
		sem      = make(chan struct{}, 8)
	)
	for i := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			gens[i] = s.attrGenNow(paths[i])
			a, err := s.entryAttr(ctx, paths[i], names[entries[i].Name])
			switch {
			case isNotExist(err):
				gone[i] = true // deleted since the listing
			case err != nil:
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			default:
				entries[i].Attr = a
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	out := entries[:0]
	for i, e := range entries {
		if gone[i] {
			continue
		}
		e.Attr.Ino = inos[i]
		if st := s.m.dirtyState(s.cfg.Name, inos[i]); st != nil {
			st.overlay(&e.Attr)
		} else {
			if s.attrGenNow(paths[i]) != gens[i] {
				// Changed since it was read (an upload ended): as Stat.
				a, err := s.statNow(ctx, paths[i])
				if isNotExist(err) {
					continue
				}
				if err != nil {
					return nil, err
				}
				e.Attr = a
				out = append(out, e)
				continue
			}
		}
		s.overlayTimes(&e.Attr)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// listedHook, when a test sets it, runs in ReadDir once the names are read.
var listedHook func()

// listing returns the names in directory p and what each is: the cached
// listing while it may be used, else the store's; with the files made in p
// not yet uploaded (type 0: their state says).
func (s *Share) listing(ctx context.Context, p string) (map[string]FileType, error) {
	s.attrMu.Lock()
	at, ok := s.dirs.at(p)
	if ok && s.fresh(at) {
		if names := s.names(p); names != nil {
			s.attrMu.Unlock()
			return names, nil
		}
	}
	s.attrMu.Unlock()
	prefix := s.key(p)
	if p != "" {
		prefix += "/"
	}
	// A file whose first upload ends while the store is listed may be
	// missing from what the listing read, and is no longer among the files
	// not yet uploaded that names adds: the upload notes it in landed
	// while a listing is under way, and the listing adds it.
	s.attrMu.Lock()
	s.listings++
	s.attrMu.Unlock()
	defer func() {
		s.attrMu.Lock()
		if s.listings--; s.listings == 0 {
			clear(s.landed)
		}
		s.attrMu.Unlock()
	}()
	names := map[string]FileType{}
	err := objstore.ListDir(ctx, s.m.opts.Store, prefix, func(oi objstore.ObjectInfo, isPrefix bool) error {
		name := strings.TrimSuffix(oi.Key[len(prefix):], "/")
		if _, seen := names[name]; name == "" || checkName(name) != nil || seen {
			return nil // the marker itself, or a key no path can name
		}
		if s.m.deleting(s.cfg.Name, oi.Key) {
			return nil // removed, its delete not done yet (for a prefix: its marker)
		}
		names[name] = TypeFile // or a symlink: its metadata says
		if isPrefix {
			names[name] = TypeDir
		}
		return nil
	})
	if err != nil {
		if s.m.storeFailed(ctx, err) && ok {
			// The store is away: what the share last knew.
			s.attrMu.Lock()
			names := s.names(p)
			s.attrMu.Unlock()
			if names != nil {
				return names, nil
			}
		}
		return nil, err
	}
	s.m.storeBack()
	// Objects renamed here whose move waits for the store are here.
	for _, k := range s.m.movedIn(s.cfg.Name, prefix) {
		name, t := strings.TrimPrefix(k, prefix), TypeFile
		if strings.HasSuffix(name, "/") {
			name, t = strings.TrimSuffix(name, "/"), TypeDir
		}
		if name != "" && !strings.Contains(name, "/") {
			names[name] = t
		}
	}
	// Landed files removed since are left out (deleting takes filesMu,
	// which comes before attrMu).
	s.attrMu.Lock()
	var late []string
	for lp := range s.landed {
		if parentOf(lp) == p {
			late = append(late, lp)
		}
	}
	s.attrMu.Unlock()
	removed := map[string]bool{}
	for _, lp := range late {
		removed[lp] = s.m.deleting(s.cfg.Name, s.key(lp))
	}
	// The files that landed meanwhile join the listing, and the ones made
	// in p not yet uploaded join what is returned, in one hold of attrMu.
	var out map[string]FileType
	put := func() {
		for lp, t := range s.landed {
			if _, ok := names[baseName(lp)]; !ok && parentOf(lp) == p && !removed[lp] {
				s.dirs.note(p, baseName(lp), t, true)
				names[baseName(lp)] = t
			}
		}
		out = maps.Clone(names)
		s.addUnborn(p, out)
	}
	if len(names) > bigListing {
		// Too big to hold in memory: into the metadata store.
		if err := s.dirs.keep(ctx, p, names, s.now(), put); err != nil {
			return nil, err
		}
		return out, nil
	}
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	s.dirs.set(p, names, s.now())
	put()
	return out, nil
}

// names copies directory p's cached listing and adds the files made in p
// not yet uploaded, in one hold of attrMu (the caller's). The end of a
// file's first upload moves it from the second set to the first under
// attrMu, so it is in one of them; read one after the other, the file
// could end its upload between the two reads and be in neither. Without
// a listing (or one that cannot be read) it returns nil.
func (s *Share) names(p string) map[string]FileType {
	out := s.dirs.names(p)
	if out == nil {
		return nil
	}
	s.addUnborn(p, out)
	return out
}

// addUnborn adds to out the files made in p not yet uploaded (type 0:
// their state says). The caller holds attrMu.
func (s *Share) addUnborn(p string, out map[string]FileType) {
	s.eachUnborn(p, func(name string) { out[name] = 0 }) // its type comes from its state
}

// eachUnborn calls f with the name of each file made in directory p not
// yet uploaded. The caller holds attrMu.
func (s *Share) eachUnborn(p string, f func(name string)) {
	for up := range s.unborn {
		if up != "" && parentOf(up) == p {
			f(baseName(up))
		}
	}
}

// entryAttr returns the attributes of a listed entry, as stat does, asking
// the store only for what a listing says it is (one HEAD).
func (s *Share) entryAttr(ctx context.Context, p string, t FileType) (Attr, error) {
	s.attrMu.Lock()
	gen := s.attrGen(p)
	c, ok := s.attrs[p]
	_, unborn := s.unborn[p]
	s.attrMu.Unlock()
	if unborn || t == 0 || ok && s.fresh(c.at) {
		return s.stat(ctx, p)
	}
	var a Attr
	var err error
	if t == TypeDir {
		a, err = s.statMarker(ctx, p)
	} else {
		a = s.defaults(TypeFile)
		var oi objstore.ObjectInfo
		if oi, err = s.m.statObject(ctx, s.cfg.Name, s.key(p)); err == nil && s.m.deleting(s.cfg.Name, s.key(p)) {
			err = errRemoved
		}
		if err == nil {
			a.Size, a.Mtime, a.Ctime, a.etag = oi.Size, oi.ModTime, oi.ModTime, oi.ETag
			a.applyMetadata(oi.Metadata)
		}
	}
	switch {
	case objstore.IsNotFound(err) || err == errRemoved:
		s.rememberRead(p, Attr{}, false, gen)
		return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
	case err != nil:
		if s.m.storeFailed(ctx, err) && ok && c.exists {
			return c.attr, nil
		}
		return Attr{}, err
	}
	s.m.storeBack()
	s.rememberRead(p, a, true, gen)
	return a, nil
}

func (s *Share) writable() error {
	if s.live.Load().ReadOnly {
		return ErrReadOnly
	}
	return nil
}

// checkNew checks that p may be created: its parent is a directory and
// nothing is at p.
func (s *Share) checkNew(ctx context.Context, p string) error {
	if p == "" {
		return fmt.Errorf("the root: %w", ErrExist)
	}
	pa, err := s.stat(ctx, parentOf(p))
	if err != nil {
		return err
	}
	if pa.Type != TypeDir {
		return fmt.Errorf("%s: %w", parentOf(p), ErrNotDir)
	}
	if _, err := s.stat(ctx, p); err == nil {
		return fmt.Errorf("%s: %w", p, ErrExist)
	} else if !isNotExist(err) {
		return err
	}
	return nil
}

func isNotExist(err error) bool { return errorsIs(err, ErrNotExist) }

// Create makes an empty file. With exclusive unset an existing file is
// returned as it is.
func (s *Share) Create(ctx context.Context, p string, mode, uid, gid uint32, exclusive bool) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	if err := s.writable(); err != nil {
		return Attr{}, err
	}
	if err := s.checkNew(ctx, p); err != nil {
		if !exclusive && errorsIs(err, ErrExist) {
			if a, err := s.Stat(ctx, p); err == nil && a.Type == TypeFile {
				return a, nil
			}
		}
		return Attr{}, err
	}
	return s.made(ctx, p)(s.m.create(ctx, s, p, TypeFile, mode, uid, gid, "", Device{}))
}

// Mkdir makes a directory: a marker object carrying its attributes, put
// by the uploader like a new file's object (so it works while the store is
// away).
func (s *Share) Mkdir(ctx context.Context, p string, mode, uid, gid uint32) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	if err := s.writable(); err != nil {
		return Attr{}, err
	}
	if err := s.checkNew(ctx, p); err != nil {
		return Attr{}, err
	}
	return s.made(ctx, p)(s.m.create(ctx, s, p, TypeDir, mode, uid, gid, "", Device{}))
}

// Symlink makes a symbolic link holding target: an object holding the
// target, with gwd-type=symlink in its metadata, put by the uploader like a
// new file's object (so it works while the store is away).
func (s *Share) Symlink(ctx context.Context, p, target string, uid, gid uint32) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	if err := s.writable(); err != nil {
		return Attr{}, err
	}
	if target == "" || len(target) > maxTarget {
		return Attr{}, fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrInvalid)
	}
	if err := s.checkNew(ctx, p); err != nil {
		return Attr{}, err
	}
	return s.made(ctx, p)(s.m.create(ctx, s, p, TypeSymlink, 0o777, uid, gid, target, Device{}))
}

// Mknod makes a special file: a FIFO, a socket, or a block or character
// device numbered rdev. Its object, put by the uploader like a new file's,
// is empty, with the type (and a device's numbers) in its metadata; the
// gateway stores no data of it.
func (s *Share) Mknod(ctx context.Context, p string, t FileType, mode, uid, gid uint32, rdev Device) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	if !t.Special() {
		return Attr{}, fmt.Errorf("mknod of file type %d: %w", t, ErrInvalid)
	}
	if err := s.writable(); err != nil {
		return Attr{}, err
	}
	if err := s.checkNew(ctx, p); err != nil {
		return Attr{}, err
	}
	return s.made(ctx, p)(s.m.create(ctx, s, p, t, mode, uid, gid, "", rdev))
}

// Readlink returns a symbolic link's target.
func (s *Share) Readlink(ctx context.Context, p string) (string, error) {
	a, err := s.Stat(ctx, p)
	if err != nil {
		return "", err
	}
	if a.Type != TypeSymlink {
		return "", fmt.Errorf("%s: not a symbolic link: %w", p, ErrInvalid)
	}
	if a.Target != "" {
		return a.Target, nil
	}
	key := s.key(strings.Trim(p, "/"))
	rc, err := s.m.opts.Store.Get(ctx, s.m.source(s.cfg.Name, key), 0, -1)
	if objstore.IsNotFound(err) {
		rc, err = s.m.opts.Store.Get(ctx, key, 0, -1) // moved already
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxTarget+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxTarget {
		return "", fmt.Errorf("%s: symlink target over 4096 bytes: %w", p, ErrInvalid)
	}
	return string(b), nil
}

// Remove deletes a file, symlink or empty directory.
func (s *Share) Remove(ctx context.Context, p string) error {
	p, err := cleanPath(p)
	if err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("the root: %w", ErrInvalid)
	}
	a, err := s.Stat(ctx, p)
	if err != nil {
		return err
	}
	if a.Type == TypeFile {
		s.wrote(ctx, p) // before: the file's inode is still known by p
	}
	defer s.m.ns(s.cfg.Name).change(p)() // no upload at or below p runs meanwhile
	s.attrMu.Lock()
	_, unborn := s.unborn[p] // no object yet: nothing to delete in the store
	s.attrMu.Unlock()
	key := s.key(p)
	if a.Type == TypeDir {
		key += "/"
		if err := s.checkEmpty(ctx, p); err != nil {
			return err
		}
	}
	// From here the remove runs to its end: a caller that gives up (an
	// interrupted FUSE call, a cancelled request) must not leave the file
	// half removed, its unuploaded writes dropped and its old object kept.
	ctx = context.WithoutCancel(ctx)
	s.m.cancel(s.cfg.Name, a.Ino)
	s.attrMu.Lock()
	delete(s.unborn, p)
	s.attrMu.Unlock()
	if !unborn && !s.m.deleting(s.cfg.Name, key) {
		// A move there waits for the store: the delete comes after it. A
		// caller that asks for Written gets the remove answered as its
		// creates are, once the record is written: the delete waits in the
		// log for the next upload round, which does it before anything is
		// uploaded at the key (settleDeletes).
		err := errPending
		if durabilityOf(ctx) != Written && !s.m.pendingKey(s.cfg.Name, key) {
			err = s.m.deleteNow(ctx, s.cfg.Name, key)
		}
		if err != nil {
			if err != errPending && !s.m.storeFailed(ctx, err) {
				return err
			}
			// The store is away, or the delete waits for a move or
			// for the next round: it waits in the log.
			if err := s.m.deferDelete(ctx, s.cfg.Name, key); err != nil {
				return err
			}
		}
	}
	if a.Type != TypeDir {
		s.m.dropLater(cacheVolume(s.cfg.Name, a.Ino))
	}
	if a.Type == TypeDir {
		s.invalidateTree(p)
	} else {
		s.invalidateFile(p)
	}
	s.remember(p, Attr{}, false)
	if a.Type == TypeDir {
		s.dropTimes(a.Ino)
	}
	s.entriesChanged(ctx, parentOf(p))
	return s.forget(ctx, p, a.Type != TypeDir)
}

// made returns what passes a create's result on, noting first, when it
// succeeded, the change of p's directory.
func (s *Share) made(ctx context.Context, p string) func(Attr, error) (Attr, error) {
	return func(a Attr, err error) (Attr, error) {
		if err == nil {
			s.entriesChanged(ctx, parentOf(p))
		}
		return a, err
	}
}

// checkEmpty says whether directory p holds nothing: no object below it
// and no file or directory made in it that is not uploaded yet. The
// caller holds p's path lock, so no upload below it ends meanwhile.
func (s *Share) checkEmpty(ctx context.Context, p string) error {
	s.attrMu.Lock()
	for up := range s.unborn {
		if strings.HasPrefix(up, p+"/") {
			s.attrMu.Unlock()
			return fmt.Errorf("%s: %w", p, ErrNotEmpty)
		}
	}
	s.attrMu.Unlock()
	prefix := s.key(p) + "/"
	for _, k := range s.m.movedIn(s.cfg.Name, prefix) {
		if k != prefix {
			return fmt.Errorf("%s: %w", p, ErrNotEmpty)
		}
	}
	empty := true
	stop := fmt.Errorf("not empty")
	err := objstore.ListDir(ctx, s.m.opts.Store, prefix, func(oi objstore.ObjectInfo, _ bool) error {
		if oi.Key != prefix && !s.m.deleting(s.cfg.Name, oi.Key) {
			empty = false
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		if !s.m.storeFailed(ctx, err) {
			return err
		}
		// The store is away: the listing the share keeps whole, if it has one.
		s.attrMu.Lock()
		n := s.dirs.count(p)
		s.attrMu.Unlock()
		if n < 0 {
			return err
		}
		empty = n == 0
	}
	if !empty {
		return fmt.Errorf("%s: %w", p, ErrNotEmpty)
	}
	return nil
}

// Rename moves a file or directory. A file over an existing file replaces
// it; a directory may replace only an empty directory.
func (s *Share) Rename(ctx context.Context, from, to string) error {
	from, err := cleanPath(from)
	if err != nil {
		return err
	}
	to, err = cleanPath(to)
	if err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	if from == "" || to == "" || to == from || strings.HasPrefix(to, from+"/") {
		return fmt.Errorf("rename %q to %q: %w", from, to, ErrInvalid)
	}
	src, err := s.Stat(ctx, from)
	if err != nil {
		return err
	}
	// Before: each file's inode is still known by its old name. Only a
	// file held in memory (open somewhere) can have a subscriber's state.
	if src.Type == TypeFile {
		s.wrote(ctx, from)
	}
	if _, ok := s.InodeOf(to); ok {
		s.wrote(ctx, to)
	}
	pa, err := s.stat(ctx, parentOf(to))
	if err != nil {
		return err
	}
	if pa.Type != TypeDir {
		return fmt.Errorf("%s: %w", parentOf(to), ErrNotDir)
	}
	var replaced uint64 // the inode of a file rename replaces
	replacesDir := false
	if dst, err := s.Stat(ctx, to); err == nil {
		if dst.Type != TypeDir {
			replaced = dst.Ino
		}
		switch {
		case src.Type == TypeDir && dst.Type != TypeDir:
			return fmt.Errorf("%s: %w", to, ErrNotDir)
		case src.Type != TypeDir && dst.Type == TypeDir:
			return fmt.Errorf("%s: %w", to, ErrIsDir)
		}
		replacesDir = dst.Type == TypeDir
	} else if !isNotExist(err) {
		return err
	}
	copier, ok := s.m.opts.Store.(objstore.Copier)
	if !ok {
		return fmt.Errorf("rename needs an object store that copies: %w", ErrNotSupp)
	}
	// While the store is away, a file or an empty directory the store
	// holds is renamed through the log (moves.go); storeErr is why.
	var storeErr error
	if src.Type == TypeDir {
		// Pending writes below go up first: the copy must carry them.
		if err := s.m.flushTree(ctx, s, from); err != nil {
			if !s.m.storeFailed(ctx, err) {
				return err
			}
			storeErr = err
		}
	}
	// From here the rename runs to its end, as a remove does: a caller
	// that gives up (an interrupted FUSE call, a cancelled request) must
	// not leave it half done, the replaced file's acknowledged writes
	// dropped while the old object stays, or the object at both names.
	ctx = context.WithoutCancel(ctx)
	if replacesDir {
		if err := s.Remove(ctx, to); err != nil { // must be empty
			return err
		}
	}
	defer s.m.ns(s.cfg.Name).change(from, to)() // no upload at or below either runs meanwhile

	var treeKeys []keyMove // a directory's objects, when moved through the log
	if src.Type == TypeDir && storeErr != nil {
		if treeKeys, err = s.knownTree(from, to, storeErr); err != nil {
			return err
		}
	}
	if replaced != 0 {
		// Its pending writes must not go up at the path it no longer has.
		s.m.cancel(s.cfg.Name, replaced)
		s.attrMu.Lock()
		delete(s.unborn, to)
		s.attrMu.Unlock()
	}
	s.attrMu.Lock()
	ino, unborn := s.unborn[from]
	if unborn {
		// No object yet: the upload will put it at the new path.
		delete(s.unborn, from)
		s.unborn[to] = ino
	}
	s.attrMu.Unlock()
	if (src.Type == TypeDir || !unborn) && storeErr == nil {
		// Removes and moves waiting for the store are done before anything
		// is copied (a new file's upload does that itself).
		if err := s.m.settleDeletes(ctx, s.cfg.Name); err != nil {
			if !s.m.storeFailed(ctx, err) {
				return err
			}
			storeErr = err
		}
	}
	moved := false  // through the log
	intent := false // noted in the inode table (moves.go)
	settle := false // through the log, done in the store before Rename returns
	var dirKeys []string
	fromKey, toKey := s.key(from), s.key(to)
	if src.Type == TypeDir {
		fromKey, toKey = fromKey+"/", toKey+"/"
	}
	if src.Type == TypeDir && storeErr == nil {
		// The directory's objects, to copy.
		var keys []string
		err := s.m.opts.Store.List(ctx, s.key(from)+"/", func(oi objstore.ObjectInfo) error {
			if !s.m.deleting(s.cfg.Name, oi.Key) {
				keys = append(keys, oi.Key)
			}
			return nil
		})
		switch {
		case err == nil:
			dirKeys = keys
		case !s.m.storeFailed(ctx, err):
			return err
		default:
			storeErr = err
			if treeKeys, err = s.knownTree(from, to, storeErr); err != nil {
				return err
			}
		}
	}
	switch {
	case unborn && src.Type != TypeDir:
	case storeErr != nil, s.m.opts.Events != nil:
		// The store away, or events on: a move done at once would lose
		// its events to a kill between the store's change and their
		// queueing. Through the log, the events are queued on the way
		// (notify.go), and the move is done below, once the inode table
		// has the new paths.
		keys := []keyMove{{fromKey, toKey}}
		if src.Type == TypeDir {
			keys = treeKeys // none for a new empty directory
			if storeErr == nil {
				keys = storeMoves(dirKeys, s.key(from), s.key(to))
			}
		}
		if err := s.logMove(ctx, from, to, keys); err != nil {
			return err
		}
		moved, intent, settle = true, true, storeErr == nil
	case src.Type != TypeDir:
		defer s.m.sidecarUses.copying()() // (xattrgc.go)
		if err := copier.Copy(ctx, fromKey, toKey); err != nil {
			if !s.m.storeFailed(ctx, err) {
				return err
			}
			if err := s.logMove(ctx, from, to, []keyMove{{fromKey, toKey}}); err != nil {
				return err
			}
			moved, intent = true, true
		} else if err := s.m.opts.Store.Delete(ctx, fromKey); err != nil {
			if !s.m.storeFailed(ctx, err) {
				return err
			}
			// Copied; the delete of the old key waits in the log.
			if err := s.noteMoveIntent(ctx, from, to); err != nil {
				return err
			}
			intent = true
			if err := s.m.deferDelete(ctx, s.cfg.Name, fromKey); err != nil {
				return err
			}
		}
	default:
		keys := dirKeys
		// Copy everything, then delete the sources: an interruption
		// leaves both trees, never neither.
		err := func() error {
			defer s.m.sidecarUses.copying()() // (xattrgc.go)
			for _, k := range keys {
				if err := copier.Copy(ctx, k, s.key(to)+strings.TrimPrefix(k, s.key(from))); err != nil {
					return err
				}
			}
			for _, k := range keys {
				if err := s.m.opts.Store.Delete(ctx, k); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			if !s.m.storeFailed(ctx, err) {
				return err
			}
			// The store went away in the middle: the rest of the move
			// (all of it: a move done is skipped) waits in the log.
			if err := s.logMove(ctx, from, to, storeMoves(keys, s.key(from), s.key(to))); err != nil {
				return err
			}
			moved, intent = true, true
		}
	}
	if moved {
		// The store cannot be asked for either name until the move is
		// done: the share answers from what it knows.
		defer func() {
			s.remember(to, src, true)
			s.remember(from, Attr{}, false)
		}()
	}
	s.invalidateTree(to)
	if moved && src.Type == TypeDir {
		s.moveCached(from, to) // what it knows of the tree, under the new name
	}
	s.invalidateTree(from)
	s.attrMu.Lock()
	s.noteEntry(to, src.Type, true)
	s.attrMu.Unlock()
	s.entriesChanged(ctx, parentOf(from), parentOf(to))
	if err := s.finishRename(ctx, from, to, intent); err != nil || !settle {
		return err
	}
	if err := s.m.settleDeletes(ctx, s.cfg.Name); err != nil {
		s.m.log.Warn("file share: a rename waits for the next upload round", "share", s.cfg.Name, "from", from, "to", to, "err", err)
	}
	return nil
}

// SetAttr changes what is not nil.
type SetAttr struct {
	Mode     *uint32
	UID, GID *uint32
	Size     *int64
	Mtime    *time.Time
}

// SetAttr changes p's attributes; a size change truncates or extends a
// file.
func (s *Share) SetAttr(ctx context.Context, p string, ch SetAttr) (Attr, error) {
	if a, err := s.Stat(ctx, p); err == nil && a.Type == TypeDir {
		// Not between an upload round's read of the directory's times
		// and its write of them to the marker (dirtimes.go).
		s.dirMetaMu.Lock()
		defer s.dirMetaMu.Unlock()
	}
	a, err := s.setAttr(ctx, p, &ch)
	if err == nil && a.Type == TypeFile && ch != (SetAttr{}) {
		if cp, cerr := cleanPath(p); cerr == nil {
			s.wrote(ctx, cp)
		}
	}
	if err != nil || a.Type != TypeDir {
		return a, err
	}
	// What was set is the directory's times now, also over the ones its
	// entry changes gave it (dirtimes.go).
	if st := s.m.dirtyState(s.cfg.Name, a.Ino); st != nil {
		st.mu.Lock()
		a.Ctime = st.attr.Ctime
		st.mu.Unlock()
	}
	if ch.Mtime != nil {
		a.Mtime = *ch.Mtime
	}
	s.timesSet(a)
	return a, nil
}

// setAttr is SetAttr; for a directory whose entries changed, ch gets its
// current mtime when it sets none, so a change through the log keeps it.
func (s *Share) setAttr(ctx context.Context, p string, ch *SetAttr) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	if err := s.writable(); err != nil {
		return Attr{}, err
	}
	a, err := s.Stat(ctx, p)
	if err != nil {
		return Attr{}, err
	}
	if a.Type == TypeDir && ch.Mtime == nil && s.keepsTimes(a.Ino) {
		mt := a.Mtime
		ch.Mtime = &mt
	}
	if ch.Size != nil {
		if a.Type != TypeFile {
			return Attr{}, fmt.Errorf("%s: size of a non-file: %w", p, ErrInvalid)
		}
		if *ch.Size < 0 {
			return Attr{}, ErrInvalid
		}
	}
	if ch.Size != nil || s.m.dirtyState(s.cfg.Name, a.Ino) != nil {
		// Through the log, with the file's data (or a new directory's
		// marker).
		return s.m.setattrLogged(ctx, s, p, a, *ch)
	}
	// A file or directory may also change through the log when the store
	// cannot take the change now (it is away, or a remove or rename of the
	// object waits for it): the uploader sets the object's metadata later.
	canLog := p != "" && (a.Type == TypeFile || a.Type == TypeDir)
	orig := a
	if canLog && s.m.pendingKey(s.cfg.Name, s.objectKey(p, a.Type)) {
		return s.m.setattrLogged(ctx, s, p, orig, *ch)
	}
	if ch.Mode != nil {
		a.Mode = *ch.Mode & 0o7777
	}
	if ch.UID != nil {
		a.UID = *ch.UID
	}
	if ch.GID != nil {
		a.GID = *ch.GID
	}
	if ch.Mtime != nil {
		a.Mtime = *ch.Mtime
	}
	a.Ctime = s.now()
	key := s.key(p)
	if a.Type == TypeDir {
		key = s.key(p) + "/"
		if p == "" {
			key = s.cfg.Prefix
		}
	}
	release, err := s.m.sealXattrs(ctx, &a)
	if err != nil {
		if canLog && s.m.storeFailed(ctx, err) {
			return s.m.setattrLogged(ctx, s, p, orig, *ch)
		}
		return Attr{}, err
	}
	defer release()
	mp := s.m.opts.Store.(objstore.MetadataPutter)
	err = mp.SetMeta(ctx, key, a.metadata())
	if objstore.IsNotFound(err) && a.Type == TypeDir {
		// An implicit directory gets a marker to carry its attributes.
		err = mp.PutMeta(ctx, key, bytes.NewReader(nil), 0, a.metadata())
	}
	if err != nil {
		if canLog && s.m.storeFailed(ctx, err) {
			return s.m.setattrLogged(ctx, s, p, orig, *ch)
		}
		return Attr{}, err
	}
	s.remember(p, a, true)
	return a, nil
}

// objectKey is the key of p's object (a directory's marker).
func (s *Share) objectKey(p string, t FileType) string {
	if t == TypeDir {
		return s.key(p) + "/"
	}
	return s.key(p)
}
