package smb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/fileshare"
)

// InstallHint says how to get Samba where it is missing.
const InstallHint = "apt-get install samba smbclient"

// Options wire a Server to the gateway.
type Options struct {
	Settings Settings
	// Smbd is the smbd binary; empty looks for smbd on PATH and in
	// /usr/sbin. smbpasswd and pdbedit are looked for beside it, then on PATH.
	Smbd     string
	MountDir string // where the shares' views are mounted, one directory each
	Shares   *fileshare.Manager
	Clock    clock.Clock
	Logger   *slog.Logger
	// Audit gets the calls that open or change a file of a share with
	// auditing on (audit.go); nil records none.
	Audit *audit.Log
}

// Server supervises smbd and the views it serves.
type Server struct {
	opts                     Options
	smbd, smbpasswd, pdbedit string
	net, winbindd, wbinfo    string // domain membership (domain.go)
	log                      *slog.Logger
	joinMu                   sync.Mutex // one join or leave at a time

	mu        sync.Mutex
	views     map[string]*View // share name -> mounted view
	proc      *os.Process      // running smbd, nil when none
	state     string           // what it is doing when not serving
	serving   int              // pid of the smbd accepting connections
	reload    bool             // smb.conf changed before smbd could take SIGHUP
	started   bool             // the supervisor loop runs
	stopping  bool
	stop      chan struct{}
	done      chan struct{}
	restarts  int
	ready     chan struct{} // closed when smbd first accepts connections
	readyOnce sync.Once
	confs     []ShareConf // the shares in smb.conf
	domain    *Domain     // the domain joined, nil when none
	planned   string      // why smbd is being restarted on purpose
	wb        *winbind    // winbindd under supervision while joined

	// audited are auditRoot's shares.
	audited atomic.Pointer[map[string][2]string]
}

// ErrNotInstalled is returned by New when smbd cannot be found.
var ErrNotInstalled = errors.New("Samba's smbd is not installed")

// FindSmbd returns the smbd binary to run: path if set, else smbd on PATH
// or in /usr/sbin.
func FindSmbd(path string) (string, error) {
	if path != "" {
		if _, err := exec.LookPath(path); err != nil {
			return "", fmt.Errorf("smb.smbd %s: %w (install it: %s)", path, ErrNotInstalled, InstallHint)
		}
		return path, nil
	}
	if p, err := exec.LookPath("smbd"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/smbd"); err == nil {
		return "/usr/sbin/smbd", nil
	}
	return "", fmt.Errorf("%w (install it: %s)", ErrNotInstalled, InstallHint)
}

// neededModules are the vfs modules smb.conf names: without one, smbd
// refuses every tree connect ("vfs_init failed"), so the gateway says so
// at start instead.
var neededModules = []string{"acl_xattr", "streams_xattr", "full_audit"}

// ModulesInstallHint installs neededModules on Debian and Ubuntu.
const ModulesInstallHint = "apt-get install samba-vfs-modules"

// checkModules finds neededModules in smbd's module directory (smbd -b).
// An smbd that does not say where its modules are is taken as it is.
func checkModules(smbd string) error {
	out, err := exec.Command(smbd, "-b").Output()
	if err != nil {
		return nil
	}
	var dir string
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "MODULESDIR" {
			dir = strings.TrimSpace(v)
		}
	}
	if dir == "" {
		return nil
	}
	var missing []string
	for _, m := range neededModules {
		if _, err := os.Stat(filepath.Join(dir, "vfs", m+".so")); err != nil {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("Samba's vfs modules %s are not in %s, and smbd refuses every share without them (install them: %s)",
			strings.Join(missing, ", "), filepath.Join(dir, "vfs"), ModulesInstallHint)
	}
	return nil
}

