// Command smb benchmarks gatewayd's SMB shares against plain smbd on a
// local directory, one after the other in one run: a large file put and
// got with smbclient, and many small files written, read and removed with
// the go-smb2 client. It prints a table with the ratios.
//
//	go run ./bench/smb                      # 1 GiB file, 2000 small files
//	go run ./bench/smb -size 256M -files 500
//
// See bench/smb/README.md for what each row measures.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/frontends/smb"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

var (
	sizeFlag  = flag.String("size", "1G", "size of the large file")
	filesFlag = flag.Int("files", 2000, "number of small files")
	smallFlag = flag.String("small", "4K", "size of each small file")
	workFlag  = flag.String("work", "", "scratch directory (default: a new one under $TMPDIR)")
	profFlag  = flag.String("profile", "", "directory for gatewayd's CPU profiles of the get and small-file rows (PHASE.pprof); none without it")
	profSecs  = flag.Int("profile-seconds", 10, "length of each CPU profile, from the start of its row (the next row waits for it)")
)

const password = "bench-password"

// phases are the small-file rows, in order.
var phases = []string{"create+write+close", "open+read+close", "remove"}

// server is one SMB server under test: a share for smbclient (signed) and
// an encrypted one for go-smb2 (the go-smb2 rows have measured encrypted
// sessions since the first run; kept so that runs compare).
type server struct {
	name          string
	addr          string
	share, sealed string
	stop          func()
	put, get      time.Duration
	// getSettled is the get again once settle is done: gatewayd has
	// uploaded the file and both servers' dirty pages are written back.
	getSettled           time.Duration
	create, read, remove time.Duration
	// view: the FUSE mount of the go-smb2 share (gatewayd, whose data
	// directory is dataDir), whose requests are counted during each
	// small-file phase.
	dataDir string
	bin     string // gatewayd's binary
	view    *fuseTrace
	counts  map[string]map[string]int // phase -> FUSE request -> count
	// pid is the server's process (gatewayd, or plain smbd's parent);
	// cpu and wall are what each small-file row took.
	pid   int
	cpu   map[string]cpuTimes
	wall  map[string]time.Duration
	syncs map[string]map[string]int // phase -> sync call -> count
}

func main() {
	log.SetFlags(0)
	flag.Parse()
	size, err := config.ParseByteSize(*sizeFlag)
	if err != nil {
		log.Fatal(err)
	}
	small, err := config.ParseByteSize(*smallFlag)
	if err != nil {
		log.Fatal(err)
	}
	work := *workFlag
	if work == "" {
		if work, err = os.MkdirTemp("", "bench-smb"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(work)
	}
	for _, tool := range []string{"smbclient", "smbpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			log.Fatalf("%s not found: %s", tool, smbtest.InstallCommand)
		}
	}
	big := filepath.Join(work, "big.bin")
	writeRandom(big, int64(size))

	gw := startGateway(work)
	defer gw.stop()
	plain := startPlain(work)
	defer plain.stop()

	// The views are mounted where the daemon's SMB frontend puts them
	// (smb.mount_dir, by default below the data directory, moved out of
	// it when other accounts cannot reach it there).
	mountDir, _ := smb.MountRoot(filepath.Join(gw.dataDir, "smb", "mnt"))
	view, err := newFuseTrace(mountDir, "gatewayd:"+gw.sealed)
	if err != nil {
		log.Printf("the view's FUSE requests are not counted: %v", err)
	} else {
		defer view.close()
		gw.view = view
	}
	for _, s := range []*server{gw, plain} {
		log.Printf("== %s on %s (load average %s)", s.name, s.addr, loadAverage())
		s.put = timed(func() { smbclient(s, work, "put big.bin big.bin") })
		get := func() time.Duration { return timed(func() { smbclient(s, work, "get big.bin /dev/null") }) }
		s.get = profiled(s, "get", get)
		settle(s)
		s.getSettled = profiled(s, "get-settled", get)
		smallFiles(s, work, *filesFlag, int(small))
	}
	mb := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	fps := func(d time.Duration) float64 { return float64(*filesFlag) / d.Seconds() }
	fmt.Printf("\ngatewayd SMB share vs plain smbd (Samba %s) on a local directory, same run, %s\n\n", sambaVersion(), time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| workload | unit | gatewayd | plain smbd | ratio |")
	fmt.Println("|---|---|---|---|---|")
	row := func(name, unit string, f func(time.Duration) float64, g, p time.Duration) {
		fmt.Printf("| %s | %s | %.0f | %.0f | %.2f |\n", name, unit, f(g), f(p), f(g)/f(p))
	}
	row(fmt.Sprintf("smbclient put (%s)", config.ByteSize(size)), "MB/s", mb, gw.put, plain.put)
	row(fmt.Sprintf("smbclient get (%s)", config.ByteSize(size)), "MB/s", mb, gw.get, plain.get)
	row(fmt.Sprintf("smbclient get (%s), uploaded and written back", config.ByteSize(size)), "MB/s", mb, gw.getSettled, plain.getSettled)
	row(fmt.Sprintf("go-smb2 create+write+close (%d x %s)", *filesFlag, config.ByteSize(small)), "files/s", fps, gw.create, plain.create)
	row(fmt.Sprintf("go-smb2 open+read+close (%d x %s)", *filesFlag, config.ByteSize(small)), "files/s", fps, gw.read, plain.read)
	row(fmt.Sprintf("go-smb2 remove (%d files)", *filesFlag), "files/s", fps, gw.remove, plain.remove)
	if gw.counts != nil {
		printCounts(gw.counts, *filesFlag)
	}
	printCPU([]*server{gw, plain}, phases, *filesFlag)
	printSyncs([]*server{gw, plain}, *filesFlag)
	fmt.Printf("\nload average at the end (uptime): %s\n", loadAverage())
}

// settle ends what the large file left behind before the small-file
// rows (untimed): gatewayd's upload of it into its store and cache, and
// for both servers the kernel's writeback of dirty pages. Otherwise the
// small-file rows of gatewayd measure the upload of the 1 GiB file as much
// as the small files.
func settle(s *server) {
	if s.bin != "" {
		run(s.bin, "share", "wait", "--data-dir", s.dataDir, "--flush", s.share)
	}
	run("sync")
}

// loadAverage is the load average, as uptime prints it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func writeRandom(path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func smbclient(s *server, dir, cmds string) {
	if err := smbtest.Smbclient(s.addr, s.share, "root", password, cmds, dir); err != nil {
		log.Fatal(err)
	}
}

