package smb

// Samba's acl_xattr module keeps a file's NT ACL in the extended attribute
// security.NTACL: an xattr_NTACL structure (librpc/idl/xattr.idl) in NDR,
// little-endian. Its versions 3 and 4 carry hashes of what the filesystem
// says about the file (its mode and owner as an ACL, and the POSIX ACL);
// smbd checks them and, when they do not match, answers with the ACL made
// from the mode instead. Versions 1 and 2 carry none and smbd takes them
// as they are ("unilateral"). The view computes the ACL an object put in
// the bucket inherits and answers it as version 1: a computed ACL has no
// filesystem state to vouch for.
//
// The security descriptor inside is MS-DTYP's self-relative form
// (2.4.6): owner, group, SACL and DACL at offsets from its start.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path"

	"github.com/gatewayd/gatewayd/fileshare"
)

// ntaclName is the extended attribute smbd keeps the NT ACL in.
const ntaclName = "security.NTACL"

// Security descriptor control bits and ACE flags (MS-DTYP 2.4.6, 2.4.4.1).
const (
	sdDACLPresent       = 0x0004
	sdDACLAutoInherited = 0x0400
	sdSelfRelative      = 0x8000

	aceObjectInherit    = 0x01
	aceContainerInherit = 0x02
	aceNoPropagate      = 0x04
	aceInheritOnly      = 0x08
	aceInherited        = 0x10
)

// ACE types whose body is an access mask then a SID (MS-DTYP 2.4.4.2-5);
// the others (object ACEs, callback ACEs) are kept as found, their SIDs
// not mapped.
const maxSimpleACEType = 3

var (
	sidCreatorOwner = []byte{1, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0} // S-1-3-0
	sidCreatorGroup = []byte{1, 1, 0, 0, 0, 0, 0, 3, 1, 0, 0, 0} // S-1-3-1
)

var errBadNTACL = errors.New("security.NTACL does not decode")

// ace is one access control entry; body is what follows the header: for
// the simple types, the access mask and the SID.
type ace struct {
	typ, flags byte
	body       []byte
}

func (a ace) simple() bool { return a.typ <= maxSimpleACEType && len(a.body) >= 4+8 }

// sid is the SID of a simple ACE.
func (a ace) sid() []byte { return a.body[4:] }

// acl is an ACL: its revision and entries.
type acl struct {
	rev  byte
	aces []ace
}

// secDesc is a security descriptor; nil SIDs and ACLs are absent.
type secDesc struct {
	control      uint16
	owner, group []byte
	sacl, dacl   *acl
}

// sidLen checks b starts with a SID and returns its length.
func sidLen(b []byte) (int, error) {
	if len(b) < 8 || b[0] != 1 || b[1] > 15 {
		return 0, fmt.Errorf("%w: bad SID", errBadNTACL)
	}
	n := 8 + 4*int(b[1])
	if len(b) < n {
		return 0, fmt.Errorf("%w: short SID", errBadNTACL)
	}
	return n, nil
}

func parseACL(b []byte) (*acl, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: short ACL", errBadNTACL)
	}
	size, count := int(binary.LittleEndian.Uint16(b[2:])), int(binary.LittleEndian.Uint16(b[4:]))
	if size < 8 || size > len(b) {
		return nil, fmt.Errorf("%w: ACL size %d", errBadNTACL, size)
	}
	l := &acl{rev: b[0]}
	for p := b[8:size]; count > 0; count-- {
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: short ACE", errBadNTACL)
		}
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if n < 4 || n > len(p) {
			return nil, fmt.Errorf("%w: ACE size %d", errBadNTACL, n)
		}
		a := ace{typ: p[0], flags: p[1], body: bytes.Clone(p[4:n])}
		if a.typ <= maxSimpleACEType {
			if len(a.body) < 4 {
				return nil, fmt.Errorf("%w: short ACE", errBadNTACL)
			}
			if _, err := sidLen(a.body[4:]); err != nil {
				return nil, err
			}
		}
		l.aces = append(l.aces, a)
		p = p[n:]
	}
	return l, nil
}

// parseSD reads a self-relative security descriptor that starts at
// b[base:], its offsets counted from b's start (base 0: the descriptor
// alone, as MS-DTYP has it; in security.NTACL, NDR counts them from the
// start of the value).
func parseSD(b []byte, base int) (*secDesc, error) {
	if len(b) < base+20 || b[base] != 1 {
		return nil, fmt.Errorf("%w: not a revision 1 security descriptor", errBadNTACL)
	}
	sd := &secDesc{control: binary.LittleEndian.Uint16(b[base+2:])}
	at := func(i int) (int, error) {
		off := int(binary.LittleEndian.Uint32(b[base+4+4*i:]))
		if off != 0 && (off < base+20 || off >= len(b)) {
			return 0, fmt.Errorf("%w: offset %d out of %d bytes", errBadNTACL, off, len(b))
		}
		return off, nil
	}
	for i, dst := range []*[]byte{&sd.owner, &sd.group} {
		off, err := at(i)
		if err != nil || off == 0 {
			if err != nil {
				return nil, err
			}
			continue
		}
		n, err := sidLen(b[off:])
		if err != nil {
			return nil, err
		}
		*dst = bytes.Clone(b[off : off+n])
	}
	for i, dst := range []**acl{&sd.sacl, &sd.dacl} {
		off, err := at(2 + i)
		if err != nil || off == 0 {
			if err != nil {
				return nil, err
			}
			continue
		}
		if *dst, err = parseACL(b[off:]); err != nil {
			return nil, err
		}
	}
	return sd, nil
}

