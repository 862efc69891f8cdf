package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudsoda/go-smb2"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/internal/testtree"
)

// The large-tree test copies a real source tree (the Go toolchain's src
// directory, topped up with generated files to treeFiles) onto one share
// over NFS and onto another over SMB, at once, through the real daemon on
// MinIO. gatewayd is killed (kill -9) a tenth of the way through both
// copies and again at half of them; after each restart every file the
// clients were told is written is there whole: over NFS, a file whose
// last WRITE was answered FILE_SYNC or whose COMMIT was answered; over
// SMB, a file whose close returned. Then the copies are finished, both trees listed (NFS READDIRPLUS, an SMB
// directory search) and compared with the source, every file read back
// and its checksum compared, and every file checked in the bucket once
// uploaded.

// treeFiles is how many files the tree has at least in the test suite
// (fewer take the first files of the source tree); GATEWAYD_TREE_FILES
// sets another size. The suite copies 2,000: 20,000 (the size issue 18
// asks for, and a real source tree's) does not fit CI's time on a busy
// 2-core machine with the race detector, where the copy reached a tenth
// in over 10 minutes (README). Run it by hand with
// GATEWAYD_TREE_FILES=20000.
const treeFiles = 2000

// treeWorkers is how many clients copy or read at once per protocol
// (each its own connection).
const treeWorkers = 6

// treeKillAt is how far both copies are (files written / all) at each
// kill of the daemon. Each restart replays the upload buffer's records of
// every file not uploaded yet, asking the store about them with one
// listing per directory; every file it makes dirty holds a cache chunk of
// 1 MiB, admitted over the cache's capacity if need be
// (cache.WriteReplayed): at half of 20,000 files more files can wait than
// the default 8 GiB cache holds (8,192 chunks), which once left the
// restart waiting for room that only uploads make.
var treeKillAt = []float64{0.1, 0.5}

// treeClient is one connection of a protocol's client.
type treeClient interface {
	mkdir(dir string) error
	// put writes f whole and returns when the client was told it is
	// written; again says the file may exist from an earlier try.
	put(f testtree.File, data []byte, again bool) error
	// list returns every file's and directory's size by path ("/" for
	// a directory's size).
	list() (map[string]int64, error)
	read(path string) ([]byte, error)
	close()
}

// nfsTreeClient copies by file handle, as a kernel client does: CREATE in
// the directory's handle, WRITE FILE_SYNC, or UNSTABLE WRITEs and a
// COMMIT for a file over 1 MiB (nfstest.Handles.WriteAll).
type nfsTreeClient struct {
	h    nfstest.Handles
	root []byte
	dirs *handleMap
	done func()
}

// handleMap is the directory handles the clients share.
type handleMap struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *handleMap) get(dir string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[dir]
}

func (m *handleMap) set(dir string, fh []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[dir] = fh
}

func newNFSTreeClient(t *testing.T, addr, share string, dirs *handleMap) (treeClient, error) {
	v, done, err := nfstest.Mount(t, addr, share, rpc.AuthNull)
	if err != nil {
		return nil, err
	}
	c := &nfsTreeClient{h: nfstest.Handles{V: v}, root: nfstest.RootFH(v), dirs: dirs, done: done}
	dirs.set(".", c.root)
	return c, nil
}

func (c *nfsTreeClient) mkdir(dir string) error {
	parent := c.dirs.get(path.Dir(dir))
	if parent == nil {
		return fmt.Errorf("mkdir %s: no handle for its parent", dir)
	}
	fh, err := c.h.Mkdir(parent, path.Base(dir), 0o755)
	if err != nil {
		return err
	}
	c.dirs.set(dir, fh)
	return nil
}

func (c *nfsTreeClient) put(f testtree.File, data []byte, again bool) error {
	dir := c.dirs.get(path.Dir(f.Path))
	if dir == nil {
		return fmt.Errorf("%s: no handle for its directory", f.Path)
	}
	fh, err := c.h.Create(dir, path.Base(f.Path), 0o644)
	if err != nil {
		return err
	}
	if again {
		if err := c.h.Truncate(fh); err != nil {
			return err
		}
	}
	if err := c.h.WriteAll(fh, data); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return nil
}

