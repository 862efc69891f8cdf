// Package testtree is a real source tree to copy onto shares: the Go
// toolchain's src directory, topped up with generated files to the number
// asked for. The large-tree test and the NFS tree benchmark copy the same
// tree.
package testtree

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/gatewayd/gatewayd/internal/testrand"
)

// File is one file of the tree.
type File struct {
	Path string // slash-separated, relative to the tree's root
	Src  string // the source file; "" for generated content
	Seed uint64 // of generated content
	Size int
	Sum  [sha256.Size]byte
}

// Data is the file's content, checked against its checksum.
func (f File) Data() ([]byte, error) {
	if f.Src == "" {
		return testrand.Bytes(f.Seed, f.Size), nil
	}
	b, err := os.ReadFile(f.Src)
	if err == nil && sha256.Sum256(b) != f.Sum {
		err = fmt.Errorf("%s changed since it was read", f.Src)
	}
	return b, err
}

// Tree is directories and files.
type Tree struct {
	Dirs  []string // parents before their children
	Files []File
}

// Bytes is the size of all the files.
func (t Tree) Bytes() int64 {
	var n int64
	for _, f := range t.Files {
		n += int64(f.Size)
	}
	return n
}

// Generated is how many files are generated.
func (t Tree) Generated() int {
	n := 0
	for _, f := range t.Files {
		if f.Src == "" {
			n++
		}
	}
	return n
}

// GoSource is the Go toolchain's src directory (of the go command on
// PATH) as the tree's src/, with at least n files: generated files under
// topup/, 250 to a directory with the sizes of the real ones, make up the
// rest; with fewer than it has, its first n files.
func GoSource(n int) (Tree, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return Tree{}, fmt.Errorf("go env GOROOT: %w", err)
	}
	return FromDir(filepath.Join(strings.TrimSpace(string(out)), "src"), "src", n)
}

// FromDir is the tree under root, as the tree's dir/, topped up to n
// files as GoSource says.
func FromDir(root, dir string, n int) (Tree, error) {
	var tr Tree
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = path.Join(dir, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			tr.Dirs = append(tr.Dirs, rel)
		case d.Type().IsRegular() && len(tr.Files) < n:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tr.Files = append(tr.Files, File{Path: rel, Src: p, Size: len(b), Sum: sha256.Sum256(b)})
		}
		return nil
	})
	if err != nil {
		return Tree{}, fmt.Errorf("reading %s: %w", root, err)
	}
	real := len(tr.Files)
	if real == 0 {
		return Tree{}, fmt.Errorf("no files in %s", root)
	}
	if real < n {
		tr.Dirs = append(tr.Dirs, "topup")
	}
	for i := 0; real+i < n; i++ {
		d := fmt.Sprintf("topup/d%03d", i/250)
		if i%250 == 0 {
			tr.Dirs = append(tr.Dirs, d)
		}
		f := File{Path: fmt.Sprintf("%s/f%05d.txt", d, i), Seed: uint64(1000 + i), Size: tr.Files[i%real].Size}
		f.Sum = sha256.Sum256(testrand.Bytes(f.Seed, f.Size))
		tr.Files = append(tr.Files, f)
	}
	return tr, nil
}
