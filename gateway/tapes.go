package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/api/tapeapi"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/keys"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// tapeLibrary is the virtual tape library: the tapes (package tapes) and
// the changer and drives that serve them (frontends/vtl).
type tapeLibrary struct {
	cfg     config.VTL
	lib     *tapes.Library
	devices *vtl.Library
	log     *slog.Logger
	// targets are the iSCSI targets the library is served as, once served.
	targets []tapeapi.VTLTarget
	portal  string
}

// shelf makes the library's tape handles frontends/vtl Media.
type shelf struct{ *tapes.Library }

func (s shelf) Open(ctx context.Context, barcode string) (vtl.Medium, error) {
	t, err := s.Library.Open(ctx, barcode)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// openTapes opens the tapes' upload buffer, the library (which replays
// it) and its devices. The returned func closes them.
func openTapes(ctx context.Context, cfg *config.Config, store objstore.Store, md meta.Store, keyring *keys.Keyring,
	reg *health.Registry, clk clock.Clock, events notify.Sink, logger *slog.Logger) (*tapeLibrary, func(), error) {
	var base objstore.Store
	if o, ok := store.(*OpenedStore); ok {
		store, base = o.Store, o.Base // the decorated store, with its optional capabilities (storage classes)
	}
	log, err := uploadbuffer.Open(vfs.Default, cfg.Path(cfg.VTL.BufferDir), uploadbuffer.Options{
		Capacity: int64(cfg.VTL.BufferSize), Logger: logger.With("subsystem", "tapebuffer"), Health: reg.Register("tapebuffer"),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tape upload buffer: %w", err)
	}
	// Restores are requests the library polls for: the store underneath
	// the decorators serves them.
	restorer, _ := base.(objstore.Restorer)
	lib, err := tapes.New(ctx, tapes.Options{
		Store: store, Meta: md, Log: log, Key: keyring.Current(), Clock: clk, Logger: logger.With("subsystem", "tapes"),
		Restorer: restorer,
		Health:   reg.Register("tapes"),
		Events:   events,
		Slots:    cfg.VTL.Slots, Drives: cfg.VTL.Drives, ArchiveClass: cfg.VTL.ArchiveStorageClass,
	})
	if err != nil {
		log.Close()
		return nil, nil, err
	}
	geo := lib.Geometry()
	if geo.Slots != cfg.VTL.Slots || geo.Drives != cfg.VTL.Drives {
		logger.Warn("vtl: the library keeps the geometry it was created with; vtl.slots and vtl.drives are not applied",
			"slots", geo.Slots, "drives", geo.Drives)
	}
	devices, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{
		Shelf: shelf{lib}, Serial: "GWVTL" + strings.ToUpper(keyring.Config().GatewayID[:min(8, len(keyring.Config().GatewayID))]),
		ChangerVendor: cfg.VTL.ChangerVendor, ChangerProduct: cfg.VTL.ChangerProduct, Log: logger.With("subsystem", "vtl"),
	})
	if err != nil {
		lib.Close(context.Background())
		log.Close()
		return nil, nil, err
	}
	t := &tapeLibrary{cfg: cfg.VTL, lib: lib, devices: devices, log: logger.With("subsystem", "vtl")}
	return t, func() {
		ctx := context.Background()
		if err := devices.Close(ctx); err != nil {
			logger.Warn("vtl: closing drives", "err", err)
		}
		if err := lib.Close(ctx); err != nil {
			logger.Warn("tapes: closing the library", "err", err)
		}
		log.Close()
	}, nil
}

// serve publishes the library on the iSCSI portal.
func (t *tapeLibrary) serve(f *iscsiFrontend) error {
	auth := iscsi.Auth{CHAPUser: t.cfg.CHAPUser, CHAPSecret: t.cfg.CHAPSecret, Initiators: t.cfg.Initiators}
	if auth.CHAPUser != "" {
		if err := iscsi.ValidateCHAP(auth.CHAPUser, auth.CHAPSecret); err != nil {
			return fmt.Errorf("vtl: %w", err)
		}
	}
	unit := func(lun uint64, dev scsi.DeviceType, typ string, addr int) tapeapi.VTLUnit {
		id := dev.Identity()
		return tapeapi.VTLUnit{LUN: lun, Type: typ, Vendor: id.Vendor, Product: id.Product, Serial: id.Serial, Address: addr}
	}
	device := func(i int) scsi.DeviceType { // 0 the changer, i the drive i
		if i == 0 {
			return t.devices.Changer()
		}
		return t.devices.Drives()[i-1]
	}
	addrs := vtl.DefaultAddresses
	base := TargetName(f.prefix, "vtl")
	type served struct {
		tapeapi.VTLTarget
		luns map[uint64]*scsi.LU
	}
	var all []served
	if t.cfg.Targets == "per-device" {
		for i, d := range t.devices.DeviceTargets() {
			u := unit(0, device(i), "changer", int(addrs.Transport))
			if i > 0 {
				u = unit(0, device(i), "drive", int(addrs.Drive)+i-1)
			}
			all = append(all, served{tapeapi.VTLTarget{Name: base + "-" + d.Suffix, LUNs: []tapeapi.VTLUnit{u}}, map[uint64]*scsi.LU{0: d.LU}})
		}
	} else {
		luns := t.devices.LUNs()
		tg := tapeapi.VTLTarget{Name: base, LUNs: []tapeapi.VTLUnit{unit(0, device(0), "changer", int(addrs.Transport))}}
		for lun := uint64(1); lun < uint64(len(luns)); lun++ {
			tg.LUNs = append(tg.LUNs, unit(lun, device(int(lun)), "drive", int(addrs.Drive)+int(lun)-1))
		}
		all = []served{{tg, luns}}
	}
	var targets []tapeapi.VTLTarget
	for _, s := range all {
		if v := f.volumeServedAs(s.Name); v != "" {
			return fmt.Errorf("vtl: the tape library's iSCSI target %s is volume %q's name; rename the volume or set vtl.enabled: false", s.Name, v)
		}
		if err := f.srv.SetTarget(&iscsi.Target{Name: s.Name, Alias: "gatewayd tape library", LUNs: s.luns, Auth: auth}); err != nil {
			return fmt.Errorf("vtl: %w", err)
		}
		f.reserve(s.Name)
		targets = append(targets, s.VTLTarget)
	}
	t.targets, t.portal = targets, f.addr
	t.log.Info("vtl: serving", "targets", len(targets), "drives", len(t.devices.Drives()))
	return nil
}

// served is how the library is served now (tapeapi.Served).
func (t *tapeLibrary) served() tapeapi.Served {
	return tapeapi.Served{Portal: t.portal, Targets: t.targets, CHAP: t.cfg.CHAPUser != ""}
}

func (t *tapeLibrary) state() string {
	if t.portal == "" {
		return "tapes kept; not served (iscsi.listen is empty)"
	}
	return fmt.Sprintf("serving %d drives on %s", len(t.devices.Drives()), t.portal)
}

// tapeCollector exports the library's figures.
type tapeCollector struct{ t *tapeLibrary }

var (
	descTapes           = prometheus.NewDesc("gatewayd_tapes", "Virtual tapes by state (library, drive, archived, retrieved).", []string{"state"}, nil)
	descTapeBytesUsed   = prometheus.NewDesc("gatewayd_tape_used_bytes", "Bytes written to virtual tapes, after compression, as of their last upload.", nil, nil)
	descTapeSegmentsUp  = prometheus.NewDesc("gatewayd_tape_segments_uploaded_total", "Tape segments put to the object store.", nil, nil)
	descTapeBytesUp     = prometheus.NewDesc("gatewayd_tape_bytes_uploaded_total", "CloudBytesUploaded for tapes: tape segment bytes put to the object store.", nil, nil)
	descTapeDrivesInUse = prometheus.NewDesc("gatewayd_tape_drives_loaded", "Tape drives holding a tape.", nil, nil)
	descTapeRetrieval   = prometheus.NewDesc("gatewayd_tape_retrieval_objects", "Objects of the tapes being retrieved from cold storage, by state (readable, restoring, total).", []string{"state"}, nil)
)

func (c tapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTapes, descTapeBytesUsed, descTapeSegmentsUp, descTapeBytesUp, descTapeDrivesInUse, descTapeRetrieval} {
		ch <- d
	}
}

