package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/bandwidthapi"
	"github.com/gatewayd/gatewayd/api/shareapi"
	"github.com/gatewayd/gatewayd/api/smbapi"
	"github.com/gatewayd/gatewayd/api/snapshotapi"
	"github.com/gatewayd/gatewayd/api/statsapi"
	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/keys"
	"github.com/gatewayd/gatewayd/meta"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
	"github.com/gatewayd/gatewayd/volume"
)

// RunOptions are the parts of a daemon that are not configuration.
type RunOptions struct {
	Version string
	Stderr  io.Writer   // log output; os.Stderr if nil
	Clock   clock.Clock // clock.Real{} if nil
	// StoreProbeInterval is how often the object store's reachability is
	// checked for the health registry (default 30s).
	StoreProbeInterval time.Duration
	// TakeOver takes the lease on the bucket prefix from a gateway that
	// let it expire (serve --take-over).
	TakeOver bool
}

// Run serves the gateway described by cfg until ctx ends, then shuts down in
// order. It returns an error when a subsystem cannot start.
func Run(ctx context.Context, cfg *config.Config, opts RunOptions) error {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.StoreProbeInterval <= 0 {
		opts.StoreProbeInterval = 30 * time.Second
	}
	logger := NewLogger(opts.Stderr, cfg.LogLevel)
	// Last of the deferred steps: "stopped" means every frontend, the
	// data path and the metadata store are closed. A start that fails
	// says only why.
	serving := false
	defer func() {
		if serving {
			logger.Info("gatewayd stopped")
		}
	}()
	started := opts.Clock.Now()

	store, err := OpenStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	master, err := LoadMasterKey(ctx, cfg, store)
	if err != nil {
		return err
	}
	keyring, err := keys.OpenBucket(ctx, store, master)
	if err != nil {
		return fmt.Errorf("%s: %w", store, err)
	}

	md, err := metabadger.Open(cfg.Path(cfg.Meta.Dir), logger.With("subsystem", "meta"))
	if err != nil {
		return err
	}
	defer md.Close()

	reg := health.New(opts.Clock)
	metrics := newMetrics(opts.Version, keyring.Config().GatewayID, reg)
	lat := newLatency()
	metrics.MustRegister(lat.nfs, lat.iscsi)

	// Nothing is written to the bucket before the lease is held; it is
	// released after the data path closed.
	releaseLease, err := holdLease(ctx, cfg, store, reg, opts.Clock, opts.TakeOver, logger)
	if err != nil {
		return err
	}
	defer releaseLease()

	// Events out: the queue opens before the services, which publish from
	// their first upload (a replay's too), and closes after them.
	events, sink, err := openNotifications(ctx, cfg, store.URL, keyring.Config().GatewayID, md, metrics, logger.With("subsystem", "notify"))
	if err != nil {
		return err
	}
	if events != nil {
		defer events.Close()
	}
	dp, closeData, err := openDataPath(ctx, cfg, store, md, keyring, reg, opts.Clock, sink, logger)
	if err != nil {
		return err
	}
	defer closeData()
	vm, codec := dp.vm, dp.codec
	metrics.MustRegister(volumeCollector{vm}, shareCollector{dp.shares})
	var tl *tapeLibrary
	if cfg.VTL.Enabled {
		var closeTapes func()
		tl, closeTapes, err = openTapes(ctx, cfg, store, md, keyring, reg, opts.Clock, sink, logger)
		if err != nil {
			return err
		}
		// Deferred before the iSCSI portal's close, so sessions end first.
		defer closeTapes()
		metrics.MustRegister(tapeCollector{tl})
	}
	journals := journalCollector{[]journalSource{{"volume", vm.JournalStats}, {"share", dp.shares.JournalStats}}}
	if tl != nil {
		journals.journals = append(journals.journals, journalSource{"tape", tl.lib.JournalStats})
	}
	metrics.MustRegister(journals)

	token, err := adminToken(cfg)
	if err != nil {
		return err
	}
	var iscsiFE *iscsiFrontend
	if cfg.ISCSI.Listen != "" {
		iscsiFE, err = startISCSI(ctx, cfg, vm, md, lat, logger.With("subsystem", "iscsi"))
		if err != nil {
			return err
		}
		// Deferred after closeData, so sessions end before the volumes close.
		defer iscsiFE.close()
		if tl != nil {
			if err := tl.serve(iscsiFE); err != nil {
				return err
			}
		}
	}
	auditLog, err := openAudit(cfg, logger.With("subsystem", "audit"))
	if err != nil {
		return err
	}
	defer auditLog.Close() // after the frontends stop
	metrics.MustRegister(auditCollector{auditLog})
	var nfsFE *nfsFrontend
	if cfg.NFS.Listen != "" {
		nfsFE, err = startNFS(ctx, cfg, dp.shares, md, lat, auditLog, logger.With("subsystem", "nfs"))
		if err != nil {
			return err
		}
		defer nfsFE.close()
		metrics.MustRegister(delegationCollector{nfsFE.srv})
	}
	var smbFE *smbFrontend // started once the data directory is known to be this daemon's
	var srv *admin.Server  // set below, before anything asks for the frontends
	frontends := func() []admin.Frontend {
		iscsiState, iscsiAddr := "off (iscsi.listen is empty)", ""
		if iscsiFE != nil {
			iscsiState, iscsiAddr = iscsiFE.state(), iscsiFE.addr
		}
		nfsState, nfsAddr := "off (nfs.listen is empty)", ""
		if nfsFE != nil {
			nfsState, nfsAddr = nfsFE.state(), nfsFE.addr
		}
		vtlState := "off (vtl.enabled is false)"
		if tl != nil {
			vtlState = tl.state()
		}
		fs := []admin.Frontend{
			{Name: "admin", Listen: cfg.Path(cfg.Admin.Socket), State: "serving"},
			{Name: "iscsi", Listen: iscsiAddr, State: iscsiState},
			{Name: "nfs", Listen: nfsAddr, State: nfsState},
			{Name: "vtl", Listen: iscsiAddr, State: vtlState},
			smbFE.frontend(),
		}
		if cfg.Admin.TCPListen != "" {
			state := "serving; web console at http://" + srv.TCPAddr() + "/console/ (" + cfg.Admin.Console + ")"
			if cfg.Admin.Console == admin.ConsoleOff {
				state = "serving; web console off"
			}
			fs = append(fs, admin.Frontend{Name: "admin-tcp", Listen: srv.TCPAddr(), State: state})
		}
		return fs
	}
	srv, err = admin.Listen(admin.Options{
		SocketPath: cfg.Path(cfg.Admin.Socket),
		TCPListen:  cfg.Admin.TCPListen,
		Token:      token,
		Health:     reg,
		Metrics:    metrics,
		Logger:     logger.With("subsystem", "admin"),
		Console:    cfg.Admin.Console,
		Clock:      opts.Clock,
		Status: func() admin.Status {
			return admin.Status{
				Version:   opts.Version,
				GatewayID: keyring.Config().GatewayID,
				DataDir:   cfg.DataDir,
				Store:     store.String(),
				StartedAt: started,
				Frontends: frontends(),
			}
		},
	})
	if err != nil {
		if strings.Contains(err.Error(), "already serving") {
			return fmt.Errorf("data directory %s is in use by another gatewayd: %w", cfg.DataDir, err)
		}
		return err
	}
	var targets volumeapi.Targets // nil, not a nil *iscsiFrontend, when iSCSI is off
	if iscsiFE != nil {
		targets = iscsiFE
	}
	volumeapi.Register(srv, vm, targets)
	snapshotapi.Register(srv, vm, store, codec, cfg.Snapshots.GCGrace)
	// smbd and the FUSE views start only now: a second daemon on the same
	// data directory has failed above, before touching the first one's.
	smbFE = startSMB(ctx, cfg, dp.shares, opts.Clock, auditLog, logger.With("subsystem", "smb"))
	defer smbFE.close() // before the shares close
	shareapi.Register(srv, dp.shares, shareapi.Frontends{
		NFSAddr: func() string {
			if nfsFE == nil {
				return ""
			}
			return nfsFE.addr
		},
		SMBAddr: smbFE.addr,
		SyncSMB: smbFE.sync,
	})
	bucketEvents, err := startBucketEvents(ctx, cfg, store.URL, dp.shares, metrics, logger.With("subsystem", "bucketevents"))
	if err != nil {
		return err
	}
	if bucketEvents != nil {
		defer bucketEvents.Close()
	}
	smbapi.Register(srv, smbFE.server)
	if tl != nil {
		tapeapi.Register(srv, tl.lib, tl.served)
	} else {
		tapeapi.Register(srv, nil, nil)
	}
	statsapi.Register(srv, opts.Clock, vm, dp.shares)
	bw, err := bandwidthapi.New(ctx, store.Limiter, md, opts.Clock.Now, bandwidthapi.Bandwidth{
		UploadBytesPerSec: int64(cfg.Store.UploadLimit), DownloadBytesPerSec: int64(cfg.Store.DownloadLimit),
	})
	if err != nil {
		return err
	}
	bandwidthapi.Register(srv, bw)
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	go bw.Run(schedCtx, opts.Clock, time.Local, logger.With("subsystem", "bandwidth"))

	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		probeStore(probeCtx, store, reg.Register("objstore"), opts.Clock, opts.StoreProbeInterval, logger)
	}()

	logger.Info("gatewayd serving", "version", opts.Version, "gateway_id", keyring.Config().GatewayID,
		"store", store.String(), "admin_socket", cfg.Path(cfg.Admin.Socket), "admin_tcp", srv.TCPAddr())
	serving = true
	err = srv.Serve(ctx)
	stopProbe()
	<-probeDone
	logger.Info("gatewayd stopping: closing the frontends and the data path")
	return err
}

