package fileshare

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
)

// Sidecar collection. A sidecar (xattrs.go) is named by the hash of the
// set it holds, so files with equal sets share one, and nothing records
// who names it: a sidecar is garbage once no object in the gateway's
// store names it in gwd-xattr-ref. CollectXattrs marks and sweeps:
//
//   - the sidecars older than the grace period are the candidates (one
//     put moments ago may be for an upload whose object is not there
//     yet);
//   - every object of the store outside the gateway's own prefixes is
//     read (a share's, a removed share's whose objects stay, an
//     application's) and each one its metadata names is kept, with those
//     the files not uploaded yet carry;
//   - a sidecar an upload is naming now, or named since the mark began,
//     is kept: an upload registers the sidecar it names before it looks
//     whether it exists (sealXattrs), and the sweep checks and deletes
//     each sidecar under the same lock, so an upload either keeps it or
//     finds it gone and puts it again;
//   - a server-side copy (a rename) makes an object invisible to a
//     listing for a moment, under either key: when one ran during the
//     mark, nothing is swept and the next run tries again.
//
// The gateway is the one writer of its store (the lease), so no other
// gateway names its sidecars meanwhile.

// sidecarUses are the sidecars uploads name, the copies under way and
// the collection's counts.
type sidecarUses struct {
	mu   sync.Mutex // also held by the sweep across each delete
	uses map[string]*sidecarUse

	copyGen, copyActive atomic.Int64

	runs, deleted, failed atomic.Uint64
}

type sidecarUse struct {
	active int       // uploads naming it now
	last   time.Time // when the last one ended
}

// use registers an upload that names ref; release when it is done.
func (u *sidecarUses) use(ref string, c clock.Clock) (release func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.uses == nil {
		u.uses = map[string]*sidecarUse{}
	}
	su := u.uses[ref]
	if su == nil {
		su = &sidecarUse{}
		u.uses[ref] = su
	}
	su.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			defer u.mu.Unlock()
			su.active--
			su.last = c.Now()
		})
	}
}

// copying registers a server-side copy; call the result when it is done.
func (u *sidecarUses) copying() (done func()) {
	u.copyGen.Add(1)
	u.copyActive.Add(1)
	return func() { u.copyActive.Add(-1) }
}

// XattrGCResult says what a collection did.
type XattrGCResult struct {
	Sidecars int // sidecars in the store
	Kept     int // kept: named, in use or in their grace period
	Deleted  int
	Skipped  bool // a rename ran during the mark: nothing swept
}

// CollectXattrs deletes the sidecar objects no object names, but none
// put less than grace ago (above).
func (m *Manager) CollectXattrs(ctx context.Context, grace time.Duration) (XattrGCResult, error) {
	res, err := m.collectXattrs(ctx, grace)
	m.sidecarUses.runs.Add(1)
	if err != nil {
		m.sidecarUses.failed.Add(1)
	}
	return res, err
}

