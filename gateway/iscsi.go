package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/sbc"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/volume"
)

// authOf is a volume's access settings as the target checks them.
func authOf(a volumeapi.ISCSIAccess) iscsi.Auth {
	return iscsi.Auth{CHAPUser: a.CHAPUser, CHAPSecret: a.CHAPSecret, MutualUser: a.MutualUser,
		MutualSecret: a.MutualSecret, Initiators: a.Initiators}
}

func accessKey(volumeID string) []byte { return []byte("iscsi/" + volumeID) }

// TargetName is the IQN a volume is served as: the configured prefix and
// the volume name in lower case with '_' turned into '-' (iSCSI names
// allow neither upper case nor '_').
func TargetName(prefix, volumeName string) string {
	return prefix + ":" + strings.ReplaceAll(strings.ToLower(volumeName), "_", "-")
}

// iscsiFrontend serves every volume as a target with one LUN (0).
type iscsiFrontend struct {
	srv    *iscsi.Server
	vm     *volume.Manager
	md     meta.Store
	prefix string
	log    *slog.Logger
	addr   string

	mu   sync.Mutex
	luns map[string]*scsi.LU // by volume id
	// reserved are target names other subsystems serve (the tape library).
	reserved map[string]bool
}

func startISCSI(ctx context.Context, cfg *config.Config, vm *volume.Manager, md meta.Store, lat latency, log *slog.Logger) (*iscsiFrontend, error) {
	f := &iscsiFrontend{vm: vm, md: md, prefix: cfg.ISCSI.IQNPrefix, log: log, luns: map[string]*scsi.LU{}}
	f.srv = iscsi.NewServer(iscsi.Config{Logger: log, NOPInterval: cfg.ISCSI.NOPInterval, NOPTimeout: cfg.ISCSI.NOPTimeout, Latency: lat.observeISCSI})
	for _, v := range vm.List() {
		if err := f.Serve(ctx, v); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.ISCSI.Listen)
	if err != nil {
		return nil, fmt.Errorf("iscsi: listen on %s: %w", cfg.ISCSI.Listen, err)
	}
	f.addr = ln.Addr().String()
	go func() {
		if err := f.srv.Serve(ln); err != nil {
			log.Error("iscsi: portal stopped", "err", err)
		}
	}()
	log.Info("iscsi: portal listening", "addr", f.addr, "targets", len(f.srv.Targets()))
	return f, nil
}

func (f *iscsiFrontend) close() { f.srv.Close() }

func (f *iscsiFrontend) access(ctx context.Context, volumeID string) (volumeapi.ISCSIAccess, error) {
	var a volumeapi.ISCSIAccess
	err := f.md.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get(accessKey(volumeID))
		if errors.Is(err, meta.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &a)
	})
	return a, err
}

func (f *iscsiFrontend) SetAccess(ctx context.Context, volumeID string, a volumeapi.ISCSIAccess) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return f.md.Update(ctx, func(tx meta.Txn) error { return tx.Set(accessKey(volumeID), b) })
}

// Serve (re)publishes v's target with its current access settings.
func (f *iscsiFrontend) Serve(ctx context.Context, v *volume.Volume) error {
	info := v.Info()
	a, err := f.access(ctx, info.ID)
	if err != nil {
		return err
	}
	f.mu.Lock()
	lu := f.luns[info.ID]
	if lu == nil {
		lu = sbc.NewLU(v, sbc.Options{Name: info.Name, Serial: info.ID, OptimalBytes: info.ChunkSize, WriteCache: info.WriteCache},
			f.log.With("volume", info.Name))
		f.luns[info.ID] = lu
	}
	f.mu.Unlock()
	// A volume's writes copy their data into the log record before
	// returning (volume.WriteAt keeps no reference to it, as io.WriterAt
	// requires), so the target may reuse its data-out buffers.
	return f.srv.SetTarget(&iscsi.Target{Name: TargetName(f.prefix, info.Name), Alias: info.Name,
		LUNs: map[uint64]*scsi.LU{0: lu}, Auth: authOf(a), ReuseDataOut: true})
}

