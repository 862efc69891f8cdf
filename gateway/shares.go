package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/frontends/nfs"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// openShares opens the file shares' upload buffer and manager (which
// replays the buffer). The returned func closes them.
func openShares(ctx context.Context, cfg *config.Config, store objstore.Store, md meta.Store, c *cache.Cache,
	reg *health.Registry, clk clock.Clock, events notify.Sink, logger *slog.Logger) (*fileshare.Manager, func(), error) {
	if o, ok := store.(*OpenedStore); ok {
		store = o.Store // the decorated store, with its optional capabilities
	}
	log, err := uploadbuffer.Open(vfs.Default, cfg.Path(cfg.Shares.BufferDir), uploadbuffer.Options{
		Capacity: int64(cfg.Shares.BufferSize), Logger: logger.With("subsystem", "sharebuffer"), Health: reg.Register("sharebuffer"),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("file share upload buffer: %w", err)
	}
	m, err := fileshare.New(ctx, fileshare.Options{
		Meta: md, Store: store, Cache: c, Log: log,
		SettleTime: cfg.Shares.SettleTime, UploadInterval: cfg.Volumes.UploadInterval, Uploaders: cfg.Volumes.Uploaders,
		AttrTTL: cfg.Shares.AttrTTL, Clock: clk, Logger: logger.With("subsystem", "fileshare"), Health: reg.Register("shares"),
		Events: events,
	})
	if err != nil {
		log.Close()
		return nil, nil, err
	}
	return m, func() { m.Close(); log.Close() }, nil
}

// nfsFrontend is the NFS server and where it listens.
type nfsFrontend struct {
	srv        *nfs.Server
	addr       string
	shares     *fileshare.Manager
	unregister func()
	rpcbind    string // what registration with rpcbind came to
}

func startNFS(ctx context.Context, cfg *config.Config, shares *fileshare.Manager, md meta.Store, lat latency, auditLog *audit.Log, logger *slog.Logger) (*nfsFrontend, error) {
	ln, err := net.Listen("tcp", cfg.NFS.Listen)
	if err != nil {
		return nil, fmt.Errorf("nfs: listen on %s: %w", cfg.NFS.Listen, err)
	}
	f := &nfsFrontend{srv: nfs.New(shares, logger), addr: ln.Addr().String(), shares: shares}
	if err := f.srv.KeepV4State(ctx, md, cfg.NFS.Grace); err != nil {
		ln.Close()
		return nil, err
	}
	f.srv.Latency = lat.observeNFS
	f.srv.ReadDelegations(cfg.NFS.ReadDelegations)
	f.srv.Audit = auditLog
	go func() {
		if err := f.srv.Serve(ln); err != nil {
			logger.Error("nfs: server stopped", "err", err)
		}
	}()
	logger.Info("nfs: listening", "addr", f.addr, "shares", len(shares.List()))
	f.rpcbind = "off (nfs.rpcbind)"
	if cfg.NFS.Rpcbind {
		port := ln.Addr().(*net.TCPAddr).Port
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		unregister, err := nfs.Register(ctx, "127.0.0.1:111", port)
		cancel()
		switch {
		case err == nil:
			f.unregister = unregister
			f.rpcbind = "registered with rpcbind"
			logger.Info("nfs: registered with rpcbind", "port", port)
		case errors.Is(err, syscall.ECONNREFUSED):
			f.rpcbind = "no rpcbind on this host: clients give the port"
		default:
			f.rpcbind = "rpcbind registration failed: " + err.Error()
			logger.Warn("nfs: rpcbind registration failed; clients must give the port", "err", err)
		}
	}
	return f, nil
}

// delegationCollector exports the NFSv4.1 read delegation counts.
type delegationCollector struct{ srv *nfs.Server }

var descDelegations = prometheus.NewDesc("gatewayd_nfs4_delegations_total",
	"NFSv4.1 read delegations, by event: granted, recalled, returned, revoked (not returned within the lease time of the recall).", []string{"event"}, nil)

func (c delegationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDelegations }

func (c delegationCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Delegations()
	for _, e := range []struct {
		name string
		n    uint64
	}{{"granted", st.Granted}, {"recalled", st.Recalled}, {"returned", st.Returned}, {"revoked", st.Revoked}} {
		ch <- prometheus.MustNewConstMetric(descDelegations, prometheus.CounterValue, float64(e.n), e.name)
	}
}

func (f *nfsFrontend) close() {
	if f.unregister != nil {
		f.unregister()
	}
	f.srv.Close()
}

func (f *nfsFrontend) state() string {
	return fmt.Sprintf("serving %d shares; %s", len(f.shares.List()), f.rpcbind)
}

// shareCollector exports the file shares' figures.
type shareCollector struct{ m *fileshare.Manager }

var (
	descShareBufferUsed   = prometheus.NewDesc("gatewayd_share_upload_buffer_percent_used", "UploadBufferPercentUsed for file shares: their upload buffer in use, percent of shares.buffer_size.", nil, nil)
	descShareFilesPending = prometheus.NewDesc("gatewayd_share_files_pending", "Files of the share with writes not yet uploaded.", []string{"share"}, nil)
	descShareBytesUp      = prometheus.NewDesc("gatewayd_share_bytes_uploaded_total", "CloudBytesUploaded for file shares: file bytes put to the object store.", nil, nil)
	descShareFilesUp      = prometheus.NewDesc("gatewayd_share_files_uploaded_total", "Files put to the object store.", nil, nil)
	descShareUploadErrors = prometheus.NewDesc("gatewayd_share_upload_errors_total", "File uploads that failed and will be retried.", nil, nil)
	descShareReplaced     = prometheus.NewDesc("gatewayd_share_uploads_replaced_total", "File uploads whose object another application replaced before the share read it back: the file then reads as that object.", nil, nil)
	descShareXattrGCRuns  = prometheus.NewDesc("gatewayd_share_xattr_gc_runs_total", "Collections of extended attribute sidecars no object names, and those that failed.", []string{"result"}, nil)
	descShareXattrGCDel   = prometheus.NewDesc("gatewayd_share_xattr_sidecars_deleted_total", "Extended attribute sidecar objects deleted, no object naming them.", nil, nil)
)

func (c shareCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descShareBufferUsed, descShareFilesPending, descShareBytesUp, descShareFilesUp, descShareUploadErrors, descShareReplaced, descShareXattrGCRuns, descShareXattrGCDel} {
		ch <- d
	}
}

func (c shareCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	ch <- prometheus.MustNewConstMetric(descShareBufferUsed, prometheus.GaugeValue, percent(float64(st.LogUsed), float64(st.LogCapacity)))
	for name, n := range st.Pending {
		ch <- prometheus.MustNewConstMetric(descShareFilesPending, prometheus.GaugeValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(descShareBytesUp, prometheus.CounterValue, float64(st.BytesUploaded))
	ch <- prometheus.MustNewConstMetric(descShareFilesUp, prometheus.CounterValue, float64(st.FilesUploaded))
	ch <- prometheus.MustNewConstMetric(descShareUploadErrors, prometheus.CounterValue, float64(st.UploadErrors))
	ch <- prometheus.MustNewConstMetric(descShareReplaced, prometheus.CounterValue, float64(st.UploadsReplaced))
	gc := c.m.XattrGCStats()
	ch <- prometheus.MustNewConstMetric(descShareXattrGCRuns, prometheus.CounterValue, float64(gc.Runs-gc.Failed), "ok")
	ch <- prometheus.MustNewConstMetric(descShareXattrGCRuns, prometheus.CounterValue, float64(gc.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(descShareXattrGCDel, prometheus.CounterValue, float64(gc.Deleted))
}
