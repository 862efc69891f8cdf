package diskclaim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Every name of one file is one disk; a held disk is refused to a second
// holder until it is released.
func TestIdentifyAndHold(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	if err := os.WriteFile(img, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	want, real, err := Identify(img)
	if err != nil || want.Block || real != img {
		t.Fatalf("Identify(%s) = %v, %s, %v", img, want, real, err)
	}
	hard := filepath.Join(dir, "hard")
	if err := os.Link(img, hard); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(dir, "sym")
	if err := os.Symlink("a.img", sym); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{hard, sym, filepath.Join(dir, ".", "x", "..", "a.img")} {
		_ = os.Mkdir(filepath.Join(dir, "x"), 0o700)
		if id, _, err := Identify(p); err != nil || id != want {
			t.Fatalf("Identify(%s) = %v, %v; want %v", p, id, err, want)
		}
	}
	other := filepath.Join(dir, "b.img")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := Identify(other); id == want {
		t.Fatal("two files, one identity")
	}
	if _, _, err := Identify(dir); !errors.Is(err, ErrNotDisk) {
		t.Fatalf("Identify(directory): %v", err)
	}
	if _, _, err := Identify("/dev/null"); !errors.Is(err, ErrNotDisk) {
		t.Fatalf("Identify(/dev/null): %v", err)
	}

	d, err := Open(sym)
	if err != nil {
		t.Fatal(err)
	}
	if size, err := d.Size(); err != nil || size != 8192 {
		t.Fatalf("Size = %d, %v", size, err)
	}
	for _, p := range []string{img, hard} {
		if d2, err := Open(p); !errors.Is(err, ErrBusy) {
			if d2 != nil {
				d2.Close()
			}
			t.Fatalf("second Open(%s) while held: %v", p, err)
		}
	}
	d.Close()
	d, err = Open(hard)
	if err != nil {
		t.Fatalf("Open after release: %v", err)
	}
	d.Close()

	n, err := Create(filepath.Join(dir, "new.img"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := Open(filepath.Join(dir, "new.img")); !errors.Is(err, ErrBusy) {
		t.Fatalf("Open of a file Create holds: %v", err)
	}
	if _, err := Create(img, 0o600); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing file: %v", err)
	}
}
