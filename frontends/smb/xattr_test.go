package smb

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// countingStore counts the reads a share makes of its store.
type countingStore struct {
	*mem.Store
	reads atomic.Int64
}

func (c *countingStore) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	c.reads.Add(1)
	return c.Store.Stat(ctx, key)
}

func (c *countingStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.reads.Add(1)
	return c.Store.Get(ctx, key, off, n)
}

// TestExtendedAttributesInTheView: getxattr, setxattr, listxattr and
// removexattr go to the share, with Linux's answers; a file without any
// is answered without a store call (security.capability, which the
// kernel asks at the first write of a new file, and the names smbd reads
// at every open); the POSIX ACLs are refused.
func TestExtendedAttributesInTheView(t *testing.T) {
	st := &countingStore{Store: mem.New("smb")}
	o := memOptions()
	o.Store, o.AttrTTL = st, time.Hour
	m, sh, mnt := mountView(t, o)
	ctx := context.Background()
	p, q := filepath.Join(mnt, "f.txt"), filepath.Join(mnt, "g.txt")
	for _, f := range []string{p, q} {
		if err := os.WriteFile(f, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	st.reads.Store(0)
	for _, name := range []string{"user.DOSATTRIB", "security.NTACL", "security.capability", "system.posix_acl_access"} {
		if _, err := syscall.Getxattr(p, name, buf); err != syscall.ENODATA {
			t.Fatalf("getxattr %s of a file without any: %v, want ENODATA", name, err)
		}
	}
	if n, err := syscall.Listxattr(p, buf); err != nil || n != 0 {
		t.Fatalf("listxattr of a file without any: %d, %v", n, err)
	}
	if n := st.reads.Load(); n != 0 {
		t.Fatalf("a file without extended attributes: %d store reads for them, want 0", n)
	}

	if err := unix.Setxattr(p, "user.a", []byte("1"), unix.XATTR_CREATE); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.a", []byte("2"), unix.XATTR_CREATE); err != syscall.EEXIST {
		t.Fatalf("XATTR_CREATE of a name there: %v, want EEXIST", err)
	}
	if err := unix.Setxattr(p, "user.b", []byte("2"), unix.XATTR_REPLACE); err != syscall.ENODATA {
		t.Fatalf("XATTR_REPLACE of a name not there: %v, want ENODATA", err)
	}
	// user::rw- user:1000:r-- group::r-- mask::r-- other::r--
	acl := []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff}
	if err := unix.Setxattr(p, "system.posix_acl_access", acl, 0); err != syscall.EOPNOTSUPP {
		t.Fatalf("setxattr of a POSIX ACL: %v, want EOPNOTSUPP", err)
	}
	big := bytes.Repeat([]byte("acl"), 1000)
	if err := unix.Setxattr(q, "security.NTACL", big, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := syscall.Getxattr(p, "user.a", nil); err != nil || n != 1 {
		t.Fatalf("size of user.a: %d, %v", n, err)
	}
	if _, err := syscall.Getxattr(q, "security.NTACL", buf); err != syscall.ERANGE {
		t.Fatalf("getxattr into a short buffer: %v, want ERANGE", err)
	}
	if n, err := syscall.Getxattr(p, "user.a", buf); err != nil || string(buf[:n]) != "1" {
		t.Fatalf("user.a: %q, %v", buf[:n], err)
	}
	if n, err := syscall.Listxattr(p, buf); err != nil || string(buf[:n]) != "user.a\x00" {
		t.Fatalf("listxattr: %q, %v", buf[:n], err)
	}
	// In the store after the upload: small ones in the object's metadata,
	// a big one in a sidecar the metadata names.
	if err := m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for key, meta := range map[string]string{"v/f.txt": "gwd-xattr", "v/g.txt": "gwd-xattr-ref"} {
		oi, err := st.Store.Stat(ctx, key)
		if err != nil || oi.Metadata[meta] == "" {
			t.Fatalf("%s: metadata %v (%v), want %s", key, oi.Metadata, err, meta)
		}
	}
	if got, err := sh.Xattr(ctx, "g.txt", "security.NTACL"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("the big one through the share: %d bytes, %v", len(got), err)
	}
	if err := unix.Removexattr(p, "user.a"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Removexattr(p, "user.a"); err != syscall.ENODATA {
		t.Fatalf("remove of a name not there: %v, want ENODATA", err)
	}
	if _, err := syscall.Getxattr(p, "user.a", buf); err != syscall.ENODATA {
		t.Fatalf("getxattr after remove: %v, want ENODATA", err)
	}
}

// TestAllocationAndZeroedRanges: a file's blocks are its size in 4 KiB
// filesystem blocks; fallocate punches holes (zeroes read back, the size
// stays), zeroes ranges and extends, as FSCTL_SET_ZERO_DATA and
// allocation requests of smbd need.
func TestAllocationAndZeroedRanges(t *testing.T) {
	_, _, mnt := mountView(t, memOptions())
	p := filepath.Join(mnt, "f.bin")
	want := bytes.Repeat([]byte{0xab}, 10000)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	var sb syscall.Stat_t
	if err := syscall.Stat(p, &sb); err != nil || sb.Blocks != 24 {
		t.Fatalf("blocks of 10000 bytes: %d (%v), want 24 (three 4 KiB blocks)", sb.Blocks, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	check := func(what string, size int) {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want[:size]) {
			t.Fatalf("%s: %d bytes (%v), not as expected", what, len(got), err)
		}
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 100, 200); err != nil {
		t.Fatal(err)
	}
	clear(want[100:300])
	check("a hole punched in the middle", 10000)
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 5000, 1<<20); err != nil {
		t.Fatal(err)
	}
	clear(want[5000:])
	check("a hole punched to past the end", 10000)
	want = append(want, make([]byte, 5000)...)
	if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 9000, 6000); err != nil {
		t.Fatal(err)
	}
	check("a range zeroed past the end", 15000)
	want = append(want, make([]byte, 5000)...)
	if err := unix.Fallocate(fd, 0, 0, 20000); err != nil {
		t.Fatal(err)
	}
	check("an allocation past the end", 20000)
	if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 30000); err != nil {
		t.Fatal(err)
	}
	check("an allocation that keeps the size", 20000)
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE, 0, 10); err != syscall.EOPNOTSUPP {
		t.Fatalf("a hole punched without KEEP_SIZE: %v, want EOPNOTSUPP", err)
	}
}
