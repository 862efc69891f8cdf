package volume

import "sync"

// chunkLocks is a mutex per chunk index, created on demand and dropped when
// unused, so memory follows the chunks in use, not the volume size.
type chunkLocks struct {
	mu sync.Mutex
	m  map[uint64]*chunkLock
}

type chunkLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks chunk index and returns its unlock function.
func (c *chunkLocks) lock(index uint64) func() {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[uint64]*chunkLock)
	}
	l := c.m[index]
	if l == nil {
		l = &chunkLock{}
		c.m[index] = l
	}
	l.refs++
	c.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		c.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(c.m, index)
		}
		c.mu.Unlock()
	}
}
