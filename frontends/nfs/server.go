// Package nfs serves gatewayd's file shares over NFSv3 and MOUNT, on
// go-nfs, and over NFSv4.1 (package nfs4) on the same port. The gateway supplies the file system (a billy.Filesystem over
// fileshare.Share) and its own file handles: share id and inode number,
// which fileshare keeps in meta, so a handle stays valid across renames and
// daemon restarts. Export options (allowed clients, read-only) are checked
// at MOUNT and on every call.
//
// The connection's RPC layer is gatewayd's own (rpc.go): it reads the
// calls, serves READ, GETATTR, ACCESS, WRITE, COMMIT, FSINFO, READDIR and
// READDIRPLUS itself, several of a connection's at once, hands NFSv4.1
// calls to nfs4, and hands the other calls to go-nfs, which
// serves them one at a time; one writer writes every reply whole, in the
// order they are ready. READ reads the data straight into a pooled reply
// buffer (read.go). WRITE honours stable_how (stable.go): an UNSTABLE
// write is answered without waiting for a sync and is durable at COMMIT;
// the write verifier changes when the daemon restarts, so that a client
// sends uncommitted data again. docs/nfs.md says why go-nfs stays for the
// rest.
//
// go-nfs serves NFS and MOUNT on one TCP port and has no portmapper:
// clients give the port for both (libnfs: ?nfsport=N&mountport=N; Linux:
// -o port=N,mountport=N,nolock,vers=3,proto=tcp).
package nfs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	billy "github.com/go-git/go-billy/v5"
	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/frontends/nfs/nfs4"
	"github.com/gatewayd/gatewayd/meta"
)

// Server is the NFS frontend.
type Server struct {
	shares *fileshare.Manager
	log    *slog.Logger

	// Latency, when set before Serve, is told how long each call took,
	// from its arrival to its reply, by procedure name (procs.Name);
	// calls over 10 s are logged too.
	Latency func(proc string, d time.Duration)
	// Audit, when set before Serve, gets the calls that open or change a
	// file of a share with auditing on (audit.go; nfs4 for NFSv4.1).
	Audit *audit.Log

	// verifier is the write verifier of WRITE and COMMIT replies: drawn
	// when the server is made, so it changes when the daemon restarts.
	verifier [8]byte
	v4       *nfs4.Server // NFSv4.1
	unsynced atomic.Int64 // UNSTABLE bytes whose log records are not written yet (maxUnsynced)

	mu sync.Mutex
	l  net.Listener
	wg sync.WaitGroup
}

// New returns a server for the manager's shares.
func New(shares *fileshare.Manager, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{shares: shares, log: logger}
	rand.Read(s.verifier[:])
	s.v4 = nfs4.New(shares, handles4{&handler{s: s}}, logger, nfs4.Options{WriteVerifier: s.verifier})
	return s
}

// ReadDelegations turns NFSv4.1 read delegations on (nfs4: deleg.go); it
// is called before Serve.
func (s *Server) ReadDelegations(on bool) { s.v4.SetReadDelegations(on) }

// Delegations counts the NFSv4.1 read delegations granted, recalled,
// returned and revoked.
func (s *Server) Delegations() nfs4.DelegationStats { return s.v4.Delegations() }

// KeepV4State keeps the NFSv4.1 client records in md, so that after a
// restart the clients that held opens and locks reclaim them in a grace
// period of grace (at least the lease time, 90 s; 0 is that). It is called
// before Serve.
func (s *Server) KeepV4State(ctx context.Context, md meta.Store, grace time.Duration) error {
	return s.v4.Recover(ctx, md, grace)
}

// Verifier is the write verifier the server's WRITE and COMMIT replies
// carry.
func (s *Server) Verifier() [8]byte { return s.verifier }

// Serve accepts NFS and MOUNT calls on l until Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.l = l
	s.mu.Unlock()
	quietGoNFS()
	s.v4.SetAudit(s.Audit)
	if s.Latency != nil {
		l = timedListener{Listener: l, observe: s.Latency, log: s.log, slow: slowCall}
	}
	h := &handler{s: s}
	srv := &gonfs.Server{Handler: h, ID: s.verifier}
	err := srv.Serve(rpcListener{Listener: l, h: h})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// quietGoNFS sets go-nfs's own logger to errors only, once: its
// connections of an earlier server read the level.
var quietGoNFS = sync.OnceFunc(func() { gonfs.Log.SetLevel(gonfs.ErrorLevel) })

// Close stops accepting connections, and NFSv4.1's listening to the
// shares' changes.
func (s *Server) Close() error {
	s.v4.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l != nil {
		return s.l.Close()
	}
	return nil
}

