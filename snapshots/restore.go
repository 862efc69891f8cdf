package snapshots

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/internal/diskclaim"
	"github.com/gatewayd/gatewayd/objstore"
)

// Disaster recovery: RestoreToFile writes a snapshot onto a local file or
// block device from the object store alone, with the repository keys and
// nothing else. Chunks download in parallel and are authenticated before
// they are written; holes are skipped on a new file (which stays sparse)
// and written as zeroes on an existing one. Progress is kept in a state
// file beside the target (<target>.gatewayd-restore), written after the
// target is fsynced, so an interrupted restore resumes where it stopped.
//
// The target is held while it is written (diskclaim: flock on a file,
// O_EXCL on a block device), the same hold a gateway keeps on its stored
// volumes' disks, so a restore never writes a disk a gateway on this host
// serves, nor one another restore is writing. A target that already holds
// data is refused unless Force is set (see targetEmpty).

// RestoreOptions tune RestoreToFile.
type RestoreOptions struct {
	Parallel int                   // chunk downloads at once (default 8)
	Progress func(RestoreProgress) // called about twice a second and at the end
	// Force writes over a target that already holds data.
	Force bool
}

// ErrTargetNotEmpty says a restore target holds data and Force was not set.
var ErrTargetNotEmpty = errors.New("holds data; restore writes over all of it only with --force")

// emptyProbe is how much of each end of an existing target is read to
// tell whether it holds data.
const emptyProbe = 1 << 20

// RestoreProgress is how far a restore has come.
type RestoreProgress struct {
	Snapshot    string        `json:"snapshot"`
	TotalBytes  int64         `json:"total_bytes"` // bytes of non-hole chunks to write
	DoneBytes   int64         `json:"done_bytes"`
	TotalChunks int           `json:"total_chunks"`
	DoneChunks  int           `json:"done_chunks"`
	Resumed     int           `json:"resumed_chunks"` // done by an earlier, interrupted run
	Holes       int           `json:"holes"`
	Elapsed     time.Duration `json:"elapsed"`
}

// RestoreStateSuffix names the resume state file beside the target.
const RestoreStateSuffix = ".gatewayd-restore"

type restoreState struct {
	Snapshot string `json:"snapshot"`
	Chunks   int    `json:"chunks"`
	Done     []byte `json:"done"`  // bitmap of chunk indexes written and synced
	Fresh    bool   `json:"fresh"` // the target read as zeroes at the start: holes are skipped
}