func findTool(smbd, name string) string {
	if p := filepath.Join(filepath.Dir(smbd), name); isExec(p) {
		return p
	}
	for _, d := range []string{"/usr/bin", "/usr/sbin"} {
		if p := filepath.Join(d, name); isExec(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// New prepares the server: it finds Samba, removes what a killed gatewayd
// left (smbd processes started on this state directory, FUSE mounts below
// MountDir) and writes smb.conf. smbd starts with the first share served
// over SMB (Sync).
func New(opts Options) (*Server, error) {
	if err := opts.Settings.Normalize(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	smbd, err := FindSmbd(opts.Smbd)
	if err != nil {
		return nil, err
	}
	if err := checkModules(smbd); err != nil {
		return nil, err
	}
	s := &Server{
		opts: opts, smbd: smbd, smbpasswd: findTool(smbd, "smbpasswd"), pdbedit: findTool(smbd, "pdbedit"),
		net: findTool(smbd, "net"), winbindd: findTool(smbd, "winbindd"), wbinfo: findTool(smbd, "wbinfo"),
		log: opts.Logger, views: map[string]*View{}, state: "no share is served over SMB yet",
		stop: make(chan struct{}), done: make(chan struct{}), ready: make(chan struct{}),
	}
	if n := KillStale(s.opts.Settings.ConfPath()); n > 0 {
		s.log.Warn("smb: stopped smbd processes a previous gatewayd left running", "processes", n)
	}
	if err := makeMountRoot(opts.MountDir); err != nil {
		return nil, err
	}
	// Below the state directory too: views were mounted there (smb/mnt)
	// before MountRoot moved them out of a private data directory.
	for _, dir := range []string{opts.MountDir, opts.Settings.StateDir} {
		cleaned, err := CleanStale(dir)
		if err != nil {
			return nil, err
		}
		for _, d := range cleaned {
			s.log.Warn("smb: removed a stale FUSE mount", "dir", d)
		}
	}
	if s.domain, err = loadDomain(s.domainPath()); err != nil {
		return nil, err
	}
	if err := writeConf(opts.Settings, s.domain, nil); err != nil {
		return nil, fmt.Errorf("smb.conf: %w", err)
	}
	if s.domain != nil {
		s.startWinbindd()
	}
	return s, nil
}

// writeConfWith rewrites smb.conf with the shares served now, as a member
// of d (nil: standalone).
func (s *Server) writeConfWith(d *Domain) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeConf(s.opts.Settings, d, s.confs); err != nil {
		return fmt.Errorf("smb.conf: %w", err)
	}
	return nil
}

// restartSmbd restarts a running smbd (a change of server role needs a
// new process, not a reload) and returns once the new one accepts
// connections, or ctx ends. Clients reconnect.
func (s *Server) restartSmbd(ctx context.Context, why string) error {
	s.mu.Lock()
	if s.proc == nil {
		s.mu.Unlock()
		return nil
	}
	old := s.proc.Pid
	s.planned = why
	_ = syscall.Kill(-old, syscall.SIGTERM)
	s.mu.Unlock()
	for {
		s.mu.Lock()
		up := s.proc != nil && s.proc.Pid != old && s.serving == s.proc.Pid
		s.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("smb: smbd not accepting connections again after a restart (%s): %w", s.State(), ctx.Err())
		case <-s.opts.Clock.After(100 * time.Millisecond):
		}
	}
}

// Addr is where smbd listens.
func (s *Server) Addr() string { return s.opts.Settings.Listen }

// ConfPath is the generated smb.conf.
func (s *Server) ConfPath() string { return s.opts.Settings.ConfPath() }

// State says what the server is doing, for status. It says serving once
// the supervisor has connected to smbd itself, which may be a little after
// the first client did.
func (s *Server) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.Pid != s.serving {
		return s.state
	}
	st := fmt.Sprintf("serving %d shares (smbd pid %d", len(s.views), s.serving)
	if s.restarts > 0 {
		st += fmt.Sprintf(", restarted %d times", s.restarts)
	}
	return st + ")"
}

// Sync makes smbd serve exactly the shares that list smb among their
// protocols: views are mounted for new ones and unmounted for removed
// ones, smb.conf is rewritten and smbd started or told to reload. Shares
// named in except are left out (they are about to be deleted).
func (s *Server) Sync(ctx context.Context, except ...string) error {
	started, err := s.sync(except)
	if err != nil || !started {
		return err
	}
	// The first start: answer once smbd accepts connections.
	select {
	case <-s.ready:
		return nil
	case <-s.done:
		return fmt.Errorf("smb: smbd stopped: %s", s.State())
	case <-ctx.Done():
		return fmt.Errorf("smb: smbd not accepting connections yet (%s): %w", s.State(), ctx.Err())
	}
}

// sync does Sync's work; it reports whether it started smbd.
func (s *Server) sync(except []string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false, errors.New("smb: shutting down")
	}
	want := map[string]*fileshare.Share{}
	folded := map[string]string{} // SMB share names ignore case
	var errs []error
	list := s.opts.Shares.List()
	// Shares served already keep their name against newcomers.
	sort.SliceStable(list, func(i, j int) bool { return s.views[list[i].Name] != nil && s.views[list[j].Name] == nil })
	for _, c := range list {
		if !c.Serves("smb") || slices.Contains(except, c.Name) {
			continue
		}
		if other, dup := folded[strings.ToLower(c.Name)]; dup {
			errs = append(errs, fmt.Errorf("share %s: not served over SMB: its name differs from share %s only in case", c.Name, other))
			continue
		}
		if sh, err := s.opts.Shares.Get(c.Name); err == nil {
			want[c.Name] = sh
			folded[strings.ToLower(c.Name)] = c.Name
		}
	}
	for name, sh := range want {
		if s.views[name] != nil {
			continue
		}
		dir := filepath.Join(s.opts.MountDir, name)
		if err := ensureDir(dir); err != nil {
			errs = append(errs, fmt.Errorf("share %s: mount point: %w", name, err))
			continue
		}
		v, err := Mount(sh, dir, s.log.With("share", name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.views[name] = v
		s.log.Info("smb: share view mounted", "share", name, "dir", dir)
	}
	var confs []ShareConf
	var gone []*View
	audited := map[string][2]string{} // lower-case name: name, view directory
	for name, v := range s.views {
		if want[name] == nil {
			gone = append(gone, v)
			delete(s.views, name)
			continue
		}
		c := want[name].Config()
		o, err := ReadShareOptions(c)
		sc := ShareConf{Name: name, Path: v.Dir(), ReadOnly: c.ReadOnly, Guest: o.Guest, Encrypt: o.Encrypt, UID: c.UID, GID: c.GID, Access: o.Access}
		if err == nil {
			err = sc.check()
		}
		if err != nil {
			// Never reached through the admin API, which checks first.
			errs = append(errs, fmt.Errorf("share %s: not served over SMB: %w", name, err))
			continue
		}
		confs = append(confs, sc)
		confs[len(confs)-1].Audit = c.Audit && s.opts.Audit != nil
		// Served over NFS too, or asked for (other applications write
		// the bucket): a file may change under an SMB client's cache at
		// any time, so its oplocks are ones the view can break.
		confs[len(confs)-1].KernelOplocks = c.Serves("nfs") || o.KernelOplocks
		if c.Audit {
			audited[strings.ToLower(name)] = [2]string{name, v.Dir()}
		}
	}
	s.confs = confs
	s.audited.Store(&audited)
	if err := writeConf(s.opts.Settings, s.domain, confs); err != nil {
		return false, fmt.Errorf("smb.conf: %w", err)
	}
	start := len(confs) > 0 && !s.started
	if start {
		s.started = true
		go s.supervise()
	} else if s.proc != nil {
		s.reloadLocked()
	}
	// Views of removed shares go after smbd has let go of them.
	for _, v := range gone {
		if err := v.Unmount(); err != nil {
			errs = append(errs, err)
		}
	}
	return start, errors.Join(errs...)
}

// supervise runs smbd until Close, restarting it when it exits.
func (s *Server) supervise() {
	defer close(s.done)
	s.keepRunning("smbd", s.stop, s.runOnce, func(err error) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if why := s.planned; why != "" {
			s.planned = ""
			s.state = "restarting smbd: " + why
			s.log.Info("smb: smbd restarted", "why", why)
			return true
		}
		s.restarts++
		s.state = fmt.Sprintf("smbd exited (%v); restarting it", err)
		return false
	})
}

// keepRunning calls run until stop closes, again each time it returns:
// at once after a planned exit (exited says true), else after a backoff
// of 1 s doubling to 30 s while the daemon keeps dying. The daemons get
// SIGKILL when the thread that started them ends, i.e. when gatewayd
// dies: the thread stays locked to this goroutine.
func (s *Server) keepRunning(name string, stop <-chan struct{}, run func() error, exited func(error) bool) {
	runtime.LockOSThread()
	backoff := time.Second
	for {
		startedAt := s.opts.Clock.Now()
		err := run()
		select {
		case <-stop:
			return
		default:
		}
		if exited(err) {
			continue
		}
		s.log.Error("smb: "+name+" exited; restarting it", "err", err, "after", backoff)
		if s.opts.Clock.Now().Sub(startedAt) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-stop:
			return
		case <-s.opts.Clock.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// runOnce starts smbd and waits for it to exit.
func (s *Server) runOnce() error {
	cmd, out, err := s.daemonCmd(s.smbd, auditDebugLevel)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return errors.New("stopping")
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start %s: %w", s.smbd, err)
	}
	s.proc = cmd.Process
	s.reload = false // it reads smb.conf as it is now
	s.state = "starting smbd"
	s.mu.Unlock()
	s.log.Info("smb: smbd started", "pid", cmd.Process.Pid, "listen", s.Addr(), "conf", s.ConfPath())
	ready := make(chan struct{})
	go s.waitReady(cmd.Process.Pid, ready)
	logLines(out, s.log, s.auditLines)
	err = cmd.Wait()
	close(ready)
	s.mu.Lock()
	s.proc = nil
	s.mu.Unlock()
	// Children left in smbd's process group go with it, and the RPC
	// servers it started.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	killRPCHelpers(s.ConfPath())
	if err == nil {
		err = errors.New("exit status 0")
	}
	return err
}

// daemonCmd prepares a Samba daemon (smbd, winbindd) on the generated
// smb.conf, in its own process group, its output to be logged.
func (s *Server) daemonCmd(bin, debugLevel string) (*exec.Cmd, io.Reader, error) {
	cmd := exec.Command(bin, "--foreground", "--no-process-group", "--debug-stdout", "--debuglevel="+debugLevel, "-s", s.ConfPath())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = cmd.Stdout
	return cmd, out, nil
}

// reloadLocked tells smbd to reread smb.conf: SIGHUP, which it passes on
// to its children. Until smbd has set up its handler, SIGHUP kills it (a
// share created just after the first one did, in a CI run), so the
// reload waits for waitReady. A new smbd reads the current smb.conf.
func (s *Server) reloadLocked() {
	if s.proc == nil || s.proc.Pid != s.serving {
		s.reload = true
		return
	}
	s.reload = false
	_ = s.proc.Signal(syscall.SIGHUP)
}

// catchesHangup says whether process pid has a handler for SIGHUP (bit 0
// of SigCgt in its status); an unreadable status says yes, as smbd that
// accepts connections has always set one up.
func catchesHangup(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if mask, found := strings.CutPrefix(line, "SigCgt:"); found {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err != nil || m&1 != 0
		}
	}
	return true
}

// waitReady marks the server serving once smbd accepts connections and
// takes SIGHUP, and sends the reload asked for meanwhile.
func (s *Server) waitReady(pid int, stop <-chan struct{}) {
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		if err == nil && catchesHangup(pid) {
			s.mu.Lock()
			s.serving = pid
			if s.reload {
				s.reloadLocked()
			}
			s.mu.Unlock()
			s.readyOnce.Do(func() { close(s.ready) })
			return
		}
		select {
		case <-stop:
			return
		case <-s.opts.Clock.After(100 * time.Millisecond):
		}
	}
}

