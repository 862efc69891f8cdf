package smb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountRoot: views go out of a directory other accounts cannot
// search, to the same place every time, and stay where every account can
// reach them.
func TestMountRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: as another account views stay where they are configured")
	}
	private := filepath.Join(t.TempDir(), "data", "smb", "mnt") // t.TempDir is 0700
	got, err := MountRoot(private)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeMountDirs(got) })
	if !strings.HasPrefix(got, runtimeMountRoot+"/smb-") {
		t.Fatalf("views of %s in %s, want them below %s", private, got, runtimeMountRoot)
	}
	if fi, err := os.Stat(got); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s: %v, %v; want a directory every account can search", got, fi, err)
	}
	if again, _ := MountRoot(private); again != got {
		t.Fatalf("the same configuration mounts in %s, then in %s", got, again)
	}
	other, _ := MountRoot(private + "2")
	t.Cleanup(func() { removeMountDirs(other) })
	if other == got {
		t.Fatalf("two mount directories share %s", got)
	}

	open, err := os.MkdirTemp("", "mountroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	reach := filepath.Join(open, "smb", "mnt")
	if got, err := MountRoot(reach); err != nil || got != reach {
		t.Fatalf("views of %s (every account reaches it) in %s, %v", reach, got, err)
	}
	if err := os.Mkdir(filepath.Join(open, "smb"), 0o750); err != nil {
		t.Fatal(err)
	}
	if got, _ := MountRoot(reach); got == reach {
		t.Fatalf("views of %s stay below a directory others cannot search", reach)
	}
}
