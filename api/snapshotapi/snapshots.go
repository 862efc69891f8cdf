// Package snapshotapi holds the admin API of volume snapshots: create,
// list, show, delete and verify them, the volumes' snapshot schedules, and
// garbage collection of the chunks no snapshot needs.
package snapshotapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
	"github.com/gatewayd/gatewayd/volume"
)

// CreateSnapshotRequest is the body of POST /v1/volumes/{name}/snapshots.
type CreateSnapshotRequest struct {
	Description string `json:"description,omitempty"`
	// Lock locks the snapshot for this long (Object Lock).
	Lock volume.Duration `json:"lock,omitempty"`
}

// ScheduleRequest is the body of PUT /v1/volumes/{name}/schedule.
type ScheduleRequest struct {
	Every volume.Duration `json:"every"`
	Keep  int             `json:"keep"`
	Lock  volume.Duration `json:"lock,omitempty"` // each snapshot's lock period
}

// GCRequest is the body of POST /v1/gc.
type GCRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Grace overrides snapshots.gc_grace for this run.
	Grace *volume.Duration `json:"grace,omitempty"`
}

// Register adds the snapshot, schedule and GC endpoints. defaultGrace is
// how old an unreferenced object must be before GC removes it, unless a
// request says otherwise.
func Register(srv *admin.Server, vm *volume.Manager, store objstore.Store, codec *snapshots.Codec, defaultGrace time.Duration) {
	srv.Handle("POST /v1/volumes/{name}/snapshots", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CreateSnapshotRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		// The snapshot goes on if its client goes away (Ctrl-C on
		// `gatewayd snapshot create`); it stops only with the gateway.
		ctx, cancel := srv.Detach(r)
		defer cancel()
		si, err := vm.CreateSnapshot(ctx, r.PathValue("name"), volume.SnapshotOptions{Description: req.Description, Lock: time.Duration(req.Lock)})
		if err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusCreated, si)
	}))
	srv.Handle("GET /v1/snapshots", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vol := r.URL.Query().Get("volume")
		if vol != "" {
			// A deleted volume's snapshots are still listed by its name.
			if v, err := vm.Get(vol); err == nil {
				vol = v.Info().ID
			}
		}
		list, err := vm.Snapshots(r.Context(), vol)
		if err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		if list == nil {
			list = []volume.SnapshotInfo{}
		}
		admin.WriteJSON(w, http.StatusOK, list)
	}))
	srv.Handle("GET /v1/snapshots/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		si, err := vm.Snapshot(r.Context(), r.PathValue("id"))
		if err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, si)
	}))
	srv.Handle("DELETE /v1/snapshots/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := vm.DeleteSnapshot(r.Context(), r.PathValue("id")); err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("id")})
	}))
	srv.Handle("POST /v1/snapshots/{id}/verify", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !snapshots.ValidSnapshotID(id) {
			admin.WriteError(w, http.StatusBadRequest, errors.New("not a snapshot id: "+strconv.Quote(id)))
			return
		}
		parallel := 8
		if p, err := strconv.Atoi(r.URL.Query().Get("parallel")); err == nil && p > 0 && p <= 64 {
			parallel = p
		}
		if _, err := store.Stat(r.Context(), snapshots.SnapshotKey(id)); objstore.IsNotFound(err) {
			admin.WriteError(w, http.StatusNotFound, errors.New("snapshot "+id+": no manifest in the object store"))
			return
		}
		rep, err := snapshots.Verify(r.Context(), store, codec, snapshots.SnapshotKey(id), parallel)
		if err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, rep)
	}))
	srv.Handle("PUT /v1/volumes/{name}/schedule", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ScheduleRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		s, err := vm.SetLockedSchedule(r.Context(), r.PathValue("name"), time.Duration(req.Every), req.Keep, time.Duration(req.Lock))
		if err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, s)
	}))
	srv.Handle("DELETE /v1/volumes/{name}/schedule", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := vm.RemoveSchedule(r.Context(), r.PathValue("name")); err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"unscheduled": r.PathValue("name")})
	}))
	srv.Handle("GET /v1/schedules", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := vm.Schedules(r.Context())
		if err != nil {
			admin.WriteError(w, volumeapi.Code(err), err)
			return
		}
		if list == nil {
			list = []volume.Schedule{}
		}
		admin.WriteJSON(w, http.StatusOK, list)
	}))
	srv.Handle("POST /v1/gc", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req GCRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		grace := defaultGrace
		if req.Grace != nil {
			grace = time.Duration(*req.Grace)
		}
		if grace < 0 {
			admin.WriteError(w, http.StatusBadRequest, errors.New("grace must not be negative"))
			return
		}
		st, err := vm.CollectGarbage(r.Context(), grace, req.DryRun)
		if err != nil {
			admin.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, st)
	}))
}
