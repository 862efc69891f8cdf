package volume

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/gatewayd/gatewayd/meta"
)

// A stored volume restored from a snapshot starts with an empty disk and
// the snapshot's chunk map. Hydration copies every chunk onto the disk:
// a background pass in parallel, rate-limited, and on demand, ahead of the
// pass, for a chunk a read or write touches first.
//
// Which chunks are still to copy is kept in meta (vhyd/<id>/<index>), so
// hydration resumes after a restart. A key is deleted only after the disk
// holding the chunk has been fsynced; a checkpoint, which lets the upload
// buffer forget writes to a chunk, first deletes the chunk's key the same
// way, so a restart never copies the snapshot's chunk over newer writes.

func hydrationPrefix(id string) []byte { return []byte("vhyd/" + id + "/") }

func hydrationKey(id string, index uint64) []byte {
	return binaryKey(hydrationPrefix(id), index)
}

type hydration struct {
	mu       sync.Mutex
	pending  map[uint64]bool // not yet on the disk
	unsynced []uint64        // on the disk, key not yet deleted
	total    int
	left     atomic.Int64
	// demand counts the chunks being copied on demand (a read or write
	// touched them first); idle is closed when it drops to zero. The
	// background pass starts no chunk while demand is above zero.
	demand int
	idle   chan struct{}
	yields atomic.Int64 // waits of the background pass for on-demand copies
}

// demandStart and demandEnd bracket an on-demand copy.
func (h *hydration) demandStart() {
	h.mu.Lock()
	if h.demand == 0 {
		h.idle = make(chan struct{})
	}
	h.demand++
	h.mu.Unlock()
}

func (h *hydration) demandEnd() {
	h.mu.Lock()
	if h.demand--; h.demand == 0 {
		close(h.idle)
	}
	h.mu.Unlock()
}