// handler implements go-nfs's Handler.
type handler struct{ s *Server }

// Mount resolves "/<share>[/<dir>]" and checks the export options.
func (h *handler) Mount(ctx context.Context, conn net.Conn, req gonfs.MountRequest) (gonfs.MountStatus, billy.Filesystem, []gonfs.AuthFlavor) {
	name, sub, _ := strings.Cut(strings.Trim(string(req.Dirpath), "/"), "/")
	share, err := h.s.shares.Get(name)
	if err == nil && !share.Config().Serves("nfs") {
		err = fileshare.ErrNoShare // an SMB-only share
	}
	if err != nil {
		h.s.log.Info("nfs: mount of an unknown share", "path", string(req.Dirpath), "client", conn.RemoteAddr())
		return gonfs.MountStatusErrNoEnt, nil, nil
	}
	if !allowed(share, conn.RemoteAddr()) {
		h.s.log.Warn("nfs: mount refused: client not allowed", "share", name, "client", conn.RemoteAddr())
		return gonfs.MountStatusErrAcces, nil, nil
	}
	if sub != "" {
		a, err := share.Stat(ctx, sub)
		switch {
		case err != nil:
			return gonfs.MountStatusErrNoEnt, nil, nil
		case a.Type != fileshare.TypeDir:
			return gonfs.MountStatusErrNotDir, nil, nil
		}
	}
	h.s.log.Info("nfs: mount", "share", name, "dir", "/"+sub, "client", conn.RemoteAddr())
	return gonfs.MountStatusOk, &shareFS{share: share, root: clean(sub), ctx: context.Background()}, []gonfs.AuthFlavor{gonfs.AuthFlavorNull}
}

func allowed(share *fileshare.Share, addr net.Addr) bool {
	cfg := share.Config()
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return len(cfg.Clients) == 0
	}
	return cfg.Allows(ap.Addr())
}

// Change allows SETATTR's mode, owner and times changes.
func (h *handler) Change(fs billy.Filesystem) billy.Change {
	if sf, ok := fs.(*shareFS); ok && !sf.share.Config().ReadOnly {
		return sf
	}
	return nil
}

// FSStat reports an object store's room: practically unbounded.
func (h *handler) FSStat(ctx context.Context, fs billy.Filesystem, st *gonfs.FSStat) error {
	const petabyte = 1 << 50
	st.TotalSize, st.FreeSize, st.AvailableSize = petabyte, petabyte, petabyte
	st.TotalFiles, st.FreeFiles, st.AvailableFiles = 1<<40, 1<<40, 1<<40
	return nil
}

// File handles: "gw", version 1, a zero byte, share id (4 bytes), inode
// (8 bytes). 16 bytes: XDR pads opaque data to 4, and go-nfs reads the
// argument after a handle without skipping the padding.
const handleLen = 16

// ToHandle names a path by its share and inode.
func (h *handler) ToHandle(fs billy.Filesystem, path []string) []byte {
	sf, ok := fs.(*shareFS)
	if !ok {
		return nil
	}
	a, err := sf.share.Stat(sf.ctx, sf.full(strings.Join(path, "/")))
	if err != nil {
		return nil
	}
	return fileHandle(sf.share.Config().ID, a.Ino)
}

// FromHandle resolves a handle to its share and the inode's current path.
func (h *handler) FromHandle(fh []byte) (billy.Filesystem, []string, error) {
	if len(fh) != handleLen || fh[0] != 'g' || fh[1] != 'w' || fh[2] != 1 || fh[3] != 0 {
		return nil, nil, fmt.Errorf("nfs: not a gatewayd file handle: %w", fileshare.ErrStale)
	}
	share, err := h.s.shares.ByID(binary.BigEndian.Uint32(fh[4:]))
	if err != nil {
		return nil, nil, fmt.Errorf("nfs: %v: %w", err, fileshare.ErrStale)
	}
	p, err := share.PathOf(context.Background(), binary.BigEndian.Uint64(fh[8:]))
	if err != nil {
		return nil, nil, err
	}
	var path []string
	if p != "" {
		path = strings.Split(p, "/")
	}
	return &shareFS{share: share, ctx: context.Background()}, path, nil
}

// InvalidateHandle: handles live in the inode table, nothing to drop.
func (h *handler) InvalidateHandle(billy.Filesystem, []byte) error { return nil }

// HandleLimit is how many handles go-nfs may assume stay valid: all.
func (h *handler) HandleLimit() int { return 1 << 30 }
