package fileshare

import (
	"strings"
	"sync"
)

// pathLocks orders a share's namespace changes (remove, rename) against its
// uploads by path, so that an upload never writes an object at a path being
// moved or removed, while a rename or remove elsewhere in the share does
// not wait behind an unrelated upload (one slow PUT of a large file used to
// hold every RENAME and REMOVE of the share for its whole duration).
//
// An upload holds one path; a change holds paths together with everything
// below them. A change that is waiting keeps new uploads under its paths
// out, so a stream of uploads cannot starve it.
type pathLocks struct {
	mu      sync.Mutex
	cond    *sync.Cond
	uploads map[string]int // path -> uploads in flight
	changes [][]string     // the paths of each change holding or waiting

	// settle serialises the settling of the share's removes and moves
	// that wait for the store (deletes.go).
	settle sync.Mutex
}

func newPathLocks() *pathLocks {
	l := &pathLocks{uploads: map[string]int{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// covers says whether holding dir (and its subtree) covers p. The share's
// root is "".
func covers(dir, p string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

func (l *pathLocks) changed(p string) bool {
	for _, c := range l.changes {
		for _, d := range c {
			if covers(d, p) {
				return true
			}
		}
	}
	return false
}

// upload holds p for an upload until the returned function is called.
func (l *pathLocks) upload(p string) (unlock func()) {
	l.mu.Lock()
	for l.changed(p) {
		l.cond.Wait()
	}
	l.uploads[p]++
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.uploads[p]--; l.uploads[p] == 0 {
			delete(l.uploads, p)
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// change holds paths and their subtrees for a namespace change until the
// returned function is called: it waits for overlapping changes to end,
// then keeps new uploads below them out and waits for those in flight.
func (l *pathLocks) change(paths ...string) (unlock func()) {
	l.mu.Lock()
	overlaps := func() bool {
		for _, p := range paths {
			if l.changed(p) {
				return true
			}
			for _, c := range l.changes {
				for _, d := range c {
					if covers(p, d) {
						return true
					}
				}
			}
		}
		return false
	}
	for overlaps() {
		l.cond.Wait()
	}
	l.changes = append(l.changes, paths)
	busy := func() bool {
		for u := range l.uploads {
			for _, p := range paths {
				if covers(p, u) {
					return true
				}
			}
		}
		return false
	}
	for busy() {
		l.cond.Wait()
	}
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		for i, c := range l.changes {
			if &c[0] == &paths[0] {
				l.changes = append(l.changes[:i], l.changes[i+1:]...)
				break
			}
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}
