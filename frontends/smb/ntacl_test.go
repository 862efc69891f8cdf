package smb

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/gatewayd/gatewayd/fileshare"
)

// testSID is S-1-5-21-1-2-3-rid.
func testSID(rid uint32) []byte {
	b := []byte{1, 5, 0, 0, 0, 0, 0, 5}
	for _, v := range []uint32{21, 1, 2, 3, rid} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func allowed(sid []byte, flags byte, mask uint32) ace {
	return ace{typ: 0, flags: flags, body: append(binary.LittleEndian.AppendUint32(nil, mask), sid...)}
}

func testParent(control uint16, aces ...ace) *secDesc {
	return &secDesc{control: sdDACLPresent | control, owner: testSID(500), group: testSID(513), dacl: &acl{rev: 2, aces: aces}}
}

// v4 is a security.NTACL of version 4 as Samba lays it out, around sd.
func v4(sd *secDesc, description string) []byte {
	b := []byte{4, 0, 4, 0, 0, 0, 2, 0, 4, 0, 2, 0, 1, 0}
	b = append(b, make([]byte, 64)...) // the hash
	b = append(b, description...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, make([]byte, 8+64)...) // the time, the POSIX ACL's hash
	return append(b, sd.marshal(len(b))...)
}

func TestNTACLRoundTrip(t *testing.T) {
	sd := testParent(sdDACLAutoInherited, allowed(testSID(1001), aceObjectInherit|aceContainerInherit, 0x1f01ff), allowed(sidCreatorOwner, 0xb, 0x1f01ff))
	got, err := parseNTACL(marshalNTACL(sd))
	if err != nil {
		t.Fatal(err)
	}
	sd.control |= sdSelfRelative
	if !reflect.DeepEqual(got, sd) {
		t.Fatalf("version 1: got %+v, want %+v", got, sd)
	}
	for _, desc := range []string{"", "p", "posix_acl", "posix_acl_xattr"} { // every padding
		got, err := parseNTACL(v4(sd, desc))
		if err != nil {
			t.Fatalf("version 4, description %q: %v", desc, err)
		}
		if !reflect.DeepEqual(got, sd) {
			t.Fatalf("version 4, description %q: got %+v, want %+v", desc, got, sd)
		}
	}
	for _, bad := range [][]byte{nil, {1, 0, 1, 0}, {1, 0, 2, 0, 0, 0, 2, 0}, {5, 0, 5, 0, 0, 0, 2, 0, 1}, {1, 0, 1, 0, 0, 0, 0, 0, 1}} {
		if _, err := parseNTACL(bad); !errors.Is(err, errBadNTACL) {
			t.Errorf("% x: %v, want errBadNTACL", bad, err)
		}
	}
}

func TestInherit(t *testing.T) {
	owner, group := testSID(500), testSID(513)
	oici := allowed(testSID(1), aceObjectInherit|aceContainerInherit, 1)
	none := allowed(testSID(2), 0, 2)
	oiNP := allowed(testSID(3), aceObjectInherit|aceNoPropagate, 3)
	ci := allowed(testSID(4), aceContainerInherit, 4)
	oi := allowed(testSID(5), aceObjectInherit, 5)
	oiciIO := allowed(testSID(6), aceObjectInherit|aceContainerInherit|aceInheritOnly, 6)
	co := allowed(sidCreatorOwner, aceObjectInherit|aceContainerInherit|aceInheritOnly, 7)
	cgOI := allowed(sidCreatorGroup, aceObjectInherit|aceInheritOnly, 8)
	parent := testParent(0, oici, none, oiNP, ci, oi, oiciIO, co, cgOI)
	with := func(a ace, flags byte) ace { a.flags = flags; return a }
	as := func(a ace, sid []byte) ace { return allowed(sid, a.flags, binary.LittleEndian.Uint32(a.body)) }

	file, ok := inherit(parent, owner, group, false)
	if !ok {
		t.Fatal("a file inherits nothing")
	}
	wantFile := []ace{with(oici, 0), with(oiNP, 0), with(oi, 0), with(oiciIO, 0), with(as(co, owner), 0), with(as(cgOI, group), 0)}
	if !reflect.DeepEqual(file.dacl.aces, wantFile) {
		t.Errorf("file:\n%+v\nwant\n%+v", file.dacl.aces, wantFile)
	}
	if !bytes.Equal(file.owner, owner) || !bytes.Equal(file.group, group) || file.control != sdDACLPresent {
		t.Errorf("file: owner %x group %x control %#x", file.owner, file.group, file.control)
	}

	dir, ok := inherit(parent, owner, group, true)
	if !ok {
		t.Fatal("a directory inherits nothing")
	}
	wantDir := []ace{
		with(oici, aceObjectInherit|aceContainerInherit),
		with(ci, aceContainerInherit),
		with(oi, aceObjectInherit|aceInheritOnly), // for its files only
		with(oiciIO, aceObjectInherit|aceContainerInherit),
		with(as(co, owner), 0), // the directory's own, then the CREATOR one passed on
		with(co, aceObjectInherit|aceContainerInherit|aceInheritOnly),
		with(cgOI, aceObjectInherit|aceInheritOnly), // kept for its files
	}
	if !reflect.DeepEqual(dir.dacl.aces, wantDir) {
		t.Errorf("directory:\n%+v\nwant\n%+v", dir.dacl.aces, wantDir)
	}

	// AUTO_INHERITED on the parent: the child's ACEs are INHERITED.
	auto, _ := inherit(testParent(sdDACLAutoInherited, oici), owner, group, false)
	if auto.dacl.aces[0].flags != aceInherited || auto.control != sdDACLPresent|sdDACLAutoInherited {
		t.Errorf("auto-inherited parent: ace flags %#x control %#x", auto.dacl.aces[0].flags, auto.control)
	}
	// Nothing inheritable: nothing.
	if _, ok := inherit(testParent(0, none, ci), owner, group, false); ok {
		t.Error("a file inherits from a parent with only a CI and a plain ACE")
	}
	if _, ok := inherit(testParent(0, none, oiNP), owner, group, true); ok {
		t.Error("a directory inherits an OI|NP ACE")
	}
	if _, ok := inherit(&secDesc{}, owner, group, false); ok {
		t.Error("inherits from a parent without a DACL")
	}
	// Equal entries come once.
	two, _ := inherit(testParent(0, oici, oici), owner, group, false)
	if len(two.dacl.aces) != 1 {
		t.Errorf("duplicates: %+v", two.dacl.aces)
	}
}

// fakeXattrs is a share's security.NTACL values by path.
type fakeXattrs map[string][]byte

func (f fakeXattrs) Xattr(_ context.Context, p, name string) ([]byte, error) {
	if v, ok := f[p]; ok && name == ntaclName {
		return v, nil
	}
	return nil, fileshare.ErrNoXattr
}

func TestInheritedNTACLWalksUp(t *testing.T) {
	oici := allowed(testSID(1), aceObjectInherit|aceContainerInherit, 1)
	oiNP := allowed(testSID(3), aceObjectInherit|aceNoPropagate, 3)
	share := fakeXattrs{"a": v4(testParent(0, oici, oiNP), "posix_acl")}
	ctx := context.Background()
	for _, c := range []struct {
		p    string
		dir  bool
		want []ace
	}{
		{"a/f", false, []ace{{0, 0, oici.body}, {0, 0, oiNP.body}}},
		{"a/b", true, []ace{{0, aceObjectInherit | aceContainerInherit, oici.body}}},
		{"a/b/c/f", false, []ace{{0, 0, oici.body}}}, // through two directories without ACLs
	} {
		v, err := inheritedNTACL(ctx, share, c.p, c.dir)
		if err != nil {
			t.Fatalf("%s: %v", c.p, err)
		}
		sd, err := parseNTACL(v)
		if err != nil {
			t.Fatalf("%s: %v", c.p, err)
		}
		if !reflect.DeepEqual(sd.dacl.aces, c.want) {
			t.Errorf("%s: %+v, want %+v", c.p, sd.dacl.aces, c.want)
		}
		if !bytes.Equal(sd.owner, testSID(500)) {
			t.Errorf("%s: owner %x, want the parent's", c.p, sd.owner)
		}
	}
	for _, p := range []string{"", "f", "x/f"} {
		if _, err := inheritedNTACL(ctx, share, p, false); !errors.Is(err, fileshare.ErrNoXattr) {
			t.Errorf("%q: %v, want ErrNoXattr", p, err)
		}
	}
	// A parent whose ACL does not decode gives nothing.
	if _, err := inheritedNTACL(ctx, fakeXattrs{"a": {9, 9}}, "a/f", false); !errors.Is(err, fileshare.ErrNoXattr) {
		t.Errorf("undecodable parent: %v, want ErrNoXattr", err)
	}
}

// FuzzParseNTACL: any value decodes or is refused, never a crash; what
// decodes encodes back to a descriptor that decodes the same.
func FuzzParseNTACL(f *testing.F) {
	sd := testParent(sdDACLAutoInherited, allowed(testSID(1), 3, 1), allowed(sidCreatorOwner, 0xb, 2), ace{typ: 5, body: []byte{1, 2, 3, 4, 5}})
	f.Add(marshalNTACL(sd))
	f.Add(v4(sd, "posix_acl"))
	f.Add([]byte{1, 0, 1, 0, 0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := parseNTACL(b)
		if err != nil {
			if !errors.Is(err, errBadNTACL) {
				t.Fatalf("error %v is not errBadNTACL", err)
			}
			return
		}
		again, err := parseNTACL(marshalNTACL(sd))
		if err != nil {
			t.Fatalf("re-encoded: %v", err)
		}
		if !reflect.DeepEqual(again.marshal(0), sd.marshal(0)) {
			t.Fatalf("re-encoded differs")
		}
		for _, dir := range []bool{false, true} {
			if c, ok := inherit(sd, sd.owner, sd.group, dir); ok {
				if _, err := parseNTACL(marshalNTACL(c)); err != nil {
					t.Fatalf("inherited: %v", err)
				}
			}
		}
	})
}

// sambaNTACL is a security.NTACL smbd 4.17 wrote (version 4) for a folder
// given, with smbcacls, ACEs for S-1-5-21-1-2-3-1001 (OI|CI), -1002 (none),
// -1003 (OI|NP), -1004 (CI) and CREATOR OWNER (OI|CI|IO), besides the ones
// from its mode.
const sambaNTACL = "0400040000000200040002000100a4ac0b708b4cc478a2e6d15bf07dfec7dca1f0597010b8968937ae363160a19f0000000000000000000000000000000000000000000000000000000000000000706f7369785f61636c00c6c1cea27a84dd01cd6af5f9910940b526b039daa3cf990206afe7e772cdf77f27a8153482c8abd4000000000000000000000000000000000000000000000000000000000000000001000480b4000000d000000000000000e00000000105000000000005150000002ced11a0cb81ae9df2684ce7e803000001020000000000160200000000000000020010010900000000031400a9001200010100000000000100000000000b1400ff011f00010100000000000300000000000b1400a900120001010000000000030100000000001800a90012000102000000000016020000000000000000002400ff011f000105000000000005150000002ced11a0cb81ae9df2684ce7e803000000032400ff011f00010500000000000515000000010000000200000003000000e903000000002400a9001200010500000000000515000000010000000200000003000000ea03000000052400a9001200010500000000000515000000010000000200000003000000eb03000000022400a9001200010500000000000515000000010000000200000003000000ec030000"

func TestParseNTACLFromSamba(t *testing.T) {
	b, err := hex.DecodeString(sambaNTACL)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := parseNTACL(b)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[uint32]byte{}
	for _, a := range sd.dacl.aces {
		if s := a.sid(); len(s) == len(testSID(0)) && bytes.Equal(s[:len(s)-4], testSID(0)[:len(s)-4]) {
			flags[binary.LittleEndian.Uint32(s[len(s)-4:])] = a.flags
		}
	}
	if want := map[uint32]byte{1001: 3, 1002: 0, 1003: 5, 1004: 2}; !reflect.DeepEqual(flags, want) {
		t.Fatalf("ACE flags by RID %v, want %v (DACL %+v)", flags, want, sd.dacl.aces)
	}
	if len(sd.owner) != 28 || len(sd.group) != 16 || sd.sacl != nil {
		t.Fatalf("owner %x group %x sacl %v", sd.owner, sd.group, sd.sacl)
	}
	// What the view answers for a file in it decodes as Samba's would.
	file, ok := inherit(sd, sd.owner, sd.group, false)
	if !ok {
		t.Fatal("nothing inherited")
	}
	again, err := parseNTACL(marshalNTACL(file))
	if err != nil || !reflect.DeepEqual(again.dacl, file.dacl) {
		t.Fatalf("version 1 of the inherited ACL: %v, %+v", err, again)
	}
}
