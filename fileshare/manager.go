package fileshare

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Options wire a Manager to the gateway.
type Options struct {
	Meta  meta.Store
	Store objstore.Store // needs MetadataPutter and Copier
	Cache *cache.Cache
	Log   *uploadbuffer.Log // the file shares' own upload buffer
	// SettleTime is how long a file must go unwritten before it is
	// uploaded (default 2s); UploadInterval how often the uploader looks
	// (default 1s); Uploaders how many files go up at once (default 4).
	SettleTime     time.Duration
	UploadInterval time.Duration
	Uploaders      int
	// AttrTTL is how long a listing or an object's attributes read from
	// the store are trusted before the store is asked again (default 10s):
	// how soon changes made directly in S3 appear.
	AttrTTL time.Duration
	Clock   clock.Clock
	Logger  *slog.Logger
	// Health, when set, warns once a write of the cache's files failed.
	Health *health.Reporter
	// Events, when set, gets an event of every upload, failed upload and
	// delete in the store (notify.go).
	Events notify.Sink
	// XattrGCInterval is how often extended attribute sidecars no object
	// names are deleted (xattrgc.go; default 24h, negative: never), and
	// XattrGCGrace how old one must be (default 1h).
	XattrGCInterval time.Duration
	XattrGCGrace    time.Duration
}

// Manager owns the shares of one gateway and their uploader.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	shares map[string]*Share

	filesMu sync.Mutex
	files   map[fileKey]*fileState      // files with writes not yet uploaded
	deletes map[string]uploadbuffer.LSN // removed objects not yet deleted in the store (deletes.go)
	moves   map[uploadbuffer.LSN]move   // renamed objects not yet moved in the store (moves.go)
	later   []laterRecord               // replayed records waiting for the store (moves.go)
	laterMu sync.Mutex                  // held while later records are applied
	nsLocks sync.Map                    // share name -> *pathLocks
	// moveRefs holds the pending moves by the keys they name (moves.go).
	moveRefs map[string][]keyRef

	// j is the write path: the log, replay, trimming and the uploader.
	j *uploadbuffer.Journal
	// replayWaits are the files whose replayed records wait for the
	// store (during replay only).
	replayWaits map[fileKey]bool
	// replayObjects are the listings the replay read of the store
	// (replaylist.go; during replay only).
	replayObjects *replayObjects
	closeOnce     sync.Once

	bytesUploaded, filesUploaded, uploadErrors atomic.Uint64
	uploadsReplaced                            atomic.Uint64 // objects another application replaced as they were uploaded
	localWriteErrors                           atomic.Uint64

	awayUntil atomic.Int64 // unix ns until which the store counts as away (away.go)

	sidecars    sidecars    // extended attribute sets read from sidecar objects (xattrs.go)
	cacheDrops  cacheDrops  // removed files' cached blocks, dropped in the background (cachedrop.go)
	sidecarUses sidecarUses // the sidecars uploads name, for their collection (xattrgc.go)
	stopGC      context.CancelFunc
	gcDone      chan struct{}
}

// Stats are the file shares' figures for metrics.
type Stats struct {
	LogUsed, LogCapacity int64
	Pending              map[string]int // share -> files and directories with changes not yet in the store
	BytesUploaded        uint64
	FilesUploaded        uint64
	UploadErrors         uint64
	LocalWriteErrors     uint64 // writes of the cache's files that failed
	// UploadsReplaced counts uploads whose object another application
	// replaced before the share read it back (files.go, putByUs).
	UploadsReplaced uint64
}

// Stats returns the current figures.
func (m *Manager) Stats() Stats {
	st := Stats{LogUsed: m.opts.Log.Used(), LogCapacity: m.opts.Log.Capacity(), Pending: map[string]int{},
		BytesUploaded: m.bytesUploaded.Load(), FilesUploaded: m.filesUploaded.Load(), UploadErrors: m.uploadErrors.Load(),
		LocalWriteErrors: m.localWriteErrors.Load(), UploadsReplaced: m.uploadsReplaced.Load()}
	for _, c := range m.List() {
		st.Pending[c.Name] = 0
	}
	m.filesMu.Lock()
	for k := range m.files {
		st.Pending[k.share]++
	}
	for dk := range m.deletes {
		share, _, _ := strings.Cut(dk, "\x00")
		st.Pending[share]++ // a remove waiting for the store
	}
	for _, mv := range m.moves {
		st.Pending[mv.share]++ // a rename waiting for the store
	}
	waiting := map[fileKey]bool{}
	for _, lr := range m.later {
		waiting[fileKey{lr.rec.share, lr.rec.ino}] = true
	}
	for k := range waiting {
		st.Pending[k.share]++ // a file whose replayed changes wait for the store
	}
	m.filesMu.Unlock()
	return st
}