// yieldToDemand is how hydration yields to on-demand reads: before the
// background pass copies a chunk, it waits until no on-demand copy is
// under way, so that a read of a chunk not yet copied shares the store
// and the disk with as few background copies as possible (those already
// under way), never with a queue of them. The background pass may wait
// as long as reads keep arriving; what they touch they copy themselves.
func (h *hydration) yieldToDemand(ctx context.Context) error {
	for {
		h.mu.Lock()
		if h.demand == 0 {
			h.mu.Unlock()
			return ctx.Err()
		}
		idle := h.idle
		h.mu.Unlock()
		h.yields.Add(1)
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// hydrating says whether some chunks are not yet on the disk.
func (v *Volume) hydrating() bool { return v.hyd != nil && v.hyd.left.Load() > 0 }

// loadHydration reads a stored volume's chunks still to hydrate.
func (v *Volume) loadHydration(ctx context.Context) error {
	prefix := hydrationPrefix(v.info.ID)
	pending := map[uint64]bool{}
	err := v.m.opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate(prefix, func(k, _ []byte) error {
			i, err := indexFromKey(prefix, k)
			if err != nil {
				return err
			}
			pending[i] = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	v.mu.Lock()
	_, inBase := v.baseRefsLocked()
	v.mu.Unlock()
	if len(pending)+inBase == 0 {
		return nil
	}
	v.hyd = newHydration(pending, len(pending)+inBase, v.info.HydrationTotal)
	return nil
}

// newHydration tracks left chunks still to copy (those in pending and in
// unexpanded base pages) out of total.
func newHydration(pending map[uint64]bool, left, total int) *hydration {
	h := &hydration{pending: pending, total: max(total, left)}
	h.left.Store(int64(left))
	return h
}

// ensureHydrated copies chunk index onto the disk if it is not there yet,
// on demand: the background pass waits meanwhile. Called with the chunk
// locked.
func (v *Volume) ensureHydrated(ctx context.Context, index uint64) error {
	return v.hydrateChunk(ctx, index, true)
}

// hydrateChunk copies chunk index onto the disk if it is not there yet.
// Called with the chunk locked.
func (v *Volume) hydrateChunk(ctx context.Context, index uint64, onDemand bool) error {
	h := v.hyd
	if h == nil {
		return nil
	}
	if err := v.expandPageOf(ctx, index); err != nil {
		return err
	}
	h.mu.Lock()
	need := h.pending[index]
	h.mu.Unlock()
	if !need {
		return nil
	}
	if onDemand {
		h.demandStart()
		defer h.demandEnd()
	}
	data, err := v.fetch(ctx, index)
	if err != nil {
		return fmt.Errorf("volume %s: hydrate chunk %d: %w", v.info.Name, index, err)
	}
	if data != nil {
		cs := int64(v.info.ChunkSize)
		start := int64(index) * cs
		n := min(cs, v.Size()-start)
		if n > 0 {
			if _, err := v.disk.WriteAt(data[:n], start); err != nil {
				v.m.localWriteFailed(v, fmt.Sprintf("hydrate chunk %d", index), err)
				return fmt.Errorf("volume %s: hydrate chunk %d: write disk: %w", v.info.Name, index, err)
			}
		}
	}
	h.mu.Lock()
	delete(h.pending, index)
	h.unsynced = append(h.unsynced, index)
	h.mu.Unlock()
	h.left.Add(-1)
	v.m.counters.chunksHydrated.Add(1)
	return nil
}

// commitHydrated makes the chunks hydrated so far durable: fsync the disk,
// then forget their hydration keys.
func (v *Volume) commitHydrated(ctx context.Context) error {
	h := v.hyd
	if h == nil {
		return nil
	}
	h.mu.Lock()
	list := h.unsynced
	h.unsynced = nil
	h.mu.Unlock()
	if len(list) == 0 {
		return nil
	}
	restore := func() {
		h.mu.Lock()
		h.unsynced = append(h.unsynced, list...)
		h.mu.Unlock()
	}
	if err := v.disk.Sync(); err != nil {
		v.m.localWriteFailed(v, "sync", err)
		restore()
		return fmt.Errorf("volume %s: sync disk: %w", v.info.Name, err)
	}
	for done := 0; done < len(list); {
		batch := list[done:min(len(list), done+meta.MaxTxnWrites)]
		err := v.m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			for _, i := range batch {
				if err := tx.Delete(hydrationKey(v.info.ID, i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			h.mu.Lock()
			h.unsynced = append(h.unsynced, list[done:]...)
			h.mu.Unlock()
			return fmt.Errorf("volume %s: record hydration: %w", v.info.Name, err)
		}
		done += len(batch)
	}
	return nil
}

// hydrate is the background pass over a stored volume's missing chunks:
// the chunks of pages already expanded, then one base page at a time.
func (m *Manager) hydrate(v *Volume) {
	defer m.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
		case <-v.gone:
		}
		cancel()
	}()
	h := v.hyd
	m.log.Info("hydrating volume", "volume", v.info.Name, "chunks", h.left.Load())
	var lim *rate.Limiter
	if m.opts.HydrateBytesPerSec > 0 {
		lim = rate.NewLimiter(rate.Limit(m.opts.HydrateBytesPerSec), max(int(m.opts.HydrateBytesPerSec), v.info.ChunkSize))
	}
	var failures atomic.Int64
	fail := func(err error, args ...any) {
		if ctx.Err() == nil {
			failures.Add(1)
			m.log.Warn("hydrate", append([]any{"volume", v.info.Name, "err", err}, args...)...)
		}
	}
	lastCommit := m.opts.Clock.Now()
	// copyAll hydrates a batch of chunks with HydrateParallel workers.
	copyAll := func(work []uint64) {
		jobs := make(chan uint64)
		var wg sync.WaitGroup
		for range m.opts.HydrateParallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for index := range jobs {
					if lim != nil && lim.WaitN(ctx, v.info.ChunkSize) != nil {
						continue
					}
					if h.yieldToDemand(ctx) != nil {
						continue
					}
					unlock := v.locks.lock(index)
					err := v.hydrateChunk(ctx, index, false)
					unlock()
					if err != nil {
						fail(err, "chunk", index)
					}
				}
			}()
		}
		for _, index := range work {
			if ctx.Err() != nil {
				break
			}
			jobs <- index
			if now := m.opts.Clock.Now(); now.Sub(lastCommit) >= time.Second {
				lastCommit = now
				if err := v.commitHydrated(ctx); err != nil {
					fail(err)
				}
			}
		}
		close(jobs)
		wg.Wait()
	}
	for ctx.Err() == nil && failures.Load() == 0 {
		h.mu.Lock()
		work := make([]uint64, 0, len(h.pending))
		for i := range h.pending {
			work = append(work, i)
		}
		h.mu.Unlock()
		if len(work) > 0 {
			sort.Slice(work, func(a, b int) bool { return work[a] < work[b] })
			copyAll(work)
			continue
		}
		v.mu.Lock()
		refs, _ := v.baseRefsLocked()
		v.mu.Unlock()
		if len(refs) == 0 {
			break
		}
		if err := v.expandPageOf(ctx, refs[0].First); err != nil {
			fail(err)
		}
	}
	if err := v.commitHydrated(context.WithoutCancel(ctx)); err != nil {
		m.log.Warn("hydrate", "volume", v.info.Name, "err", err)
	}
	if ctx.Err() == nil && failures.Load() == 0 {
		m.log.Info("volume hydrated", "volume", v.info.Name)
	} else if ctx.Err() == nil {
		// What failed is fetched on first use, and the pass runs again at
		// the next start.
		m.log.Warn("hydration incomplete", "volume", v.info.Name, "failures", failures.Load())
	}
}

// HydrationStatus is a restored stored volume's progress.
type HydrationStatus struct {
	TotalChunks int  `json:"total_chunks"`
	DoneChunks  int  `json:"done_chunks"`
	Complete    bool `json:"complete"`
}

func (v *Volume) hydrationStatus() *HydrationStatus {
	if v.hyd == nil {
		if v.info.HydrationTotal == 0 {
			return nil
		}
		return &HydrationStatus{TotalChunks: v.info.HydrationTotal, DoneChunks: v.info.HydrationTotal, Complete: true}
	}
	left := int(v.hyd.left.Load())
	return &HydrationStatus{TotalChunks: v.hyd.total, DoneChunks: v.hyd.total - left, Complete: left == 0}
}