// list walks the tree with READDIRPLUS and keeps each entry's handle for
// read.
func (c *nfsTreeClient) list() (map[string]int64, error) {
	out := map[string]int64{}
	var walk func(dir string, fh []byte) error
	walk = func(dir string, fh []byte) error {
		entries, err := c.h.ReadDirPlus(fh)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		for _, e := range entries {
			p := path.Join(dir, e.FileName)
			if !e.Attr.IsSet || !e.Handle.IsSet {
				return fmt.Errorf("%s: READDIRPLUS gave no attributes or handle", p)
			}
			if e.Attr.Attr.Type == nfsc.NF3Dir {
				out[p+"/"] = 0
				c.dirs.set(p, e.Handle.FH)
				if err := walk(p, e.Handle.FH); err != nil {
					return err
				}
				continue
			}
			out[p] = int64(e.Attr.Attr.Filesize)
			c.dirs.set(p, e.Handle.FH) // files' handles too, for read
		}
		return nil
	}
	return out, walk(".", c.root)
}

func (c *nfsTreeClient) read(p string) ([]byte, error) {
	fh := c.dirs.get(p)
	if fh == nil {
		return nil, fmt.Errorf("%s: not listed", p)
	}
	return c.h.ReadAll(fh)
}

func (c *nfsTreeClient) close() { c.done() }

// smbTreeClient copies with go-smb2: create, write, close.
type smbTreeClient struct {
	fs   *smb2.Share
	done func()
}