// CheckName refuses a volume name whose target name another volume has.
func (f *iscsiFrontend) CheckName(name string) error {
	want := TargetName(f.prefix, name)
	f.mu.Lock()
	taken := f.reserved[want]
	f.mu.Unlock()
	if taken {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("volume name %q would be served as iSCSI target %s, which the tape library is", name, want))
	}
	for _, v := range f.vm.List() {
		if v.Info().Name != name && TargetName(f.prefix, v.Info().Name) == want {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("volume name %q would be served as iSCSI target %s, which volume %q already is", name, want, v.Info().Name))
		}
	}
	return nil
}

// reserve keeps a target name from volumes.
func (f *iscsiFrontend) reserve(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reserved == nil {
		f.reserved = map[string]bool{}
	}
	f.reserved[target] = true
}

// volumeServedAs returns the name of the volume served as target, if any.
func (f *iscsiFrontend) volumeServedAs(target string) string {
	for _, v := range f.vm.List() {
		if TargetName(f.prefix, v.Info().Name) == target {
			return v.Info().Name
		}
	}
	return ""
}

// Unserve stops serving info's target; Serve serves it again.
func (f *iscsiFrontend) Unserve(info volume.Info) {
	f.srv.RemoveTarget(TargetName(f.prefix, info.Name))
}

// Sessions lists the portal's sessions.
func (f *iscsiFrontend) Sessions() []iscsi.SessionInfo { return f.srv.Sessions() }

// Removed forgets a deleted volume's target and access settings.
func (f *iscsiFrontend) Removed(ctx context.Context, info volume.Info) {
	f.srv.RemoveTarget(TargetName(f.prefix, info.Name))
	f.mu.Lock()
	delete(f.luns, info.ID)
	f.mu.Unlock()
	if err := f.md.Update(ctx, func(tx meta.Txn) error { return tx.Delete(accessKey(info.ID)) }); err != nil {
		f.log.Warn("iscsi: could not remove a deleted volume's access settings", "volume", info.Name, "err", err)
	}
}

// Grown tells initiators the capacity changed (unit attention 2A/09).
func (f *iscsiFrontend) Grown(info volume.Info) {
	f.mu.Lock()
	lu := f.luns[info.ID]
	f.mu.Unlock()
	if lu != nil {
		lu.UnitAttention(scsi.ASCCapacityDataChanged, "")
	}
}

// WriteCacheChanged tells initiators the volume's write cache is now on
// or off (WCE in the Caching page, unit attention 2A/01).
func (f *iscsiFrontend) WriteCacheChanged(info volume.Info) {
	f.mu.Lock()
	lu := f.luns[info.ID]
	f.mu.Unlock()
	if lu == nil {
		return
	}
	if d, ok := lu.Device().(*sbc.Device); ok {
		d.SetWriteCache(info.WriteCache)
	}
}

// SessionsOf lists the initiators logged in to info's target.
func (f *iscsiFrontend) SessionsOf(info volume.Info) []string {
	name := TargetName(f.prefix, info.Name)
	var out []string
	for _, s := range f.srv.Sessions() {
		if s.Target == name {
			out = append(out, s.Initiator)
		}
	}
	return out
}

func (f *iscsiFrontend) state() string {
	return fmt.Sprintf("serving %d targets, %d sessions", len(f.srv.Targets()), len(f.srv.Sessions()))
}

func (f *iscsiFrontend) AttachInfo(ctx context.Context, v *volume.Volume, secrets bool) (volumeapi.AttachInfo, error) {
	info := v.Info()
	a, err := f.access(ctx, info.ID)
	if err != nil {
		return volumeapi.AttachInfo{}, err
	}
	ai := volumeapi.AttachInfo{Volume: info.Name, Target: TargetName(f.prefix, info.Name), Portal: f.addr,
		CHAPUser: a.CHAPUser, MutualUser: a.MutualUser, Initiators: a.Initiators}
	user := ""
	if a.CHAPUser != "" {
		secret := "SECRET"
		if secrets {
			ai.CHAPSecret, ai.MutualSecret = a.CHAPSecret, a.MutualSecret
			secret = a.CHAPSecret
		}
		user = a.CHAPUser + "%" + secret + "@"
	}
	ai.URL = fmt.Sprintf("iscsi://%s%s/%s/0", user, f.addr, ai.Target)
	return ai, nil
}
