package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/errkind"
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
	targets []VTLTarget
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

// VTLTarget is one iSCSI target of the library and the devices at its LUNs.
type VTLTarget struct {
	Name string    `json:"name"`
	LUNs []VTLUnit `json:"luns"`
}

// VTLUnit is one device of the library.
type VTLUnit struct {
	LUN     uint64 `json:"lun"`
	Type    string `json:"type"` // "changer" or "drive"
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	Serial  string `json:"serial"`
	// Address is the device's element address in the changer.
	Address int `json:"element_address"`
}

// serve publishes the library on the iSCSI portal.
func (t *tapeLibrary) serve(f *iscsiFrontend) error {
	auth := iscsi.Auth{CHAPUser: t.cfg.CHAPUser, CHAPSecret: t.cfg.CHAPSecret, Initiators: t.cfg.Initiators}
	if auth.CHAPUser != "" {
		if err := iscsi.ValidateCHAP(auth.CHAPUser, auth.CHAPSecret); err != nil {
			return fmt.Errorf("vtl: %w", err)
		}
	}
	unit := func(lun uint64, dev scsi.DeviceType, typ string, addr int) VTLUnit {
		id := dev.Identity()
		return VTLUnit{LUN: lun, Type: typ, Vendor: id.Vendor, Product: id.Product, Serial: id.Serial, Address: addr}
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
		VTLTarget
		luns map[uint64]*scsi.LU
	}
	var all []served
	if t.cfg.Targets == "per-device" {
		for i, d := range t.devices.DeviceTargets() {
			u := unit(0, device(i), "changer", int(addrs.Transport))
			if i > 0 {
				u = unit(0, device(i), "drive", int(addrs.Drive)+i-1)
			}
			all = append(all, served{VTLTarget{Name: base + "-" + d.Suffix, LUNs: []VTLUnit{u}}, map[uint64]*scsi.LU{0: d.LU}})
		}
	} else {
		luns := t.devices.LUNs()
		tg := VTLTarget{Name: base, LUNs: []VTLUnit{unit(0, device(0), "changer", int(addrs.Transport))}}
		for lun := uint64(1); lun < uint64(len(luns)); lun++ {
			tg.LUNs = append(tg.LUNs, unit(lun, device(int(lun)), "drive", int(addrs.Drive)+int(lun)-1))
		}
		all = []served{{tg, luns}}
	}
	var targets []VTLTarget
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

func (t *tapeLibrary) state() string {
	if t.portal == "" {
		return "tapes kept; not served (iscsi.listen is empty)"
	}
	return fmt.Sprintf("serving %d drives on %s", len(t.devices.Drives()), t.portal)
}

// VTLInfo is what a backup server needs to use the library.
type VTLInfo struct {
	Portal   string         `json:"portal,omitempty"`
	Targets  []VTLTarget    `json:"targets"`
	Geometry tapes.Geometry `json:"geometry"`
	// Addresses are the first element address of each element type.
	Addresses vtl.Addresses  `json:"element_addresses"`
	CHAP      bool           `json:"chap"`
	Commands  []string       `json:"commands,omitempty"` // iscsiadm, mtx and mt for a Linux backup server
	Tapes     map[string]int `json:"tapes"`              // count by state
	// Retrieval sums the objects of the tapes being retrieved from cold
	// storage (nil when none is).
	Retrieval *TapeRetrieval `json:"retrieval,omitempty"`
}

func (t *tapeLibrary) info(ctx context.Context) (VTLInfo, error) {
	in := VTLInfo{Portal: t.portal, Targets: t.targets, Geometry: t.lib.Geometry(), Addresses: vtl.DefaultAddresses,
		CHAP: t.cfg.CHAPUser != "", Tapes: map[string]int{}}
	list, err := t.lib.List(ctx)
	if err != nil {
		return in, err
	}
	for _, ti := range list {
		in.Tapes[string(ti.State)]++
		if r := ti.Retrieval; r != nil {
			if in.Retrieval == nil {
				in.Retrieval = &TapeRetrieval{Tier: r.Tier, Started: r.Started}
			}
			in.Retrieval.Objects += r.Objects
			in.Retrieval.Readable += r.Readable
			in.Retrieval.Restoring += r.Restoring
		}
	}
	if t.portal != "" && len(t.targets) > 0 {
		in.Commands = append(in.Commands, "iscsiadm -m discovery -t sendtargets -p "+t.portal)
		for _, tg := range t.targets {
			in.Commands = append(in.Commands, fmt.Sprintf("iscsiadm -m node -T %s -p %s --login", tg.Name, t.portal))
		}
		in.Commands = append(in.Commands,
			"lsscsi -g                      # the changer is a /dev/sgN of type mediumx, drives are /dev/nstN",
			"mtx -f /dev/sgN status         # slots, drives and barcodes",
			"mtx -f /dev/sgN load SLOT 0    # tape from slot SLOT into the first drive",
			"mt -f /dev/nst0 status")
	}
	return in, nil
}

// TapeStatus is what the admin API says about a tape.
type TapeStatus struct {
	Barcode  string      `json:"barcode"`
	Capacity int64       `json:"capacity"`
	Used     int64       `json:"used"` // bytes after compression, as of the tape's last upload
	Objects  uint64      `json:"objects"`
	State    tapes.State `json:"state"`
	ReadOnly bool        `json:"read_only"`
	// Location is "slot N", "drive N" (1-based, in element order) or "".
	Location       string    `json:"location,omitempty"`
	Created        time.Time `json:"created"`
	Archived       time.Time `json:"archived,omitzero"`
	ArchivePending bool      `json:"archive_pending,omitempty"`
	WORM           bool      `json:"worm,omitempty"`
	Pool           string    `json:"pool,omitempty"`
	// LockUntil and LockMode: the pool's retention lock on the tape.
	LockUntil time.Time      `json:"lock_until,omitzero"`
	LockMode  tapes.LockMode `json:"lock_mode,omitempty"`
	// Retrieval: the progress of a retrieval from cold storage.
	Retrieval *TapeRetrieval `json:"retrieval,omitempty"`
}

// TapeRetrieval is how far a retrieving tape has come: of its objects, how
// many are readable and how many restores are under way.
type TapeRetrieval struct {
	Tier      string    `json:"tier"`
	Started   time.Time `json:"started"`
	Objects   int       `json:"objects"`
	Readable  int       `json:"readable"`
	Restoring int       `json:"restoring"`
	Checked   time.Time `json:"checked,omitzero"`
}

func tapeStatus(in tapes.Info) TapeStatus {
	st := TapeStatus{Barcode: in.Barcode, Capacity: in.Capacity, Used: in.Used, Objects: in.EOD, State: in.State,
		ReadOnly: in.ReadOnly, Created: in.Created, Archived: in.Archived, ArchivePending: in.ArchivePending,
		WORM: in.WORM, Pool: in.Pool, LockUntil: in.LockUntil, LockMode: in.LockMode}
	if r := in.Retrieval; r != nil {
		st.Retrieval = &TapeRetrieval{Tier: r.Tier, Started: r.Started, Objects: r.Objects, Readable: r.Readable, Restoring: r.Restoring, Checked: r.Checked}
	}
	switch in.Place.Type {
	case tapes.ElementSlot:
		st.Location = fmt.Sprintf("slot %d", in.Place.Index+1)
	case tapes.ElementDrive:
		st.Location = fmt.Sprintf("drive %d", in.Place.Index+1)
	}
	return st
}

// TapeCreateRequest is the body of POST /v1/tapes.
type TapeCreateRequest struct {
	Count         int    `json:"count"`
	BarcodePrefix string `json:"barcode_prefix"`
	Size          int64  `json:"size"`
	WORM          bool   `json:"worm,omitempty"`
	Pool          string `json:"pool,omitempty"`
}

// TapePoolRequest is the body of POST /v1/tapes/{barcode}/pool.
type TapePoolRequest struct {
	Pool             string `json:"pool"`
	BypassGovernance bool   `json:"bypass_governance,omitempty"`
}

// PoolStatus is what the admin API says about a tape pool.
type PoolStatus struct {
	Name         string         `json:"name"`
	StorageClass string         `json:"storage_class"`
	Lock         tapes.LockMode `json:"lock,omitempty"`
	LockDays     int            `json:"lock_days,omitempty"`
	Created      time.Time      `json:"created,omitzero"`
	Tapes        int            `json:"tapes"`
}

func tapeCode(err error) int {
	switch {
	case errors.Is(err, tapes.ErrNoTape), errors.Is(err, tapes.ErrNoPool):
		return http.StatusNotFound
	case errors.Is(err, tapes.ErrBadInput):
		return http.StatusBadRequest
	case errors.Is(err, tapes.ErrNoSlot), errors.Is(err, tapes.ErrInDrive), errors.Is(err, tapes.ErrLocked),
		errors.Is(err, tapes.ErrPoolUsed), errors.Is(err, tapes.ErrExists):
		return http.StatusConflict
	}
	return httpCode(err)
}

// errNoLibrary answers tape requests when vtl.enabled is off.
var errNoLibrary = errkind.Mark(errkind.Permanent, errors.New("the tape library is off (vtl.enabled is false)"))

func registerTapeAPI(srv *admin.Server, t *tapeLibrary) {
	// fn returns the status for its error, or for success (any code
	// outside 2xx then means 200).
	handle := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) (int, any, error)) {
		srv.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if t == nil {
				admin.WriteError(w, http.StatusNotFound, errNoLibrary)
				return
			}
			code, v, err := fn(w, r)
			if err != nil {
				admin.WriteError(w, code, err)
				return
			}
			if code < 200 || code > 299 {
				code = http.StatusOK
			}
			admin.WriteJSON(w, code, v)
		}))
	}
	handle("GET /v1/vtl", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		in, err := t.info(r.Context())
		return httpCode(err), in, err
	})
	handle("GET /v1/tapes", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		list, err := t.lib.List(r.Context())
		out := []TapeStatus{}
		for _, in := range list {
			out = append(out, tapeStatus(in))
		}
		return tapeCode(err), out, err
	})
	handle("POST /v1/tapes", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var req TapeCreateRequest
		if err := decodeBody(r, &req); err != nil {
			return http.StatusBadRequest, nil, err
		}
		created, err := t.lib.CreateTapes(r.Context(), tapes.CreateOptions{Count: req.Count, Prefix: req.BarcodePrefix, Size: req.Size, WORM: req.WORM, Pool: req.Pool})
		if err != nil {
			return tapeCode(err), nil, err
		}
		out := []TapeStatus{}
		for _, bc := range created {
			in, err := t.lib.Info(r.Context(), bc)
			if err != nil {
				return tapeCode(err), nil, err
			}
			out = append(out, tapeStatus(in))
		}
		return http.StatusCreated, out, nil
	})
	handle("GET /v1/tapes/{barcode}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		in, err := t.lib.Info(r.Context(), r.PathValue("barcode"))
		return tapeCode(err), tapeStatus(in), err
	})
	handle("DELETE /v1/tapes/{barcode}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		err := t.lib.DeleteTape(r.Context(), r.PathValue("barcode"), r.URL.Query().Get("bypass_governance") == "true")
		return tapeCode(err), map[string]string{"deleted": r.PathValue("barcode")}, err
	})
	handle("POST /v1/tapes/{barcode}/archive", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		if err := t.lib.Archive(r.Context(), r.PathValue("barcode")); err != nil {
			return tapeCode(err), nil, err
		}
		in, err := t.lib.Info(r.Context(), r.PathValue("barcode"))
		return tapeCode(err), tapeStatus(in), err
	})
	handle("POST /v1/tapes/{barcode}/retrieve", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		in, err := t.lib.RetrieveTape(r.Context(), r.PathValue("barcode"), r.URL.Query().Get("tier"))
		return tapeCode(err), tapeStatus(in), err
	})
	handle("POST /v1/tapes/{barcode}/pool", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var req TapePoolRequest
		if err := decodeBody(r, &req); err != nil {
			return http.StatusBadRequest, nil, err
		}
		in, err := t.lib.AssignPool(r.Context(), r.PathValue("barcode"), req.Pool, req.BypassGovernance)
		return tapeCode(err), tapeStatus(in), err
	})
	handle("GET /v1/pools", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		out, err := t.pools(r.Context())
		return tapeCode(err), out, err
	})
	handle("POST /v1/pools", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var req PoolStatus
		if err := decodeBody(r, &req); err != nil {
			return http.StatusBadRequest, nil, err
		}
		p, err := t.lib.CreatePool(r.Context(), tapes.Pool{Name: req.Name, StorageClass: req.StorageClass, Lock: req.Lock, LockDays: req.LockDays})
		if err != nil {
			return tapeCode(err), nil, err
		}
		return http.StatusCreated, poolStatus(p, 0), nil
	})
	handle("DELETE /v1/pools/{name}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		err := t.lib.DeletePool(r.Context(), r.PathValue("name"))
		return tapeCode(err), map[string]string{"deleted": r.PathValue("name")}, err
	})
	handle("GET /v1/vtl/spares", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		rule, err := t.lib.SpareRule(r.Context())
		return tapeCode(err), rule, err
	})
	handle("PUT /v1/vtl/spares", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var rule tapes.SpareRule
		if err := decodeBody(r, &rule); err != nil {
			return http.StatusBadRequest, nil, err
		}
		if err := t.lib.SetSpareRule(r.Context(), rule); err != nil {
			return tapeCode(err), nil, err
		}
		return http.StatusOK, rule, nil
	})
}

func poolStatus(p tapes.Pool, n int) PoolStatus {
	return PoolStatus{Name: p.Name, StorageClass: p.StorageClass, Lock: p.Lock, LockDays: p.LockDays, Created: p.Created, Tapes: n}
}

// pools lists the pools with how many tapes each holds.
func (t *tapeLibrary) pools(ctx context.Context) ([]PoolStatus, error) {
	ps, err := t.lib.Pools(ctx)
	if err != nil {
		return nil, err
	}
	list, err := t.lib.List(ctx)
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, in := range list {
		n[in.Pool]++
	}
	out := []PoolStatus{}
	for _, p := range ps {
		out = append(out, poolStatus(p, n[p.Name]))
	}
	return out, nil
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
