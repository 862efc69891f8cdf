package smb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSmbd writes a script that answers smbd -b with modules as its
// MODULESDIR, holding the vfs modules named.
func fakeSmbd(t *testing.T, modules ...string) string {
	t.Helper()
	dir := t.TempDir()
	vfs := filepath.Join(dir, "modules", "vfs")
	if err := os.MkdirAll(vfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		if err := os.WriteFile(filepath.Join(vfs, m+".so"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "smbd")
	script := "#!/bin/sh\necho 'Paths:'\necho '   MODULESDIR: " + filepath.Join(dir, "modules") + "'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMissingModulesNamed(t *testing.T) {
	if err := checkModules(fakeSmbd(t, neededModules...)); err != nil {
		t.Fatalf("all modules there: %v", err)
	}
	err := checkModules(fakeSmbd(t, "acl_xattr"))
	if err == nil {
		t.Fatal("no error with streams_xattr and full_audit missing")
	}
	for _, want := range []string{"streams_xattr, full_audit", ModulesInstallHint} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// New refuses to start with it, before touching anything.
	if _, err := New(Options{Smbd: fakeSmbd(t), MountDir: t.TempDir(), Settings: Settings{Listen: "127.0.0.1:1445", StateDir: t.TempDir()}}); err == nil || !strings.Contains(err.Error(), ModulesInstallHint) {
		t.Fatalf("New with no modules: %v", err)
	}
	// The smbd on this machine has them all.
	if smbd, err := FindSmbd(""); err == nil {
		if err := checkModules(smbd); err != nil {
			t.Fatalf("installed smbd: %v", err)
		}
	}
}