// smallFiles writes, reads back and removes n files of size bytes, each
// its own create, write and close, through one go-smb2 connection.
func smallFiles(s *server, work string, n, size int) {
	fs, done, err := smbtest.Dial(s.addr, s.sealed, "root", password)
	if err != nil {
		log.Fatal(err)
	}
	defer done()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := fs.Mkdir("small", 0o755); err != nil {
		log.Fatal(err)
	}
	name := func(i int) string { return fmt.Sprintf(`small\f%05d`, i) }
	// The FUSE requests of each phase are counted while it runs (the
	// count costs the kernel a trace event per request), and so are the
	// sync calls of the server's processes and the CPU time; only the
	// row itself is timed.
	count := func(phase string, f func()) time.Duration {
		if s.cpu == nil {
			s.cpu, s.wall, s.syncs = map[string]cpuTimes{}, map[string]time.Duration{}, map[string]map[string]int{}
		}
		var d time.Duration
		row := func() {
			before := sampleCPU(s.pid)
			d = timed(f)
			s.cpu[phase] = sampleCPU(s.pid).sub(before)
		}
		traced := row
		if s.view != nil {
			traced = func() {
				c, err := s.view.count(row)
				if err != nil {
					log.Printf("counting the view's requests during %s: %v", phase, err)
				}
				if s.counts == nil {
					s.counts = map[string]map[string]int{}
				}
				s.counts[phase] = c
			}
		}
		c, err := countSyncs(serverPIDs(s.pid), work, traced)
		if err != nil {
			log.Printf("the sync calls of %s during %s are not counted: %v", s.name, phase, err)
		} else {
			s.syncs[phase] = c
		}
		s.wall[phase] = d
		return d
	}
	counted := func(phase string, f func()) time.Duration {
		return profiled(s, phase, func() time.Duration { return count(phase, f) })
	}
	s.create = counted("create+write+close", func() {
		for i := range n {
			if err := fs.WriteFile(name(i), data, 0o644); err != nil {
				log.Fatal(err)
			}
		}
	})
	s.read = counted("open+read+close", func() {
		for i := range n {
			got, err := fs.ReadFile(name(i))
			if err != nil || !bytes.Equal(got, data) {
				log.Fatalf("%s: read back %d bytes, %v", name(i), len(got), err)
			}
		}
	})
	s.remove = counted("remove", func() {
		for i := range n {
			if err := fs.Remove(name(i)); err != nil {
				log.Fatal(err)
			}
		}
	})
}

