package smb

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// mountpoints lists this mount namespace's mount points, from mountinfo.
func mountpoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMount(fields[4]))
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmount detaches the mount on dir at once, even when busy or dead: with
// umount2(MNT_DETACH) as root, else with fusermount's lazy unmount.
func unmount(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err == nil || errors.Is(err, syscall.EINVAL) && !isMountpoint(dir) {
		return nil
	}
	for _, tool := range []string{"fusermount3", "fusermount"} {
		if bin, lerr := exec.LookPath(tool); lerr == nil {
			if out, ferr := exec.Command(bin, "-u", "-z", dir).CombinedOutput(); ferr != nil {
				return fmt.Errorf("%s -u -z %s: %v: %s", tool, dir, ferr, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return fmt.Errorf("unmount %s: %w", dir, err)
}

// CleanStale unmounts every mount below root: the FUSE views a gatewayd
// that was killed left behind. It returns the directories it unmounted.
func CleanStale(root string) ([]string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	points, err := mountpoints()
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	var done []string
	// Deepest first, so nested mounts go before their parents.
	for i := len(points) - 1; i >= 0; i-- {
		p := points[i]
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			continue
		}
		if err := unmount(p); err != nil {
			return done, fmt.Errorf("stale mount: %w", err)
		}
		done = append(done, p)
	}
	return done, nil
}
