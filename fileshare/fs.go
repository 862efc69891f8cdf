package fileshare

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// Attributes and listings read from the store are trusted for AttrTTL;
// the share's own changes update them at once.
type cachedAttr struct {
	attr   Attr
	exists bool
	at     time.Time
}

type cachedDir struct {
	entries []DirEntry
	at      time.Time
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
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	a, err := s.stat(ctx, p)
	if err != nil {
		return Attr{}, err
	}
	if a.Ino, err = s.inode(ctx, p); err != nil {
		return Attr{}, err
	}
	if a.Type == TypeFile {
		if st := s.m.dirtyState(s.cfg.Name, a.Ino); st != nil {
			st.overlay(&a)
		} else {
			s.checkETag(a)
		}
	}
	return a, nil
}

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
	c, ok := s.attrs[p]
	_, unborn := s.unborn[p]
	s.attrMu.Unlock()
	if unborn {
		// Created, not yet uploaded: the store has no object yet.
		a := s.defaults(TypeFile)
		return a, nil
	}
	if ok && s.now().Sub(c.at) < s.m.opts.AttrTTL {
		if !c.exists {
			return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
		}
		return c.attr, nil
	}
	a, exists, err := s.statStore(ctx, p)
	if err != nil {
		return Attr{}, err
	}
	s.remember(p, a, exists)
	if !exists {
		return Attr{}, fmt.Errorf("%s: %w", p, ErrNotExist)
	}
	return a, nil
}

// statStore asks the store: the object p (a file or symlink), else the
// marker p/ or any key below p/ (a directory).
func (s *Share) statStore(ctx context.Context, p string) (Attr, bool, error) {
	if p != "" {
		oi, err := s.m.opts.Store.Stat(ctx, s.key(p))
		if err == nil {
			a := s.defaults(TypeFile)
			a.Size, a.Mtime, a.Ctime, a.etag = oi.Size, oi.ModTime, oi.ModTime, oi.ETag
			a.applyMetadata(oi.Metadata)
			return a, true, nil
		}
		if !objstore.IsNotFound(err) {
			return Attr{}, false, err
		}
	}
	a := s.defaults(TypeDir)
	oi, err := s.m.opts.Store.Stat(ctx, s.key(p)+"/")
	if p == "" {
		oi, err = s.m.opts.Store.Stat(ctx, s.cfg.Prefix)
	}
	switch {
	case err == nil:
		a.Mtime, a.Ctime = oi.ModTime, oi.ModTime
		a.applyMetadata(oi.Metadata)
		return a, true, nil
	case !objstore.IsNotFound(err):
		return Attr{}, false, err
	}
	if p == "" {
		return a, true, nil // the root always exists
	}
	found := false
	stop := fmt.Errorf("found")
	err = objstore.ListDir(ctx, s.m.opts.Store, s.key(p)+"/", func(objstore.ObjectInfo, bool) error {
		found = true
		return stop
	})
	if err != nil && err != stop {
		return Attr{}, false, err
	}
	return a, found, nil
}

func (s *Share) remember(p string, a Attr, exists bool) {
	s.attrMu.Lock()
	s.attrs[p] = cachedAttr{attr: a, exists: exists, at: s.now()}
	s.attrMu.Unlock()
}

// invalidate forgets what is cached of p and of its parent's listing.
func (s *Share) invalidate(p string) {
	s.attrMu.Lock()
	delete(s.attrs, p)
	delete(s.dirs, parentOf(p))
	s.attrMu.Unlock()
}

// invalidateTree forgets everything cached at or below p.
func (s *Share) invalidateTree(p string) {
	s.attrMu.Lock()
	for k := range s.attrs {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(s.attrs, k)
		}
	}
	for k := range s.dirs {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(s.dirs, k)
		}
	}
	delete(s.dirs, parentOf(p))
	s.attrMu.Unlock()
}

// Refresh forgets the cached attributes and listing of p (with
// recursive, of everything below it too), so the next look asks the store:
// objects put, changed or deleted directly in S3 appear at once.
func (s *Share) Refresh(p string, recursive bool) error {
	p, err := cleanPath(p)
	if err != nil {
		return err
	}
	if !recursive {
		s.attrMu.Lock()
		delete(s.attrs, p)
		delete(s.dirs, p)
		if p != "" {
			delete(s.dirs, parentOf(p))
		}
		for k := range s.attrs {
			if parentOf(k) == p && k != p {
				delete(s.attrs, k) // the entries the listing shows
			}
		}
		s.attrMu.Unlock()
		return nil
	}
	if p == "" {
		s.attrMu.Lock()
		s.attrs, s.dirs = map[string]cachedAttr{}, map[string]cachedDir{}
		s.attrMu.Unlock()
		return nil
	}
	s.invalidateTree(p)
	return nil
}

