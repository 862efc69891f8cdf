package fileshare

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Name is one name in a directory with what the share knows of it
// without asking the store: its inode number and its type, 0 when not
// known (a listing tells a file from a symbolic link only by the
// object's metadata).
type Name struct {
	Name string
	Ino  uint64
	Type FileType
}

// ReadDirNames lists directory p by name, in name order, without the
// attributes ReadDir gives each entry: no store call for an entry, and
// none at all while the share's listing of p may be used (the share
// keeps it current through its own creates, removes and renames). A name
// removed since the listing was read may still be among them; its Stat
// says so. For a reader that looks each name up anyway (Samba does, and
// its search for a name in another case needs names only).
func (s *Share) ReadDirNames(ctx context.Context, p string) ([]Name, error) {
	p, err := s.dirPath(ctx, p)
	if err != nil {
		return nil, err
	}
	out, ok := s.sortedNames(p)
	if !ok {
		// No fresh listing in memory: read one, and sort it this once.
		names, err := s.listing(ctx, p)
		if err != nil {
			return nil, err
		}
		out = make([]Name, 0, len(names))
		for name, t := range names {
			out = append(out, Name{Name: name, Type: dirOrUnknown(t)})
		}
		slices.SortFunc(out, byName)
	}
	if err := s.nameInodes(ctx, p, out); err != nil {
		return nil, err
	}
	s.nameTypes(p, out)
	return out, nil
}

// dirOrUnknown is a listed entry's type as ReadDirNames gives it: a
// listing tells a file from a symbolic link only by the object's
// metadata, so all but a directory are 0 until known otherwise.
func dirOrUnknown(t FileType) FileType {
	if t == TypeDir {
		return t
	}
	return 0
}

// sortedNames returns directory p's names in name order from the
// listing the share holds in memory, with the files made in p not yet
// uploaded (all in one hold of attrMu, as names does), if that listing
// may be used.
func (s *Share) sortedNames(p string) ([]Name, bool) {
	s.attrMu.Lock()
	defer s.attrMu.Unlock()
	at, ok := s.dirs.at(p)
	if !ok || !s.fresh(at) {
		return nil, false
	}
	sorted, entries, ok := s.dirs.sorted(p)
	if !ok {
		return nil, false
	}
	out := make([]Name, len(sorted))
	for i, name := range sorted {
		out[i] = Name{Name: name, Type: dirOrUnknown(entries[name])}
	}
	// The files made in p not yet uploaded (their type comes from their
	// state, in nameTypes): a listing the share read itself holds them
	// already (a create notes its name), one read from the store before
	// their upload may not.
	n := len(out)
	s.eachUnborn(p, func(name string) {
		if _, listed := entries[name]; !listed {
			out = append(out, Name{Name: name})
		}
	})
	if len(out) > n {
		slices.SortFunc(out, byName)
	}
	return out, true
}

// nameInodes sets the inode number of each of directory p's names, from
// the share's map of paths without building a path for each name it
// holds, and from the inode table for the others.
func (s *Share) nameInodes(ctx context.Context, p string, out []Name) error {
	var buf []byte
	var missing []int
	s.inoMu.Lock()
	for i := range out {
		buf = appendPath(buf[:0], p, out[i].Name)
		if ino, ok := s.byPath[string(buf)]; ok {
			out[i].Ino = ino
		} else {
			missing = append(missing, i)
		}
	}
	s.inoMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	paths := make([]string, len(missing))
	for j, i := range missing {
		paths[j] = joinPath(p, out[i].Name)
	}
	inos, err := s.inodes(ctx, paths)
	if err != nil {
		return err
	}
	for j, i := range missing {
		out[i].Ino = inos[j]
	}
	return nil
}

// nameTypes sets the type of each of directory p's names not known from
// the listing, from the share's fresh attributes or the file's pending
// state.
func (s *Share) nameTypes(p string, out []Name) {
	var buf []byte
	now, away := s.now(), s.m.storeAway()
	s.attrMu.Lock()
	for i := range out {
		if out[i].Type != 0 {
			continue
		}
		buf = appendPath(buf[:0], p, out[i].Name)
		if c, ok := s.attrs[string(buf)]; ok && c.exists && s.freshAt(c.at, now, away) {
			out[i].Type = c.attr.Type
		}
	}
	s.attrMu.Unlock()
	for i := range out {
		if out[i].Type != 0 {
			continue
		}
		if st := s.m.dirtyState(s.cfg.Name, out[i].Ino); st != nil {
			st.mu.Lock()
			out[i].Type = st.attr.Type
			st.mu.Unlock()
		}
	}
}

func byName(a, b Name) int { return strings.Compare(a.Name, b.Name) }

// appendPath appends the path of name in directory dir to buf.
func appendPath(buf []byte, dir, name string) []byte {
	if dir != "" {
		buf = append(append(buf, dir...), '/')
	}
	return append(buf, name...)
}

// dirNames is where ReadDir starts: directory p's path, cleaned, and its
// names (listing).
func (s *Share) dirNames(ctx context.Context, p string) (string, map[string]FileType, error) {
	p, err := s.dirPath(ctx, p)
	if err != nil {
		return "", nil, err
	}
	names, err := s.listing(ctx, p)
	if err != nil {
		return "", nil, err
	}
	return p, names, nil
}

// dirPath returns p cleaned, once it is known to be a directory.
func (s *Share) dirPath(ctx context.Context, p string) (string, error) {
	p, err := cleanPath(p)
	if err != nil {
		return "", err
	}
	a, err := s.stat(ctx, p)
	if err != nil {
		return "", err
	}
	if a.Type != TypeDir {
		return "", fmt.Errorf("%s: %w", p, ErrNotDir)
	}
	return p, nil
}