// RestoreToFile restores snapshot id onto path.
func RestoreToFile(ctx context.Context, store objstore.Store, codec *Codec, id, path string, opts RestoreOptions) (RestoreProgress, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	start := time.Now()
	prog := RestoreProgress{Snapshot: id}
	man, err := OpenSnapshot(ctx, store, codec, id)
	if err != nil {
		return prog, err
	}
	ids, err := ReadChunkMap(ctx, store, codec, man)
	if err != nil {
		return prog, fmt.Errorf("snapshot %s: %w", id, err)
	}
	nChunks := int((man.Size + int64(man.ChunkSize) - 1) / int64(man.ChunkSize))
	statePath := path + RestoreStateSuffix
	st, err := readRestoreState(statePath)
	if err != nil {
		return prog, err
	}
	if st != nil && (st.Snapshot != id || st.Chunks != nChunks || len(st.Done) != (nChunks+7)/8) {
		return prog, fmt.Errorf("%s holds an interrupted restore of %s, not %s: finish it, or remove the file to start over", statePath, st.Snapshot, id)
	}
	// A resumed restore's target holds the part written before: it is ours.
	f, fresh, err := openTarget(path, man.Size, opts.Force || st != nil)
	if err != nil {
		return prog, err
	}
	defer f.Close()
	if st != nil {
		fresh = st.Fresh
	} else {
		st = &restoreState{Snapshot: id, Chunks: nChunks, Done: make([]byte, (nChunks+7)/8), Fresh: fresh}
		if err := writeRestoreState(statePath, st); err != nil {
			return prog, err
		}
	}
	isDone := func(i uint64) bool { return st.Done[i/8]&(1<<(i%8)) != 0 }

	type job struct {
		index uint64
		id    ChunkID
		hole  bool
	}
	var jobs []job
	for i := uint64(0); i < uint64(nChunks); i++ {
		cid, ok := ids[i]
		length := chunkLength(man, i)
		switch {
		case isDone(i):
			if ok {
				prog.Resumed++
				prog.DoneChunks++
				prog.DoneBytes += length
				prog.TotalChunks++
				prog.TotalBytes += length
			}
		case ok:
			jobs = append(jobs, job{index: i, id: cid})
			prog.TotalChunks++
			prog.TotalBytes += length
		default:
			prog.Holes++
			if !fresh {
				jobs = append(jobs, job{index: i, hole: true})
			}
		}
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].index < jobs[b].index })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex // guards prog, written, firstErr
	var written []uint64
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	var doneBytes atomic.Int64
	doneBytes.Store(prog.DoneBytes)
	work := make(chan job)
	var wg sync.WaitGroup
	zero := make([]byte, man.ChunkSize)
	for range opts.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				length := chunkLength(man, j.index)
				data := zero[:length]
				if !j.hole {
					d, err := ReadChunk(ctx, store, codec, j.id, man.ChunkSize)
					if err != nil {
						fail(fmt.Errorf("chunk %d: %w", j.index, err))
						return
					}
					data = d[:length]
				}
				if _, err := f.WriteAt(data, int64(j.index)*int64(man.ChunkSize)); err != nil {
					fail(fmt.Errorf("write %s: %w", path, err))
					return
				}
				mu.Lock()
				written = append(written, j.index)
				if !j.hole {
					prog.DoneChunks++
				}
				mu.Unlock()
				if !j.hole {
					doneBytes.Add(length)
				}
			}
		}()
	}
	// checkpoint syncs the target and records what is on it.
	checkpoint := func() error {
		mu.Lock()
		batch := written
		written = nil
		mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
		for _, i := range batch {
			st.Done[i/8] |= 1 << (i % 8)
		}
		return writeRestoreState(statePath, st)
	}
	report := func() {
		if opts.Progress != nil {
			mu.Lock()
			p := prog
			mu.Unlock()
			p.DoneBytes = doneBytes.Load()
			p.Elapsed = time.Since(start)
			opts.Progress(p)
		}
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastCheckpoint := time.Now()
	for _, j := range jobs {
		sent := false
		for !sent {
			select {
			case work <- j:
				sent = true
			case <-ctx.Done():
				sent = true
			case <-tick.C:
				report()
				if time.Since(lastCheckpoint) > 5*time.Second {
					lastCheckpoint = time.Now()
					if err := checkpoint(); err != nil {
						fail(err)
					}
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	// Keep what was written, whether or not the restore finished.
	if err := checkpoint(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	report()
	prog.DoneBytes = doneBytes.Load()
	prog.Elapsed = time.Since(start)
	if firstErr != nil {
		return prog, fmt.Errorf("restore of %s stopped (run it again to resume): %w", id, firstErr)
	}
	if err := os.Remove(statePath); err != nil {
		return prog, err
	}
	return prog, nil
}

func chunkLength(man Manifest, index uint64) int64 {
	start := int64(index) * int64(man.ChunkSize)
	return min(int64(man.ChunkSize), man.Size-start)
}

// openTarget opens or creates the restore target and holds it. fresh
// says the target reads as zeroes wherever nothing is written (a new or
// empty file). Unless overwrite, an existing target that holds data is
// refused.
func openTarget(path string, size int64, overwrite bool) (*os.File, bool, error) {
	d, err := diskclaim.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		d, err = diskclaim.Create(path, 0o600)
		if err != nil {
			return nil, false, err
		}
		if err := d.File.Truncate(size); err != nil {
			d.Close()
			return nil, false, err
		}
		return d.File, true, nil
	}
	if errors.Is(err, diskclaim.ErrBusy) {
		return nil, false, fmt.Errorf("restore target %w", err)
	}
	if err != nil {
		return nil, false, err
	}
	f := d.File
	end, err := d.Size()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if !overwrite {
		empty, err := targetEmpty(f, end)
		if err != nil {
			f.Close()
			return nil, false, err
		}
		if !empty {
			f.Close()
			return nil, false, fmt.Errorf("restore target %s (%s) %w", path, d.ID, ErrTargetNotEmpty)
		}
	}
	if d.ID.Block {
		if end < size {
			f.Close()
			return nil, false, fmt.Errorf("%s holds %d bytes, less than the snapshot's %d", path, end, size)
		}
		return f, false, nil
	}
	if end < size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, false, err
		}
	}
	return f, end == 0, nil
}

// targetEmpty tells whether an existing target holds no data: a file of
// length 0, or a file or device whose first and last MiB read as zeroes.
// The ends are where partition tables (MBR, GPT and its backup), file
// system superblocks and LVM, RAID and LUKS labels live, so a disk in use
// is caught without reading all of it; a disk whose ends are zero but
// whose middle holds data is not, which is what --force is about.
func targetEmpty(f *os.File, size int64) (bool, error) {
	if size == 0 {
		return true, nil
	}
	buf := make([]byte, min(size, emptyProbe))
	for _, off := range []int64{0, max(0, size-emptyProbe)} {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

func readRestoreState(path string) (*restoreState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st restoreState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: not a restore state file (%v); remove it to start over", path, err)
	}
	return &st, nil
}

func writeRestoreState(path string, st *restoreState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