// logLines logs a Samba daemon's output, but for the lines a divert
// takes (the audit module's: auditLines).
func logLines(r io.Reader, log *slog.Logger, divert ...func(line string) bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, d := range divert {
			if d(line) {
				continue lines
			}
		}
		if line != "" {
			log.Info("smbd: " + line)
		}
	}
}

// auditLines takes the audit module's lines to the audit log.
func (s *Server) auditLines(line string) bool {
	rec, isAudit := auditLine(line, s.auditRoot)
	if isAudit && rec.Share != "" {
		s.opts.Audit.Write(rec)
	}
	return isAudit
}

// auditRoot is the name and view directory of an SMB share with auditing
// on, by its name as smbd gives it (case ignored). It takes no lock smbd
// may wait on: sync holds s.mu while smbd runs.
func (s *Server) auditRoot(share string) (string, string) {
	if m := s.audited.Load(); m != nil {
		if v, found := (*m)[strings.ToLower(share)]; found {
			return v[0], v[1]
		}
	}
	return "", ""
}

// Close stops smbd (SIGTERM, then SIGKILL) and unmounts the views.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	started := s.started
	close(s.stop)
	if s.proc != nil {
		_ = s.proc.Signal(syscall.SIGTERM)
	}
	proc := s.proc
	s.mu.Unlock()
	if started {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			if proc != nil {
				_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
			}
			<-s.done
		}
	}
	s.stopWinbindd()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, v := range s.views {
		if err := v.Unmount(); err != nil {
			errs = append(errs, err)
		}
		delete(s.views, name)
	}
	removeMountDirs(s.opts.MountDir)
	s.state = "stopped"
	return errors.Join(errs...)
}

