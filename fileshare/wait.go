package fileshare

import (
	"context"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// waitPoll is how often Wait looks whether what it waits for is in the
// store.
const waitPoll = 100 * time.Millisecond

// pendingSet is what a share has not yet put in the store at one moment:
// the states of files with changes (a state is retired once its file is
// uploaded; a later change makes a new one), the removes and the renames
// waiting for the store.
type pendingSet struct {
	files   map[fileKey]*fileState
	deletes map[string]uploadbuffer.LSN
	moves   map[uploadbuffer.LSN]bool
}

func (p pendingSet) empty() bool { return len(p.files)+len(p.deletes)+len(p.moves) == 0 }

// under says whether the path of a share (or key of its objects) is dir or
// below it ("" is the root: everything).
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// pending takes the share's pending changes at or below dir now.
func (s *Share) pending(ctx context.Context, dir string) pendingSet {
	m := s.m
	name := s.cfg.Name
	out := pendingSet{files: map[fileKey]*fileState{}, deletes: map[string]uploadbuffer.LSN{}, moves: map[uploadbuffer.LSN]bool{}}
	keyUnder := func(key string) bool {
		rel, ok := strings.CutPrefix(key, s.cfg.Prefix)
		return ok && under(strings.TrimSuffix(rel, "/"), dir)
	}
	m.filesMu.Lock()
	for k, st := range m.files {
		if k.share == name {
			out.files[k] = st
		}
	}
	for dk, lsn := range m.deletes {
		share, key, _ := strings.Cut(dk, "\x00")
		if share == name && keyUnder(key) {
			out.deletes[dk] = lsn
		}
	}
	for lsn, mv := range m.moves {
		if mv.share != name {
			continue
		}
		for _, km := range mv.keys {
			if keyUnder(km.from) || keyUnder(km.to) {
				out.moves[lsn] = true
				break
			}
		}
	}
	m.filesMu.Unlock()
	if dir != "" {
		for k := range out.files {
			// A file whose path cannot be read is waited for.
			if p, err := s.PathOf(ctx, k.ino); err == nil && !under(p, dir) {
				delete(out.files, k)
			}
		}
	}
	return out
}

// settled drops from p what the store has now; it says whether p is empty.
func (m *Manager) settled(p pendingSet) bool {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	for k, st := range p.files {
		if m.files[k] != st {
			delete(p.files, k) // uploaded (a change since has a new state)
		}
	}
	for dk, lsn := range p.deletes {
		if cur, ok := m.deletes[dk]; !ok || cur != lsn {
			delete(p.deletes, dk)
		}
	}
	for lsn := range p.moves {
		if _, ok := m.moves[lsn]; !ok {
			delete(p.moves, lsn)
		}
	}
	return p.empty()
}

// Wait returns once everything written to the share at or below dir
// before the call is in the store: every file changed then uploaded, every
// remove and rename done there. With flush it uploads them now, as Flush
// does, ignoring the settle time; else it waits for the uploader. It
// returns how many changes it waited for. A file written again while it
// is uploaded is waited for until an upload ends with no change under
// way.
func (s *Share) Wait(ctx context.Context, dir string, flush bool) (int, error) {
	dir, err := cleanPath(dir)
	if err != nil {
		return 0, err
	}
	p := s.pending(ctx, dir)
	n := len(p.files) + len(p.deletes) + len(p.moves)
	if flush && !p.empty() {
		err := s.m.round(ctx, true, func(k fileKey, path string) bool { return k.share == s.cfg.Name && under(path, dir) })
		if err != nil {
			return n, err
		}
		if err := s.m.uploadDirTimes(ctx, s.cfg.Name); err != nil {
			return n, err
		}
	}
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for !s.m.settled(p) {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-t.C:
		}
	}
	return n, nil
}
