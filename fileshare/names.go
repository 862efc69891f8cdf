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
	p, names, err := s.dirNames(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]Name, 0, len(names))
	for name, t := range names {
		if t != TypeDir {
			t = 0 // a file or a symbolic link: below
		}
		out = append(out, Name{Name: name, Type: t})
	}
	slices.SortFunc(out, func(a, b Name) int { return strings.Compare(a.Name, b.Name) })
	paths := make([]string, len(out))
	for i := range out {
		paths[i] = joinPath(p, out[i].Name)
	}
	inos, err := s.inodes(ctx, paths)
	if err != nil {
		return nil, err
	}
	s.attrMu.Lock()
	for i := range out {
		out[i].Ino = inos[i]
		if c, ok := s.attrs[paths[i]]; ok && out[i].Type == 0 && c.exists && s.fresh(c.at) {
			out[i].Type = c.attr.Type
		}
	}
	s.attrMu.Unlock()
	for i := range out {
		if out[i].Type != 0 {
			continue
		}
		if st := s.m.dirtyState(s.cfg.Name, inos[i]); st != nil {
			st.mu.Lock()
			out[i].Type = st.attr.Type
			st.mu.Unlock()
		}
	}
	return out, nil
}

// dirNames is where ReadDir and ReadDirNames start: directory p's path,
// cleaned, and its names (listing).
func (s *Share) dirNames(ctx context.Context, p string) (string, map[string]FileType, error) {
	p, err := cleanPath(p)
	if err != nil {
		return "", nil, err
	}
	a, err := s.stat(ctx, p)
	if err != nil {
		return "", nil, err
	}
	if a.Type != TypeDir {
		return "", nil, fmt.Errorf("%s: %w", p, ErrNotDir)
	}
	names, err := s.listing(ctx, p)
	if err != nil {
		return "", nil, err
	}
	return p, names, nil
}
