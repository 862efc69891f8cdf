package smb

import (
	"errors"
	"strings"
	"testing"
)

// TestAccessEntries: what an access list takes, and that nothing that
// would change smb.conf's structure (a line break, a section header, an
// option, a list separator, a quote, a substitution) gets through.
func TestAccessEntries(t *testing.T) {
	for _, ok := range []string{"alice", `GWTEST\alice`, `@GWTEST\Domain Users`, "+staff", "@staff", "svc$", "o'brien", "Ünïcode", `my-dom.x\a_b`} {
		if err := CheckAccessEntry(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "@", `GWTEST\`, `\alice`, "a\nb", "a\r", "a\x00", "a\u2028b", "x = y", "[global]", "a]", "a,b", `a"b`, "%U", "a;b",
		"a#b", `A\B\C`, "@@g", "+@g", " alice", "alice ", "a\tb", `TOOLONGDOMAINNAME1\a`, `dom ain\a`, "a*", "a/b", "a:b", "a|b", "a<b", "a>b", "a?b", "a@b", "a+b",
		strings.Repeat("x", 65)} {
		err := CheckAccessEntry(bad)
		if err == nil || !errors.Is(err, ErrBadAccess) {
			t.Errorf("%q: %v, want ErrBadAccess", bad, err)
			continue
		}
		if strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("%q: the message is not one line: %q", bad, err)
		}
	}
	for _, bad := range []string{"a]b", "a[b", "a%b", "a=b", "a\nb", `a"b`, "a;b", "a,b", "global", "Homes", "PRINTERS"} {
		if err := CheckShareName(bad); err == nil {
			t.Errorf("share name %q accepted", bad)
		}
	}
}

// TestConfAccess: access lists, quoted, groups as '+', and access-based
// enumeration in the share's section; a share that fails the checks is
// left out of smb.conf whole.
func TestConfAccess(t *testing.T) {
	s := Settings{Listen: "127.0.0.1:4450", StateDir: "/x"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	conf := Conf(s, nil, []ShareConf{
		{Name: "a", Path: "/m/a", Access: Access{ValidUsers: []string{`GWTEST\alice`, `@GWTEST\Domain Users`, "root"}, InvalidUsers: []string{"+staff"},
			AdminUsers: []string{`GWTEST\admin`}, AccessBasedEnum: true}},
		{Name: "bad", Path: "/m/bad", Access: Access{ValidUsers: []string{"x\n[global]\npath = /"}}},
		{Name: "bad]", Path: "/m/bad2"},
	})
	for _, want := range []string{
		"\n[a]\n",
		"\tvalid users = \"GWTEST\\alice\", \"+GWTEST\\Domain Users\", \"root\"\n",
		"\tinvalid users = \"+staff\"\n",
		"\tadmin users = \"GWTEST\\admin\"\n",
		"\taccess based share enum = yes\n",
		"\thide unreadable = yes\n",
		"\tserver role = standalone server\n",
	} {
		if !strings.Contains(conf, want) {
			t.Fatalf("conf lacks %q:\n%s", want, conf)
		}
	}
	for _, not := range []string{"[bad]", "/m/bad", "[global]\npath", "security = ads"} {
		if strings.Contains(conf, not) {
			t.Fatalf("conf has %q:\n%s", not, conf)
		}
	}
	if n := strings.Count(conf, "["); n != 2 {
		t.Fatalf("%d sections, want [global] and [a]:\n%s", n, conf)
	}
}

// TestConfDomain: a member's [global] for each idmap backend.
func TestConfDomain(t *testing.T) {
	s := Settings{Listen: "127.0.0.1:4450", StateDir: "/x"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	rid := Conf(s, &Domain{Realm: "GWTEST.LAN", Workgroup: "GWTEST", IDMap: "rid", IDLow: 100000, IDHigh: 1999999, DC: "10.0.0.2"}, nil)
	for _, want := range []string{"server role = member server", "security = ads", "realm = GWTEST.LAN", "workgroup = GWTEST",
		"password server = 10.0.0.2", "idmap config * : backend = tdb", "idmap config GWTEST : backend = rid", "idmap config GWTEST : range = 100000-1999999",
		"winbind use default domain = no"} {
		if !strings.Contains(rid, "\t"+want+"\n") {
			t.Fatalf("rid conf lacks %q:\n%s", want, rid)
		}
	}
	if strings.Contains(rid, "standalone") {
		t.Fatalf("a member says standalone:\n%s", rid)
	}
	auto := Conf(s, &Domain{Realm: "GWTEST.LAN", Workgroup: "GWTEST", IDMap: "autorid", IDLow: 200000, IDHigh: 2999999}, nil)
	for _, want := range []string{"idmap config * : backend = autorid", "idmap config * : range = 200000-2999999"} {
		if !strings.Contains(auto, "\t"+want+"\n") {
			t.Fatalf("autorid conf lacks %q:\n%s", want, auto)
		}
	}
	if strings.Contains(auto, "password server") || strings.Contains(auto, ": backend = rid") {
		t.Fatalf("autorid conf:\n%s", auto)
	}
}

// TestJoinRequestChecks: a join request that cannot work is refused before
// anything runs, with the reason.
func TestJoinRequestChecks(t *testing.T) {
	good := JoinRequest{Realm: "gwtest.lan", User: "Administrator", Password: "pw"}
	if err := good.normalize(); err != nil || good.Realm != "GWTEST.LAN" || good.IDMap != "rid" || good.IDLow != defaultIDLow {
		t.Fatalf("%+v: %v", good, err)
	}
	for _, r := range []JoinRequest{
		{Realm: "", User: "a", Password: "p"},
		{Realm: "a b", User: "a", Password: "p"},
		{Realm: "X\nrealm = Y", User: "a", Password: "p"},
		{Realm: "X.LAN", User: "a\nb", Password: "p"},
		{Realm: "X.LAN", User: "a", Password: ""},
		{Realm: "X.LAN", User: "a", Password: "p\nq"},
		{Realm: "X.LAN", User: "a", Password: "p", IDMap: "ad"},
		{Realm: "X.LAN", User: "a", Password: "p", IDLow: 5000, IDHigh: 200000},
		{Realm: "X.LAN", User: "a", Password: "p", Workgroup: "W=1"},
		{Realm: "X.LAN", User: "a", Password: "p", DC: "dc\n1"},
	} {
		if err := r.normalize(); !errors.Is(err, ErrBadDomain) {
			t.Errorf("%+v: %v, want ErrBadDomain", r, err)
		}
	}
}

// TestNetbiosName: smb.netbios_name names the machine account; one that
// is not a NetBIOS name is refused.
func TestNetbiosName(t *testing.T) {
	s := Settings{Listen: "127.0.0.1:4450", StateDir: "/x", NetbiosName: "gw-2"}
	if err := s.Normalize(); err != nil || s.NetbiosName != "GW-2" {
		t.Fatalf("%q: %v", s.NetbiosName, err)
	}
	if conf := Conf(s, nil, nil); !strings.Contains(conf, "\tnetbios name = GW-2\n") {
		t.Fatalf("conf:\n%s", conf)
	}
	for _, bad := range []string{"a b", "x\ny", "-x", "SIXTEENCHARSLONG", "a.b", "a=b"} {
		s := Settings{Listen: "127.0.0.1:4450", StateDir: "/x", NetbiosName: bad}
		if err := s.Normalize(); err == nil {
			t.Errorf("netbios name %q accepted", bad)
		}
	}
}
