package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/names"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// Options wire a Manager to the gateway's subsystems.
type Options struct {
	Meta  meta.Store
	Store objstore.Store // with retry and limiter decorators
	Codec *snapshots.Codec
	Log   *uploadbuffer.Log
	Cache *cache.Cache
	FS    vfs.FS // default vfs.Default
	// DiskDir is where stored volumes get their sparse file when no disk
	// is given at creation.
	DiskDir string

	Uploaders      int           // parallel chunk uploads (default 4)
	UploadInterval time.Duration // how often the uploader looks for work (default 1s)
	// SettleTime is how long a chunk must go unwritten before it is
	// uploaded, so a chunk written piece by piece goes up once (default
	// 2s). Under pressure (log or cache over half full) chunks go at once.
	SettleTime time.Duration
	// RecoveryPointInterval is how often a cached volume's recovery point
	// is written (default 5 minutes).
	RecoveryPointInterval time.Duration

	// HydrateParallel is how many chunks a restored stored volume copies
	// at once in the background (default 4); HydrateBytesPerSec caps the
	// background copy's rate (0: no cap). Reads never wait for either.
	HydrateParallel    int
	HydrateBytesPerSec int64

	// WholeChunkUploads turns patches off: every upload of a cached
	// chunk is the whole chunk, however little of it changed (patch.go).
	WholeChunkUploads bool

	// GCInterval is how often garbage collection runs (0: never on its
	// own); GCGrace keeps unreferenced objects younger than it.
	GCInterval time.Duration
	GCGrace    time.Duration

	// ObjectLock is the retention mode of locked snapshots ("": the
	// bucket has no Object Lock, and snapshots cannot be locked).
	ObjectLock objstore.RetentionMode

	Clock  clock.Clock
	Logger *slog.Logger
	Health *health.Reporter // "volumes": upload errors, failed local disk writes (disk.go)
	// Events, when set, gets an event of every recovery point written and
	// snapshot completed (notify.go).
	Events notify.Sink
}

// Manager owns the volumes of one gateway and their uploader.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	volumes map[string]*Volume // by id
	closed  bool

	// j is the write path: the log, replay, trimming and the uploader.
	j           *uploadbuffer.Journal
	checkpoints checkpointLock // uploader.go

	// pins are the ids snapshots and restores in progress depend on.
	pinsMu    sync.Mutex
	pins      map[*pinSet]bool
	gcRunning bool
	retired   []*pinSet // unpinned while a collection ran
	gcMu      sync.Mutex

	bg sync.WaitGroup // hydrators

	// retained records until when objects are retained (Object Lock), so
	// a locked snapshot extends only those that need it.
	retained *snapshots.RetentionRecord

	schedMu       sync.Mutex // one RunSchedules at a time
	lastSchedules time.Time  // uploader loop only
	lastGC        time.Time  // uploader loop only

	afterCapture func() // tests: runs between a snapshot's instant and its upload
	// crashHook (tests) runs once a recovery point's manifest is in the
	// store, and once a snapshot is completed, with the event's kind.
	crashHook func(point string)
	// tests: run after a patch is put and before the map names it, and
	// after a compaction is recorded in the map (patch.go)
	afterPatchPut, afterCompaction func()
	// tests: runs in an upload between the merge of a partial chunk with
	// its base and the read of the chunk under its lock (uploader.go)
	afterMergeBase func(index uint64)

	// healthMu orders the health reports of upload rounds and local disk
	// failures (disk.go), so neither hides the other.
	healthMu    sync.Mutex
	diskFault   string // the last failed local write; kept until restart
	uploadFault string // the last upload round's failure

	stop     chan struct{} // closed by Close: hydrators stop
	counters counters
}

