// Command tree copies a source tree onto an NFSv3 export, or lists a
// directory of many files with READDIRPLUS, and prints what it measured
// as one JSON object (bench/nfs/tree.sh makes the table).
//
//	tree -url 'nfs://127.0.0.1/bench?nfsport=N&mountport=M' -do copy [-files 20000] [-workers 4]
//	tree -url ... -do list [-entries 100000] [-pid PID]
//
// copy: the Go toolchain's src directory topped up to -files files
// (internal/testtree, the tree the large-tree test copies) under tree/,
// directories first, then the files by -workers clients at once, each on
// its own connection, as a kernel client writes a file at close: CREATE,
// one WRITE FILE_SYNC, or UNSTABLE WRITEs of 1 MiB and a COMMIT for a
// file over 1 MiB; every file is durable when its last reply comes. Timed
// from the first MKDIR to the last reply.
//
// list: -entries empty files made in list/ by -workers clients (timed
// too), then the directory listed whole with READDIRPLUS (64 KiB replies)
// on a new connection, twice; the server's resident memory (the process
// -pid) before and at its peak during each listing, sampled every 10 ms.
// A listing that takes longer than -list-seconds is stopped there, and
// how far it got is reported (entries and calls); the second listing is
// then left out.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testtree"
)

var cred = rpc.NewAuthUnix("bench-tree", 0, 0).Auth()

