package volumeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/volume"
)

// Targets is the iSCSI frontend's side of the volumes: each volume served
// as a target with its access settings.
type Targets interface {
	// CheckName refuses a volume name whose target name is taken.
	CheckName(name string) error
	// SetAccess stores a volume's access settings; Serve applies them.
	SetAccess(ctx context.Context, volumeID string, a ISCSIAccess) error
	// Serve (re)publishes v's target with its current access settings,
	// ending the sessions it had.
	Serve(ctx context.Context, v *volume.Volume) error
	// Unserve stops serving a volume's target (before its delete).
	Unserve(info volume.Info)
	// Removed forgets a deleted volume's target and access settings.
	Removed(ctx context.Context, info volume.Info)
	// Grown and WriteCacheChanged tell initiators of the change.
	Grown(info volume.Info)
	WriteCacheChanged(info volume.Info)
	// SessionsOf lists the initiators logged in to a volume's target.
	SessionsOf(info volume.Info) []string
	// Sessions lists every session of the portal.
	Sessions() []iscsi.SessionInfo
	// AttachInfo is how an initiator reaches v (secrets only if asked).
	AttachInfo(ctx context.Context, v *volume.Volume, secrets bool) (AttachInfo, error)
}

// ISCSIAccess is a volume's iSCSI access control, kept in meta under
// iscsi/<volume id>. Secrets stay on the gateway (its data directory is
// private to it); the admin API never returns them unless asked.
type ISCSIAccess struct {
	CHAPUser     string   `json:"chap_user,omitempty"`
	CHAPSecret   string   `json:"chap_secret,omitempty"`
	MutualUser   string   `json:"mutual_user,omitempty"`
	MutualSecret string   `json:"mutual_secret,omitempty"`
	Initiators   []string `json:"initiators,omitempty"`
}

// Validate checks the settings before they are stored.
func (a ISCSIAccess) Validate() error {
	if a.CHAPUser != "" || a.CHAPSecret != "" {
		if err := iscsi.ValidateCHAP(a.CHAPUser, a.CHAPSecret); err != nil {
			return err
		}
	}
	if a.MutualUser != "" || a.MutualSecret != "" {
		if a.CHAPUser == "" {
			return errors.New("iscsi: mutual CHAP needs one-way CHAP (--chap-user, --chap-secret) too")
		}
		if err := iscsi.ValidateCHAP(a.MutualUser, a.MutualSecret); err != nil {
			return fmt.Errorf("mutual: %w", err)
		}
		if a.MutualSecret == a.CHAPSecret {
			return errors.New("iscsi: the mutual CHAP secret must differ from the initiator's (RFC 7143 section 12.1.3)")
		}
	}
	for _, i := range a.Initiators {
		if err := iscsi.ValidName(strings.ToLower(i)); err != nil {
			return fmt.Errorf("allowed initiator: %w", err)
		}
	}
	return nil
}

// AttachInfo is what an initiator needs to reach a volume.
type AttachInfo struct {
	Volume       string   `json:"volume"`
	Target       string   `json:"target"`
	Portal       string   `json:"portal"`
	LUN          int      `json:"lun"`
	CHAPUser     string   `json:"chap_user,omitempty"`
	CHAPSecret   string   `json:"chap_secret,omitempty"` // only with ?secrets=1
	MutualUser   string   `json:"mutual_user,omitempty"`
	MutualSecret string   `json:"mutual_secret,omitempty"` // only with ?secrets=1
	Initiators   []string `json:"initiators,omitempty"`
	URL          string   `json:"url"` // libiscsi / qemu form
}

// registerISCSI adds the iSCSI endpoints of /v1/volumes.
func registerISCSI(srv *admin.Server, vm *volume.Manager, f Targets) {
	srv.Handle("GET /v1/volumes/{name}/attach-info", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		ai, err := f.AttachInfo(r.Context(), v, r.URL.Query().Get("secrets") == "1")
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, ai)
	}))
	srv.Handle("PUT /v1/volumes/{name}/iscsi", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a ISCSIAccess
		if err := admin.DecodeBody(r, &a); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := a.Validate(); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		v, err := vm.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		if err := f.SetAccess(r.Context(), v.Info().ID, a); err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		// Republishing the target ends its sessions: initiators log in
		// again under the new rules.
		if err := f.Serve(r.Context(), v); err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		ai, err := f.AttachInfo(r.Context(), v, false)
		if err != nil {
			admin.WriteError(w, Code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, ai)
	}))
	srv.Handle("GET /v1/iscsi/sessions", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := f.Sessions()
		if out == nil {
			out = []iscsi.SessionInfo{}
		}
		admin.WriteJSON(w, http.StatusOK, out)
	}))
}