// dataPath is what serves data: volumes, their codec, file shares.
type dataPath struct {
	vm     *volume.Manager
	codec  *snapshots.Codec
	shares *fileshare.Manager
}

// openDataPath opens the upload buffers, the cache, the volume manager and
// the file shares (which replay their buffers). The returned func closes
// them in order.
func openDataPath(ctx context.Context, cfg *config.Config, store objstore.Store, md meta.Store, keyring *keys.Keyring,
	reg *health.Registry, c clock.Clock, events notify.Sink, logger *slog.Logger) (dataPath, func(), error) {
	if cfg.Snapshots.ObjectLock != "" {
		if err := CheckObjectLock(ctx, store); err != nil {
			return dataPath{}, nil, fmt.Errorf("snapshots.object_lock is %s: %w", cfg.Snapshots.ObjectLock, err)
		}
	}
	ublog, err := uploadbuffer.Open(vfs.Default, cfg.Path(cfg.Buffer.Dir), uploadbuffer.Options{
		Capacity: int64(cfg.Buffer.Size), Logger: logger.With("subsystem", "uploadbuffer"), Health: reg.Register("uploadbuffer"),
	})
	if err != nil {
		return dataPath{}, nil, fmt.Errorf("upload buffer: %w", err)
	}
	chunkCache, err := cache.Open(vfs.Default, cfg.Path(cfg.Cache.Dir), cache.Options{
		Capacity: int64(cfg.Cache.Size), Logger: logger.With("subsystem", "cache"), Health: reg.Register("cache"),
	})
	if err != nil {
		ublog.Close()
		return dataPath{}, nil, fmt.Errorf("cache: %w", err)
	}
	dk := keyring.Current()
	codec, err := snapshots.NewCodec(dk.Encryption, dk.ChunkID, snapshots.CodecOptions{})
	if err != nil {
		chunkCache.Close()
		ublog.Close()
		return dataPath{}, nil, err
	}
	vm, err := volume.New(ctx, volume.Options{
		Meta: md, Store: store, Codec: codec, Log: ublog, Cache: chunkCache,
		DiskDir:               cfg.Path(cfg.Volumes.DiskDir),
		Uploaders:             cfg.Volumes.Uploaders,
		UploadInterval:        cfg.Volumes.UploadInterval,
		SettleTime:            cfg.Volumes.SettleTime,
		RecoveryPointInterval: cfg.Volumes.RecoveryPointInterval,
		HydrateParallel:       cfg.Volumes.HydrateParallel,
		HydrateBytesPerSec:    int64(cfg.Volumes.HydrateRate),
		GCInterval:            cfg.Snapshots.GCInterval,
		GCGrace:               cfg.Snapshots.GCGrace,
		ObjectLock:            objstore.RetentionMode(strings.ToUpper(cfg.Snapshots.ObjectLock)),
		Clock:                 c,
		Logger:                logger.With("subsystem", "volume"),
		Health:                reg.Register("volumes"),
		Events:                events,
	})
	if err != nil {
		chunkCache.Close()
		ublog.Close()
		return dataPath{}, nil, err
	}
	shares, closeShares, err := openShares(ctx, cfg, store, md, chunkCache, reg, c, events, logger)
	if err != nil {
		vm.Close()
		chunkCache.Close()
		ublog.Close()
		return dataPath{}, nil, err
	}
	return dataPath{vm: vm, codec: codec, shares: shares}, func() {
		closeShares()
		vm.Close()
		chunkCache.Close()
		ublog.Close()
	}, nil
}

