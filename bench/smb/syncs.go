package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syncCalls are the system calls with which a server waits for the disk
// (badger, gatewayd's metadata store, syncs with msync).
var syncCalls = []string{"fsync", "fdatasync", "msync", "sync_file_range"}

// countSyncs counts the sync calls of pids (every thread) with perf stat
// while fn runs. Without perf, or when it fails, fn runs uncounted and
// the error says why.
func countSyncs(pids []int, dir string, fn func()) (map[string]int, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		fn()
		return nil, err
	}
	var events, ps []string
	for _, c := range syncCalls {
		events = append(events, "syscalls:sys_enter_"+c)
	}
	for _, p := range pids {
		ps = append(ps, strconv.Itoa(p))
	}
	out := filepath.Join(dir, fmt.Sprintf("syncs-%d.csv", time.Now().UnixNano()))
	defer os.Remove(out)
	cmd := exec.Command(perf, "stat", "-x,", "-e", strings.Join(events, ","), "-p", strings.Join(ps, ","), "-o", out)
	if err := cmd.Start(); err != nil {
		fn()
		return nil, err
	}
	// perf attaches within a moment; what the row does before is not
	// counted (untimed: the row starts after).
	time.Sleep(500 * time.Millisecond)
	fn()
	_ = cmd.Process.Signal(syscall.SIGINT)
	// perf stat writes its counts and then ends by the signal it got.
	waitErr := cmd.Wait()
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("perf stat (%v): %w", waitErr, err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil && !strings.HasPrefix(f[0], "<not counted>") {
			continue // a comment; "not counted": the threads never ran
		}
		counts[strings.TrimPrefix(f[2], "syscalls:sys_enter_")] += n
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("perf stat (%v) counted nothing: %s", waitErr, b)
	}
	return counts, nil
}

// printSyncs prints the sync calls per file each row made, by server.
func printSyncs(servers []*server, files int) {
	fmt.Printf("\nSync calls per file (perf stat on the server's processes: gatewayd and its smbd, plain smbd)\n\n")
	fmt.Println("| row | server | " + strings.Join(syncCalls, " | ") + " |")
	fmt.Println("|---|---|" + strings.Repeat("---|", len(syncCalls)))
	for _, p := range phases {
		for _, s := range servers {
			c, ok := s.syncs[p]
			if !ok {
				continue
			}
			row := []string{p, s.name}
			for _, k := range syncCalls {
				row = append(row, fmt.Sprintf("%.2f", float64(c[k])/float64(files)))
			}
			fmt.Println("| " + strings.Join(row, " | ") + " |")
		}
	}
}