// ReadDir lists a directory, by name.
func (s *Share) ReadDir(ctx context.Context, p string) ([]DirEntry, error) {
	p, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	a, err := s.stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if a.Type != TypeDir {
		return nil, fmt.Errorf("%s: %w", p, ErrNotDir)
	}
	s.attrMu.Lock()
	c, ok := s.dirs[p]
	s.attrMu.Unlock()
	var entries []DirEntry
	if ok && s.now().Sub(c.at) < s.m.opts.AttrTTL {
		entries = append(entries, c.entries...)
	} else {
		prefix := s.key(p)
		if p != "" {
			prefix += "/"
		}
		seen := map[string]bool{}
		err := objstore.ListDir(ctx, s.m.opts.Store, prefix, func(oi objstore.ObjectInfo, isPrefix bool) error {
			name := strings.TrimSuffix(oi.Key[len(prefix):], "/")
			if name == "" || checkName(name) != nil || seen[name] {
				return nil // the marker itself, or a key no path can name
			}
			seen[name] = true
			e := DirEntry{Name: name}
			if isPrefix {
				e.Attr = s.defaults(TypeDir)
			} else {
				e.Attr = s.defaults(TypeFile)
				e.Attr.Size, e.Attr.Mtime, e.Attr.Ctime, e.Attr.etag = oi.Size, oi.ModTime, oi.ModTime, oi.ETag
			}
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
		s.attrMu.Lock()
		s.dirs[p] = cachedDir{entries: append([]DirEntry(nil), entries...), at: s.now()}
		s.attrMu.Unlock()
	}
	s.attrMu.Lock()
	for up := range s.unborn {
		if parentOf(up) == p {
			name := up[strings.LastIndexByte(up, '/')+1:]
			found := false
			for _, e := range entries {
				found = found || e.Name == name
			}
			if !found {
				entries = append(entries, DirEntry{Name: name, Attr: s.defaults(TypeFile)})
			}
		}
	}
	s.attrMu.Unlock()
	paths := make([]string, len(entries))
	for i, e := range entries {
		paths[i] = joinPath(p, e.Name)
	}
	inos, err := s.inodes(ctx, paths)
	if err != nil {
		return nil, err
	}
	s.attrMu.Lock()
	for i := range entries {
		entries[i].Attr.Ino = inos[i]
		// What the share knows better than a listing: attributes it read
		// or wrote itself.
		if c, ok := s.attrs[paths[i]]; ok && c.exists && s.now().Sub(c.at) < s.m.opts.AttrTTL {
			entries[i].Attr = c.attr
			entries[i].Attr.Ino = inos[i]
		}
	}
	s.attrMu.Unlock()
	for i := range entries {
		if st := s.m.dirtyState(s.cfg.Name, inos[i]); st != nil {
			st.overlay(&entries[i].Attr)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

func (s *Share) writable() error {
	if s.cfg.ReadOnly {
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
	return s.m.create(ctx, s, p, mode, uid, gid)
}

// Mkdir makes a directory (a marker object carrying its attributes).
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
	return s.put(ctx, p, TypeDir, mode, uid, gid, nil)
}

// Symlink makes a symbolic link holding target.
func (s *Share) Symlink(ctx context.Context, p, target string, uid, gid uint32) (Attr, error) {
	p, err := cleanPath(p)
	if err != nil {
		return Attr{}, err
	}
	if err := s.writable(); err != nil {
		return Attr{}, err
	}
	if target == "" || len(target) > 4096 {
		return Attr{}, fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrInvalid)
	}
	if err := s.checkNew(ctx, p); err != nil {
		return Attr{}, err
	}
	return s.put(ctx, p, TypeSymlink, 0o777, uid, gid, []byte(target))
}

func (s *Share) put(ctx context.Context, p string, t FileType, mode, uid, gid uint32, data []byte) (Attr, error) {
	now := s.now()
	a := Attr{Type: t, Mode: mode & 0o7777, UID: uid, GID: gid, Size: int64(len(data)), Mtime: now, Ctime: now}
	key := s.key(p)
	if t == TypeDir {
		key += "/"
		a.Size = 0
	}
	if t == TypeSymlink {
		a.Target = string(data)
	}
	if err := objstore.PutWith(ctx, s.m.opts.Store, key, bytes.NewReader(data), int64(len(data)), a.metadata()); err != nil {
		return Attr{}, err
	}
	s.invalidate(p)
	s.remember(p, a, true)
	ino, err := s.inode(ctx, p)
	if err != nil {
		return Attr{}, err
	}
	a.Ino = ino
	return a, nil
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
	rc, err := s.m.opts.Store.Get(ctx, s.key(strings.Trim(p, "/")), 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 4097))
	if err != nil {
		return "", err
	}
	if len(b) > 4096 {
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
	s.m.ns(s.cfg.Name).Lock() // no upload of the share runs meanwhile
	defer s.m.ns(s.cfg.Name).Unlock()
	if a.Type == TypeDir {
		empty := true
		stop := fmt.Errorf("not empty")
		prefix := s.key(p) + "/"
		err := objstore.ListDir(ctx, s.m.opts.Store, prefix, func(oi objstore.ObjectInfo, _ bool) error {
			if oi.Key != prefix {
				empty = false
				return stop
			}
			return nil
		})
		if err != nil && err != stop {
			return err
		}
		if !empty {
			return fmt.Errorf("%s: %w", p, ErrNotEmpty)
		}
		if err := s.m.opts.Store.Delete(ctx, prefix); err != nil {
			return err
		}
	} else {
		s.m.cancel(s.cfg.Name, a.Ino)
		s.attrMu.Lock()
		delete(s.unborn, p)
		s.attrMu.Unlock()
		if err := s.m.opts.Store.Delete(ctx, s.key(p)); err != nil {
			return err
		}
		_ = s.m.opts.Cache.DropVolume(cacheVolume(s.cfg.Name, a.Ino))
	}
	s.invalidateTree(p)
	s.remember(p, Attr{}, false)
	return s.forget(ctx, p)
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
	pa, err := s.stat(ctx, parentOf(to))
	if err != nil {
		return err
	}
	if pa.Type != TypeDir {
		return fmt.Errorf("%s: %w", parentOf(to), ErrNotDir)
	}
	if dst, err := s.Stat(ctx, to); err == nil {
		switch {
		case src.Type == TypeDir && dst.Type != TypeDir:
			return fmt.Errorf("%s: %w", to, ErrNotDir)
		case src.Type != TypeDir && dst.Type == TypeDir:
			return fmt.Errorf("%s: %w", to, ErrIsDir)
		case dst.Type == TypeDir:
			if err := s.Remove(ctx, to); err != nil { // must be empty
				return err
			}
		}
	} else if !isNotExist(err) {
		return err
	}
	if src.Type == TypeDir {
		// Pending writes below go up first: the copy must carry them.
		if err := s.m.flushTree(ctx, s, from); err != nil {
			return err
		}
	}
	s.m.ns(s.cfg.Name).Lock()
	defer s.m.ns(s.cfg.Name).Unlock()
	copier, ok := s.m.opts.Store.(objstore.Copier)
	if !ok {
		return fmt.Errorf("rename needs an object store that copies: %w", ErrNotSupp)
	}
	s.attrMu.Lock()
	ino, unborn := s.unborn[from]
	if unborn {
		// No object yet: the upload will put it at the new path.
		delete(s.unborn, from)
		s.unborn[to] = ino
	}
	s.attrMu.Unlock()
	if src.Type != TypeDir && !unborn {
		if err := copier.Copy(ctx, s.key(from), s.key(to)); err != nil {
			return err
		}
		if err := s.m.opts.Store.Delete(ctx, s.key(from)); err != nil {
			return err
		}
	} else if src.Type == TypeDir {
		var keys []string
		if err := s.m.opts.Store.List(ctx, s.key(from)+"/", func(oi objstore.ObjectInfo) error {
			keys = append(keys, oi.Key)
			return nil
		}); err != nil {
			return err
		}
		// Copy everything, then delete the sources: an interruption
		// leaves both trees, never neither.
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
	}
	s.invalidateTree(from)
	s.invalidateTree(to)
	return s.moveInodes(ctx, from, to)
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
	if ch.Size != nil {
		if a.Type != TypeFile {
			return Attr{}, fmt.Errorf("%s: size of a non-file: %w", p, ErrInvalid)
		}
		if *ch.Size < 0 {
			return Attr{}, ErrInvalid
		}
	}
	if a.Type == TypeFile && (ch.Size != nil || s.m.dirtyState(s.cfg.Name, a.Ino) != nil) {
		// Through the log, with the file's data.
		return s.m.setattrLogged(ctx, s, p, a, ch)
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
	mp := s.m.opts.Store.(objstore.MetadataPutter)
	err = mp.SetMeta(ctx, key, a.metadata())
	if objstore.IsNotFound(err) && a.Type == TypeDir {
		// An implicit directory gets a marker to carry its attributes.
		err = mp.PutMeta(ctx, key, bytes.NewReader(nil), 0, a.metadata())
	}
	if err != nil {
		return Attr{}, err
	}
	s.remember(p, a, true)
	return a, nil
}