// localWriteFailed logs a failed write of local disk data and turns the
// file shares' health degraded. The warning stays until the gateway
// restarts: a disk that failed a write once is not to be trusted silently
// again.
func (m *Manager) localWriteFailed(share, what string, err error) {
	m.localWriteErrors.Add(1)
	m.log.Error("local disk write failed", "share", share, "what", what, "err", err)
	if m.opts.Health != nil {
		m.opts.Health.Warn(fmt.Sprintf("local disk write failed (share %s, %s, %s): %v", share, what, m.opts.Clock.Now().UTC().Format(time.RFC3339), err))
	}
}

// Share is one file share.
type Share struct {
	m   *Manager
	cfg Config
	// live is the configuration with Update's changes (read-only and
	// frontend access options); cfg's fields Update changes are read
	// through Config.
	live atomic.Pointer[Config]

	inoMu  sync.Mutex
	byPath map[string]uint64
	byIno  map[uint64]string
	newIno newInodes // inodes given, not yet in the table (inodes.go)

	// dirMetaMu orders the writes of directories' marker metadata: an
	// upload round's times (dirtimes.go) against a SetAttr, so that the
	// marker ends with the one the share took last.
	dirMetaMu sync.Mutex

	// onChange: the frontends' callbacks for changes applied from the
	// bucket (objectevents.go); onWrite: for content changes made
	// through other frontends (writehook.go).
	onChange, onWrite subscribers

	attrMu sync.Mutex
	attrs  map[string]cachedAttr // path -> attributes read from the store
	dirs   *dirCache             // path -> listing (listings.go)
	etags  map[uint64]string     // inode -> ETag of the object its cached blocks came from
	unborn map[string]uint64     // files created but not yet uploaded: no object yet
	// attrGens counts the changes of attrs per bucket of paths, and
	// attrEpoch those of many paths at once (attrGen): a look at the
	// store that a change overtook is not cached (fs.go).
	attrGens  [attrBuckets]uint64
	attrEpoch uint64
	// listings counts listings of the store under way; landed holds the
	// files whose first upload ended meanwhile, which such a listing may
	// have read the store too early to see (see listing).
	listings int
	landed   map[string]FileType
	// times are the directories' times changed by entry changes, by
	// inode, until their markers carry them (dirtimes.go).
	times map[uint64]*dirTime
}

