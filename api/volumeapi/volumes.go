// Package volumeapi holds the admin API of volumes: /v1/volumes (create,
// list, show, change, grow, delete) and their iSCSI access and attach
// information, with the request rules. The iSCSI frontend's side of a
// volume (its target, access control, sessions) is reached through
// Targets, which the daemon's assembly supplies when iSCSI is on.
package volumeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/volume"
)

// VolumeStatus is what the admin API says about a volume.
type VolumeStatus struct {
	volume.Info
	Stats volume.Stats `json:"stats"`
	// Gateway-wide figures shown beside the volume's own.
	CacheHitPercent  float64 `json:"cache_hit_percent"`
	UploadBufferUsed int64   `json:"upload_buffer_used"`
}

// CreateVolumeRequest is the body of POST /v1/volumes.
type CreateVolumeRequest struct {
	Name      string      `json:"name"`
	Size      int64       `json:"size"`
	Kind      volume.Kind `json:"kind"`
	ChunkSize int         `json:"chunk_size,omitempty"`
	Disk      string      `json:"disk,omitempty"`
	// FromSnapshot restores the new volume from a snapshot (Size 0: the
	// snapshot's size).
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// ISCSI sets the volume's iSCSI access control (CHAP, allowed initiators).
	ISCSI *ISCSIAccess `json:"iscsi,omitempty"`
	// WriteCache turns the volume's write cache on (volume.Info.WriteCache).
	WriteCache bool `json:"write_cache,omitempty"`
}

// UpdateVolumeRequest is the body of PATCH /v1/volumes/{name}: the
// settings to change (nil: unchanged).
type UpdateVolumeRequest struct {
	WriteCache *bool `json:"write_cache,omitempty"`
}

// GrowVolumeRequest is the body of POST /v1/volumes/{name}/grow.
type GrowVolumeRequest struct {
	Size int64 `json:"size"`
}

func statusOf(ctx context.Context, vm *volume.Manager, v *volume.Volume) VolumeStatus {
	st := vm.Stats()
	return VolumeStatus{
		Info: v.Info(), Stats: v.Stats(ctx),
		CacheHitPercent:  st.Cache.HitPercent(),
		UploadBufferUsed: st.LogUsed,
	}
}

// Register adds the /v1/volumes endpoints. iscsiFE is nil when the iSCSI
// frontend is off; then neither are its endpoints served.
func Register(srv *admin.Server, vm *volume.Manager, iscsiFE Targets) {
	if iscsiFE != nil {
		registerISCSI(srv, vm, iscsiFE)
	}
	srv.Handle("GET /v1/volumes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := []VolumeStatus{}
		for _, v := range vm.List() {
			out = append(out, statusOf(r.Context(), vm, v))
		}
		admin.WriteJSON(w, http.StatusOK, out)
	}))
	srv.Handle("POST /v1/volumes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CreateVolumeRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if req.ISCSI != nil {
			if err := req.ISCSI.Validate(); err != nil {
				admin.WriteError(w, http.StatusBadRequest, err)
				return
			}
			if iscsiFE == nil {
				admin.WriteError(w, http.StatusBadRequest, errors.New("iSCSI settings given but the iSCSI frontend is off (iscsi.listen is empty)"))
				return
			}
		}
		if iscsiFE != nil {
			if err := iscsiFE.CheckName(req.Name); err != nil {
				admin.WriteError(w, http.StatusConflict, err)
				return
			}
		}
		info, err := vm.Create(r.Context(), volume.CreateOptions{Name: req.Name, Size: req.Size, Kind: req.Kind, ChunkSize: req.ChunkSize, Disk: req.Disk, FromSnapshot: req.FromSnapshot, WriteCache: req.WriteCache})
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		if iscsiFE != nil {
			err := func() error {
				if req.ISCSI != nil {
					if err := iscsiFE.SetAccess(r.Context(), info.ID, *req.ISCSI); err != nil {
						return err
					}
				}
				v, err := vm.Get(info.ID)
				if err != nil {
					return err
				}
				return iscsiFE.Serve(r.Context(), v)
			}()
			if err != nil {
				// Without its access settings the volume must not be
				// served: undo the create.
				if derr := vm.Delete(r.Context(), info.ID); derr != nil {
					err = fmt.Errorf("%w (and removing the half-created volume failed: %v)", err, derr)
				}
				admin.WriteError(w, Code(err), err)
				return
			}
		}
		admin.WriteJSON(w, http.StatusCreated, VolumeStatus{Info: info})
	}))
	srv.Handle("GET /v1/volumes/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, statusOf(r.Context(), vm, v))
	}))
	srv.Handle("PATCH /v1/volumes/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req UpdateVolumeRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if req.WriteCache == nil {
			admin.WriteError(w, http.StatusBadRequest, errors.New("no setting to change (write_cache)"))
			return
		}
		info, err := vm.SetWriteCache(r.Context(), r.PathValue("name"), *req.WriteCache)
		if info.ID != "" && iscsiFE != nil {
			// The setting is stored, even if the flush after it failed:
			// initiators learn of it either way.
			iscsiFE.WriteCacheChanged(info)
		}
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		v, err := vm.Get(info.ID)
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, statusOf(r.Context(), vm, v))
	}))
	srv.Handle("DELETE /v1/volumes/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		info := v.Info()
		if iscsiFE != nil {
			if n := iscsiFE.SessionsOf(info); len(n) > 0 && r.URL.Query().Get("force") != "1" {
				admin.WriteError(w, http.StatusConflict, fmt.Errorf("volume %s is in use by %d iSCSI session(s) (initiator %s); log them out first or delete with --force", info.Name, len(n), n[0]))
				return
			}
			iscsiFE.Unserve(info)
		}
		if err := vm.Delete(r.Context(), info.ID); err != nil {
			if iscsiFE != nil {
				iscsiFE.Serve(r.Context(), v)
			}
			admin.WriteError(w, Code(err), err)
			return
		}
		if iscsiFE != nil {
			iscsiFE.Removed(r.Context(), info)
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("name")})
	}))
	srv.Handle("POST /v1/volumes/{name}/grow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req GrowVolumeRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := vm.Grow(r.Context(), r.PathValue("name"), req.Size); err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		if iscsiFE != nil {
			iscsiFE.Grown(v.Info())
		}
		admin.WriteJSON(w, http.StatusOK, statusOf(r.Context(), vm, v))
	}))
}

// Code is the status of an error answer about a volume: 409 for a name or
// disk already taken, else by the error's class (admin.ErrorCode).
func Code(err error) int {
	return admin.ErrorCode(err, volume.ErrExists, volume.ErrDiskInUse)
}
