package smb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// Oplocks across protocols. On shares served over NFS too smbd runs with
// kernel oplocks (ShareConf.KernelOplocks): for every batch or exclusive
// oplock it grants, it holds a kernel lease (F_SETLEASE) on its file in
// the view, and the kernel breaks that lease, and smbd the client's
// oplock, when another process opens the file.
// Changes made over NFS or in the bucket do not pass the view, so the
// breaker opens the file in the view for them: an open with O_NONBLOCK
// starts the break and returns at once (EWOULDBLOCK), before any request
// reaches the view, so nothing waits on the FUSE server. It first drops
// the kernel's cached pages and attributes of the file, so smbd reads the
// new content once its client has given the oplock up. smbd's own writes
// go through its own descriptor and break nothing.

// breaker breaks the kernel leases smbd holds on files of one view that
// changed by another path. Changes are queued and handled by one
// goroutine, so a caller (an NFS write) never waits on the kernel.
type breaker struct {
	dir  string
	root *fs.Inode
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]bool // share path -> drop the kernel's cached content too
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
}

func newBreaker(dir string, root *fs.Inode, logger *slog.Logger) *breaker {
	b := &breaker{dir: dir, root: root, log: logger, pending: map[string]bool{},
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// add queues share path p ("" is the whole share, a directory everything
// below it); content asks for the kernel's cached pages of p to go first.
func (b *breaker) add(p string, content bool) {
	b.mu.Lock()
	b.pending[p] = b.pending[p] || content
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// stop ends the goroutine once it is done with what it is at.
func (b *breaker) stop() {
	close(b.quit)
	<-b.done
}

func (b *breaker) run() {
	defer close(b.done)
	for {
		select {
		case <-b.quit:
			return
		case <-b.wake:
		}
		b.mu.Lock()
		batch := b.pending
		b.pending = map[string]bool{}
		b.mu.Unlock()
		for p, content := range batch {
			if content {
				dropContent(b.root, p)
			}
		}
		leased, err := b.leased()
		if err != nil {
			b.log.Warn("smb view: kernel leases not read; oplocks on changed files not broken", "dir", b.dir, "err", err)
			continue
		}
		if len(leased) == 0 {
			continue
		}
		for p := range batch {
			for _, f := range leasedUnder(b.root, p, leased) {
				// Under a directory or the share refreshed the kernel's
				// pages of the file may be old too.
				dropContent(b.root, f)
				b.breakLease(f)
			}
		}
	}
}

// dropContent drops the kernel's cached pages and attributes of share
// path p, if the kernel knows it.
func dropContent(root *fs.Inode, p string) {
	if n := lookup(root, p); n != nil {
		n.NotifyContent(0, 0)
	}
}

// lookup finds the node of share path p among those the kernel knows.
func lookup(root *fs.Inode, p string) *fs.Inode {
	n := root
	if p == "" {
		return n
	}
	for _, name := range strings.Split(p, "/") {
		if n = n.GetChild(name); n == nil {
			return nil
		}
	}
	return n
}

// leasedUnder lists the share paths of the files at or below p whose
// inode numbers are in leased.
func leasedUnder(root *fs.Inode, p string, leased map[uint64]bool) []string {
	n := lookup(root, p)
	if n == nil {
		return nil
	}
	var out []string
	var walk func(n *fs.Inode, p string)
	walk = func(n *fs.Inode, p string) {
		if !n.IsDir() {
			if leased[n.StableAttr().Ino] {
				out = append(out, p)
			}
			return
		}
		for name, c := range n.Children() {
			cp := name
			if p != "" {
				cp = p + "/" + name
			}
			walk(c, cp)
		}
	}
	walk(n, p)
	return out
}

// leased returns the inode numbers of the files of the view that someone
// holds a kernel lease on, from /proc/locks.
func (b *breaker) leased() (map[uint64]bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(b.dir, &st); err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseLeases(f, unix.Major(st.Dev), unix.Minor(st.Dev))
}

// parseLeases reads /proc/locks for the leases on device major:minor:
// lines like "3: LEASE  ACTIVE    WRITE 4711 00:3a:12 0 EOF" (a lease
// being broken has a "->" line of its own, "BREAKING" in the second).
func parseLeases(f io.Reader, major, minor uint32) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[1] == "->" {
			fields = fields[1:] // a waiter for the lock before
		}
		if len(fields) < 6 || fields[1] != "LEASE" && fields[1] != "DELEG" {
			continue
		}
		id := strings.Split(fields[5], ":")
		if len(id) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(id[0], 16, 32)
		mnr, err2 := strconv.ParseUint(id[1], 16, 32)
		ino, err3 := strconv.ParseUint(id[2], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("/proc/locks line %q: %w", sc.Text(), err)
		}
		if uint32(maj) == major && uint32(mnr) == minor {
			out[ino] = true
		}
	}
	return out, sc.Err()
}

// breakLease opens share path p in the view without waiting: the kernel
// starts breaking the leases on it and the open fails with EWOULDBLOCK.
// Symbolic links are not followed, so the open stays in the view.
func (b *breaker) breakLease(p string) {
	dirfd, err := unix.Open(b.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.log.Warn("smb view: oplock not broken", "dir", b.dir, "path", "/"+p, "err", err)
		return
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV,
	})
	switch {
	case err == nil:
		unix.Close(fd) // no lease (any more): nothing to break
	case errors.Is(err, unix.EWOULDBLOCK):
		b.log.Debug("smb view: oplock broken for a change by another path", "dir", b.dir, "path", "/"+p)
	default:
		b.log.Warn("smb view: oplock not broken", "dir", b.dir, "path", "/"+p, "err", err)
	}
}