// New opens the volumes recorded in meta, replays the upload buffer log
// onto them and starts the uploader.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Uploaders <= 0 {
		opts.Uploaders = 4
	}
	if opts.HydrateParallel <= 0 {
		opts.HydrateParallel = 4
	}
	if opts.UploadInterval <= 0 {
		opts.UploadInterval = time.Second
	}
	if opts.SettleTime <= 0 {
		opts.SettleTime = 2 * time.Second
	}
	if opts.RecoveryPointInterval <= 0 {
		opts.RecoveryPointInterval = 5 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opts:     opts,
		log:      opts.Logger,
		volumes:  map[string]*Volume{},
		pins:     map[*pinSet]bool{},
		stop:     make(chan struct{}),
		retained: snapshots.NewRetentionRecord(opts.Meta),
	}
	m.j = uploadbuffer.NewJournal(opts.Log, journalClient{m}, uploadbuffer.JournalOptions{
		Name: "volumes", Interval: opts.UploadInterval, SettleTime: opts.SettleTime, Parallel: opts.Uploaders,
		Pressure: opts.Cache.UnderPressure, AfterRound: m.afterRound, Clock: opts.Clock, Logger: opts.Logger,
	})
	var infos []Info
	err := opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate([]byte("vol/"), func(_, v []byte) error {
			var info Info
			if err := json.Unmarshal(v, &info); err != nil {
				return fmt.Errorf("volume metadata: %w", err)
			}
			infos = append(infos, info)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		v, err := m.openVolume(info)
		if err == nil {
			err = v.loadBase(ctx)
		}
		if err == nil && info.Kind == Stored {
			err = v.loadHydration(ctx)
		}
		if err != nil {
			m.closeVolumes()
			return nil, err
		}
		m.volumes[info.ID] = v
	}
	// The uploader runs during replay: replayed dirty data may be more than
	// the cache holds, and only uploads make room. The journal keeps the
	// log from the record being replayed on.
	m.j.Start()
	if err := m.j.Replay(ctx); err != nil {
		m.j.Close()
		close(m.stop)
		m.closeVolumes()
		return nil, err
	}
	m.settleRecoveryPoints(ctx)
	for _, v := range m.List() {
		if v.hydrating() {
			m.bg.Add(1)
			go m.hydrate(v)
		}
	}
	return m, nil
}

func (m *Manager) byID(id string) *Volume {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.volumes[id]
}

// CreateOptions describe a new volume.
type CreateOptions struct {
	Name      string
	Size      int64
	Kind      Kind
	ChunkSize int // default snapshots.DefaultChunkSize
	// Disk is a stored volume's existing file or block device (an absolute
	// path; default a new sparse file). It must be no other volume's disk
	// (disk.go).
	Disk string
	// FromSnapshot restores the volume from a snapshot: the volume is
	// usable at once, its chunks fetched on demand (and, for a stored
	// volume, copied onto its disk in the background). Size 0 means the
	// snapshot's size; ChunkSize is the snapshot's.
	FromSnapshot string
	// WriteCache turns the volume's write cache on (Info.WriteCache).
	WriteCache bool
}

