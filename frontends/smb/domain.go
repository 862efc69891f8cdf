package smb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
)

// DomainInstallHint says how to get what Active Directory membership needs.
const DomainInstallHint = "apt-get install winbind libnss-winbind krb5-user"

// ErrBadDomain is returned for a join or leave request that cannot work
// as given (bad realm, user, password, idmap; winbind missing).
var ErrBadDomain = errkind.Mark(errkind.Permanent, errors.New("invalid domain request"))

// ErrNotJoined is returned by Leave when no domain is joined.
var ErrNotJoined = errkind.Mark(errkind.NotFound, errors.New("not joined to a domain"))

// ErrJoined is returned by Join when a domain is joined already.
var ErrJoined = errkind.Mark(errkind.Permanent, errors.New("joined to a domain already (leave it first)"))

// Domain is the Active Directory domain the gateway's Samba is a member
// of; it is kept in domain.json in the state directory. The machine
// account's secret is in Samba's secrets.tdb beside it.
type Domain struct {
	Realm     string `json:"realm"`     // the DNS domain, upper case: EXAMPLE.COM
	Workgroup string `json:"workgroup"` // the NetBIOS domain name: EXAMPLE
	// IDMap is how winbind gives domain users and groups Unix ids: "rid"
	// (the id is the low end of the range plus the account's RID, the same
	// on every member using the same range) or "autorid" (ranges handed out
	// per domain, trusted domains included).
	IDMap   string    `json:"idmap"`
	IDLow   uint32    `json:"id_low"`
	IDHigh  uint32    `json:"id_high"`
	DC      string    `json:"dc,omitempty"` // the DC to use; empty: found through DNS
	Joined  time.Time `json:"joined"`
	Account string    `json:"account"` // the machine account: NETBIOSNAME$
}

// JoinRequest asks to join a domain.
type JoinRequest struct {
	Realm     string `json:"realm"`
	Workgroup string `json:"workgroup,omitempty"` // empty: asked of the DC
	User      string `json:"user"`                // a domain user allowed to join machines
	Password  string `json:"password"`
	IDMap     string `json:"idmap,omitempty"` // rid (default) or autorid
	IDLow     uint32 `json:"id_low,omitempty"`
	IDHigh    uint32 `json:"id_high,omitempty"`
	DC        string `json:"dc,omitempty"`
}

// LeaveRequest asks to leave the domain.
type LeaveRequest struct {
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// Force forgets the domain here even when the DC cannot remove the
	// machine account (unreachable, or no user given).
	Force bool `json:"force,omitempty"`
}

// DomainStatus is what smb status says about domain membership.
type DomainStatus struct {
	Joined    bool   `json:"joined"`
	Realm     string `json:"realm,omitempty"`
	Workgroup string `json:"workgroup,omitempty"`
	IDMap     string `json:"idmap,omitempty"`
	IDRange   string `json:"id_range,omitempty"`
	Account   string `json:"account,omitempty"`
	Trust     string `json:"trust,omitempty"` // "ok" or why the machine account's secret does not check
	DC        string `json:"dc,omitempty"`    // the domain controller winbind uses
	Winbindd  string `json:"winbindd,omitempty"`
}

// Default idmap ranges: well above the host's own accounts.
const (
	defaultIDLow  = 100000
	defaultIDHigh = 1999999
)