// probeStore checks that the store answers, reporting into the health
// registry, until ctx ends.
func probeStore(ctx context.Context, store objstore.Store, rep *health.Reporter, c clock.Clock, every time.Duration, logger *slog.Logger) {
	for {
		pctx, cancel := context.WithTimeout(ctx, every)
		_, err := store.Stat(pctx, keys.ConfigKey)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			rep.Fail("object store unreachable: " + err.Error())
			logger.Warn("object store probe failed", "err", err)
		default:
			rep.OK()
		}
		if clock.Sleep(ctx, c, every) != nil {
			return
		}
	}
}

// LoadMasterKey reads the master key from the key file, or derives it from
// the passphrase with the KDF parameters stored in the bucket.
func LoadMasterKey(ctx context.Context, cfg *config.Config, store objstore.Store) (keys.MasterKey, error) {
	if cfg.Keys.PassphraseEnv != "" {
		pass := os.Getenv(cfg.Keys.PassphraseEnv)
		if pass == "" {
			return keys.MasterKey{}, fmt.Errorf("keys.passphrase_env: environment variable %s is empty or unset", cfg.Keys.PassphraseEnv)
		}
		bc, err := keys.ReadConfig(ctx, store)
		if err != nil {
			return keys.MasterKey{}, fmt.Errorf("%s: %w", store, err)
		}
		return keys.DeriveMasterKey(pass, bc)
	}
	return keys.LoadMasterKeyFile(cfg.Path(cfg.Keys.MasterKeyFile))
}

