package gateway

import (
	"context"
	"errors"
	"log/slog"
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
	// Out of a private data directory, where shares owned by other
	// accounts than root cannot be reached (docs/smb.md).
	mountDir, err := smb.MountRoot(cfg.Path(cfg.SMB.MountDir))
	if err != nil {
		logger.Warn("smb: share views mounted below a private directory: shares owned by other accounts than root cannot be opened over SMB",
			"dir", mountDir, "err", err)
	}
	srv, err := smb.New(smb.Options{
		Settings: smb.Settings{Listen: cfg.SMB.Listen, StateDir: cfg.Path(cfg.SMB.StateDir), Signing: cfg.SMB.Signing, NetbiosName: cfg.SMB.NetbiosName},
		Smbd:     cfg.SMB.Smbd, MountDir: mountDir, Shares: shares, Clock: clk, Logger: logger,
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

// server is smbd's server, or why SMB is off (smbapi.Register).
func (f *smbFrontend) server() (*smb.Server, error) {
	switch {
	case f == nil:
		return nil, errors.New("smb is off")
	case f.srv == nil:
		return nil, errors.New("smb is " + f.off)
	}
	return f.srv, nil
}

// addr is where smbd listens; "" when SMB is off.
func (f *smbFrontend) addr() string {
	if f == nil || f.srv == nil {
		return ""
	}
	return f.srv.Addr()
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
