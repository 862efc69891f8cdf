// Package smbapi holds the admin API of the SMB frontend: its state, the
// Active Directory domain it is joined to, and its local users.
package smbapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/frontends/smb"
)

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

// Register adds the /v1/smb endpoints. smbd is the SMB frontend's
// server, or an error saying why SMB is off.
func Register(srv *admin.Server, smbd func() (*smb.Server, error)) {
	server := func(w http.ResponseWriter) *smb.Server {
		s, err := smbd()
		if err != nil {
			admin.WriteError(w, http.StatusConflict, err)
			return nil
		}
		return s
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
		if err := admin.DecodeBody(r, &req); err != nil {
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
		if err := admin.DecodeBody(r, &req); err != nil {
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
		if err := admin.DecodeBody(r, &u); err != nil {
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
