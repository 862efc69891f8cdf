package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// MemFS is an in-memory FS that knows what is durable: a file's content as
// of its last Sync, and a directory's entries as of its last SyncDir. Crash
// returns the filesystem a machine would find after losing power: unsynced
// data gone, unsynced creates, renames and removes undone. Directories are
// durable as soon as they are made. Kill returns what the end of the
// process leaves: everything written. It is safe for concurrent use.
type MemFS struct {
	mu   sync.Mutex
	dirs map[string]*memDir
}

type memDir struct {
	entries map[string]*memFile
	synced  map[string]*memFile
}

type memFile struct {
	mu     sync.Mutex
	data   []byte
	synced []byte
	mtime  time.Time
}

// NewMem returns an empty MemFS with a root directory.
func NewMem() *MemFS {
	return &MemFS{dirs: map[string]*memDir{"/": newMemDir()}}
}

func newMemDir() *memDir {
	return &memDir{entries: map[string]*memFile{}, synced: map[string]*memFile{}}
}

func clean(name string) string { return path.Clean("/" + filepath.ToSlash(name)) }

func (m *MemFS) lookup(name string) (*memDir, string, error) {
	p := clean(name)
	d := m.dirs[path.Dir(p)]
	if d == nil {
		return nil, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return d, path.Base(p), nil
}

// Crash returns what survives a power loss now.
func (m *MemFS) Crash() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &MemFS{dirs: map[string]*memDir{}}
	copies := map[*memFile]*memFile{}
	for p, d := range m.dirs {
		nd := newMemDir()
		for name, f := range d.synced {
			c := copies[f]
			if c == nil {
				f.mu.Lock()
				c = &memFile{data: append([]byte(nil), f.synced...), mtime: f.mtime}
				c.synced = append([]byte(nil), c.data...)
				f.mu.Unlock()
				copies[f] = c
			}
			nd.entries[name], nd.synced[name] = c, c
		}
		out.dirs[p] = nd
	}
	return out
}

// Kill returns what survives the end of the process now (kill -9): every
// write and directory change made, synced or not, as the kernel keeps
// them. What was synced stays synced.
func (m *MemFS) Kill() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &MemFS{dirs: map[string]*memDir{}}
	copies := map[*memFile]*memFile{}
	cp := func(f *memFile) *memFile {
		c := copies[f]
		if c == nil {
			f.mu.Lock()
			c = &memFile{data: append([]byte(nil), f.data...), synced: append([]byte(nil), f.synced...), mtime: f.mtime}
			f.mu.Unlock()
			copies[f] = c
		}
		return c
	}
	for p, d := range m.dirs {
		nd := newMemDir()
		for name, f := range d.entries {
			nd.entries[name] = cp(f)
		}
		for name, f := range d.synced {
			nd.synced[name] = cp(f)
		}
		out.dirs[p] = nd
	}
	return out
}

func (m *MemFS) open(name string, create, trunc, readOnly bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if m.dirs[clean(name)] != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a directory")}
	}
	f := d.entries[base]
	if f == nil {
		if !create {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		f = &memFile{mtime: time.Now()}
		d.entries[base] = f
	} else if trunc {
		f.mu.Lock()
		f.data = nil
		f.mu.Unlock()
	}
	return &memHandle{f: f, name: base, readOnly: readOnly}, nil
}

func (m *MemFS) Create(name string) (File, error)        { return m.open(name, true, true, false) }
func (m *MemFS) Open(name string) (File, error)          { return m.open(name, false, false, true) }
func (m *MemFS) OpenReadWrite(name string) (File, error) { return m.open(name, true, false, false) }

func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(name)
	if dd := m.dirs[p]; dd != nil {
		if len(dd.entries) > 0 {
			return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
		}
		for sub := range m.dirs {
			if sub != p && path.Dir(sub) == p {
				return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
			}
		}
		delete(m.dirs, p)
		return nil
	}
	d, base, err := m.lookup(name)
	if err != nil {
		return err
	}
	if d.entries[base] == nil {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.entries, base)
	return nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob, err := m.lookup(oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.lookup(newname)
	if err != nil {
		return err
	}
	f := od.entries[ob]
	if f == nil {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(od.entries, ob)
	nd.entries[nb] = f
	return nil
}

func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := clean(dir); ; p = path.Dir(p) {
		if m.dirs[p] == nil {
			m.dirs[p] = newMemDir()
		}
		if p == "/" {
			return nil
		}
	}
}

func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(dir)
	d := m.dirs[p]
	if d == nil {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for n := range d.entries {
		names = append(names, n)
	}
	for sub := range m.dirs {
		if sub != p && path.Dir(sub) == p {
			names = append(names, path.Base(sub))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(name)
	if m.dirs[p] != nil {
		return memInfo{name: path.Base(p), dir: true}, nil
	}
	d, base, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	f := d.entries[base]
	if f == nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return memInfo{name: base, size: int64(len(f.data)), mtime: f.mtime}, nil
}

func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[clean(dir)]
	if d == nil {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	d.synced = make(map[string]*memFile, len(d.entries))
	for n, f := range d.entries {
		d.synced[n] = f
	}
	return nil
}

type memHandle struct {
	f        *memFile
	name     string
	pos      int64
	readOnly bool
	closed   bool
}

var errReadOnly = errors.New("file opened read-only")

func (h *memHandle) ReadAt(p []byte, off int64) (int, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if off >= int64(len(h.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *memHandle) Read(p []byte) (int, error) {
	n, err := h.ReadAt(p, h.pos)
	h.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (h *memHandle) WriteAt(p []byte, off int64) (int, error) {
	if h.readOnly {
		return 0, errReadOnly
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(h.f.data)) {
		h.f.data = append(h.f.data, make([]byte, end-int64(len(h.f.data)))...)
	}
	copy(h.f.data[off:], p)
	h.f.mtime = time.Now()
	return len(p), nil
}

func (h *memHandle) Write(p []byte) (int, error) {
	n, err := h.WriteAt(p, h.pos)
	h.pos += int64(n)
	return n, err
}

func (h *memHandle) Close() error { h.closed = true; return nil }

func (h *memHandle) Sync() error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	h.f.synced = append(h.f.synced[:0:0], h.f.data...)
	return nil
}

func (h *memHandle) Stat() (os.FileInfo, error) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return memInfo{name: h.name, size: int64(len(h.f.data)), mtime: h.f.mtime}, nil
}

func (h *memHandle) Truncate(size int64) error {
	if h.readOnly {
		return errReadOnly
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if size <= int64(len(h.f.data)) {
		h.f.data = h.f.data[:size]
	} else {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	return nil
}

type memInfo struct {
	name  string
	size  int64
	mtime time.Time
	dir   bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}
func (i memInfo) ModTime() time.Time { return i.mtime }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