func main() {
	u := flag.String("url", "", "nfs://HOST/EXPORT?nfsport=N&mountport=M")
	do := flag.String("do", "copy", "copy or list")
	files := flag.Int("files", 20000, "copy: files in the tree, at least")
	entries := flag.Int("entries", 100000, "list: files in the directory")
	workers := flag.Int("workers", 4, "clients at once")
	pid := flag.Int("pid", 0, "list: the server's process, for its memory")
	listSeconds := flag.Float64("list-seconds", 300, "list: the longest a listing may take")
	flag.Parse()
	var out any
	var err error
	switch *do {
	case "copy":
		out, err = copyTree(*u, *files, *workers)
	case "list":
		out, err = list(*u, *entries, *workers, *pid, time.Duration(*listSeconds*float64(time.Second)))
	default:
		err = fmt.Errorf("-do %q: copy or list", *do)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tree:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// export is what a URL names: where MOUNT and NFS listen and the path.
type export struct {
	nfs, mount, path string
}

func parseURL(s string) (export, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "nfs" {
		return export{}, fmt.Errorf("url %q: want nfs://HOST/EXPORT?nfsport=N&mountport=M", s)
	}
	q := u.Query()
	return export{nfs: u.Host + ":" + q.Get("nfsport"), mount: u.Host + ":" + q.Get("mountport"), path: u.Path}, nil
}

// connect mounts the export and returns a client on a connection of its
// own, and the root handle.
func connect(e export) (nfstest.Handles, []byte, error) {
	mc, err := rpc.DialTCP("tcp", e.mount, false)
	if err != nil {
		return nfstest.Handles{}, nil, err
	}
	defer mc.Close()
	root, err := nfstest.MountFH(mc, e.path, cred)
	if err != nil {
		return nfstest.Handles{}, nil, err
	}
	c, err := rpc.DialTCP("tcp", e.nfs, false)
	if err != nil {
		return nfstest.Handles{}, nil, err
	}
	v, err := nfsc.NewTargetWithClient(c, cred, root, e.path, time.Second)
	if err != nil {
		return nfstest.Handles{}, nil, err
	}
	return nfstest.Handles{V: v, Cred: cred}, root, nil
}

// clients connects n clients to the export the URL u names and makes
// the directory dir in its root; it returns the export, the clients and
// the directory's handle.
func clients(u string, n int, dir string) (export, []nfstest.Handles, []byte, error) {
	e, err := parseURL(u)
	if err != nil {
		return e, nil, nil, err
	}
	var hs []nfstest.Handles
	var root []byte
	for range n {
		h, r, err := connect(e)
		if err != nil {
			return e, nil, nil, err
		}
		hs, root = append(hs, h), r
	}
	fh, err := hs[0].Mkdir(root, dir, 0o755)
	return e, hs, fh, err
}

// parallel runs fn(client, i) for i in [0, n) on the clients at once and
// returns the first error.
func parallel(hs []nfstest.Handles, n int, fn func(h nfstest.Handles, i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(h, i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

type copyResult struct {
	Files   int     `json:"files"`
	Dirs    int     `json:"dirs"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

func copyTree(u string, n, workers int) (*copyResult, error) {
	tr, err := testtree.GoSource(n)
	if err != nil {
		return nil, err
	}
	// The source read once before, so that the copy reads it from the
	// page cache for each server alike.
	for _, f := range tr.Files {
		if _, err := f.Data(); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	_, hs, top, err := clients(u, workers, "tree")
	if err != nil {
		return nil, err
	}
	dirs := map[string][]byte{".": top}
	for _, d := range tr.Dirs {
		fh, err := hs[0].Mkdir(dirs[path.Dir(d)], path.Base(d), 0o755)
		if err != nil {
			return nil, fmt.Errorf("mkdir %s: %w", d, err)
		}
		dirs[d] = fh
	}
	err = parallel(hs, len(tr.Files), func(h nfstest.Handles, i int) error {
		f := tr.Files[i]
		data, err := f.Data()
		if err != nil {
			return err
		}
		fh, err := h.Create(dirs[path.Dir(f.Path)], path.Base(f.Path), 0o644)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if err := h.WriteAll(fh, data); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &copyResult{Files: len(tr.Files), Dirs: len(tr.Dirs), Bytes: tr.Bytes(), Seconds: time.Since(start).Seconds()}, nil
}

type listResult struct {
	Entries       int       `json:"entries"`
	CreateSeconds float64   `json:"create_seconds"`
	Seconds       []float64 `json:"seconds"`
	Listed        []int     `json:"listed"` // entries, fewer when stopped
	Calls         []int     `json:"calls"`
	RSSBeforeKiB  []int     `json:"rss_before_kib"`
	RSSPeakKiB    []int     `json:"rss_peak_kib"`
}

var errTooLong = errors.New("stopped: the listing took too long")

// rss is the resident memory of process pid in KiB (0 without one).
func rss(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func list(u string, n, workers, pid int, limit time.Duration) (*listResult, error) {
	start := time.Now()
	e, hs, dir, err := clients(u, workers, "list")
	if err != nil {
		return nil, err
	}
	err = parallel(hs, n, func(h nfstest.Handles, i int) error {
		_, err := h.Create(dir, fmt.Sprintf("file-%06d", i), 0o644)
		return err
	})
	if err != nil {
		return nil, err
	}
	r := &listResult{Entries: n, CreateSeconds: time.Since(start).Seconds()}
	for range 2 {
		h, _, err := connect(e)
		if err != nil {
			return nil, err
		}
		before := rss(pid)
		peak := before
		stop, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				peak = max(peak, rss(pid))
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		t0 := time.Now()
		listed, calls := 0, 0
		err = h.ReadDirPlusEach(dir, func(page []nfsc.EntryPlus) error {
			listed += len(page)
			calls++
			if time.Since(t0) > limit {
				return errTooLong
			}
			return nil
		})
		d := time.Since(t0)
		close(stop)
		<-sampled
		if err != nil && err != errTooLong {
			return nil, err
		}
		if err == nil && listed != n {
			return nil, fmt.Errorf("listing of list/: %d entries, want %d", listed, n)
		}
		r.Seconds = append(r.Seconds, d.Seconds())
		r.Listed = append(r.Listed, listed)
		r.Calls = append(r.Calls, calls)
		r.RSSBeforeKiB = append(r.RSSBeforeKiB, before)
		r.RSSPeakKiB = append(r.RSSPeakKiB, peak)
		if err != nil {
			break
		}
	}
	return r, nil
}
