package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

var ownerSID = regexp.MustCompile(`(?m)^OWNER:(S-1-[0-9-]+)$`)

// TestSMBACLDenies has NT ACLs set with smbcacls deny users other than
// root on a share whose owner is not root (smbd works in a share as its
// owner, and grants root every access whatever an ACL says): a file whose
// data the ACL denies cannot be read, a file the ACL makes read-only reads
// and cannot be written, and a file without an ACL of its own does both,
// for two SMB users, before and after a restart of the gateway.
func TestSMBACLDenies(t *testing.T) {
	t.Parallel()
	// Two users who are not root, Unix accounts every Debian system has.
	users := []string{"daemon", "bin"}
	d, dir, addr := daemonOwnedShare(t, "docs", append([]string{"root"}, users...)...)

	local := t.TempDir()
	for _, f := range []string{"secret.txt", "readonly.txt", "open.txt", "new.txt"} {
		if err := os.WriteFile(filepath.Join(local, f), []byte("acl test "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := smbtest.Smbclient(addr, "docs", "daemon", smbPassword, "put secret.txt; put readonly.txt; put open.txt", local); err != nil {
		t.Fatal(err)
	}
	m := ownerSID.FindStringSubmatch(smbcacls(t, addr, "docs", "secret.txt"))
	if m == nil {
		t.Fatalf("no owner in secret.txt's ACL:\n%s", smbcacls(t, addr, "docs", "secret.txt"))
	}
	owner := m[1]
	// Deny reading the data; read and execute only.
	smbcacls(t, addr, "docs", "secret.txt", "--add", "ACL:"+owner+":DENIED/0x0/0x00000001")
	smbcacls(t, addr, "docs", "readonly.txt", "--set", "ACL:"+owner+":ALLOWED/0x0/0x001200a9")
	set := map[string]string{}
	for _, f := range []string{"secret.txt", "readonly.txt"} {
		set[f] = smbcacls(t, addr, "docs", f)
	}

	check := func(when string) {
		t.Helper()
		for _, u := range users {
			back := t.TempDir()
			for _, c := range []struct {
				cmd     string
				allowed bool
			}{
				{"get secret.txt", false},
				{"get readonly.txt", true},
				{"put new.txt readonly.txt", false},
				{"get open.txt", true},
				{"put new.txt open.txt", true},
			} {
				dst := back
				if strings.HasPrefix(c.cmd, "put") {
					dst = local
				}
				out, err := smbtest.SmbclientOutput(addr, "docs", u, smbPassword, c.cmd, dst)
				switch {
				case c.allowed && err != nil:
					t.Errorf("%s: %s as %s refused: %v", when, c.cmd, u, err)
				case !c.allowed && !strings.Contains(out, "NT_STATUS_ACCESS_DENIED"):
					t.Errorf("%s: %s as %s not refused with NT_STATUS_ACCESS_DENIED: %v\n%s", when, c.cmd, u, err, out)
				}
			}
			if got, err := os.ReadFile(filepath.Join(back, "readonly.txt")); err != nil || string(got) != "acl test readonly.txt" {
				t.Errorf("%s: readonly.txt read as %s: %q (%v)", when, u, got, err)
			}
			if _, err := os.Stat(filepath.Join(back, "secret.txt")); err == nil {
				if got, _ := os.ReadFile(filepath.Join(back, "secret.txt")); len(got) > 0 {
					t.Errorf("%s: secret.txt read as %s: %q", when, u, got)
				}
			}
		}
		for f, w := range set {
			if got := smbcacls(t, addr, "docs", f); got != w {
				t.Errorf("%s: %s's ACL:\n%s\nwant (as set):\n%s", when, f, got, w)
			}
		}
	}
	check("as set")
	d.stop(t)
	serve(t, dir, "--smb-listen", addr)
	check("after a restart")
}

// daemonOwnedShare starts a gateway for t with SMB users (password
// smbPassword) and a share owned by the account daemon (uid and gid 1).
func daemonOwnedShare(t *testing.T, share string, users ...string) (d *daemon, dir, addr string) {
	t.Helper()
	smbtest.Require(t)
	dir = t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	addr = freeport.Addr(t)
	d = serve(t, dir, "--smb-listen", addr)
	for _, u := range users {
		mustRun(t, "smb", "user", "add", "--data-dir", dir, u, "--password", smbPassword)
	}
	mustRun(t, "share", "create", "--data-dir", dir, "--name", share, "--protocols", "smb", "--uid", "1", "--gid", "1")
	return d, dir, addr
}

// traversable lets every account reach below dir, a t.TempDir (which
// makes it and its parent 0700): smbd works in a share as the share's
// owner, who must reach the share's directory (plain smbd's).
func traversable(t *testing.T, dir string) {
	t.Helper()
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSMBTortureACLsAsUser runs smb2.acls as daemon, not root, against a
// gateway share daemon owns and against plain smbd set up as the gateway's
// smbd, working as daemon in a directory daemon owns, and holds the
// results to testdata/smbtorture-acls-user.txt.
func TestSMBTortureACLsAsUser(t *testing.T) {
	t.Parallel()
	d, _, addr := daemonOwnedShare(t, "torture", "daemon")
	plainAddr, plainDir := smbtest.StartPlainUsers(t, "plain", smbPassword, []string{"daemon"},
		slices.Concat(plainLikeGateway, []string{"force user = daemon", "force group = daemon"})...)
	traversable(t, plainDir)
	if err := os.Chown(plainDir, 1, 1); err != nil {
		t.Fatal(err)
	}
	suites := []string{"smb2.acls"}
	r := runTorture(t, tortureTarget{addr, "torture"}, tortureTarget{plainAddr, "plain"}, "daemon", suites, nil)
	t.Logf("smbtorture as daemon:\n%s", suiteTable(suites, r))
	checkTortureList(t, "testdata/smbtorture-acls-user.txt", r, d.stderr.String())
}
