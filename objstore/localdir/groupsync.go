package localdir

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/internal/fsutil"
)

// Group commit of the syncs of concurrent writes.
//
// A put makes two things durable in order: its temp file's data (before the
// rename, so that a crash never shows a torn object under the key) and the
// rename (before it returns). Each is a wait in a syncGroup: the put hands
// over what to sync and waits until a sync of it that began after the hand-
// over has ended. One waiter at a time, the leader, takes everything handed
// over so far as a batch and syncs it: first it starts the writeback of
// every file in the batch, then it fsyncs each file and then each distinct
// directory once. The others wait meanwhile and hand over more, which the
// next leader takes whole. Alone, a put syncs as it would without the
// group; with several under way, they share the syncs: on a journalling
// filesystem (ext4, XFS) the first fsync of a batch commits the journal
// transaction holding every file's allocation and every rename of the
// batch, so the fsyncs after it find their changes committed and only wait
// for their data. Nothing is weaker than a sync per put: each file and each
// directory a put changed is itself fsynced before the put goes on, by
// whichever goroutine leads. syncfs(2) would be one call per batch, but it
// writes back everything dirty on the filesystem, whoever wrote it (the
// upload buffer, the cache, other programs on a shared root filesystem), so
// its cost is not the store's to bound.
type syncGroup struct {
	// syncFile and syncDir make a file's data and a directory's entries
	// durable; tests wrap them to watch or hold the syncs.
	syncFile func(*os.File) error
	syncDir  func(dir string) error

	// handedOver, when set, is called (g.mu held) for each file or
	// directory handed over, and beforeBatch by each leader before it
	// syncs its batch; tests watch and hold the group with them.
	handedOver  func()
	beforeBatch func()

	mu      sync.Mutex
	cond    *sync.Cond
	leading bool
	cur     *syncBatch // collecting, not yet taken by a leader
	stats   struct{ batches, files, dirs, maxFiles int }
}

// syncBatch is what one leader syncs. A directory handed over twice is
// synced once, both waiters getting its result.
type syncBatch struct {
	files   []*fileSync
	dirs    map[string]*error
	dirList []string
	done    bool
}

type fileSync struct {
	f   *os.File
	err error
}

func newSyncGroup() *syncGroup {
	g := &syncGroup{
		syncFile: func(f *os.File) error { return f.Sync() },
		syncDir:  fsutil.SyncDir,
	}
	g.cond = sync.NewCond(&g.mu)
	g.cur = newSyncBatch()
	return g
}

func newSyncBatch() *syncBatch { return &syncBatch{dirs: map[string]*error{}} }

// file returns once f's data and size are durable. f stays open until then.
func (g *syncGroup) file(f *os.File) error {
	g.mu.Lock()
	fs := &fileSync{f: f}
	b := g.cur
	b.files = append(b.files, fs)
	if g.handedOver != nil {
		g.handedOver()
	}
	g.wait(b)
	return fs.err
}

// dir returns once dir's entries are durable, as they were when it was
// called.
func (g *syncGroup) dir(dir string) error {
	g.mu.Lock()
	b := g.cur
	errp := b.dirs[dir]
	if errp == nil {
		errp = new(error)
		b.dirs[dir] = errp
		b.dirList = append(b.dirList, dir)
	}
	if g.handedOver != nil {
		g.handedOver()
	}
	g.wait(b)
	return *errp
}

// wait waits, g.mu held, until b has been synced, leading its sync if no
// one else leads when its turn comes. It returns with g.mu released.
func (g *syncGroup) wait(b *syncBatch) {
	for g.leading && !b.done {
		g.cond.Wait()
	}
	if b.done {
		g.mu.Unlock()
		return
	}
	// No one leads and b is not done, so b is still the collecting batch:
	// only a leader takes it.
	g.leading = true
	g.cur = newSyncBatch()
	g.mu.Unlock()

	if g.beforeBatch != nil {
		g.beforeBatch()
	}
	g.run(b)

	g.mu.Lock()
	b.done = true
	g.leading = false
	g.stats.batches++
	g.stats.files += len(b.files)
	g.stats.dirs += len(b.dirList)
	g.stats.maxFiles = max(g.stats.maxFiles, len(b.files))
	g.cond.Broadcast()
	g.mu.Unlock()
}

// run syncs a batch: the files' writeback started all at once, so that
// their allocations share one journal transaction, then each file, then
// each directory.
func (g *syncGroup) run(b *syncBatch) {
	if len(b.files) > 1 {
		for _, fs := range b.files {
			// Only a hint: the fsync below reports what fails.
			_ = unix.SyncFileRange(int(fs.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		}
	}
	for _, fs := range b.files {
		fs.err = g.syncFile(fs.f)
	}
	for _, d := range b.dirList {
		*b.dirs[d] = g.syncDir(d)
	}
}
