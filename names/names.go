// Package names holds the one rule for the names users give gatewayd:
// volumes, shares, tape barcode prefixes, snapshot descriptions and SMB
// users. A name that breaks it is refused when the thing is created, with
// the rule in the message, so that nothing is made that later commands
// cannot address (a volume named "." would be created and then every URL
// naming it would resolve to another path).
package names

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatewayd/gatewayd/errkind"
)

// MaxLen is the longest name in bytes, what a file name or an S3 key
// segment takes.
const MaxLen = 255

// Rule is what every name must be; every refusal quotes it.
const Rule = `a name is 1 to 255 bytes of UTF-8, not "." or "..", without '/', '\' or control characters`

// Error is a refused name. Services return it marked errkind.Permanent.
type Error struct {
	What   string // what the name is for: "volume name"
	Name   string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s refused: %s (%s)", e.What, quote(e.Name), e.Reason, Rule)
}

// quote shows a name with its control characters escaped and a long one
// cut short, so the message stays one readable line.
func quote(name string) string {
	const show = 40
	if len(name) > show {
		cut := show
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		return strconv.Quote(name[:cut]) + "..."
	}
	return strconv.Quote(name)
}

func refuse(what, name, reason string) error {
	return errkind.Mark(errkind.Permanent, &Error{What: what, Name: name, Reason: reason})
}

// Check applies the rule to name; what says what it names ("volume name").
func Check(what, name string) error {
	switch {
	case name == "":
		return refuse(what, name, "it is empty")
	case len(name) > MaxLen:
		return refuse(what, name, fmt.Sprintf("it is %d bytes", len(name)))
	case name == "." || name == "..":
		return refuse(what, name, "it is reserved")
	case strings.ContainsAny(name, `/\`):
		return refuse(what, name, "it contains a slash")
	case !utf8.ValidString(name):
		return refuse(what, name, "it is not UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return refuse(what, name, "it contains a control character")
		}
	}
	return nil
}

// CheckIdent applies the rule and, for names that also appear in protocol
// identifiers, allows only letters, digits, '-', '_' and '.', at most max
// bytes.
func CheckIdent(what, name string, max int) error {
	if err := Check(what, name); err != nil {
		return err
	}
	if len(name) > max {
		return refuse(what, name, fmt.Sprintf("it is %d bytes; a %s is at most %d bytes of letters, digits, '-', '_' and '.'", len(name), what, max))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return refuse(what, name, fmt.Sprintf("use letters, digits, '-', '_' and '.' only in a %s", what))
		}
	}
	return nil
}