func (c tapeCollector) Collect(ch chan<- prometheus.Metric) {
	list, err := c.t.lib.List(context.Background())
	if err != nil {
		return
	}
	count := map[tapes.State]int{tapes.StateLibrary: 0, tapes.StateDrive: 0, tapes.StateArchived: 0, tapes.StateRetrieved: 0, tapes.StateRetrieving: 0, tapes.StateDeleting: 0}
	var used int64
	var readable, restoring, total int
	for _, in := range list {
		count[in.State]++
		used += in.Used
		if r := in.Retrieval; r != nil {
			readable, restoring, total = readable+r.Readable, restoring+r.Restoring, total+r.Objects
		}
	}
	ch <- prometheus.MustNewConstMetric(descTapeRetrieval, prometheus.GaugeValue, float64(readable), "readable")
	ch <- prometheus.MustNewConstMetric(descTapeRetrieval, prometheus.GaugeValue, float64(restoring), "restoring")
	ch <- prometheus.MustNewConstMetric(descTapeRetrieval, prometheus.GaugeValue, float64(total), "total")
	for s, n := range count {
		ch <- prometheus.MustNewConstMetric(descTapes, prometheus.GaugeValue, float64(n), string(s))
	}
	ch <- prometheus.MustNewConstMetric(descTapeBytesUsed, prometheus.GaugeValue, float64(used))
	st := c.t.lib.UploadStats()
	ch <- prometheus.MustNewConstMetric(descTapeSegmentsUp, prometheus.CounterValue, float64(st.Segments))
	ch <- prometheus.MustNewConstMetric(descTapeBytesUp, prometheus.CounterValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descTapeDrivesInUse, prometheus.GaugeValue, float64(count[tapes.StateDrive]))
}
