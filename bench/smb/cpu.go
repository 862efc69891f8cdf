package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ; 100 on
// Linux for every architecture the benchmark runs on).
const clockTicks = 100

// cpuTimes is the CPU time (user and system, seconds) used so far by the
// server's own process (root, gatewayd or plain smbd's parent), by its
// smbd processes, and by this program (the go-smb2 client).
type cpuTimes struct{ server, smbd, client float64 }

// sampleCPU reads the CPU times of root, of every smbd below it, and of
// this process. A process that ended meanwhile is not counted (the
// client's smbd lives as long as its connection, the whole row).
func sampleCPU(root int) cpuTimes {
	var c cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.client = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	t := readProcs()
	for pid, p := range t {
		switch {
		case pid == root && p.comm != "smbd":
			c.server += p.cpu
		case p.comm == "smbd" && (pid == root || t.below(pid, root)):
			c.smbd += p.cpu
		}
	}
	return c
}

// proc is a process as /proc/PID/stat shows it.
type proc struct {
	comm string
	ppid int
	cpu  float64 // user and system, seconds
}

type procTable map[int]proc

// readProcs reads every process's /proc/PID/stat.
func readProcs() procTable {
	t := procTable{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15)
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		t[pid] = proc{comm: s[open+1 : end], ppid: ppid, cpu: (ut + st) / clockTicks}
	}
	return t
}

// below says whether pid descends from root.
func (t procTable) below(pid, root int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid = t[pid].ppid; pid == root {
			return true
		}
	}
	return false
}

// serverPIDs are root and its smbd processes.
func serverPIDs(root int) []int {
	t := readProcs()
	pids := []int{root}
	for pid, p := range t {
		if pid != root && p.comm == "smbd" && t.below(pid, root) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{c.server - o.server, c.smbd - o.smbd, c.client - o.client}
}

// printCPU prints the CPU time per file each row took, by process.
func printCPU(servers []*server, phases []string, files int) {
	fmt.Printf("\nCPU time per file (ms; /proc/PID/stat and getrusage: wall is the row's time per file)\n\n")
	fmt.Println("| row | server | wall | gatewayd | smbd | client (go-smb2) |")
	fmt.Println("|---|---|---|---|---|---|")
	ms := func(sec float64) string { return fmt.Sprintf("%.2f", sec*1000/float64(files)) }
	for _, p := range phases {
		for _, s := range servers {
			c, ok := s.cpu[p]
			if !ok {
				continue
			}
			gw := ms(c.server)
			if s.dataDir == "" {
				gw = "-"
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", p, s.name, ms(s.wall[p].Seconds()), gw, ms(c.smbd), ms(c.client))
		}
	}
}