func (l *acl) marshal() []byte {
	b := []byte{l.rev, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[4:], uint16(len(l.aces)))
	for _, a := range l.aces {
		b = append(b, a.typ, a.flags)
		b = binary.LittleEndian.AppendUint16(b, uint16(4+len(a.body)))
		b = append(b, a.body...)
	}
	binary.LittleEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// marshal writes sd self-relative, its parts in the order Samba writes
// them (owner, group, SACL, DACL), its offsets counted from base bytes
// before it (parseSD).
func (sd *secDesc) marshal(base int) []byte {
	b := make([]byte, 20)
	b[0] = 1
	binary.LittleEndian.PutUint16(b[2:], sd.control|sdSelfRelative)
	put := func(i int, part []byte) {
		if part != nil {
			binary.LittleEndian.PutUint32(b[4+4*i:], uint32(base+len(b)))
			b = append(b, part...)
		}
	}
	put(0, sd.owner)
	put(1, sd.group)
	if sd.sacl != nil {
		put(2, sd.sacl.marshal())
	}
	if sd.dacl != nil {
		put(3, sd.dacl.marshal())
	}
	return b
}

// parseNTACL reads the security descriptor from a security.NTACL value of
// any version smbd writes (1 to 4). NDR: the version (2 bytes), the
// union's arm (2, the version again), a pointer (4), then for versions 2
// to 4 the hash structure (its own pointer to the descriptor, the hash
// type, the hash, and for 4 a NUL-ended description, an NTTIME aligned to
// 4 and the POSIX ACL's hash), then the descriptor aligned to 4, its
// offsets counted from the start of the value (as Samba 4.17 writes it).
func parseNTACL(b []byte) (*secDesc, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: short", errBadNTACL)
	}
	v := binary.LittleEndian.Uint16(b)
	if binary.LittleEndian.Uint16(b[2:]) != v || binary.LittleEndian.Uint32(b[4:]) == 0 {
		return nil, fmt.Errorf("%w: version %d", errBadNTACL, v)
	}
	p := 8
	switch v {
	case 1:
	case 2:
		p += 4 + 16
	case 3:
		p += 4 + 2 + 64
	case 4:
		p += 4 + 2 + 64
		i := bytes.IndexByte(b[min(p, len(b)):], 0)
		if i < 0 {
			return nil, fmt.Errorf("%w: description", errBadNTACL)
		}
		p = align4(p+i+1) + 8 + 64
	default:
		return nil, fmt.Errorf("%w: version %d", errBadNTACL, v)
	}
	if v != 1 && (len(b) < 12 || binary.LittleEndian.Uint32(b[8:]) == 0) {
		return nil, fmt.Errorf("%w: no security descriptor", errBadNTACL)
	}
	p = align4(p)
	if p >= len(b) {
		return nil, fmt.Errorf("%w: short", errBadNTACL)
	}
	return parseSD(b, p)
}

func align4(n int) int { return (n + 3) &^ 3 }

// marshalNTACL is sd as a version 1 security.NTACL: smbd takes it without
// a hash check. The pointer's value is Samba's first referent id.
func marshalNTACL(sd *secDesc) []byte {
	return append([]byte{1, 0, 1, 0, 0, 0, 2, 0}, sd.marshal(8)...)
}

// inheritable says whether parent's DACL gives a new child anything: an
// ACE that a file (OBJECT_INHERIT) or a directory (CONTAINER_INHERIT, or
// OBJECT_INHERIT without NO_PROPAGATE_INHERIT, which it passes on to its
// files) inherits. As Samba's is_inheritable_ace.
func inheritableACE(a ace, dir bool) bool {
	if !dir {
		return a.flags&aceObjectInherit != 0
	}
	return a.flags&aceContainerInherit != 0 ||
		a.flags&aceObjectInherit != 0 && a.flags&aceNoPropagate == 0
}

