package names

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
		why  string
	}{
		{"vol1", true, ""},
		{"weekly backup", true, ""},
		{"ünïcode", true, ""},
		{".hidden", true, ""},
		{"a..b", true, ""},
		{strings.Repeat("x", 255), true, ""},
		{"", false, "empty"},
		{".", false, "reserved"},
		{"..", false, "reserved"},
		{"a/b", false, "slash"},
		{"/", false, "slash"},
		{`a\b`, false, "slash"},
		{"a\x00b", false, "control"},
		{"a\nb", false, "control"},
		{"tab\there", false, "control"},
		{"del\x7f", false, "control"},
		{"c1\u0085", false, "control"},
		{"bad\xffutf8", false, "UTF-8"},
		{strings.Repeat("x", 256), false, "256 bytes"},
	} {
		err := Check("volume name", c.name)
		if c.ok {
			if err != nil {
				t.Errorf("Check(%q) = %v, want ok", c.name, err)
			}
			continue
		}
		var ne *Error
		if !errors.As(err, &ne) || !errkind.IsPermanent(err) {
			t.Errorf("Check(%q) = %v, want a permanent *Error", c.name, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.why) || !strings.Contains(msg, Rule) || !strings.HasPrefix(msg, "volume name ") {
			t.Errorf("Check(%q) = %q: want %q and the rule", c.name, msg, c.why)
		}
		if strings.ContainsAny(msg, "\x00\n") || len(msg) > 300 {
			t.Errorf("Check(%q): message is not one short line: %q", c.name, msg)
		}
	}
}

func TestCheckIdent(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"db-1_a.b", true}, {strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false}, {"a b", false}, {"é", false}, {".", false}, {"..", false}, {"a/b", false},
	} {
		err := CheckIdent("share name", c.name, 64)
		if (err == nil) != c.ok {
			t.Errorf("CheckIdent(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), Rule) {
			t.Errorf("CheckIdent(%q) = %q lacks the rule", c.name, err)
		}
	}
}
