// Package adtest runs a real Active Directory domain for tests: Samba's
// own AD DC, provisioned by samba-tool into a temporary directory and
// started in a network namespace of its own, reached over a veth pair.
// A member under test (gatewayd's smbd and winbindd) runs in a private
// mount namespace (MemberWrap) whose resolver is the DC's DNS and whose
// name service switch asks winbind, so nothing of the host's own
// configuration changes. Missing tools fail the test with the install
// command; the test is never skipped.
package adtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/childproc"
)

// InstallCommand installs what a domain test needs (.ci/run does).
const InstallCommand = "apt-get install -y --no-install-recommends samba samba-ad-dc samba-ad-provision winbind libnss-winbind smbclient iproute2"

// The domain every test gets; users share one password.
const (
	Realm         = "GWTEST.LAN"
	Workgroup     = "GWTEST"
	AdminPassword = "Admin-Pass-123"
	UserPassword  = "User-Pass-123"
	DCName        = "dc1"
)

// DC is a running domain controller.
type DC struct {
	IP   string // the DC's address, reached from the host over the veth pair
	Dir  string // provisioned state
	ns   string
	proc *exec.Cmd
	out  *bytes.Buffer
}

// Require fails t unless root and every tool the domain needs are here.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("a domain test needs root (network and mount namespaces)")
	}
	for _, tool := range []string{"samba", "samba-tool", "net", "winbindd", "wbinfo", "smbclient", "smbd", "ip", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", tool)); err != nil {
				t.Fatalf("%s not found: install it with `%s`", tool, InstallCommand)
			}
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/libnss_winbind.so.2"); len(m) == 0 {
		if m, _ = filepath.Glob("/lib/*/libnss_winbind.so.2"); len(m) == 0 {
			t.Fatalf("libnss_winbind.so.2 not found: install it with `%s`", InstallCommand)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/samba/ldb/acl.so"); len(m) == 0 {
		t.Fatalf("Samba's directory database modules are missing: install them with `%s`", InstallCommand)
	}
	if _, err := os.Stat("/usr/share/samba/setup/ad-schema"); err != nil {
		t.Fatalf("Samba's AD schema files are missing: install them with `%s`", InstallCommand)
	}
}

func command(ctx context.Context, t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// freeSubnet picks a /24 of 10.213.0.0/16 no interface of the host uses.
func freeSubnet(t testing.TB) int {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok {
			if v4 := ip.IP.To4(); v4 != nil && v4[0] == 10 && v4[1] == 213 {
				used[int(v4[2])] = true
			}
		}
	}
	for i := 0; i < 250; i++ {
		n := (os.Getpid() + i) % 250
		if !used[n] {
			return n
		}
	}
	t.Fatal("no free subnet in 10.213.0.0/16")
	return 0
}

