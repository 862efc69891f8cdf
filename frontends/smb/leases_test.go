package smb

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/objstore"
)

// leaseHolder holds a write lease on a file of the view, as smbd does for
// a batch or exclusive oplock with kernel oplocks.
type leaseHolder struct {
	f *os.File
}

func holdLease(t *testing.T, path string) *leaseHolder {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h := &leaseHolder{f: f}
	h.take(t)
	return h
}

// take sets the write lease (again).
func (h *leaseHolder) take(t *testing.T) {
	t.Helper()
	if _, err := unix.FcntlInt(h.f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		t.Fatalf("kernel write lease on %s (FUSE view): %v", h.f.Name(), err)
	}
}

// held says whether the lease is whole: a lease being broken reports the
// type it is broken to.
func (h *leaseHolder) held(t *testing.T) bool {
	t.Helper()
	typ, err := unix.FcntlInt(h.f.Fd(), unix.F_GETLEASE, 0)
	if err != nil {
		t.Fatal(err)
	}
	return typ == unix.F_WRLCK
}

// release gives the lease up, as smbd does once its client has acknowledged
// the break, and reads the file through the holder's descriptor.
func (h *leaseHolder) release(t *testing.T) string {
	t.Helper()
	if _, err := unix.FcntlInt(h.f.Fd(), unix.F_SETLEASE, unix.F_UNLCK); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	n, err := h.f.ReadAt(b, 0)
	if err != nil && n == 0 {
		t.Fatal(err)
	}
	return string(b[:n])
}

func (h *leaseHolder) waitBroken(t *testing.T, what string) {
	t.Helper()
	smbtest.Eventually(t, what, func() error {
		if h.held(t) {
			return errors.New("lease not broken")
		}
		return nil
	})
}

// TestLeaseBrokenByOtherPaths: a kernel lease on a file of the view (what
// smbd holds for an oplock) is broken when the file is written through
// the share by another frontend, changed in the bucket, or refreshed, and
// the holder then reads the new content, not the kernel's cached pages;
// writes through the view itself leave it alone.
func TestLeaseBrokenByOtherPaths(t *testing.T) {
	// The break signal (SIGIO) is the lease holder's; here that is the
	// test, which only polls the lease.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGIO)
	defer signal.Stop(sigs)

	o := memOptions()
	m, sh, mnt := mountView(t, o)
	ctx := context.Background()
	a, b := filepath.Join(mnt, "a.txt"), filepath.Join(mnt, "b.txt")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("first"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ha, hb := holdLease(t, a), holdLease(t, b)

	// The holder's own write goes through the view: no break.
	if _, err := ha.f.WriteAt([]byte("FIRST"), 0); err != nil {
		t.Fatal(err)
	}
	// A write by another path to b, and its break, come after anything
	// the write to a queued.
	if _, err := sh.Write(ctx, "b.txt", []byte("other"), 0, fileshare.Durable); err != nil {
		t.Fatal(err)
	}
	hb.waitBroken(t, "lease on b broken by a write through the share")
	if !ha.held(t) {
		t.Fatal("a write through the view broke the writer's own lease")
	}
	if got := hb.release(t); got != "other" {
		t.Fatalf("b after the break: %q", got)
	}

	// Written through the share (as over NFS).
	if _, err := sh.Write(ctx, "a.txt", []byte("second, longer"), 0, fileshare.Durable); err != nil {
		t.Fatal(err)
	}
	ha.waitBroken(t, "lease broken by a write through the share")
	if got := ha.release(t); got != "second, longer" {
		t.Fatalf("after a write through the share: %q", got)
	}

	// Overwritten in the bucket (a bucket event), once uploaded: before,
	// local changes win and nothing changes.
	ha.take(t)
	smbtest.Eventually(t, "bucket change applied", func() error {
		if err := objstore.PutBytes(ctx, o.Store, "v/a.txt", []byte("third, from the bucket")); err != nil {
			return err
		}
		if out := m.ApplyObjectChange(fileshare.ObjectChange{Key: "v/a.txt"}); out != fileshare.ChangeApplied {
			return errors.New(out.String())
		}
		return nil
	})
	ha.waitBroken(t, "lease broken by a change in the bucket")
	if got := ha.release(t); got != "third, from the bucket" {
		t.Fatalf("after a change in the bucket: %q", got)
	}

	// Overwritten in the bucket, then the share refreshed.
	ha.take(t)
	if err := objstore.PutBytes(ctx, o.Store, "v/a.txt", []byte("fourth, refreshed")); err != nil {
		t.Fatal(err)
	}
	if err := sh.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	ha.waitBroken(t, "lease broken by a refresh")
	if got := ha.release(t); got != "fourth, refreshed" {
		t.Fatalf("after a refresh: %q", got)
	}
}

// TestParseLeases reads the leases of one device from /proc/locks lines,
// a lease being broken and its breaker's line too.
func TestParseLeases(t *testing.T) {
	locks := `1: LEASE  BREAKING  READ  4711 00:3a:12 0 EOF
1: -> LEASE  BREAKER  READ  4712 00:3a:12 0 EOF
2: LEASE  ACTIVE    WRITE 4711 00:3a:13 0 EOF
3: POSIX  ADVISORY  WRITE 99 00:3a:14 0 EOF
4: LEASE  ACTIVE    WRITE 4711 00:3b:15 0 EOF
5: FLOCK  ADVISORY  WRITE 98 103:02:16 0 EOF
`
	got, err := parseLeases(strings.NewReader(locks), 0, 0x3a)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[12] || !got[13] {
		t.Fatalf("leases on 00:3a: %v, want inodes 12 and 13", got)
	}
	if _, err := parseLeases(strings.NewReader("1: LEASE ACTIVE WRITE 1 zz:3a:12 0 EOF\n"), 0, 0x3a); err == nil {
		t.Fatal("a malformed line was taken")
	}
}

// TestLeaseBreakLatency writes a file through the share (the NFS path)
// 200 times while a lease is held on it in the view, and logs how long
// after each write returned the kernel had started the break (docs/smb.md).
// Every write must break the lease; the times are reported, not held to.
func TestLeaseBreakLatency(t *testing.T) {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGIO)
	defer signal.Stop(sigs)
	_, sh, mnt := mountView(t, memOptions())
	a := filepath.Join(mnt, "a.txt")
	if err := os.WriteFile(a, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := holdLease(t, a)
	var took []time.Duration
	for range 200 {
		if _, err := sh.Write(context.Background(), "a.txt", []byte("y"), 0, fileshare.Durable); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// Polled finely (Eventually's tenth of a second would be all
		// this measures), with a deadline of minutes.
		for h.held(t) {
			if time.Since(start) > 5*time.Minute {
				t.Fatal("lease not broken by a write through the share")
			}
			time.Sleep(50 * time.Microsecond)
		}
		took = append(took, time.Since(start))
		h.release(t)
		h.take(t)
	}
	slices.Sort(took)
	t.Logf("lease break started after the write returned: median %v, 90th percentile %v, 99th %v, max %v (%d writes)",
		took[len(took)/2], took[len(took)*9/10], took[len(took)*99/100], took[len(took)-1], len(took))
}
