package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// fuseTrace counts the FUSE requests the kernel sends to one mount: a
// tracefs instance of its own (so other users of tracing are not
// disturbed) with the fuse:fuse_request_send event, filtered on the
// mount's connection (its device number).
type fuseTrace struct {
	dir string // the instance
}

// newFuseTrace finds the mount below dir whose source is source
// (gatewayd names a share's view "gatewayd:SHARE") and makes the
// instance.
func newFuseTrace(dir, source string) (*fuseTrace, error) {
	minor, err := mountMinor(dir, source)
	if err != nil {
		return nil, err
	}
	root := "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(root, "instances")); err != nil {
		root = "/sys/kernel/debug/tracing"
	}
	if _, err := os.Stat(filepath.Join(root, "events", "fuse", "fuse_request_send")); err != nil {
		return nil, fmt.Errorf("no fuse_request_send trace event: %w", err)
	}
	f := &fuseTrace{dir: filepath.Join(root, "instances", fmt.Sprintf("bench-smb-%d", os.Getpid()))}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		return nil, err
	}
	for _, w := range [][2]string{
		{"buffer_size_kb", "16384"},
		// A FUSE connection's device is anonymous: major 0, so the
		// kernel's dev_t is the minor.
		{"events/fuse/fuse_request_send/filter", fmt.Sprintf("connection == %d", minor)},
	} {
		if err := os.WriteFile(filepath.Join(f.dir, w[0]), []byte(w[1]), 0o644); err != nil {
			f.close()
			return nil, fmt.Errorf("%s: %w", w[0], err)
		}
	}
	return f, nil
}

// mountMinor is the minor device number of the mount below dir whose
// source is source, from /proc/self/mountinfo.
func mountMinor(dir, source string) (int, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+2 >= len(fields) || fields[sep+2] != source || !strings.HasPrefix(fields[4], dir+"/") {
			continue
		}
		majmin := strings.SplitN(fields[2], ":", 2)
		if len(majmin) != 2 || majmin[0] != "0" {
			return 0, fmt.Errorf("mount %s: device %s, want an anonymous one (0:N)", source, fields[2])
		}
		return strconv.Atoi(majmin[1])
	}
	return 0, fmt.Errorf("no mount of %s below %s", source, dir)
}

var fuseOp = regexp.MustCompile(`fuse_request_send: .*\((\w+)\)`)

// count runs fn with the event on and returns how many requests of each
// kind the mount got meanwhile. Events the buffer lost make it fail.
func (f *fuseTrace) count(fn func()) (map[string]int, error) {
	enable := filepath.Join(f.dir, "events/fuse/fuse_request_send/enable")
	if err := os.WriteFile(filepath.Join(f.dir, "trace"), nil, 0o644); err != nil { // empties it
		fn()
		return nil, err
	}
	if err := os.WriteFile(enable, []byte("1"), 0o644); err != nil {
		fn()
		return nil, err
	}
	fn()
	if err := os.WriteFile(enable, []byte("0"), 0o644); err != nil {
		return nil, err
	}
	out := map[string]int{}
	b, err := os.ReadFile(filepath.Join(f.dir, "trace"))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m := fuseOp.FindStringSubmatch(line); m != nil {
			out[strings.TrimPrefix(m[1], "FUSE_")]++
		}
	}
	cpus, _ := filepath.Glob(filepath.Join(f.dir, "per_cpu", "cpu*", "stats"))
	for _, c := range cpus {
		st, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if n, ok := strings.CutPrefix(line, "overrun: "); ok && strings.TrimSpace(n) != "0" {
				return out, fmt.Errorf("the trace buffer lost %s events (%s)", strings.TrimSpace(n), c)
			}
		}
	}
	return out, nil
}

func (f *fuseTrace) close() {
	_ = os.WriteFile(filepath.Join(f.dir, "events/fuse/fuse_request_send/enable"), []byte("0"), 0o644)
	_ = os.Remove(f.dir)
}

// printCounts prints the view's FUSE requests per file of each phase.
func printCounts(counts map[string]map[string]int, files int) {
	kinds := map[string]bool{}
	for _, c := range counts {
		for k := range c {
			kinds[k] = true
		}
	}
	order := slices.Sorted(maps.Keys(kinds))
	fmt.Printf("\nFUSE requests gatewayd's view got per file (go-smb2 share, %d files; kernel trace event fuse_request_send)\n\n", files)
	fmt.Println("| request | " + strings.Join(phases, " | ") + " |")
	fmt.Println("|---|" + strings.Repeat("---|", len(phases)))
	total := make([]int, len(phases))
	for _, k := range order {
		row := []string{strings.ToLower(k)}
		for i, p := range phases {
			n := counts[p][k]
			total[i] += n
			row = append(row, fmt.Sprintf("%.2f", float64(n)/float64(files)))
		}
		fmt.Println("| " + strings.Join(row, " | ") + " |")
	}
	row := []string{"all"}
	for i := range phases {
		row = append(row, fmt.Sprintf("%.2f", float64(total[i])/float64(files)))
	}
	fmt.Println("| " + strings.Join(row, " | ") + " |")
}