func (m *Manager) collectXattrs(ctx context.Context, grace time.Duration) (XattrGCResult, error) {
	var res XattrGCResult
	u := &m.sidecarUses
	start := m.opts.Clock.Now()
	gen := u.copyGen.Load()
	if u.copyActive.Load() != 0 {
		res.Skipped = true
		return res, nil
	}
	candidates := map[string]bool{}
	err := m.opts.Store.List(ctx, xattrPrefix, func(oi objstore.ObjectInfo) error {
		ref, ok := sidecarRef(oi.Key)
		if !ok {
			return nil // not one of ours: left alone
		}
		res.Sidecars++
		if oi.ModTime.IsZero() || oi.ModTime.After(start.Add(-grace)) {
			res.Kept++
			return nil
		}
		candidates[ref] = true
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("extended attributes: list sidecars: %w", err)
	}
	if len(candidates) == 0 {
		u.forget(start)
		return res, nil
	}
	keep := func(ref string) {
		if candidates[ref] {
			delete(candidates, ref)
			res.Kept++
		}
	}
	// The files not uploaded yet.
	m.filesMu.Lock()
	for _, st := range m.files {
		st.mu.Lock()
		if x := st.attr.xa; x != nil && x.ref != "" {
			keep(x.ref)
		}
		st.mu.Unlock()
	}
	m.filesMu.Unlock()
	// Every object outside the gateway's own prefixes.
	if err := m.markObjects(ctx, "", candidates, keep); err != nil {
		return res, fmt.Errorf("extended attributes: mark: %w", err)
	}
	if u.copyGen.Load() != gen || u.copyActive.Load() != 0 {
		res.Skipped = true
		return res, nil
	}
	for ref := range candidates {
		deleted, err := m.sweepSidecar(ctx, ref, start)
		if err != nil {
			return res, err
		}
		if deleted {
			res.Deleted++
			u.deleted.Add(1)
		} else {
			res.Kept++
		}
	}
	u.forget(start)
	return res, nil
}

// forget drops the uses that ended before a run's start: their objects
// were in the store to be marked.
func (u *sidecarUses) forget(start time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for ref, su := range u.uses {
		if su.active == 0 && su.last.Before(start) {
			delete(u.uses, ref)
		}
	}
}

// sweepSidecar deletes ref's sidecar unless an upload names it now or
// named it since start.
func (m *Manager) sweepSidecar(ctx context.Context, ref string, start time.Time) (bool, error) {
	u := &m.sidecarUses
	u.mu.Lock()
	defer u.mu.Unlock()
	if su := u.uses[ref]; su != nil && (su.active > 0 || !su.last.Before(start)) {
		return false, nil
	}
	if err := m.opts.Store.Delete(ctx, xattrKey(ref)); err != nil {
		return false, fmt.Errorf("extended attributes: delete %s: %w", xattrKey(ref), err)
	}
	m.log.Info("file shares: unreferenced extended attributes deleted", "key", xattrKey(ref))
	return true, nil
}

// markObjects reads the metadata of every object below prefix but the
// gateway's own (reservedPrefixes), a directory at a time so that those
// are never listed, and keeps each sidecar one names.
func (m *Manager) markObjects(ctx context.Context, prefix string, candidates map[string]bool, keep func(string)) error {
	var dirs []string
	err := objstore.ListDir(ctx, m.opts.Store, prefix, func(oi objstore.ObjectInfo, isPrefix bool) error {
		if prefix == "" && reservedKey(oi.Key) {
			return nil
		}
		if isPrefix {
			dirs = append(dirs, oi.Key)
			return nil
		}
		if len(candidates) == 0 {
			return nil
		}
		info, err := m.opts.Store.Stat(ctx, oi.Key)
		switch {
		case objstore.IsNotFound(err):
			return nil // deleted since the listing
		case err != nil:
			return err
		}
		if ref := info.Metadata[metaXattrRef]; ref != "" {
			keep(ref)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if len(candidates) == 0 {
			return nil
		}
		if err := m.markObjects(ctx, d, candidates, keep); err != nil {
			return err
		}
	}
	return nil
}

// reservedKey says whether a key at the store's root is the gateway's own.
func reservedKey(key string) bool {
	for _, r := range reservedPrefixes {
		if strings.HasPrefix(key, r) || key == strings.TrimSuffix(r, "/") {
			return true
		}
	}
	return false
}

// sidecarRef is the hash a sidecar's key names: xattrs/<aa>/<hash>.
func sidecarRef(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, xattrPrefix)
	if !ok || len(rest) != 3+64 || rest[2] != '/' {
		return "", false
	}
	ref := rest[3:]
	if b, err := hex.DecodeString(ref); err != nil || len(b) != 32 || hex.EncodeToString(b) != ref || rest[:2] != ref[:2] {
		return "", false
	}
	return ref, true
}

// XattrGC are the collection's counts, for metrics.
type XattrGC struct {
	Runs, Failed, Deleted uint64
}

// XattrGCStats returns the collection's counts since the start.
func (m *Manager) XattrGCStats() XattrGC {
	u := &m.sidecarUses
	return XattrGC{Runs: u.runs.Load(), Failed: u.failed.Load(), Deleted: u.deleted.Load()}
}

// collectXattrsEvery runs CollectXattrs every interval until ctx ends.
func (m *Manager) collectXattrsEvery(ctx context.Context, interval, grace time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.opts.Clock.After(interval):
		}
		res, err := m.CollectXattrs(ctx, grace)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			m.log.Warn("file shares: collecting unreferenced extended attributes", "err", err)
		case res.Deleted > 0 || res.Skipped:
			m.log.Info("file shares: extended attributes collected", "sidecars", res.Sidecars, "deleted", res.Deleted, "skipped", res.Skipped)
		}
	}
}