// New opens the shares recorded in meta, replays the log and starts the
// uploader.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if opts.SettleTime <= 0 {
		opts.SettleTime = 2 * time.Second
	}
	if opts.UploadInterval <= 0 {
		opts.UploadInterval = time.Second
	}
	if opts.Uploaders <= 0 {
		opts.Uploaders = 4
	}
	if opts.AttrTTL <= 0 {
		opts.AttrTTL = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.XattrGCInterval == 0 {
		opts.XattrGCInterval = 24 * time.Hour
	}
	if opts.XattrGCGrace <= 0 {
		opts.XattrGCGrace = time.Hour
	}
	if _, ok := opts.Store.(objstore.MetadataPutter); !ok {
		return nil, fmt.Errorf("file shares need an object store with object metadata; %s has none", opts.Store)
	}
	m := &Manager{
		opts: opts, log: opts.Logger, shares: map[string]*Share{},
		files: map[fileKey]*fileState{}, deletes: map[string]uploadbuffer.LSN{},
		moves: map[uploadbuffer.LSN]move{}, replayWaits: map[fileKey]bool{},
		replayObjects: newReplayObjects(opts.Store),
	}
	m.j = uploadbuffer.NewJournal(opts.Log, journalClient{m}, uploadbuffer.JournalOptions{
		Name: "shares", Interval: opts.UploadInterval, SettleTime: opts.SettleTime, Parallel: opts.Uploaders,
		// A cache half full of files not uploaded yet: they go without
		// waiting out the settle time, before writes wait for room. Not
		// during the replay: the files' state is half rebuilt until the
		// store has been asked what the replayed records replace, and a
		// replayed write never waits for room (cache.WriteReplayed).
		Pressure: func() bool { return !m.j.Replaying() && opts.Cache.UnderPressure() },
		Clock:    opts.Clock, Logger: opts.Logger,
		AfterRound: func(ctx context.Context, _ uploadbuffer.RoundResult) {
			if err := m.uploadDirTimes(ctx, ""); err != nil {
				m.log.Warn("file shares: directory times", "err", err)
			}
			for _, c := range m.List() {
				if s, err := m.Get(c.Name); err == nil {
					if err := s.dirs.save(ctx, false); err != nil {
						m.log.Warn("file shares: listings not saved", "share", c.Name, "err", err)
					}
				}
			}
		},
	})
	err := opts.Meta.View(ctx, func(tx meta.Txn) error {
		return tx.Iterate([]byte("fshare/"), func(_, v []byte) error {
			c, err := unmarshalConfig(v)
			if err != nil {
				return fmt.Errorf("share metadata: %w", err)
			}
			m.shares[c.Name] = m.newShare(c)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, s := range m.shares {
		if err := s.loadDirTimes(ctx); err != nil {
			return nil, fmt.Errorf("file share %s: %w", s.cfg.Name, err)
		}
		if err := s.dirs.load(ctx); err != nil {
			return nil, fmt.Errorf("file share %s: listings: %w", s.cfg.Name, err)
		}
	}
	if err := m.j.Replay(ctx); err != nil {
		m.j.Close()
		return nil, fmt.Errorf("file shares: %w", err)
	}
	m.replayWaits, m.replayObjects = nil, nil
	if err := m.finishMoves(ctx); err != nil { // renames a crash cut (moves.go)
		m.j.Close()
		return nil, fmt.Errorf("file shares: %w", err)
	}
	m.j.Start()
	if opts.XattrGCInterval > 0 {
		gctx, stop := context.WithCancel(context.Background())
		m.stopGC, m.gcDone = stop, make(chan struct{})
		go func() {
			defer close(m.gcDone)
			m.collectXattrsEvery(gctx, opts.XattrGCInterval, opts.XattrGCGrace)
		}()
	}
	return m, nil
}

func (m *Manager) newShare(c Config) *Share {
	s := &Share{m: m, cfg: c, byPath: map[string]uint64{}, byIno: map[uint64]string{},
		attrs: map[string]cachedAttr{}, etags: map[uint64]string{}, unborn: map[string]uint64{},
		landed: map[string]FileType{}, times: map[uint64]*dirTime{}}
	s.dirs = newDirCache(s)
	s.live.Store(&c)
	return s
}

// Create adds a share.
func (m *Manager) Create(ctx context.Context, c Config) (Config, error) {
	if err := c.Normalize(); err != nil {
		return Config{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.shares[c.Name]; ok {
		return Config{}, fmt.Errorf("share %q: %w", c.Name, ErrShareExists)
	}
	for _, s := range m.shares {
		p, q := s.cfg.Prefix, c.Prefix
		if len(p) > len(q) {
			p, q = q, p
		}
		if q[:len(p)] == p {
			return Config{}, fmt.Errorf("share prefix %q overlaps share %s (%q)", c.Prefix, s.cfg.Name, s.cfg.Prefix)
		}
	}
	c.Created = m.opts.Clock.Now().UTC()
	c.ID = 1
	for _, s := range m.shares {
		c.ID = max(c.ID, s.cfg.ID+1)
	}
	b, err := c.marshal()
	if err != nil {
		return Config{}, err
	}
	if err := m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set(shareKey(c.Name), b) }); err != nil {
		return Config{}, err
	}
	m.shares[c.Name] = m.newShare(c)
	return c, nil
}

// Get returns a share by name.
func (m *Manager) Get(name string) (*Share, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.shares[name]
	if s == nil {
		return nil, fmt.Errorf("share %q: %w", name, ErrNoShare)
	}
	return s, nil
}

// ByID returns the share with handle id id.
func (m *Manager) ByID(id uint32) (*Share, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.shares {
		if s.cfg.ID == id {
			return s, nil
		}
	}
	return nil, fmt.Errorf("share id %d: %w", id, ErrNoShare)
}

// List returns the shares' configurations, by name.
func (m *Manager) List() []Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Config, 0, len(m.shares))
	for _, s := range m.shares {
		out = append(out, s.Config())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Delete removes a share from the gateway: its inode table and cached
// data. Writes not yet uploaded are uploaded first; the objects stay in
// the bucket.
func (m *Manager) Delete(ctx context.Context, name string) error {
	s, err := m.Get(name)
	if err != nil {
		return err
	}
	if err := m.Flush(ctx, name); err != nil {
		return fmt.Errorf("share %s: upload pending writes before deleting: %w", name, err)
	}
	m.mu.Lock()
	delete(m.shares, name)
	m.mu.Unlock()
	s.attrMu.Lock()
	s.dirs.clear()
	s.dirs.stopped = true // nothing of it is saved again
	s.attrMu.Unlock()
	for _, prefix := range [][]byte{inoPrefix(name), pathPrefix(name), nextKey(name), dirTimesPrefix(name),
		listHeadPrefix(name), listEntryPrefix(name), listCleanKey(name), shareKey(name)} {
		if err := meta.DeletePrefix(ctx, m.opts.Meta, prefix); err != nil {
			return err
		}
	}
	s.attrMu.Lock()
	s.attrs = map[string]cachedAttr{}
	s.attrEpoch++
	s.attrMu.Unlock()
	m.waitDrops() // none of a removed file is left to drop after the share's
	return m.opts.Cache.DropVolumes(func(v string) bool { return strings.HasPrefix(v, "fs~"+name+"~") })
}

// Config returns the share's configuration.
func (s *Share) Config() Config { return *s.live.Load() }

// Update changes what a share may change while it is served: read-only,
// auditing and the SMB options (fn is given a copy of the configuration; a change
// to another field is refused). The change is stored before it is taken.
func (m *Manager) Update(ctx context.Context, name string, fn func(*Config) error) (Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.shares[name]
	if s == nil {
		return Config{}, fmt.Errorf("share %q: %w", name, ErrNoShare)
	}
	old := s.Config()
	c := old
	c.Clients = append([]string(nil), old.Clients...)
	c.Protocols = append([]string(nil), old.Protocols...)
	c.Frontends = maps.Clone(old.Frontends)
	if err := fn(&c); err != nil {
		return Config{}, err
	}
	if err := c.Normalize(); err != nil {
		return Config{}, err
	}
	fixed := c
	fixed.ReadOnly, fixed.Frontends, fixed.Audit = old.ReadOnly, old.Frontends, old.Audit
	a, _ := fixed.marshal()
	b, _ := old.marshal()
	if string(a) != string(b) {
		return Config{}, fmt.Errorf("share %s: %w: only read-only, auditing and the frontends' options change on a served share", name, ErrInvalid)
	}
	raw, err := c.marshal()
	if err != nil {
		return Config{}, err
	}
	if err := m.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set(shareKey(c.Name), raw) }); err != nil {
		return Config{}, err
	}
	s.live.Store(&c)
	return c, nil
}

// Close stops the uploader. Writes not yet uploaded stay in the log and go
// up after the next start.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.waitDrops()
		if m.stopGC != nil {
			m.stopGC()
			<-m.gcDone
		}
		m.j.Close()
		// Directory times not in their markers yet are kept for the next
		// start (dirtimes.go).
		for _, c := range m.List() {
			if s, err := m.Get(c.Name); err == nil {
				if err := s.saveTimes(context.Background()); err != nil {
					m.log.Warn("file shares: directory times not kept", "share", c.Name, "err", err)
				}
				// The listings, for the next start (listings.go).
				if err := s.dirs.close(context.Background()); err != nil {
					m.log.Warn("file shares: listings not kept", "share", c.Name, "err", err)
				}
			}
		}
	})
	return nil
}