// StartDC provisions a domain (users alice, bob and carol; bob in the
// group gwusers) and starts its DC in a network namespace. It returns
// once the DC answers logons; t's cleanup stops it and removes the
// namespace.
func StartDC(t testing.TB) *DC {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	ns, hostIf, dcIf := "gwdc"+id, "gwdh"+id, "gwdp"+id
	n := freeSubnet(t)
	hostIP, dcIP := fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)
	command(ctx, t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	command(ctx, t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", dcIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	command(ctx, t, "ip", "link", "set", dcIf, "netns", ns)
	command(ctx, t, "ip", "addr", "add", hostIP+"/24", "dev", hostIf)
	command(ctx, t, "ip", "link", "set", hostIf, "up")
	command(ctx, t, "ip", "netns", "exec", ns, "ip", "addr", "add", dcIP+"/24", "dev", dcIf)
	command(ctx, t, "ip", "netns", "exec", ns, "ip", "link", "set", dcIf, "up")
	command(ctx, t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

	dir := t.TempDir()
	dc := &DC{IP: dcIP, Dir: dir, ns: ns, out: new(bytes.Buffer)}
	for _, d := range []string{"run", "ncalrpc", "wbsock"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	command(ctx, t, "samba-tool", "domain", "provision", "--realm="+Realm, "--domain="+Workgroup, "--server-role=dc",
		"--dns-backend=SAMBA_INTERNAL", "--adminpass="+AdminPassword, "--targetdir="+filepath.Join(dir, "dc"),
		"--host-name="+DCName, "--host-ip="+dcIP,
		"--option=interfaces="+dcIP, "--option=bind interfaces only=yes",
		"--option=pid directory="+filepath.Join(dir, "run"), "--option=ncalrpc dir="+filepath.Join(dir, "ncalrpc"),
		// No DNS but its own: the host's resolver is not reachable from
		// the namespace.
		"--option=dns forwarder=", "--option=dns update command=/bin/true", "--option=log level=1")
	conf := filepath.Join(dir, "dc", "etc", "smb.conf")
	sam := filepath.Join(dir, "dc", "private", "sam.ldb")
	for _, u := range []string{"alice", "bob", "carol"} {
		command(ctx, t, "samba-tool", "user", "create", u, UserPassword, "-s", conf, "-H", sam)
	}
	command(ctx, t, "samba-tool", "group", "add", "gwusers", "-s", conf, "-H", sam)
	command(ctx, t, "samba-tool", "group", "addmembers", "gwusers", "bob", "-s", conf, "-H", sam)

	// The DC's smbd finds its winbindd at Samba's built-in socket
	// directory: a private one in the DC's own mount namespace, apart
	// from the member's and the host's.
	dc.proc = exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		`mkdir -p /run/samba/winbindd && mount --bind "$1" /run/samba/winbindd && exec samba --foreground --no-process-group --debug-stdout -s "$2"`,
		"sh", filepath.Join(dir, "wbsock"), conf)
	dc.proc.Stdout, dc.proc.Stderr = dc.out, dc.out
	// Killed with the test binary, too (a test timeout runs no cleanups).
	done, err := childproc.Start(dc.proc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-dc.proc.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
		}
		_ = syscall.Kill(-dc.proc.Process.Pid, syscall.SIGKILL)
		<-done
		// The RPC servers its smbd started run in sessions of their own.
		smb.KillStale(conf)
	})
	// Ready once it checks a logon (its KDC, LDAP and RPC servers start
	// before its file server).
	for {
		out, err := exec.CommandContext(ctx, "smbclient", "-L", "//"+dcIP, "-U", Workgroup+`\Administrator%`+AdminPassword, "--use-kerberos=disabled").CombinedOutput()
		if err == nil && strings.Contains(string(out), "netlogon") {
			break
		}
		select {
		case <-done:
			t.Fatalf("the DC exited:\n%s", dc.out)
		case <-ctx.Done():
			t.Fatalf("the DC does not answer logons: %v\n%s\n%s", err, out, dc.out)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return dc
}

// Log is what the DC printed.
func (dc *DC) Log() string { return dc.out.String() }

// KRB5Config writes a Kerberos configuration naming the DC as the
// realm's KDC, for clients on the host (KRB5_CONFIG).
func (dc *DC) KRB5Config(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "krb5.conf")
	conf := fmt.Sprintf("[libdefaults]\n\tdefault_realm = %s\n\tdns_lookup_kdc = false\n\tdns_lookup_realm = false\n\trdns = false\n[realms]\n\t%s = {\n\t\tkdc = %s\n\t}\n",
		Realm, Realm, dc.IP)
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// MemberWrap is a command prefix that runs a domain member in a private
// mount namespace: /etc/resolv.conf names the DC's DNS, /etc/nsswitch.conf
// adds winbind to the passwd and group lines, and Samba's built-in winbind
// socket directory is a private one. The wrapped command is exec'd, so
// its pid is the wrapper's.
func (dc *DC) MemberWrap(t testing.TB) []string {
	t.Helper()
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+dc.IP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(string(host), "\n") {
		db, _, _ := strings.Cut(line, ":")
		if db == "passwd" || db == "group" {
			line += " winbind"
		}
		lines = append(lines, line)
	}
	nss := filepath.Join(dir, "nsswitch.conf")
	if err := os.WriteFile(nss, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	wb := filepath.Join(dir, "wbsock")
	if err := os.Mkdir(wb, 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf && mkdir -p /run/samba/winbindd && mount --bind "$3" /run/samba/winbindd && shift 3 && exec "$@"`,
		"sh", resolv, nss, wb}
}