// profiled runs row, with -profile under gatewayd's CPU profile of its
// first seconds (PHASE.pprof); it returns once the profile is written
// (not timed), with the row's time.
func profiled(s *server, phase string, row func() time.Duration) time.Duration {
	if *profFlag == "" || s.dataDir == "" {
		return row()
	}
	done := startProfile(filepath.Join(s.dataDir, "admin.sock"), filepath.Join(*profFlag, strings.ReplaceAll(phase, "+", "-")+".pprof"), *profSecs)
	d := row()
	if err := done(); err != nil {
		log.Printf("CPU profile of %s: %v", phase, err)
	}
	return d
}

// startProfile asks gatewayd (its admin socket) for a CPU profile of
// seconds and writes it to out; done waits for it.
func startProfile(socket, out string, seconds int) (done func() error) {
	errc := make(chan error, 1)
	go func() {
		c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
		resp, err := c.Get(fmt.Sprintf("http://gatewayd/debug/pprof/profile?seconds=%d", seconds))
		if err != nil {
			errc <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errc <- fmt.Errorf("%s", resp.Status)
			return
		}
		f, err := os.Create(out)
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		errc <- err
	}()
	return func() error { return <-errc }
}

func freeAddr() string {
	a, err := freeport.AddrErr()
	if err != nil {
		log.Fatal(err)
	}
	return a
}

func run(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startGateway builds gatewayd and serves a data directory with the
// embedded defaults (local-directory store, badger) and two SMB shares.
func startGateway(work string) *server {
	bin := filepath.Join(work, "gatewayd")
	run("go", "build", "-o", bin, "./cmd/gatewayd")
	dir := filepath.Join(work, "gw")
	run(bin, "init", "--data-dir", dir)
	s := &server{name: "gatewayd", addr: freeAddr(), share: "bench", sealed: "sealed", dataDir: dir, bin: bin}
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--smb-listen", s.addr,
		"--iscsi-listen", "127.0.0.1:0", "--nfs-listen", "127.0.0.1:0", "--nfs-rpcbind=false")
	logf, err := os.Create(filepath.Join(work, "gatewayd.log"))
	if err != nil {
		log.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	s.stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	deadline := time.Now().Add(time.Minute)
	for exec.Command(bin, "status", "--data-dir", dir).Run() != nil {
		if time.Now().After(deadline) {
			log.Fatalf("gatewayd did not start; see %s", logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(bin, "smb", "user", "add", "--data-dir", dir, "root", "--password", password)
	run(bin, "share", "create", "--data-dir", dir, "--name", s.share, "--protocols", "smb")
	run(bin, "share", "create", "--data-dir", dir, "--name", s.sealed, "--protocols", "smb", "--smb-encrypt")
	return s
}

// startPlain runs smbd with Samba's defaults on a local directory.
func startPlain(work string) *server {
	s := &server{name: "plain smbd", addr: freeAddr(), share: "plain", sealed: "sealed"}
	state, dir := filepath.Join(work, "plain-state"), filepath.Join(work, "plain-dir")
	for _, d := range []string{"private", "lock", "state", "cache", "run", "ncalrpc", "bind-dns"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o700); err != nil {
			log.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "sealed"), 0o755); err != nil {
		log.Fatal(err)
	}
	conf := smbtest.PlainConf(state, s.addr, s.share, dir) +
		fmt.Sprintf("\n[%s]\n\tpath = %s\n\tread only = no\n\tsmb encrypt = required\n", s.sealed, filepath.Join(dir, "sealed"))
	confPath := filepath.Join(state, "smb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		log.Fatal(err)
	}
	pw := exec.Command("smbpasswd", "-c", confPath, "-s", "-a", "root")
	pw.Stdin = strings.NewReader(password + "\n" + password + "\n")
	if out, err := pw.CombinedOutput(); err != nil {
		log.Fatalf("smbpasswd: %v\n%s", err, out)
	}
	smbd := "smbd"
	if _, err := exec.LookPath(smbd); err != nil {
		smbd = "/usr/sbin/smbd"
	}
	cmd := exec.Command(smbd, "--foreground", "--no-process-group", "--debug-stdout", "-s", confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	s.stop = func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); _ = cmd.Wait() }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return s
		}
		select {
		case <-ctx.Done():
			log.Fatal("plain smbd did not start")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sambaVersion() string {
	smbd := "smbd"
	if _, err := exec.LookPath(smbd); err != nil {
		smbd = "/usr/sbin/smbd"
	}
	out, err := exec.Command(smbd, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "Version ")
}
