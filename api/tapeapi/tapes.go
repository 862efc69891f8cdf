// Package tapeapi holds the admin API of the virtual tape library: the
// library's description for a backup server (/v1/vtl), its tapes, pools
// and spare rule, with their request rules.
package tapeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/frontends/vtl"
	"github.com/gatewayd/gatewayd/tapes"
)

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

// Served is how the library is served: on which portal, as which
// targets, with CHAP or not. Portal is "" while it is not served.
type Served struct {
	Portal  string
	Targets []VTLTarget
	CHAP    bool
}

func info(ctx context.Context, lib *tapes.Library, s Served) (VTLInfo, error) {
	in := VTLInfo{Portal: s.Portal, Targets: s.Targets, Geometry: lib.Geometry(), Addresses: vtl.DefaultAddresses,
		CHAP: s.CHAP, Tapes: map[string]int{}}
	list, err := lib.List(ctx)
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
	if s.Portal != "" && len(s.Targets) > 0 {
		in.Commands = append(in.Commands, "iscsiadm -m discovery -t sendtargets -p "+s.Portal)
		for _, tg := range s.Targets {
			in.Commands = append(in.Commands, fmt.Sprintf("iscsiadm -m node -T %s -p %s --login", tg.Name, s.Portal))
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
	return volumeapi.Code(err)
}

// errNoLibrary answers tape requests when vtl.enabled is off.
var errNoLibrary = errkind.Mark(errkind.Permanent, errors.New("the tape library is off (vtl.enabled is false)"))

// Register adds the /v1/vtl, /v1/tapes and /v1/pools endpoints. lib is nil
// when the library is off: then each answers 404 saying so. served says
// how the library is served now.
func Register(srv *admin.Server, lib *tapes.Library, served func() Served) {
	// fn returns the status for its error, or for success (any code
	// outside 2xx then means 200).
	handle := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) (int, any, error)) {
		srv.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if lib == nil {
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
		in, err := info(r.Context(), lib, served())
		return volumeapi.Code(err), in, err
	})
	handle("GET /v1/tapes", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		list, err := lib.List(r.Context())
		out := []TapeStatus{}
		for _, in := range list {
			out = append(out, tapeStatus(in))
		}
		return tapeCode(err), out, err
	})
	handle("POST /v1/tapes", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var req TapeCreateRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			return http.StatusBadRequest, nil, err
		}
		created, err := lib.CreateTapes(r.Context(), tapes.CreateOptions{Count: req.Count, Prefix: req.BarcodePrefix, Size: req.Size, WORM: req.WORM, Pool: req.Pool})
		if err != nil {
			return tapeCode(err), nil, err
		}
		out := []TapeStatus{}
		for _, bc := range created {
			in, err := lib.Info(r.Context(), bc)
			if err != nil {
				return tapeCode(err), nil, err
			}
			out = append(out, tapeStatus(in))
		}
		return http.StatusCreated, out, nil
	})
	handle("GET /v1/tapes/{barcode}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		in, err := lib.Info(r.Context(), r.PathValue("barcode"))
		return tapeCode(err), tapeStatus(in), err
	})
	handle("DELETE /v1/tapes/{barcode}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		err := lib.DeleteTape(r.Context(), r.PathValue("barcode"), r.URL.Query().Get("bypass_governance") == "true")
		return tapeCode(err), map[string]string{"deleted": r.PathValue("barcode")}, err
	})
	handle("POST /v1/tapes/{barcode}/archive", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		if err := lib.Archive(r.Context(), r.PathValue("barcode")); err != nil {
			return tapeCode(err), nil, err
		}
		in, err := lib.Info(r.Context(), r.PathValue("barcode"))
		return tapeCode(err), tapeStatus(in), err
	})
	handle("POST /v1/tapes/{barcode}/retrieve", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		in, err := lib.RetrieveTape(r.Context(), r.PathValue("barcode"), r.URL.Query().Get("tier"))
		return tapeCode(err), tapeStatus(in), err
	})
	handle("POST /v1/tapes/{barcode}/pool", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var req TapePoolRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			return http.StatusBadRequest, nil, err
		}
		in, err := lib.AssignPool(r.Context(), r.PathValue("barcode"), req.Pool, req.BypassGovernance)
		return tapeCode(err), tapeStatus(in), err
	})
	handle("GET /v1/pools", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		out, err := pools(r.Context(), lib)
		return tapeCode(err), out, err
	})
	handle("POST /v1/pools", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var req PoolStatus
		if err := admin.DecodeBody(r, &req); err != nil {
			return http.StatusBadRequest, nil, err
		}
		p, err := lib.CreatePool(r.Context(), tapes.Pool{Name: req.Name, StorageClass: req.StorageClass, Lock: req.Lock, LockDays: req.LockDays})
		if err != nil {
			return tapeCode(err), nil, err
		}
		return http.StatusCreated, poolStatus(p, 0), nil
	})
	handle("DELETE /v1/pools/{name}", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		err := lib.DeletePool(r.Context(), r.PathValue("name"))
		return tapeCode(err), map[string]string{"deleted": r.PathValue("name")}, err
	})
	handle("GET /v1/vtl/spares", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		rule, err := lib.SpareRule(r.Context())
		return tapeCode(err), rule, err
	})
	handle("PUT /v1/vtl/spares", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		var rule tapes.SpareRule
		if err := admin.DecodeBody(r, &rule); err != nil {
			return http.StatusBadRequest, nil, err
		}
		if err := lib.SetSpareRule(r.Context(), rule); err != nil {
			return tapeCode(err), nil, err
		}
		return http.StatusOK, rule, nil
	})
}

func poolStatus(p tapes.Pool, n int) PoolStatus {
	return PoolStatus{Name: p.Name, StorageClass: p.StorageClass, Lock: p.Lock, LockDays: p.LockDays, Created: p.Created, Tapes: n}
}

// pools lists the pools with how many tapes each holds.
func pools(ctx context.Context, lib *tapes.Library) ([]PoolStatus, error) {
	ps, err := lib.Pools(ctx)
	if err != nil {
		return nil, err
	}
	list, err := lib.List(ctx)
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
