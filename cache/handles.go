package cache

import (
	"container/list"
	"errors"
	"sync"

	"github.com/gatewayd/gatewayd/vfs"
)

// Chunk files kept open between reads and writes. Opening a file per 4 KiB
// I/O cost more than the I/O itself (open, fcntl, close: three system
// calls for one pread or pwrite), so hot chunks keep their descriptor.
// The bound is an eighth of the process's descriptor limit (Go raises the
// soft limit to the hard one at start), between minOpenChunks and
// maxOpenChunks: with 1 MiB chunks, 8192 descriptors keep an 8 GiB working
// set open. 256, the bound before, was a quarter of a 1 GiB volume's
// chunks, and random I/O over such a volume reopened a file for most
// requests.
const (
	minOpenChunks = 256
	maxOpenChunks = 8192
)

// handles keeps recently used chunk files open. A handle belongs to one
// cache entry, never to a key: a chunk dropped and cached again is a new
// entry with a new file, so a reader can never be handed a descriptor of
// the deleted one.
type handles struct {
	fs  vfs.FS
	max int // handles kept open at most

	mu  sync.Mutex
	m   map[*entry]*handle
	lru *list.List // front: most recently used
}

type handle struct {
	e      *entry
	f      vfs.File
	refs   int
	doomed bool // forgotten: close when the last user releases it
	el     *list.Element
}

func newHandles(fs vfs.FS) *handles {
	return &handles{fs: fs, max: openChunkLimit(), m: map[*entry]*handle{}, lru: list.New()}
}

// errForgotten means the entry was removed from the cache: its path may
// be another entry's file by now.
var errForgotten = errors.New("chunk removed from the cache")

// acquire returns an open handle on e's file (at e.path); release it after use.
func (h *handles) acquire(e *entry) (*handle, error) {
	h.mu.Lock()
	if x := h.m[e]; x != nil {
		x.refs++
		h.lru.MoveToFront(x.el)
		h.mu.Unlock()
		return x, nil
	}
	forgotten := e.forgotten
	h.mu.Unlock()
	if forgotten {
		return nil, errForgotten
	}
	f, err := h.fs.OpenReadWrite(e.path)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.forgotten { // removed while we opened it
		f.Close()
		return nil, errForgotten
	}
	if x := h.m[e]; x != nil { // opened by another reader meanwhile
		x.refs++
		f.Close()
		return x, nil
	}
	x := &handle{e: e, f: f, refs: 1}
	x.el = h.lru.PushFront(x)
	h.m[e] = x
	for el := h.lru.Back(); el != nil && len(h.m) > h.max; {
		prev := el.Prev()
		if y := el.Value.(*handle); y.refs == 0 {
			h.removeLocked(y)
			y.f.Close()
		}
		el = prev
	}
	return x, nil
}

func (h *handles) release(x *handle) {
	h.mu.Lock()
	defer h.mu.Unlock()
	x.refs--
	if x.refs == 0 && x.doomed {
		x.f.Close()
	}
}

func (h *handles) removeLocked(x *handle) {
	delete(h.m, x.e)
	h.lru.Remove(x.el)
}

// forget closes e's handle (once its users are done): e's file is being
// removed or the entry dropped.
func (h *handles) forget(e *entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.forgotten = true
	h.closeLocked(e)
}

// closeLocked closes e's handle (once its users are done). Called with
// h.mu held.
func (h *handles) closeLocked(e *entry) {
	x := h.m[e]
	if x == nil {
		return
	}
	h.removeLocked(x)
	x.doomed = true
	if x.refs == 0 {
		x.f.Close()
	}
}

// closeAll closes every idle handle and dooms the rest.
func (h *handles) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for e := range h.m { // deleting while ranging is allowed
		h.closeLocked(e)
	}
}
