package smbtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestTortureList(t *testing.T) {
	if _, err := exec.LookPath("smbtorture"); err != nil {
		t.Fatalf("smbtorture not found: install it with `%s`", InstallCommand)
	}
	oplock, err := TortureList("smb2.oplock")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"smb2.oplock.exclusive1", "smb2.oplock.levelii502", "smb2.oplock.statopen1"} {
		if !slices.Contains(oplock, want) {
			t.Errorf("smb2.oplock's tests %v lack %s", oplock, want)
		}
	}
	// A suite that is one test is named as its result is.
	if one, err := TortureList("smb2.setinfo"); err != nil || !slices.Equal(one, []string{"smb2.setinfo.setinfo"}) {
		t.Errorf("smb2.setinfo: %v, %v", one, err)
	}
	if none, err := TortureList("smb2.no-such-suite"); err == nil && len(none) != 0 {
		t.Errorf("a suite smbtorture lacks: %v", none)
	}
}

func TestParseTortureAndTail(t *testing.T) {
	out := "smbtorture 4.17\ntest: a\nsuccess: a\ntest: b\nfailure: b [\nwhy\n]\n"
	res, lines := ParseTorture("s", out)
	if res["s.a"] != "success" || res["s.b"] != "failure" || len(res) != 2 {
		t.Fatalf("results %v", res)
	}
	if !strings.HasPrefix(lines["s.b"], "test: b\nfailure: b [\nwhy\n]\n") || strings.Contains(lines["s.b"], "test: a") {
		t.Fatalf("lines of s.b: %q", lines["s.b"])
	}
	if got := tail(out, 2); got != "why\n]" {
		t.Fatalf("tail: %q", got)
	}
	if got := tail("one", 5); got != "one" {
		t.Fatalf("tail of a short output: %q", got)
	}
}