var (
	realmRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$`)
	hostRE  = regexp.MustCompile(`^[A-Za-z0-9.:-]{1,253}$`)
)

func badDomain(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadDomain, fmt.Sprintf(format, args...))
}

func checkPassword(pw string) error {
	if pw == "" || strings.ContainsAny(pw, "\n\r\x00") {
		return badDomain("the password must be non-empty and on one line")
	}
	return nil
}

// normalize checks r and fills its defaults.
func (r *JoinRequest) normalize() error {
	r.Realm = strings.ToUpper(strings.TrimSpace(r.Realm))
	if len(r.Realm) > 253 || !realmRE.MatchString(r.Realm) {
		return badDomain("realm %s: want the domain's DNS name, e.g. EXAMPLE.COM", strconv.Quote(r.Realm))
	}
	r.Workgroup = strings.ToUpper(strings.TrimSpace(r.Workgroup))
	if r.Workgroup != "" {
		if why := checkDomainName(r.Workgroup); why != "" {
			return badDomain("workgroup %s: the NetBIOS domain name, 1 to 15 letters, digits, '-', '_' or '.'", strconv.Quote(r.Workgroup))
		}
	}
	if why := checkAccessName(r.User); why != "" {
		return badDomain("user %s: %s", strconv.Quote(r.User), why)
	}
	if err := checkPassword(r.Password); err != nil {
		return err
	}
	switch r.IDMap {
	case "":
		r.IDMap = "rid"
	case "rid", "autorid":
	default:
		return badDomain("idmap %s: want rid or autorid", strconv.Quote(r.IDMap))
	}
	if r.IDLow == 0 && r.IDHigh == 0 {
		r.IDLow, r.IDHigh = defaultIDLow, defaultIDHigh
	}
	// 3000-7999 is the default range for the well-known SIDs (rid).
	if r.IDLow < 10000 || r.IDHigh <= r.IDLow || r.IDHigh-r.IDLow < 100000 {
		return badDomain("id range %d-%d: want at least 100000 ids from 10000 up", r.IDLow, r.IDHigh)
	}
	if r.DC != "" && !hostRE.MatchString(r.DC) {
		return badDomain("dc %s: want a host name or an address", strconv.Quote(r.DC))
	}
	return nil
}

// conf writes d's [global] options through w.
func (d *Domain) conf(w func(k, v string)) {
	w("server role", "member server")
	w("security", "ads")
	w("realm", d.Realm)
	w("workgroup", d.Workgroup)
	if d.DC != "" {
		w("password server", d.DC)
	}
	rng := fmt.Sprintf("%d-%d", d.IDLow, d.IDHigh)
	if d.IDMap == "autorid" {
		w("idmap config * : backend", "autorid")
		w("idmap config * : range", rng)
	} else {
		// Well-known SIDs and other domains' accounts.
		w("idmap config * : backend", "tdb")
		w("idmap config * : range", "3000-7999")
		w("idmap config "+d.Workgroup+" : backend", "rid")
		w("idmap config "+d.Workgroup+" : range", rng)
	}
	// Domain accounts are DOMAIN\name, apart from the local ones.
	w("winbind use default domain", "no")
	w("template shell", "/usr/sbin/nologin")
	w("template homedir", "/nonexistent")
}

func (s *Server) domainPath() string { return s.opts.Settings.Path("domain.json") }

// loadDomain reads domain.json; nil when no domain is joined.
func loadDomain(path string) (*Domain, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d Domain
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d.Realm == "" || checkDomainName(d.Workgroup) != "" {
		return nil, fmt.Errorf("%s: no realm or a bad workgroup", path)
	}
	return &d, nil
}

func saveDomain(path string, d *Domain) error {
	if d == nil {
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// nsswitchPath is where the C library reads its name services.
var nsswitchPath = "/etc/nsswitch.conf"

// checkNSS says whether the host resolves domain users and groups through
// winbind: smbd looks up every domain user's Unix account by name.
func checkNSS() error {
	b, err := os.ReadFile(nsswitchPath)
	if err != nil {
		return badDomain("%v: smbd finds domain users through the name service switch (%s, then add winbind to its passwd and group lines)", err, DomainInstallHint)
	}
	need := map[string]bool{"passwd": false, "group": false}
	for _, line := range strings.Split(string(b), "\n") {
		db, srcs, ok := strings.Cut(line, ":")
		if _, want := need[strings.TrimSpace(db)]; ok && want {
			for _, f := range strings.Fields(srcs) {
				if f == "winbind" {
					need[strings.TrimSpace(db)] = true
				}
			}
		}
	}
	for _, db := range []string{"passwd", "group"} {
		if !need[db] {
			return badDomain("%s has no winbind on its %s line: smbd finds domain users and groups through it (%s, then add winbind to the passwd and group lines)", nsswitchPath, db, DomainInstallHint)
		}
	}
	return nil
}

// domainTools finds net, winbindd and wbinfo.
func (s *Server) domainTools() error {
	for _, t := range []string{s.net, s.winbindd, s.wbinfo} {
		if !isExec(t) {
			return badDomain("%s not found: domain membership needs Samba's winbind (%s)", t, DomainInstallHint)
		}
	}
	return nil
}

// Join makes the gateway's Samba a member of an Active Directory domain
// (net ads join with r's user, who must be allowed to join machines),
// starts winbindd and restarts smbd in the member role. Domain users and
// groups then log in with Kerberos or NTLM; local users stay in the
// passdb and log in as NETBIOSNAME\user.
func (s *Server) Join(ctx context.Context, r JoinRequest) (DomainStatus, error) {
	if err := r.normalize(); err != nil {
		return DomainStatus{}, err
	}
	if err := s.domainTools(); err != nil {
		return DomainStatus{}, err
	}
	if err := checkNSS(); err != nil {
		return DomainStatus{}, err
	}
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	if s.currentDomain() != nil {
		return DomainStatus{}, ErrJoined
	}
	d := &Domain{Realm: r.Realm, Workgroup: r.Workgroup, IDMap: r.IDMap, IDLow: r.IDLow, IDHigh: r.IDHigh, DC: r.DC,
		Account: s.opts.Settings.NetbiosName + "$"}
	dcArgs := []string{}
	if r.DC != "" {
		dcArgs = []string{"-S", r.DC}
	}
	if d.Workgroup == "" {
		// Ask the DC (CLDAP) with a configuration naming the realm alone.
		probe := *d
		probe.Workgroup = "WORKGROUP"
		if err := s.writeConfWith(&probe); err != nil {
			return DomainStatus{}, err
		}
		out, err := s.tool(ctx, s.net, "", append([]string{"ads", "workgroup", "-s", s.ConfPath()}, dcArgs...)...)
		if err == nil {
			for _, line := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Workgroup:"); ok {
					d.Workgroup = strings.ToUpper(strings.TrimSpace(v))
				}
			}
		}
		if err != nil || checkDomainName(d.Workgroup) != "" {
			_ = s.writeConfWith(nil)
			return DomainStatus{}, fmt.Errorf("smb join: no domain controller of %s told its NetBIOS name (give --workgroup, check DNS): %v", r.Realm, err)
		}
	}
	if err := s.writeConfWith(d); err != nil {
		return DomainStatus{}, err
	}
	args := append([]string{"ads", "join", "-s", s.ConfPath(), "-U", r.User, "--no-dns-updates"}, dcArgs...)
	err := s.retryDropped(ctx, "join "+r.Realm, func() error {
		_, err := s.tool(ctx, s.net, r.Password+"\n", args...)
		return err
	})
	if err != nil {
		_ = s.writeConfWith(nil)
		return DomainStatus{}, fmt.Errorf("smb join %s: %w", r.Realm, err)
	}
	d.Joined = s.opts.Clock.Now().UTC()
	if err := saveDomain(s.domainPath(), d); err != nil {
		return DomainStatus{}, err
	}
	s.mu.Lock()
	s.domain = d
	s.mu.Unlock()
	s.log.Info("smb: joined the domain", "realm", d.Realm, "workgroup", d.Workgroup, "idmap", d.IDMap)
	s.startWinbindd()
	if err := s.waitWinbindd(ctx); err != nil {
		return s.DomainStatus(ctx), err
	}
	if err := s.restartSmbd(ctx, "joined domain "+d.Realm); err != nil {
		return s.DomainStatus(ctx), err
	}
	return s.DomainStatus(ctx), nil
}

// joinAttempts bounds the tries of a domain operation whose DC dropped
// the connection; joinRetryWait is the first wait between two, doubled
// after each.
const joinAttempts = 3

var joinRetryWait = 2 * time.Second

// retryDropped runs do until it succeeds, fails in a way another try
// will not change, or has run joinAttempts times. A busy or restarting
// DC drops a join's RPC connection ("Error connecting to SAM pipe"), and
// the join then succeeds when tried again; a refused password or account
// is not tried again.
func (s *Server) retryDropped(ctx context.Context, what string, do func() error) error {
	wait := joinRetryWait
	for attempt := 1; ; attempt++ {
		err := do()
		if err == nil || attempt == joinAttempts || !dcDropped(err) {
			return err
		}
		s.log.Warn("smb: the domain controller dropped the connection; trying again", "op", what, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-s.opts.Clock.After(wait):
		}
		wait *= 2
	}
}

// dcDropped reports whether a domain tool failed because the DC closed or
// reset the connection or did not answer in time: the NT status codes
// Samba's tools print for it.
func dcDropped(err error) bool {
	msg := err.Error()
	for _, status := range []string{"NT_STATUS_CONNECTION_DISCONNECTED", "NT_STATUS_CONNECTION_RESET", "NT_STATUS_IO_TIMEOUT"} {
		if strings.Contains(msg, status) {
			return true
		}
	}
	return false
}

// Leave removes the machine account from the domain (net ads leave with
// r's user), stops winbindd and restarts smbd as a standalone server with
// its local users.
func (s *Server) Leave(ctx context.Context, r LeaveRequest) error {
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	d := s.currentDomain()
	if d == nil {
		return ErrNotJoined
	}
	if r.User == "" && !r.Force {
		return badDomain("give the user allowed to remove the machine account, or force to forget the domain here only")
	}
	if r.User != "" {
		if why := checkAccessName(r.User); why != "" {
			return badDomain("user %s: %s", strconv.Quote(r.User), why)
		}
		if err := checkPassword(r.Password); err != nil {
			return err
		}
		args := []string{"ads", "leave", "-s", s.ConfPath(), "-U", r.User}
		if d.DC != "" {
			args = append(args, "-S", d.DC)
		}
		if _, err := s.tool(ctx, s.net, r.Password+"\n", args...); err != nil {
			if !r.Force {
				return fmt.Errorf("smb leave %s: %w", d.Realm, err)
			}
			s.log.Warn("smb: the domain did not remove the machine account; forgetting the domain anyway", "err", err)
		}
	}
	if err := saveDomain(s.domainPath(), nil); err != nil {
		return err
	}
	s.mu.Lock()
	s.domain = nil
	s.mu.Unlock()
	s.stopWinbindd()
	if err := s.writeConfWith(nil); err != nil {
		return err
	}
	s.log.Info("smb: left the domain", "realm", d.Realm)
	return s.restartSmbd(ctx, "left domain "+d.Realm)
}

// DomainStatus reports the membership: the domain, whether the machine
// account's secret checks with the domain (wbinfo -t) and the DC winbind
// talks to (wbinfo --ping-dc).
func (s *Server) DomainStatus(ctx context.Context) DomainStatus {
	d := s.currentDomain()
	if d == nil {
		return DomainStatus{}
	}
	st := DomainStatus{Joined: true, Realm: d.Realm, Workgroup: d.Workgroup, IDMap: d.IDMap,
		IDRange: fmt.Sprintf("%d-%d", d.IDLow, d.IDHigh), Account: d.Account, Winbindd: s.winbinddState()}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := s.tool(ctx, s.wbinfo, "", "-t"); err != nil {
		st.Trust = "failed: " + err.Error()
	} else {
		st.Trust = "ok"
	}
	out, err := s.tool(ctx, s.wbinfo, "", "--ping-dc")
	if err != nil {
		st.DC = "unreachable: " + err.Error()
	} else if m := pingDCRE.FindStringSubmatch(out); m != nil {
		st.DC = m[1]
	} else {
		st.DC = strings.TrimSpace(out)
	}
	return st
}

// pingDCRE finds the DC in wbinfo --ping-dc's answer: ... dc connection
// to "dc1.example.com" succeeded.
var pingDCRE = regexp.MustCompile(`dc connection to "([^"]+)"`)

// waitWinbindd returns once winbindd answers for the domain, or ctx ends.
func (s *Server) waitWinbindd(ctx context.Context) error {
	for {
		if _, err := s.tool(ctx, s.wbinfo, "", "-P"); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("smb: joined, but winbindd does not reach the domain yet: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-s.opts.Clock.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) currentDomain() *Domain {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.domain
}