// Create makes a new volume, empty or restored from a snapshot.
func (m *Manager) Create(ctx context.Context, o CreateOptions) (Info, error) {
	var base map[uint64]basePage
	baseChunks := 0
	if o.FromSnapshot != "" {
		pin := m.pin()
		defer m.unpin(pin)
		man, err := snapshots.OpenSnapshot(ctx, m.opts.Store, m.opts.Codec, o.FromSnapshot)
		if err != nil {
			return Info{}, err
		}
		if o.ChunkSize != 0 && o.ChunkSize != man.ChunkSize {
			return Info{}, fmt.Errorf("snapshot %s has %d-byte chunks; a volume restored from it has the same", o.FromSnapshot, man.ChunkSize)
		}
		o.ChunkSize = man.ChunkSize
		if o.Size == 0 {
			o.Size = man.Size
		}
		if o.Size < man.Size {
			return Info{}, fmt.Errorf("volume size %d is smaller than snapshot %s (%d bytes)", o.Size, o.FromSnapshot, man.Size)
		}
		for _, ref := range man.Pages {
			pin.add(ref.ID)
		}
		// The pages only, not the chunks: one GET per 4096 chunks.
		base, err = m.readBase(ctx, man)
		if err != nil {
			return Info{}, fmt.Errorf("snapshot %s: %w", o.FromSnapshot, err)
		}
		for _, bp := range base {
			baseChunks += bp.Entries
		}
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = snapshots.DefaultChunkSize
	}
	if err := validateCreate(o); err != nil {
		return Info{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Info{}, ErrClosed
	}
	if o.Disk != "" {
		// Before anything reads or sizes it: a disk that is another
		// volume's is refused by name.
		if _, err := m.checkDiskFree(o.Disk); err != nil {
			return Info{}, err
		}
	}
	for _, v := range m.volumes {
		if v.info.Name == o.Name {
			return Info{}, fmt.Errorf("volume %q: %w", o.Name, ErrExists)
		}
	}
	info := Info{
		ID: newID(), Name: o.Name, Kind: o.Kind, Size: o.Size, ChunkSize: o.ChunkSize,
		Created:      m.opts.Clock.Now().UTC().Truncate(time.Second),
		FromSnapshot: o.FromSnapshot,
		WriteCache:   o.WriteCache,
	}
	if o.Kind == Stored {
		info.HydrationTotal = baseChunks
	}
	if o.Kind == Stored {
		info.Disk = o.Disk
		if info.Disk == "" {
			info.Disk = filepath.Join(m.opts.DiskDir, info.ID+".img")
			info.OwnsDisk = true
		}
		if err := prepareDisk(m.opts.FS, info); err != nil {
			return Info{}, err
		}
	}
	v, err := m.openVolume(info)
	if err != nil {
		return Info{}, err
	}
	// The base pages first, the volume record last: a crash in between
	// leaves keys of no volume, never a half-made one.
	if err := m.writeBase(ctx, info.ID, base); err != nil {
		v.close()
		return Info{}, fmt.Errorf("volume %s: %w", info.Name, err)
	}
	v.base = base
	if info.Kind == Stored && !info.OwnsDisk && o.FromSnapshot == "" {
		// An existing disk holds data the object store has never seen:
		// every chunk goes up (all-zero ones become holes).
		if err := m.markAllDirty(ctx, info); err != nil {
			v.close()
			return Info{}, err
		}
	}
	if err := m.putInfo(ctx, info); err != nil {
		v.close()
		return Info{}, err
	}
	m.volumes[info.ID] = v
	if baseChunks > 0 && info.Kind == Stored {
		v.hyd = newHydration(map[uint64]bool{}, baseChunks, baseChunks)
		m.bg.Add(1)
		go m.hydrate(v)
	}
	return info, nil
}

func (m *Manager) markAllDirty(ctx context.Context, info Info) error {
	chunks := uint64((info.Size + int64(info.ChunkSize) - 1) / int64(info.ChunkSize))
	for first := uint64(0); first < chunks; first += meta.MaxTxnWrites {
		err := m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
			for i := first; i < min(chunks, first+meta.MaxTxnWrites); i++ {
				if err := tx.Set(dirtyKey(info.ID, i), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("volume %s: record the disk's chunks for upload: %w", info.Name, err)
		}
	}
	return nil
}

func validateCreate(o CreateOptions) error {
	if err := names.CheckIdent("volume name", o.Name, 64); err != nil {
		return err
	}
	if o.Kind != Cached && o.Kind != Stored {
		return fmt.Errorf("volume kind %q: want cached or stored", o.Kind)
	}
	if o.ChunkSize < snapshots.MinChunkSize || o.ChunkSize > snapshots.MaxChunkSize || o.ChunkSize&(o.ChunkSize-1) != 0 {
		return fmt.Errorf("chunk size %d: want a power of two from %d to %d", o.ChunkSize, snapshots.MinChunkSize, snapshots.MaxChunkSize)
	}
	if o.Size <= 0 || o.Size%4096 != 0 {
		return fmt.Errorf("volume size %d: want a positive multiple of 4096", o.Size)
	}
	if o.Kind == Cached && o.Disk != "" {
		return errors.New("a cached volume has no local disk")
	}
	if o.Disk != "" && !filepath.IsAbs(o.Disk) {
		return fmt.Errorf("disk %q: want an absolute path", o.Disk)
	}
	return nil
}

func (m *Manager) putInfo(ctx context.Context, info Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set(infoKey(info.ID), b) })
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "vol-" + hex.EncodeToString(b)
}

// Get returns the volume with this name or id.
func (m *Manager) Get(nameOrID string) (*Volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := m.volumes[nameOrID]; v != nil {
		return v, nil
	}
	for _, v := range m.volumes {
		if v.info.Name == nameOrID {
			return v, nil
		}
	}
	return nil, fmt.Errorf("volume %q: %w", nameOrID, ErrNotFound)
}

// List returns every volume, by name.
func (m *Manager) List() []*Volume {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Volume, 0, len(m.volumes))
	for _, v := range m.volumes {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.Name < out[j].info.Name })
	return out
}