// adminToken reads the admin token for the TCP listener, creating a random
// one on first use. Without a TCP listener there is no token.
func adminToken(cfg *config.Config) (string, error) {
	if cfg.Admin.TCPListen == "" {
		return "", nil
	}
	path := cfg.Path(cfg.Admin.TokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		tok := randomHex(24)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func newMetrics(version, gatewayID string, reg *health.Registry) *prometheus.Registry {
	m := prometheus.NewRegistry()
	m.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "gatewayd_build_info",
		Help:        "Always 1; labels carry the version and gateway id.",
		ConstLabels: prometheus.Labels{"version": version, "gateway_id": gatewayID},
	})
	info.Set(1)
	m.MustRegister(info)
	m.MustRegister(healthCollector{reg})
	return m
}

// healthCollector exports each subsystem's health level (0 ok, 1 warning, 2 error).
type healthCollector struct{ reg *health.Registry }

var healthDesc = prometheus.NewDesc("gatewayd_health_level", "Health of each subsystem: 0 ok, 1 warning, 2 error.", []string{"subsystem"}, nil)

func (h healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- healthDesc }

func (h healthCollector) Collect(ch chan<- prometheus.Metric) {
	states, _ := h.reg.Snapshot()
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(healthDesc, prometheus.GaugeValue, float64(s.Level), s.Subsystem)
	}
}

// NewLogger returns the daemon's structured logger at level.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