// inherit computes the security descriptor a new file (dir false) or
// directory created in a directory with descriptor parent gets, with
// owner and group given (MS-DTYP 2.5.3.4, as Samba's
// se_create_child_secdesc computes it, so that an object put in the
// bucket reads as one smbd created would): ok false when parent has
// nothing for it to inherit, and smbd would keep the ACL the mode gives.
//
// For a file, each inheritable ACE comes with no inheritance flags. For a
// directory, INHERIT_ONLY is cleared, an ACE that only files inherit
// stays inherit-only (for the directory's files), and NO_PROPAGATE_INHERIT
// stops it at this directory (no flags). CREATOR OWNER and CREATOR GROUP
// become owner and group where they apply to the child itself; on a
// directory that passes them on they stay, inherit-only, for its children
// (with the mapped ACE added for the directory itself when it passes them
// to subdirectories). ACEs are marked INHERITED when parent's DACL is
// AUTO_INHERITED, and the child's then is too. Equal ACEs come once.
func inherit(parent *secDesc, owner, group []byte, dir bool) (sd *secDesc, ok bool) {
	if parent == nil || parent.dacl == nil {
		return nil, false
	}
	auto := parent.control&sdDACLAutoInherited != 0
	var out []ace
	for _, a := range parent.dacl.aces {
		if !inheritableACE(a, dir) {
			continue
		}
		flags := a.flags
		if !dir {
			flags = 0
		} else {
			flags &^= aceInheritOnly | aceInherited
			if flags&aceContainerInherit == 0 {
				flags |= aceInheritOnly
			}
			if flags&aceNoPropagate != 0 {
				flags = 0
			}
		}
		var creator, trustee []byte
		if a.simple() {
			switch {
			case bytes.Equal(a.sid(), sidCreatorOwner):
				creator, trustee = sidCreatorOwner, owner
			case bytes.Equal(a.sid(), sidCreatorGroup):
				creator, trustee = sidCreatorGroup, group
			}
		}
		if trustee == nil {
			creator = nil // no owner or group to map to: kept as it is
		}
		withSID := func(sid []byte) []byte {
			return append(bytes.Clone(a.body[:4]), sid...)
		}
		body := a.body
		switch {
		case creator == nil:
		case dir && flags&aceContainerInherit != 0:
			// the mapped ACE for the directory, the CREATOR one for
			// what is made in it
			out = append(out, ace{typ: a.typ, body: withSID(trustee)})
			flags |= aceInheritOnly
		case dir && a.flags&aceNoPropagate == 0:
			// inherit-only, for the directory's files: kept as CREATOR
		default:
			body = withSID(trustee)
		}
		if auto {
			flags |= aceInherited
		}
		out = append(out, ace{typ: a.typ, flags: flags, body: bytes.Clone(body)})
	}
	if len(out) == 0 {
		return nil, false
	}
	var dedup []ace
	for _, a := range out {
		seen := false
		for _, d := range dedup {
			if d.typ == a.typ && d.flags == a.flags && bytes.Equal(d.body, a.body) {
				seen = true
				break
			}
		}
		if !seen {
			dedup = append(dedup, a)
		}
	}
	size := 8
	for _, a := range dedup {
		size += 4 + len(a.body)
	}
	if size > 0xffff {
		return nil, false // past what an ACL's size field holds
	}
	control := uint16(sdDACLPresent)
	if auto {
		control |= sdDACLAutoInherited
	}
	return &secDesc{control: control, owner: bytes.Clone(owner), group: bytes.Clone(group),
		dacl: &acl{rev: parent.dacl.rev, aces: dedup}}, true
}

// shareXattrs is what the view asks of a share for inherited ACLs.
type shareXattrs interface {
	Xattr(ctx context.Context, p, name string) ([]byte, error)
}

// inheritedNTACL is the security.NTACL that p, which has none of its own
// (an object put in the bucket by another application), reads as: the
// one inherited from its parent directory's ACL, the parent's own or, if
// it has none either, the one it inherits in turn, up to the share's
// root. Owner and group are the parent's: an object from the bucket has
// no creator. ErrNoXattr when nothing is inherited (smbd then gives the
// ACL the mode makes, as for any file without one). Nothing is stored:
// the ACL follows the parent's until a client sets one.
func inheritedNTACL(ctx context.Context, s shareXattrs, p string, dir bool) ([]byte, error) {
	sd, ok, err := inheritedSD(ctx, s, p, dir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fileshare.ErrNoXattr
	}
	return marshalNTACL(sd), nil
}

func inheritedSD(ctx context.Context, s shareXattrs, p string, dir bool) (*secDesc, bool, error) {
	if p == "" || p == "/" || p == "." {
		return nil, false, nil // the root inherits from nothing
	}
	parent := path.Dir(p)
	if parent == "." || parent == "/" {
		parent = ""
	}
	var psd *secDesc
	v, err := s.Xattr(ctx, parent, ntaclName)
	switch {
	case err == nil:
		// One that does not decode gives nothing, as smbd reads it.
		if psd, err = parseNTACL(v); err != nil {
			return nil, false, nil
		}
	case errors.Is(err, fileshare.ErrNoXattr):
		var ok bool
		if psd, ok, err = inheritedSD(ctx, s, parent, true); err != nil || !ok {
			return nil, false, err
		}
	default:
		return nil, false, err
	}
	sd, ok := inherit(psd, psd.owner, psd.group, dir)
	return sd, ok, nil
}