func smbPath(p string) string { return strings.ReplaceAll(p, "/", `\`) }

func newSMBTreeClient(addr, share string) (treeClient, error) {
	fs, done, err := smbtest.Dial(addr, share, "root", smbPassword)
	if err != nil {
		return nil, err
	}
	return &smbTreeClient{fs: fs, done: done}, nil
}

func (c *smbTreeClient) mkdir(dir string) error { return c.fs.Mkdir(smbPath(dir), 0o755) }

func (c *smbTreeClient) put(f testtree.File, data []byte, _ bool) error {
	w, err := c.fs.Create(smbPath(f.Path)) // truncates a file there
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return w.Close()
}

func (c *smbTreeClient) list() (map[string]int64, error) {
	out := map[string]int64{}
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := c.fs.ReadDir(smbPath(dir))
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		for _, e := range entries {
			p := path.Join(dir, e.Name())
			if e.IsDir() {
				out[p+"/"] = 0
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			out[p] = e.Size()
		}
		return nil
	}
	return out, walk("")
}

func (c *smbTreeClient) read(p string) ([]byte, error) { return c.fs.ReadFile(smbPath(p)) }

func (c *smbTreeClient) close() { c.done() }

// treeCopy is the progress of both copies: which files each protocol's
// client was told are written. With a kill, a protocol's clients wait
// while their copy is more than a tenth ahead of the other's, so that
// both are under way when the daemon is killed.
type treeCopy struct {
	tr   testtree.Tree
	todo [2][]int // the files to copy, indices into tr.Files
	base [2]int   // the files of the tree each protocol wrote before
	mu   sync.Mutex
	cond *sync.Cond
	// acked: the files each protocol's client was told are written.
	acked [2]map[int]bool
	next  [2]int // the next of todo to hand out
	// stopped: the daemon is being killed (errors are expected from
	// then on) or a copy failed (err).
	stopped bool
	err     error
	failed  chan struct{}
	killAt  float64 // of the whole tree; 0: no kill
	kill    chan struct{}
}

func newTreeCopy(tr testtree.Tree, todo [2][]int, base [2]int, killAt float64) *treeCopy {
	c := &treeCopy{tr: tr, todo: todo, base: base, killAt: killAt, kill: make(chan struct{}), failed: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	for p := range c.acked {
		c.acked[p] = map[int]bool{}
	}
	return c
}

// frac is how far protocol p's copy of the whole tree is.
func (c *treeCopy) frac(p int) float64 {
	return float64(c.base[p]+len(c.acked[p])) / float64(len(c.tr.Files))
}

// take hands protocol p's next file to copy, false when there is none or
// the copy stopped.
func (c *treeCopy) take(p int) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.stopped && c.killAt > 0 && c.frac(1-p) < 1 && c.frac(p) > c.frac(1-p)+0.1 {
		c.cond.Wait()
	}
	if c.stopped || c.next[p] >= len(c.todo[p]) {
		return 0, false
	}
	c.next[p]++
	return c.todo[p][c.next[p]-1], true
}

func (c *treeCopy) done(p, i int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.cond.Broadcast()
	if err != nil {
		if !c.stopped { // not the kill's
			c.stopped, c.err = true, err
			close(c.failed)
		}
		return
	}
	c.acked[p][i] = true
	if c.killAt > 0 && c.frac(0) >= c.killAt && c.frac(1) >= c.killAt {
		select {
		case <-c.kill:
		default:
			close(c.kill)
		}
	}
}

// stop stops handing out files: the daemon is about to be killed.
func (c *treeCopy) stop() {
	c.mu.Lock()
	c.stopped = true
	c.cond.Broadcast()
	c.mu.Unlock()
}

// run copies with the clients of both protocols, each in its own
// goroutine; the WaitGroup is done when every one has ended.
func (c *treeCopy) run(clients [2][]treeClient, again bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	for p := range clients {
		for _, cl := range clients[p] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i, ok := c.take(p)
					if !ok {
						return
					}
					f := c.tr.Files[i]
					data, err := f.Data()
					if err == nil {
						err = cl.put(f, data, again)
					}
					if err != nil {
						err = fmt.Errorf("%s %s: %w", protoName[p], f.Path, err)
					}
					c.done(p, i, err)
					if err != nil {
						return
					}
				}
			}()
		}
	}
	return &wg
}

var protoName = [2]string{"NFS", "SMB"}

// waitGroup waits for wg, at most d: a bound for a wedged client.
func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(d):
		t.Fatalf("%s: still running after %v", what, d)
	}
}

// bothProtocols runs fn for NFS (0) and SMB (1) at once and returns
// their errors.
func bothProtocols(fn func(p int) error) error {
	var errs [2]error
	var wg sync.WaitGroup
	for p := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = fn(p)
		}()
	}
	wg.Wait()
	return errors.Join(errs[:]...)
}

// forEach runs fn on the items (indices into the tree's files or
// directories) with one goroutine per client and returns the first error.
func forEach(clients []treeClient, files []int, fn func(c treeClient, i int) error) error {
	var mu sync.Mutex
	var first error
	next := 0
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= len(files) || first != nil {
					mu.Unlock()
					return
				}
				i := files[next]
				next++
				mu.Unlock()
				if err := fn(c, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// checkFiles reads the files (indices) back through the clients and
// compares each with the source by size in the listing and checksum.
func checkFiles(tr testtree.Tree, clients []treeClient, listed map[string]int64, files []int, what string) error {
	return forEach(clients, files, func(c treeClient, i int) error {
		f := tr.Files[i]
		size, ok := listed[f.Path]
		if !ok {
			return fmt.Errorf("%s: %s is not in the listing", what, f.Path)
		}
		if size != int64(f.Size) {
			return fmt.Errorf("%s: %s listed with %d bytes, want %d", what, f.Path, size, f.Size)
		}
		got, err := c.read(f.Path)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", what, f.Path, err)
		}
		if sha256.Sum256(got) != f.Sum {
			return fmt.Errorf("%s: %s read back: %d bytes, checksum differs from the source's (%d bytes)", what, f.Path, len(got), f.Size)
		}
		return nil
	})
}

// sameTree compares a listing with the source tree: the same directories
// and files, nothing else.
func sameTree(tr testtree.Tree, listed map[string]int64) error {
	want := map[string]bool{}
	for _, d := range tr.Dirs {
		want[d+"/"] = true
	}
	for _, f := range tr.Files {
		want[f.Path] = true
	}
	var missing, extra []string
	for p := range want {
		if _, ok := listed[p]; !ok {
			missing = append(missing, p)
		}
	}
	for p := range listed {
		if !want[p] {
			extra = append(extra, p)
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return fmt.Errorf("%d entries missing (first %q), %d not in the source (first %q)",
		len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
}

// waitSharesUploaded waits until no file of the shares waits for the
// store; the deadline is a bound for a stuck upload, renewed while the
// number of files waiting goes down.
func waitSharesUploaded(t *testing.T, dir string, shares ...string) {
	t.Helper()
	for _, share := range shares {
		name := fmt.Sprintf(`gatewayd_share_files_pending{share=%q}`, share)
		best, deadline := -1.0, time.Now().Add(10*time.Minute)
		for {
			n, ok := metric(t, dir, name)
			if ok && n == 0 {
				break
			}
			if ok && (best < 0 || n < best) {
				best, deadline = n, time.Now().Add(10*time.Minute)
			}
			if time.Now().After(deadline) {
				t.Fatalf("share %s: %v files waiting for the store, none uploaded in 10 minutes", share, n)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// objectSizes lists the objects under prefix with their sizes.
func objectSizes(t *testing.T, srv *miniotest.Server, bucket, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	listObjects(t, srv, bucket, prefix, func(key string, size int64) {
		out[strings.TrimPrefix(key, prefix)] = size
	})
	return out
}

// TestLargeTreeKill: see the comment at the top of the file.
func TestLargeTreeKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	smbtest.Require(t)
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	tr, err := testtree.GoSource(envInt("GATEWAYD_TREE_FILES", treeFiles))
	if err != nil {
		t.Fatal(err)
	}
	phase(fmt.Sprintf("source tree: %d files (%d generated), %d directories, %d MB",
		len(tr.Files), tr.Generated(), len(tr.Dirs), tr.Bytes()/1e6))

	srv, dir, d := shareOnMinIO(t, "tree", "tn")
	t.Cleanup(func() { cleanSMB(dir) })
	d.stop(t) // again with SMB
	addr := freeport.Addr(t)
	d = serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	// go-smb2 on an encrypted share: the copy also goes through SMB3 encryption.
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "ts", "--protocols", "smb", "--smb-encrypt")

	dirs := &handleMap{m: map[string][]byte{}}
	connect := func() [2][]treeClient {
		var cl [2][]treeClient
		nfsAt := nfsAddr(t, dir) // a new port at each start
		for range treeWorkers {
			c, err := newNFSTreeClient(t, nfsAt, "tn", dirs)
			if err != nil {
				t.Fatal(err)
			}
			cl[0] = append(cl[0], c)
			var sc treeClient
			smbtest.Eventually(t, "go-smb2 session", func() (err error) {
				sc, err = newSMBTreeClient(addr, "ts")
				return err
			})
			cl[1] = append(cl[1], sc)
		}
		return cl
	}
	closeAll := func(cl [2][]treeClient) {
		for _, cs := range cl {
			for _, c := range cs {
				c.close()
			}
		}
	}
	clients := connect()

	// Directories first, parents before children: a level of the tree
	// at a time, by all the clients of both protocols at once.
	var levels [][]int
	for i, dname := range tr.Dirs {
		depth := strings.Count(dname, "/")
		for len(levels) <= depth {
			levels = append(levels, nil)
		}
		levels[depth] = append(levels[depth], i)
	}
	for _, level := range levels {
		err := bothProtocols(func(p int) error {
			return forEach(clients[p], level, func(c treeClient, i int) error {
				if err := c.mkdir(tr.Dirs[i]); err != nil {
					return fmt.Errorf("%s mkdir %s: %w", protoName[p], tr.Dirs[i], err)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	phase("directories made over NFS and SMB")

	// The copies, killed a tenth of the way through and again at half.
	acked := [2]map[int]bool{{}, {}}
	notWritten := func() (todo [2][]int, base [2]int) {
		for p := range todo {
			for i := range tr.Files {
				if !acked[p][i] {
					todo[p] = append(todo[p], i)
				}
			}
			base[p] = len(acked[p])
		}
		return todo, base
	}
	for k, at := range treeKillAt {
		todo, base := notWritten()
		cp := newTreeCopy(tr, todo, base, at)
		wg := cp.run(clients, k > 0) // after a kill a file may be there in part
		select {
		case <-cp.kill:
		case <-cp.failed:
			t.Fatal(cp.err)
		case <-time.After(30 * time.Minute):
			cp.mu.Lock()
			defer cp.mu.Unlock()
			t.Fatalf("the copies did not reach %.0f%% in 30 minutes: NFS %d, SMB %d files written",
				100*at, base[0]+len(cp.acked[0]), base[1]+len(cp.acked[1]))
		}
		// Errors from here on are the kill's.
		cp.stop()
		notUploaded := 0.0 // files of both shares, as the daemon last counted them
		for _, share := range []string{"tn", "ts"} {
			if n, ok := metric(t, dir, fmt.Sprintf(`gatewayd_share_files_pending{share=%q}`, share)); ok {
				notUploaded += n
			}
		}
		d.kill(t)
		waitGroup(t, wg, 10*time.Minute, "the copies after kill -9")
		closeAll(clients)
		var written [2][]int
		for p := range written {
			maps.Copy(acked[p], cp.acked[p])
			written[p] = slices.Sorted(maps.Keys(acked[p]))
		}
		phase(fmt.Sprintf("kill -9 at %.0f%%: NFS %d and SMB %d of %d files written, %.0f files and directories not uploaded",
			100*at, len(written[0]), len(written[1]), len(tr.Files), notUploaded))

		// After the restart, every file written is there whole. The start
		// replays the upload buffer's records of the files not uploaded
		// yet (thousands): a bound for a wedged start, not a speed check.
		d = serveWithin(t, 30*time.Minute, dir, "--smb-listen", addr)
		replayed, _ := metric(t, dir, `gatewayd_journal_replayed_records_total{kind="share",name="shares"}`)
		phase(fmt.Sprintf("restarted, %.0f records of the file shares replayed", replayed))
		clients = connect()
		err = bothProtocols(func(p int) error {
			listed, err := clients[p][0].list()
			if err != nil {
				return fmt.Errorf("%s listing after kill -9: %w", protoName[p], err)
			}
			return checkFiles(tr, clients[p], listed, written[p], fmt.Sprintf("%s after kill -9 at %.0f%%", protoName[p], 100*at))
		})
		if err != nil {
			t.Fatal(err)
		}
		phase("every file written before the kill read back whole over NFS and SMB")
	}

	// The rest of the copies, then the whole trees listed, and the files
	// not read back yet read back.
	todo, base := notWritten()
	rest := newTreeCopy(tr, todo, base, 0)
	waitGroup(t, rest.run(clients, true), 30*time.Minute, "the rest of the copies")
	if rest.err != nil {
		t.Fatal(rest.err)
	}
	phase("copies finished")
	err = bothProtocols(func(p int) error {
		listed, err := clients[p][0].list()
		if err != nil {
			return fmt.Errorf("%s listing: %w", protoName[p], err)
		}
		if err := sameTree(tr, listed); err != nil {
			return fmt.Errorf("%s listing against the source: %w", protoName[p], err)
		}
		phase(fmt.Sprintf("%s: tree listed, %d entries, as the source", protoName[p], len(listed)))
		return checkFiles(tr, clients[p], listed, todo[p], protoName[p])
	})
	if err != nil {
		t.Fatal(err)
	}
	phase("NFS and SMB: every file read back, checksums as the source's")
	closeAll(clients)

	// In the bucket, once uploaded.
	waitSharesUploaded(t, dir, "tn", "ts")
	for _, share := range []string{"tn", "ts"} {
		objects := objectSizes(t, srv, "tree", "gw/"+share+"/")
		for _, f := range tr.Files {
			if size, ok := objects[f.Path]; !ok || size != int64(f.Size) {
				t.Fatalf("share %s: object %s: %d bytes (there: %v), want %d", share, f.Path, size, ok, f.Size)
			}
		}
	}
	phase("every file in the bucket with its size")
}
