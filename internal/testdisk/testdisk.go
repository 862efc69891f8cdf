// Package testdisk makes the local disks tests of stored volumes and
// restores need: sparse image files and loop devices.
package testdisk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Sparse makes a sparse file of size bytes at path.
func Sparse(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// NeedRoot skips a test that needs loop devices or mounts when not root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mounts)")
	}
}

// Loop attaches a loop device to a new sparse file of size bytes and
// returns its path; it is detached when the test ends. Call it before
// starting what opens the device, so cleanups stop that first.
func Loop(t testing.TB, size int64) string {
	t.Helper()
	NeedRoot(t)
	img := filepath.Join(t.TempDir(), "loop.img")
	Sparse(t, img, size)
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}
