package smb

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Where the views are mounted. smbd works in a share as the share's owner
// (force user) and changes into the share's directory as that account, so
// every directory above a view must let the owner search it. A gateway's
// data directory is private (0700: gatewayd init makes it so, as does
// systemd's StateDirectory), and the configured mount directory
// (smb.mount_dir, smb/mnt) lies below it: there a share owned by any
// account but root could not be opened over SMB at all.

// runtimeMountRoot holds the views of gateways whose mount directory is
// out of reach.
const runtimeMountRoot = "/run/gatewayd"

// MountRoot returns the directory to mount the views in for the
// configured mount directory dir: dir itself when every account can reach
// it (each directory on its path lets others search it) or when gatewayd
// is not root (smbd then runs as gatewayd's own account alone and cannot
// work as another); else a directory of its own below /run/gatewayd,
// named by dir's absolute path, so that the same configuration mounts in
// the same place after a restart and finds what a killed gatewayd left.
// When that directory cannot be made (/run read-only to gatewayd), it
// returns dir with the reason: shares owned by other accounts than root
// are then out of reach, as before.
func MountRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir, err
	}
	if os.Geteuid() != 0 || reachable(abs) {
		return abs, nil
	}
	sum := sha256.Sum256([]byte(abs))
	root := filepath.Join(runtimeMountRoot, "smb-"+hex.EncodeToString(sum[:8]))
	if err := makeMountRoot(root); err != nil {
		return abs, err
	}
	return root, nil
}

// makeMountRoot makes root, the directory the views are mounted in. One
// of runtimeMountRoot's, and runtimeMountRoot, are made searchable by
// every account whatever gatewayd's umask (the appliance's unit has 0077).
func makeMountRoot(root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if !strings.HasPrefix(root, runtimeMountRoot+string(filepath.Separator)) {
		return nil
	}
	for _, d := range []string{runtimeMountRoot, root} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// reachable says whether every account may search each directory of
// path, from the root down (those not made yet gatewayd makes 0755).
func reachable(path string) bool {
	for d := path; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		switch {
		case err == nil && st.Mode().Perm()&0o001 == 0:
			return false
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// CleanMountRoot detaches every mount below root, a MountRoot, and removes
// it when it is one of /run/gatewayd's: what a gatewayd killed there
// leaves.
func CleanMountRoot(root string) error {
	_, err := CleanStale(root)
	removeMountDirs(root)
	return err
}

// removeMountDirs removes the empty mount points below root, and root,
// when root is one of runtimeMountRoot's: nothing of a stopped gateway
// stays there. A view still busy (detached lazily) keeps its directory.
func removeMountDirs(root string) {
	if !strings.HasPrefix(root, runtimeMountRoot+string(filepath.Separator)) {
		return
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		_ = os.Remove(filepath.Join(root, e.Name()))
	}
	_ = os.Remove(root)
}
