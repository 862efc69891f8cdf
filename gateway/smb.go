package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/frontends/smb"
)

// smbFrontend is smbd under supervision, or why there is none.
type smbFrontend struct {
	srv *smb.Server // nil when SMB is off
	off string      // why it is off
	log *slog.Logger
}

// startSMB prepares the SMB frontend. A gateway without Samba serves
// everything else and says in status how to get SMB; smbd itself starts
// with the first share served over SMB. SMB failing to start leaves the
// rest of the gateway serving; status says why.
func startSMB(ctx context.Context, cfg *config.Config, shares *fileshare.Manager, clk clock.Clock, auditLog *audit.Log, logger *slog.Logger) *smbFrontend {
	f := &smbFrontend{log: logger}
	if cfg.SMB.Listen == "" {
		f.off = "off (smb.listen is empty)"
		return f
	}
	srv, err := smb.New(smb.Options{
		Settings: smb.Settings{Listen: cfg.SMB.Listen, StateDir: cfg.Path(cfg.SMB.StateDir), Signing: cfg.SMB.Signing, NetbiosName: cfg.SMB.NetbiosName},
		Smbd:     cfg.SMB.Smbd, MountDir: cfg.Path(cfg.SMB.MountDir), Shares: shares, Clock: clk, Logger: logger,
		Audit: auditLog,
	})
	if err != nil {
		f.off = "off: " + err.Error()
		logger.Warn("smb: SMB is off", "why", err)
		return f
	}
	f.srv = srv
	f.sync(ctx)
	return f
}

// sync brings smbd in line with the share list, leaving out the shares
// named in except (about to be deleted).
func (f *smbFrontend) sync(ctx context.Context, except ...string) {
	if f == nil || f.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.srv.Sync(ctx, except...); err != nil {
		f.log.Error("smb: serving the share list", "err", err)
	}
}

func (f *smbFrontend) close() {
	if f != nil && f.srv != nil {
		if err := f.srv.Close(); err != nil {
			f.log.Error("smb: stop", "err", err)
		}
	}
}

func (f *smbFrontend) frontend() admin.Frontend {
	switch {
	case f == nil:
		return admin.Frontend{Name: "smb", State: "starting"}
	case f.srv == nil:
		return admin.Frontend{Name: "smb", State: f.off}
	}
	return admin.Frontend{Name: "smb", Listen: f.srv.Addr(), State: f.srv.State()}
}

// SMBInfo is what an SMB client needs to reach a share.
type SMBInfo struct {
	Server    string `json:"server"`
	Port      int    `json:"port"`
	UNC       string `json:"unc"`       // \\server\share (Windows, on port 445)
	Smbclient string `json:"smbclient"` // Samba's client
	Command   string `json:"command"`   // Linux mount(8), cifs-utils
}

func smbInfo(f *smbFrontend, c fileshare.Config) *SMBInfo {
	if f == nil || f.srv == nil || !c.Serves("smb") {
		return nil
	}
	host, port, err := net.SplitHostPort(f.srv.Addr())
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	unc := host
	if strings.Contains(host, ":") {
		unc = "[" + host + "]"
	}
	seal := ""
	if c.SMBEncrypt {
		seal = ",seal"
	}
	return &SMBInfo{
		Server: host, Port: p, UNC: `\\` + unc + `\` + c.Name,
		Smbclient: fmt.Sprintf("smbclient //%s/%s -p %d -U USER", unc, c.Name, p),
		Command:   fmt.Sprintf("mount -t cifs //%s/%s /mnt/%s -o port=%d,username=USER,vers=3.1.1%s", unc, c.Name, c.Name, p, seal),
	}
}

// checkSMBShare refuses what smb.conf cannot carry: a share name or
// access list entry that would change its structure.
func checkSMBShare(c fileshare.Config) error {
	for _, p := range c.Protocols {
		if strings.EqualFold(strings.TrimSpace(p), "smb") {
			if err := smb.CheckShareName(c.Name); err != nil {
				return err
			}
		}
	}
	return smb.Access{ValidUsers: c.SMBValidUsers, InvalidUsers: c.SMBInvalidUsers, AdminUsers: c.SMBAdminUsers}.Check()
}

// The bodies of the SMB domain calls (frontends/smb defines them).
type (
	SMBJoinRequest  = smb.JoinRequest
	SMBLeaveRequest = smb.LeaveRequest
	SMBDomainStatus = smb.DomainStatus
)

// SMBStatus answers GET /v1/smb/status.
type SMBStatus struct {
	State  string           `json:"state"`
	Listen string           `json:"listen,omitempty"`
	Domain smb.DomainStatus `json:"domain"`
}

// SMBUser is the body of POST /v1/smb/users.
type SMBUser struct {
	Name     string `json:"name"`
	Password string `json:"password,omitempty"`
}

func registerSMBAPI(srv *admin.Server, f *smbFrontend) {
	server := func(w http.ResponseWriter) *smb.Server {
		if f == nil || f.srv == nil {
			why := "smb is off"
			if f != nil {
				why = "smb is " + f.off
			}
			admin.WriteError(w, http.StatusConflict, errors.New(why))
			return nil
		}
		return f.srv
	}
	code := func(err error) int {
		switch {
		case errors.Is(err, smb.ErrNoUser), errors.Is(err, smb.ErrNotJoined):
			return http.StatusNotFound
		case errors.Is(err, smb.ErrBadUser), errors.Is(err, smb.ErrBadDomain):
			return http.StatusBadRequest
		case errors.Is(err, smb.ErrJoined):
			return http.StatusConflict
		}
		return http.StatusInternalServerError
	}
	srv.Handle("GET /v1/smb/status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := server(w)
		if s == nil {
			return
		}
		admin.WriteJSON(w, http.StatusOK, SMBStatus{State: s.State(), Listen: s.Addr(), Domain: s.DomainStatus(r.Context())})
	}))
	srv.Handle("POST /v1/smb/join", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := server(w)
		if s == nil {
			return
		}
		var req smb.JoinRequest
		if err := decodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
		defer cancel()
		st, err := s.Join(ctx, req)
		if err != nil {
			admin.WriteError(w, code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, st)
	}))
	srv.Handle("POST /v1/smb/leave", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := server(w)
		if s == nil {
			return
		}
		var req smb.LeaveRequest
		if err := decodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.Leave(r.Context(), req); err != nil {
			admin.WriteError(w, code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, s.DomainStatus(r.Context()))
	}))
	srv.Handle("GET /v1/smb/users", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := server(w)
		if s == nil {
			return
		}
		users, err := s.Users(r.Context())
		if err != nil {
			admin.WriteError(w, code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, users)
	}))
	srv.Handle("POST /v1/smb/users", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := server(w)
		if s == nil {
			return
		}
		var u SMBUser
		if err := decodeBody(r, &u); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.AddUser(r.Context(), u.Name, u.Password); err != nil {
			admin.WriteError(w, code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusCreated, map[string]string{"user": u.Name})
	}))
	srv.Handle("DELETE /v1/smb/users/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := server(w)
		if s == nil {
			return
		}
		if err := s.DeleteUser(r.Context(), r.PathValue("name")); err != nil {
			admin.WriteError(w, code(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("name")})
	}))
}