// KillStale kills Samba's processes still running on conf: those a killed
// gatewayd left (smbd itself dies with gatewayd, but the processes it
// forked for client connections may not). It returns how many it found.
func KillStale(conf string) int {
	pids := Processes(conf)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// Processes lists Samba's processes running on conf (sambaDaemon).
func Processes(conf string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 2 || !sambaDaemon(filepath.Base(args[0])) {
			continue
		}
		for i := 1; i < len(args); i++ {
			if args[i] == "--configfile="+conf || args[i] == "-s" && i+1 < len(args) && args[i+1] == conf {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// sambaDaemon says whether a program is one of Samba's daemons: smbd,
// winbindd, and the RPC servers smbd starts on demand (samba-dcerpcd and
// its rpcd_* workers, in a session of their own: they outlive smbd).
func sambaDaemon(name string) bool {
	return name == "smbd" || name == "winbindd" || name == "samba-dcerpcd" || strings.HasPrefix(name, "rpcd_")
}

// killRPCHelpers kills the RPC servers smbd started on conf: they left
// its process group and would keep running after it.
func killRPCHelpers(conf string) {
	for _, pid := range Processes(conf) {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		name, _, _ := strings.Cut(string(b), "\x00")
		if base := filepath.Base(name); base == "samba-dcerpcd" || strings.HasPrefix(base, "rpcd_") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
