package smb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatewayd/gatewayd/errkind"
)

// ErrBadAccess is returned for a share name or an access list entry that
// smb.conf cannot carry as it is.
var ErrBadAccess = errkind.Mark(errkind.Permanent, errors.New("invalid SMB share access"))

// Access is who may use a share over SMB. Each entry is a user or, with a
// leading '@' or '+', a group; a domain user or group is DOMAIN\name,
// a local one a bare name.
type Access struct {
	ValidUsers   []string `json:"valid_users,omitempty"`   // when set, only these (and the admin users) get in
	InvalidUsers []string `json:"invalid_users,omitempty"` // never get in, even when valid
	AdminUsers   []string `json:"admin_users,omitempty"`   // work as root on the share
	// AccessBasedEnum hides the share from the users it refuses when they
	// list the server's shares, and files they cannot read from listings.
	AccessBasedEnum bool `json:"access_based_enum,omitempty"`
}

// Windows refuses these in user, group and share names; smb.conf gives
// '%' (substitution), '"' (quoting), ',' (list separator), '=', '[', ']',
// '#' and ';' meanings of their own.
const nameForbidden = `"/\[]:;|=,+*?<>@%#`

// checkAccessName checks one user or group name (without the domain).
func checkAccessName(name string) string {
	switch {
	case name == "":
		return "the name is empty"
	case len(name) > 64:
		return "the name is longer than 64 bytes"
	case !utf8.ValidString(name):
		return "it is not UTF-8"
	case name != strings.TrimSpace(name):
		return "the name begins or ends with a space"
	case strings.HasSuffix(name, "."):
		return "the name ends with '.'"
	}
	for _, r := range name {
		switch {
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\u0085':
			return "it contains a control character or line break"
		case strings.ContainsRune(nameForbidden, r):
			return fmt.Sprintf("it contains %q, which a user or group name may not", r)
		case r != ' ' && unicode.IsSpace(r):
			return "it contains white space other than a space"
		}
	}
	return ""
}

// checkDomainName checks the DOMAIN of DOMAIN\name: a NetBIOS domain name.
func checkDomainName(d string) string {
	if d == "" || len(d) > 15 {
		return "the domain before '\\' must be 1 to 15 characters (the NetBIOS domain name)"
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return "the domain before '\\' may hold letters, digits, '-', '_' and '.' only"
		}
	}
	return ""
}

// CheckAccessEntry checks one access list entry: [@|+][DOMAIN\]name.
func CheckAccessEntry(entry string) error {
	rest := strings.TrimPrefix(strings.TrimPrefix(entry, "@"), "+")
	if len(entry)-len(rest) > 1 {
		return fmt.Errorf("%w: %s refused: mark a group with one '@' or '+'", ErrBadAccess, strconv.Quote(entry))
	}
	why := ""
	if dom, name, ok := strings.Cut(rest, `\`); ok {
		if why = checkDomainName(dom); why == "" {
			why = checkAccessName(name)
		}
	} else {
		why = checkAccessName(rest)
	}
	if why != "" {
		return fmt.Errorf("%w: %s refused: %s (an entry is a user or, with a leading '@', a group: name or DOMAIN\\name)", ErrBadAccess, strconv.Quote(entry), why)
	}
	return nil
}

// Check checks every entry of a.
func (a Access) Check() error {
	for _, l := range []struct {
		opt  string
		list []string
	}{{"valid users", a.ValidUsers}, {"invalid users", a.InvalidUsers}, {"admin users", a.AdminUsers}} {
		for _, e := range l.list {
			if err := CheckAccessEntry(e); err != nil {
				return fmt.Errorf("%s: %w", l.opt, err)
			}
		}
	}
	return nil
}

// CheckShareName checks that an SMB share name is one smb.conf and
// Windows clients take: none of the characters Windows refuses in share
// names (']' would end smb.conf's section header early), no '%', and not
// a section Samba gives its own meaning.
func CheckShareName(name string) error {
	switch strings.ToLower(name) {
	case "global", "homes", "printers":
		return fmt.Errorf("share name %q is a section Samba reserves: it cannot be served over SMB", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) || strings.ContainsRune(`"/\[]:|<>+=;,*?%`, r) {
			return fmt.Errorf("%w: share name %s cannot be served over SMB: it contains %q", ErrBadAccess, strconv.Quote(name), r)
		}
	}
	return nil
}

// confList renders an access list for smb.conf: every entry quoted (a
// name may hold spaces), groups marked '+' (a Unix or domain group, as
// winbind resolves it; '@' would ask NIS first).
func confList(entries []string) string {
	out := make([]string, len(entries))
	for i, e := range entries {
		if g, ok := strings.CutPrefix(e, "@"); ok {
			e = "+" + g
		}
		out[i] = `"` + e + `"`
	}
	return strings.Join(out, ", ")
}