// Delete removes a volume: its metadata, cached chunks and (if the gateway
// created it) its local disk file. Its chunks in the object store are left
// for the garbage collector, which keeps what snapshots still use.
func (m *Manager) Delete(ctx context.Context, nameOrID string) error {
	v, err := m.Get(nameOrID)
	if err != nil {
		return err
	}
	resume := m.j.Pause() // no upload of this volume is in flight past here
	defer resume()
	m.mu.Lock()
	delete(m.volumes, v.info.ID)
	m.mu.Unlock()
	v.close()
	if err := m.opts.Cache.DropVolume(v.info.ID); err != nil {
		return err
	}
	for _, prefix := range [][]byte{mapPrefix(v.info.ID), dirtyPrefix(v.info.ID), hydrationPrefix(v.info.ID), basePrefix(v.info.ID)} {
		if err := meta.DeletePrefix(ctx, m.opts.Meta, prefix); err != nil {
			return err
		}
	}
	// A recovery point's event not settled yet goes with the volume.
	if err := m.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		if err := tx.Delete(intentKey(v.info.ID)); err != nil {
			return err
		}
		return tx.Delete(infoKey(v.info.ID))
	}); err != nil {
		return err
	}
	if v.info.Kind == Cached {
		// The recovery point would keep the volume's chunks from GC.
		if err := m.opts.Store.Delete(ctx, RecoveryPointKey(v.info.ID)); err != nil {
			m.log.Warn("delete volume recovery point", "volume", v.info.Name, "err", err)
		}
	}
	if v.info.OwnsDisk {
		if err := m.opts.FS.Remove(v.info.Disk); err != nil {
			m.log.Warn("remove volume disk file", "volume", v.info.Name, "err", err)
		}
	}
	m.j.Trim()
	return nil
}

// Grow makes a volume larger. Shrinking is refused: it would drop data.
func (m *Manager) Grow(ctx context.Context, nameOrID string, newSize int64) error {
	v, err := m.Get(nameOrID)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if newSize < v.info.Size || newSize%4096 != 0 {
		return fmt.Errorf("volume %s: new size %d must be a multiple of 4096 and at least the current %d", v.info.Name, newSize, v.info.Size)
	}
	info := v.info
	info.Size = newSize
	if info.Kind == Stored {
		capacity, err := v.diskCapacity()
		if err != nil {
			return fmt.Errorf("volume %s: size of disk %s: %w", info.Name, info.Disk, err)
		}
		switch {
		case newSize <= capacity:
		case info.OwnsDisk:
			// The gateway made this file; it may make it larger.
			if err := v.disk.Truncate(newSize); err != nil {
				return fmt.Errorf("grow disk file: %w", err)
			}
		case v.claim != nil && v.claim.ID.Block:
			return fmt.Errorf("volume %s: block device %s holds %s (%d bytes), less than %d: grow the device first", info.Name, info.Disk, config.ByteSize(capacity), capacity, newSize)
		default:
			return fmt.Errorf("volume %s: disk file %s holds %s (%d bytes), less than %d, and gatewayd extends only the files it created: extend the file first (e.g. truncate -s), then grow the volume", info.Name, info.Disk, config.ByteSize(capacity), capacity, newSize)
		}
	}
	if err := m.putInfo(ctx, info); err != nil {
		return err
	}
	// Only the size changes: the other fields are read without v.mu.
	v.info.Size = info.Size
	return nil
}

// Close stops the uploader and closes the volumes. Data not yet uploaded
// stays in the upload buffer and goes up after the next start.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.j.Close()
	close(m.stop)
	m.bg.Wait()
	m.closeVolumes()
	return nil
}

func (m *Manager) closeVolumes() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.volumes {
		v.close()
	}
}

// prepareDisk creates a stored volume's sparse file, or checks that a
// given disk is large enough.
func prepareDisk(fs vfs.FS, info Info) error {
	if info.OwnsDisk {
		if err := fs.MkdirAll(filepath.Dir(info.Disk), 0o700); err != nil {
			return err
		}
		f, err := fs.Create(info.Disk)
		if err != nil {
			return fmt.Errorf("create volume disk file: %w", err)
		}
		defer f.Close()
		if err := f.Truncate(info.Size); err != nil {
			return fmt.Errorf("size volume disk file: %w", err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync volume disk file: %w", err)
		}
		// The file must outlive a power loss along with the metadata naming it.
		return fs.SyncDir(filepath.Dir(info.Disk))
	}
	f, err := fs.Open(info.Disk)
	if err != nil {
		return fmt.Errorf("volume disk: %w", err)
	}
	defer f.Close()
	size, err := diskSize(f)
	if err != nil {
		return err
	}
	if size < info.Size {
		return fmt.Errorf("volume disk %s holds %d bytes, smaller than the volume (%d)", info.Disk, size, info.Size)
	}
	return nil
}

// diskSize is a file's size, or a block device's (seek to the end).
func diskSize(f vfs.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	if s, ok := f.(interface {
		Seek(int64, int) (int64, error)
	}); ok {
		return s.Seek(0, 2)
	}
	return fi.Size(), nil
}
