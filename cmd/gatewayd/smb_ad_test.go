package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/api/smbapi"
	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/adtest"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// adClient runs smbclient against the gateway as a domain or local user,
// with Kerberos (required: no fallback to NTLM) or NTLM alone, and
// returns its output and whether it succeeded. Users are the domain's,
// but for root, the local account.
type adClient struct {
	addr, krb5, dir string
}

func (c adClient) run(t *testing.T, share, user string, kerberos bool, commands string) (string, bool) {
	t.Helper()
	host, port, _ := net.SplitHostPort(c.addr)
	args := []string{"-p", port, "-E"}
	if kerberos {
		// The ticket is for cifs/GATEWAYD, the machine account joined;
		// -I says where that name is.
		args = append(args, "//GATEWAYD/"+share, "-I", host, "-U", user+"@"+adtest.Realm+"%"+adtest.UserPassword, "--use-kerberos=required")
	} else {
		if user != "root" && !strings.Contains(user, `\`) { // root is the local account
			user = adtest.Workgroup + `\` + user
		}
		args = append(args, "//"+host+"/"+share, "-U", user+"%"+adtest.UserPassword, "--use-kerberos=disabled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "smbclient", append(args, "-c", commands)...)
	cmd.Env = append(os.Environ(), "KRB5_CONFIG="+c.krb5)
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	return string(out), err == nil && !strings.Contains(string(out), "NT_STATUS_")
}

func (c adClient) ok(t *testing.T, share, user string, kerberos bool, commands string) string {
	t.Helper()
	out, ok := c.run(t, share, user, kerberos, commands)
	if !ok {
		t.Fatalf("%s on %s (kerberos %v): %s failed:\n%s", user, share, kerberos, commands, out)
	}
	return out
}

// refused checks that user gets no further than want (an NT status).
func (c adClient) refused(t *testing.T, share, user string, kerberos bool, commands, want string) {
	t.Helper()
	out, ok := c.run(t, share, user, kerberos, commands)
	if ok || !strings.Contains(out, want) {
		t.Fatalf("%s on %s (kerberos %v): %s: want %s, got:\n%s", user, share, kerberos, commands, want, out)
	}
}

func smbStatus(t *testing.T, dir string) smbapi.SMBStatus {
	t.Helper()
	var st smbapi.SMBStatus
	if err := json.Unmarshal([]byte(mustRun(t, "smb", "status", "--data-dir", dir, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSMBActiveDirectory joins the daemon's Samba to a real domain (Samba's
// AD DC in a network namespace, internal/adtest) and checks, with
// smbclient, Kerberos and NTLM logons of domain users, per-share valid,
// invalid and admin users with a domain group, access-based enumeration,
// read-only over SMB, a restart, leaving the domain and the local users
// before and after.
func TestSMBActiveDirectory(t *testing.T) {
	t.Parallel() // mostly waiting on the DC and Samba
	smbtest.Require(t)
	adtest.Require(t)
	dc := adtest.StartDC(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("DC log:\n%s", dc.Log())
		}
	})
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	addr := freeport.Addr(t)
	wrap := dc.MemberWrap(t)
	d := serveWrapped(t, 5*time.Minute, wrap, dir, "--smb-listen", addr)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gatewayd log:\n%s", d.stderr)
		}
	})
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "f.txt"), []byte("from a domain user\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := adClient{addr: addr, krb5: dc.KRB5Config(t), dir: local}

	// Not joined: local users only.
	if st := smbStatus(t, dir); st.Domain.Joined {
		t.Fatalf("joined before smb join: %+v", st)
	}
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", adtest.UserPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "ad", "--protocols", "smb",
		"--smb-valid-users", `GWTEST\alice, @GWTEST\gwusers, root`)
	c.ok(t, "ad", "root", false, "ls")

	// Bad input is refused whole, with the reason, before anything runs.
	for _, bad := range []struct{ list, want string }{
		{"alice\n[global]", "control character"},
		{"x = y", `'='`},
		{"[global]", `'['`},
		{"%U", `'%'`},
		{`a"b`, `'"'`},
		{`GWTEST\a\b`, `'\\'`},
	} {
		mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "bad", "--protocols", "smb", "--smb-valid-users", bad.list), bad.want)
		mustFailClearly(t, run(t, nil, "share", "update", "--data-dir", dir, "ad", "--smb-admin-users", bad.list), bad.want)
	}
	mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "a]b", "--protocols", "smb"), "cannot be served over SMB")
	mustFailClearly(t, run(t, nil, "share", "update", "--data-dir", dir, "ad", "--smb-valid-users", "x;y"), `';'`)
	mustFailClearly(t, runInput(t, nil, adtest.AdminPassword+"\n", "smb", "join", "--data-dir", dir, "--realm", "GWTEST.LAN\nrealm = X", "--user", "Administrator"), "realm")
	mustFailClearly(t, runInput(t, nil, adtest.AdminPassword+"\n", "smb", "join", "--data-dir", dir, "--realm", adtest.Realm, "--user", "Administrator", "--idmap", "ldap"), "want rid or autorid")
	mustFailClearly(t, runInput(t, nil, "", "smb", "join", "--data-dir", dir, "--realm", adtest.Realm, "--user", "Administrator"), "no password")
	mustFailClearly(t, runInput(t, nil, "wrong-password\n", "smb", "join", "--data-dir", dir, "--realm", adtest.Realm, "--user", "Administrator"), "smb join")
	if conf, err := os.ReadFile(filepath.Join(dir, "smb", "smb.conf")); err != nil || strings.Contains(string(conf), "[bad]") || strings.Contains(string(conf), "security = ads") {
		t.Fatalf("smb.conf after refused requests (%v):\n%s", err, conf)
	}
	c.ok(t, "ad", "root", false, "ls")

	// Join: the DC is found through DNS, its NetBIOS name asked of it.
	r := runInput(t, nil, adtest.AdminPassword+"\n", "smb", "join", "--data-dir", dir, "--realm", strings.ToLower(adtest.Realm), "--user", "Administrator")
	if r.code != 0 {
		t.Fatalf("smb join: %s%s", r.stdout, r.stderr)
	}
	t.Logf("smb join:\n%s", r.stdout)
	st := smbStatus(t, dir)
	if !st.Domain.Joined || st.Domain.Realm != adtest.Realm || st.Domain.Workgroup != adtest.Workgroup || st.Domain.Trust != "ok" ||
		!strings.HasPrefix(strings.ToLower(st.Domain.DC), adtest.DCName+".") || st.Domain.IDMap != "rid" {
		t.Fatalf("smb status after join: %+v", st)
	}
	mustFailClearly(t, runInput(t, nil, adtest.AdminPassword+"\n", "smb", "join", "--data-dir", dir, "--realm", adtest.Realm, "--user", "Administrator"), "joined to a domain already")
	// Local users log in as the server's own domain.
	c.ok(t, "ad", `GATEWAYD\root`, false, "ls")

	// Domain users with Kerberos and NTLM; bob through the group gwusers.
	for _, krb := range []bool{true, false} {
		name := fmt.Sprintf("alice-%v.txt", krb)
		c.ok(t, "ad", "alice", krb, "put f.txt "+name+"; get "+name+" back.txt")
		if got, _ := os.ReadFile(filepath.Join(local, "back.txt")); string(got) != "from a domain user\n" {
			t.Fatalf("read back %q", got)
		}
		c.ok(t, "ad", "bob", krb, "ls "+name)
		// carol logs on (the domain knows her) and is refused the share.
		c.refused(t, "ad", "carol", krb, "ls", "NT_STATUS_ACCESS_DENIED")
	}
	if out := c.ok(t, "ad", "alice", false, "ls"); !strings.Contains(out, "alice-true.txt") || !strings.Contains(out, "alice-false.txt") {
		t.Fatalf("ls:\n%s", out)
	}
	// go-smb2 (NTLM) as a domain user: in, and carol refused.
	fs, done, err := smbtest.Dial(addr, "ad", adtest.Workgroup+`\alice`, adtest.UserPassword)
	if err != nil {
		t.Fatalf("go-smb2 as alice: %v", err)
	}
	if b, err := fs.ReadFile("alice-true.txt"); err != nil || string(b) != "from a domain user\n" {
		t.Fatalf("go-smb2 read as alice: %q, %v", b, err)
	}
	done()
	// go-smb2 turns STATUS_ACCESS_DENIED at the tree connect into
	// os.ErrPermission.
	if _, _, err := smbtest.Dial(addr, "ad", adtest.Workgroup+`\carol`, adtest.UserPassword); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("go-smb2 as carol: %v, want access denied", err)
	}

	// Invalid users win over valid ones; admin users; read-only over SMB.
	mustRun(t, "share", "update", "--data-dir", dir, "ad", "--smb-invalid-users", `GWTEST\bob`, "--smb-admin-users", `@GWTEST\gwusers`)
	c.refused(t, "ad", "bob", true, "ls", "NT_STATUS_ACCESS_DENIED")
	c.ok(t, "ad", "alice", true, "ls")
	mustRun(t, "share", "update", "--data-dir", dir, "ad", "--smb-invalid-users", "", "--read-only")
	c.ok(t, "ad", "bob", false, "ls")
	c.refused(t, "ad", "alice", true, "put f.txt ro.txt", "NT_STATUS_")
	mustRun(t, "share", "update", "--data-dir", dir, "ad", "--read-only=false")
	c.ok(t, "ad", "alice", true, "put f.txt rw.txt")
	info := shareInfo(t, dir, "ad")
	if o, err := smb.ReadShareOptions(info.Config); err != nil || info.ReadOnly || len(o.InvalidUsers) != 0 || len(o.AdminUsers) != 1 || len(o.ValidUsers) != 3 {
		t.Fatalf("share after updates: %+v (%v)", info.Config, err)
	}

	// Access-based enumeration: a share carol alone may use is listed to
	// her and hidden from alice.
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "carols", "--protocols", "smb", "--smb-valid-users", `GWTEST\carol`, "--smb-access-based-enum")
	list := func(user string) string {
		host, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command("smbclient", "-L", "//"+host, "-p", port, "-U", user+"%"+adtest.UserPassword, "--use-kerberos=disabled")
		b, _ := cmd.CombinedOutput()
		return string(b)
	}
	if out := list(`GWTEST\carol`); !strings.Contains(out, "carols") || strings.Contains(out, "NT_STATUS_") {
		t.Fatalf("carol's share list:\n%s", out)
	}
	if out := list(`GWTEST\alice`); strings.Contains(out, "carols") || !strings.Contains(out, "\tad ") {
		t.Fatalf("alice's share list:\n%s", out)
	}
	c.ok(t, "carols", "carol", true, "put f.txt c.txt")
	c.refused(t, "carols", "alice", true, "ls", "NT_STATUS_ACCESS_DENIED")

	// Membership survives a restart.
	d.stop(t)
	d = serveWrapped(t, 5*time.Minute, wrap, dir, "--smb-listen", addr)
	// winbindd, started again with the daemon, reaches the DC in its own
	// time: until then the trust check fails.
	smbtest.Eventually(t, "the domain trust checked after a restart", func() error {
		if st := smbStatus(t, dir); !st.Domain.Joined || st.Domain.Trust != "ok" {
			return fmt.Errorf("smb status after a restart: %+v", st)
		}
		return nil
	})
	c.ok(t, "ad", "alice", true, "get rw.txt back2.txt")

	// Leave: the machine account goes, local users log in again.
	mustFailClearly(t, run(t, nil, "smb", "leave", "--data-dir", dir), "give the user")
	if r := runInput(t, nil, adtest.AdminPassword+"\n", "smb", "leave", "--data-dir", dir, "--user", "Administrator"); r.code != 0 {
		t.Fatalf("smb leave: %s%s", r.stdout, r.stderr)
	}
	if st := smbStatus(t, dir); st.Domain.Joined {
		t.Fatalf("smb status after leave: %+v", st)
	}
	c.refused(t, "ad", "alice", false, "ls", "NT_STATUS_LOGON_FAILURE")
	c.ok(t, "ad", "root", false, "get rw.txt back3.txt")
	mustFailClearly(t, runInput(t, nil, adtest.AdminPassword+"\n", "smb", "leave", "--data-dir", dir, "--user", "Administrator"), "not joined")

	// Join again, with autorid and the DC named: the machine account is
	// made anew and domain users get ids from autorid's ranges.
	r = runInput(t, nil, adtest.AdminPassword+"\n", "smb", "join", "--data-dir", dir, "--realm", adtest.Realm, "--user", "Administrator",
		"--idmap", "autorid", "--idmap-low", "2000000", "--idmap-high", "2999999", "--dc", dc.IP)
	if r.code != 0 {
		t.Fatalf("smb join --idmap autorid: %s%s", r.stdout, r.stderr)
	}
	if st := smbStatus(t, dir); !st.Domain.Joined || st.Domain.IDMap != "autorid" || st.Domain.IDRange != "2000000-2999999" || st.Domain.Trust != "ok" {
		t.Fatalf("smb status after the autorid join: %+v", st)
	}
	c.ok(t, "ad", "bob", true, "get rw.txt back4.txt")
	c.refused(t, "ad", "carol", false, "ls", "NT_STATUS_ACCESS_DENIED")
	if r := runInput(t, nil, adtest.AdminPassword+"\n", "smb", "leave", "--data-dir", dir, "--user", "Administrator"); r.code != 0 {
		t.Fatalf("smb leave: %s%s", r.stdout, r.stderr)
	}

	// Nothing of Samba's outlives the daemon: smbd, winbindd and the RPC
	// servers smbd started on demand (in sessions of their own).
	conf := filepath.Join(dir, "smb", "smb.conf")
	if len(smb.Processes(conf)) == 0 {
		t.Fatal("no Samba process found on the daemon's smb.conf while it serves")
	}
	d.stop(t)
	if left := smb.Processes(conf); len(left) != 0 {
		t.Fatalf("Samba processes left after the daemon stopped: %v", left)
	}
}
