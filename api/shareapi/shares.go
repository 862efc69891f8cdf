// Package shareapi holds the admin API of file shares: create, list,
// show, change and delete them, refresh a share from the bucket and wait
// for its uploads, with the request rules. A share's status says how to
// reach it over NFS and SMB, from where those frontends listen.
package shareapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/frontends/smb"
)

// ShareStatus is what the admin API says about a share.
type ShareStatus struct {
	fileshare.Config
	Mount *MountInfo `json:"mount,omitempty"`
	SMB   *SMBInfo   `json:"smb,omitempty"`
}

// MountInfo is what an NFS client needs to mount a share.
type MountInfo struct {
	Server  string `json:"server"`
	Port    int    `json:"port"`
	Export  string `json:"export"`
	Command string `json:"command"` // Linux mount(8)
	URL     string `json:"url"`     // libnfs
}

func mountInfo(addr string, c fileshare.Config) *MountInfo {
	name := c.Name
	if addr == "" || !c.Serves("nfs") {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return &MountInfo{
		Server: host, Port: p, Export: "/" + name,
		// go-nfs has no portmapper and no lock manager: the client is told
		// the port for both NFS and MOUNT, and locks locally.
		Command: fmt.Sprintf("mount -t nfs -o vers=3,proto=tcp,port=%d,mountport=%d,mountproto=tcp,nolock %s:/%s /mnt/%s", p, p, host, name, name),
		URL:     fmt.Sprintf("nfs://%s/%s/?nfsport=%d&mountport=%d&auto-traverse-mounts=0", host, name, p, p),
	}
}

// ShareUpdate is the body of PATCH /v1/shares/{name}: the fields given
// change, the others stay.
type ShareUpdate struct {
	ReadOnly           *bool     `json:"read_only,omitempty"`
	SMBGuest           *bool     `json:"smb_guest,omitempty"`
	SMBEncrypt         *bool     `json:"smb_encrypt,omitempty"`
	SMBValidUsers      *[]string `json:"smb_valid_users,omitempty"`
	SMBInvalidUsers    *[]string `json:"smb_invalid_users,omitempty"`
	SMBAdminUsers      *[]string `json:"smb_admin_users,omitempty"`
	SMBAccessBasedEnum *bool     `json:"smb_access_based_enum,omitempty"`
	SMBKernelOplocks   *bool     `json:"smb_kernel_oplocks,omitempty"`
	Audit              *bool     `json:"audit,omitempty"`
}

func (u ShareUpdate) apply(c *fileshare.Config) error {
	o, err := smb.ReadShareOptions(*c)
	if err != nil {
		return err
	}
	for _, b := range []struct {
		from *bool
		to   *bool
	}{{u.ReadOnly, &c.ReadOnly}, {u.SMBGuest, &o.Guest}, {u.SMBEncrypt, &o.Encrypt}, {u.SMBAccessBasedEnum, &o.AccessBasedEnum},
		{u.SMBKernelOplocks, &o.KernelOplocks}, {u.Audit, &c.Audit}} {
		if b.from != nil {
			*b.to = *b.from
		}
	}
	for _, l := range []struct {
		from *[]string
		to   *[]string
	}{{u.SMBValidUsers, &o.ValidUsers}, {u.SMBInvalidUsers, &o.InvalidUsers}, {u.SMBAdminUsers, &o.AdminUsers}} {
		if l.from != nil {
			*l.to = *l.from
		}
	}
	return smb.SetShareOptions(c, o)
}

// RefreshRequest is the body of POST /v1/shares/{name}/refresh.
type RefreshRequest struct {
	Path      string `json:"path,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
}

// WaitRequest is the body of POST /v1/shares/{name}/wait.
type WaitRequest struct {
	Path  string `json:"path,omitempty"`
	Flush bool   `json:"flush,omitempty"` // upload now, ignoring the settle time
}

// WaitResult answers POST /v1/shares/{name}/wait once everything written
// before the call is in the store.
type WaitResult struct {
	Share     string `json:"share"`
	Path      string `json:"path"`
	WaitedFor int    `json:"waited_for"` // changes that were not in the store at the call
}

// Frontends is how the frontends serve the shares, for a share's status
// and after a change.
type Frontends struct {
	// NFSAddr and SMBAddr say where NFS and SMB listen; "" when off.
	NFSAddr, SMBAddr func() string
	// SyncSMB brings the SMB frontend in line with the share list, leaving
	// out the shares named in except (about to be deleted).
	SyncSMB func(ctx context.Context, except ...string)
}

// Register adds the /v1/shares endpoints.
func Register(srv *admin.Server, shares *fileshare.Manager, fe Frontends) {
	status := func(c fileshare.Config) ShareStatus {
		return ShareStatus{Config: c, Mount: mountInfo(fe.NFSAddr(), c), SMB: smbInfo(fe.SMBAddr(), c)}
	}
	shareCode := func(err error) int {
		switch {
		case errors.Is(err, fileshare.ErrShareExists):
			return http.StatusConflict
		case errors.Is(err, fileshare.ErrNoShare):
			return http.StatusNotFound
		}
		return volumeapi.Code(err)
	}
	srv.Handle("GET /v1/shares", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := []ShareStatus{}
		for _, c := range shares.List() {
			out = append(out, status(c))
		}
		admin.WriteJSON(w, http.StatusOK, out)
	}))
	srv.Handle("POST /v1/shares", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c fileshare.Config
		if err := admin.DecodeBody(r, &c); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := smb.CheckShare(c); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		c, err := shares.Create(r.Context(), c)
		if err != nil {
			admin.WriteError(w, shareCode(err), err)
			return
		}
		fe.SyncSMB(r.Context())
		admin.WriteJSON(w, http.StatusCreated, status(c))
	}))
	srv.Handle("GET /v1/shares/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := shares.Get(r.PathValue("name"))
		if err != nil {
			admin.WriteError(w, shareCode(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, status(s.Config()))
	}))
	srv.Handle("PATCH /v1/shares/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var u ShareUpdate
		if err := admin.DecodeBody(r, &u); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		c, err := shares.Update(r.Context(), r.PathValue("name"), func(c *fileshare.Config) error {
			if err := u.apply(c); err != nil {
				return err
			}
			return smb.CheckShare(*c)
		})
		if err != nil {
			admin.WriteError(w, shareCode(err), err)
			return
		}
		fe.SyncSMB(r.Context())
		admin.WriteJSON(w, http.StatusOK, status(c))
	}))
	srv.Handle("DELETE /v1/shares/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := shares.Get(r.PathValue("name")); err == nil {
			fe.SyncSMB(r.Context(), r.PathValue("name")) // smbd lets go of it first
		}
		err := shares.Delete(r.Context(), r.PathValue("name"))
		fe.SyncSMB(r.Context())
		if err != nil {
			admin.WriteError(w, shareCode(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("name")})
	}))
	srv.Handle("POST /v1/shares/{name}/refresh", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req RefreshRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		s, err := shares.Get(r.PathValue("name"))
		if err == nil {
			err = s.Refresh(req.Path, req.Recursive)
		}
		if err != nil {
			admin.WriteError(w, shareCode(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"refreshed": r.PathValue("name"), "path": "/" + strings.Trim(req.Path, "/")})
	}))
	srv.Handle("POST /v1/shares/{name}/wait", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req WaitRequest
		if err := admin.DecodeBody(r, &req); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err)
			return
		}
		s, err := shares.Get(r.PathValue("name"))
		n := 0
		if err == nil {
			n, err = s.Wait(r.Context(), req.Path, req.Flush)
		}
		if err != nil {
			admin.WriteError(w, shareCode(err), err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, WaitResult{Share: r.PathValue("name"), Path: "/" + strings.Trim(req.Path, "/"), WaitedFor: n})
	}))
}

// SMBInfo is what an SMB client needs to reach a share.
type SMBInfo struct {
	Server    string `json:"server"`
	Port      int    `json:"port"`
	UNC       string `json:"unc"`       // \\server\share (Windows, on port 445)
	Smbclient string `json:"smbclient"` // Samba's client
	Command   string `json:"command"`   // Linux mount(8), cifs-utils
}

func smbInfo(addr string, c fileshare.Config) *SMBInfo {
	if addr == "" || !c.Serves("smb") {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	unc := host
	if strings.Contains(host, ":") {
		unc = "[" + host + "]"
	}
	seal := ""
	if o, _ := smb.ReadShareOptions(c); o.Encrypt {
		seal = ",seal"
	}
	return &SMBInfo{
		Server: host, Port: p, UNC: `\\` + unc + `\` + c.Name,
		Smbclient: fmt.Sprintf("smbclient //%s/%s -p %d -U USER", unc, c.Name, p),
		Command:   fmt.Sprintf("mount -t cifs //%s/%s /mnt/%s -o port=%d,username=USER,vers=3.1.1%s", unc, c.Name, c.Name, p, seal),
	}
}
