package smb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudsoda/go-smb2"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

type fixture struct {
	shares *fileshare.Manager
	srv    *Server
	addr   string
	dir    string
}

const password = "gatewayd-test-pw"

func start(t *testing.T, configs ...fileshare.Config) *fixture {
	t.Helper()
	return startWith(t, "", configs...)
}

// newManager opens file shares on o.Store with the upload buffer, cache
// and metadata store the tests use, in dir; they close when the test ends.
func newManager(t *testing.T, dir string, o fileshare.Options) *fileshare.Manager {
	t.Helper()
	log, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(vfs.Default, filepath.Join(dir, "cache"), cache.Options{Capacity: 256 << 20})
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	o.Meta, o.Cache, o.Log = metamem.New(), c, log
	m, err := fileshare.New(context.Background(), o)
	if err != nil {
		c.Close()
		log.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		c.Close()
		log.Close()
	})
	return m
}

// startWith is start with smbd's signing setting.
func startWith(t *testing.T, signing string, configs ...fileshare.Config) *fixture {
	t.Helper()
	return startOpts(t, signing, nil, configs...)
}

// startOpts is startWith with set called on the server's options.
func startOpts(t *testing.T, signing string, set func(*Options), configs ...fileshare.Config) *fixture {
	t.Helper()
	smbtest.Require(t)
	dir := t.TempDir()
	m := newManager(t, dir, fileshare.Options{Store: mem.New("smb"), SettleTime: 50 * time.Millisecond, UploadInterval: 20 * time.Millisecond})
	for _, cfg := range configs {
		if _, err := m.Create(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeport.Addr(t)
	opts := Options{Settings: Settings{Listen: addr, StateDir: filepath.Join(dir, "smb"), Signing: signing}, MountDir: filepath.Join(dir, "mnt"), Shares: m}
	if set != nil {
		set(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := srv.AddUser(context.Background(), "root", password); err != nil {
		t.Fatal(err)
	}
	if err := srv.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &fixture{shares: m, srv: srv, addr: addr, dir: dir}
}

// TestViewOperations drives a mounted view through the kernel, as smbd
// does: every operation the view implements.
func TestViewOperations(t *testing.T) {
	f := start(t, fileshare.Config{Name: "v", Protocols: []string{"smb"}})
	root := filepath.Join(f.dir, "mnt", "v")
	p := func(name string) string { return filepath.Join(root, name) }
	data := testrand.Bytes(1, 3<<20+17)
	if err := os.WriteFile(p("a.bin"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p("a.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}
	fh, err := os.OpenFile(p("a.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("XYZ"), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(2 << 20); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	want := append(append(append([]byte(nil), data[:1<<20]...), "XYZ"...), data[1<<20+3:2<<20]...)
	if got, _ := os.ReadFile(p("a.bin")); !bytes.Equal(got, want) {
		t.Fatalf("after write and truncate: %d bytes, want %d", len(got), len(want))
	}
	st, err := os.Stat(p("a.bin"))
	if err != nil || st.Size() != 2<<20 || st.Mode().Perm() != 0o640 {
		t.Fatalf("stat: %v %v", st, err)
	}
	if err := os.Chmod(p("a.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p("a.bin"), mt, mt); err != nil {
		t.Fatal(err)
	}
	// The kernel caches attributes for a second; the share has them now.
	sh, _ := f.shares.Get("v")
	a, err := sh.Stat(context.Background(), "a.bin")
	if err != nil || a.Mode != 0o600 || !a.Mtime.Equal(mt) {
		t.Fatalf("share sees %+v %v after chmod and utimes", a, err)
	}
	if err := os.Mkdir(p("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p("a.bin"), p("d/b.bin")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p("a.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name after rename: %v", err)
	}
	if got, _ := os.ReadFile(p("d/b.bin")); !bytes.Equal(got, want) {
		t.Fatal("renamed file differs")
	}
	ents, err := os.ReadDir(root)
	if err != nil || len(ents) != 1 || ents[0].Name() != "d" || !ents[0].IsDir() {
		t.Fatalf("readdir: %v %v", ents, err)
	}
	if err := os.Remove(p("d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a full directory: %v", err)
	}
	if err := os.Symlink("d/b.bin", p("link")); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(p("link")); err != nil || tgt != "d/b.bin" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	if err := syscall.Setxattr(p("d/b.bin"), "user.DOSATTRIB", []byte("x"), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	xb := make([]byte, 8)
	if n, err := syscall.Getxattr(p("d/b.bin"), "user.DOSATTRIB", xb); err != nil || string(xb[:n]) != "x" {
		t.Fatalf("getxattr: %q %v, want what setxattr set", xb[:n], err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(root, &sfs); err != nil || sfs.Blocks == 0 {
		t.Fatalf("statfs: %+v %v", sfs, err)
	}
	for _, n := range []string{"link", "d/b.bin", "d"} {
		if err := os.Remove(p(n)); err != nil {
			t.Fatal(err)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left after removing everything: %v", ents)
	}
	// O_EXCL on an existing file, and writes to a read-only share.
	if err := os.WriteFile(p("x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.OpenFile(p("x"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); !errors.Is(err, os.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v", err)
	}
}

func TestSmbclient(t *testing.T) {
	f := start(t, fileshare.Config{Name: "docs", Protocols: []string{"smb"}})
	smbtest.SmbclientOps(t, f.addr, "docs", "root", password)
}

// TestGoSMB2 runs go-smb2 on a signed share and on an encrypted one.
// A signed session sees smbd's unsigned interim (STATUS_PENDING) responses
// whenever an operation is slow; the client must accept them (MS-SMB2
// 3.2.5.1.3), as github.com/cloudsoda/go-smb2 does (docs/smb.md).
func TestGoSMB2(t *testing.T) {
	f := start(t, fileshare.Config{Name: "docs", Protocols: []string{"nfs", "smb"}},
		fileshare.Config{Name: "sealed", Protocols: []string{"nfs", "smb"}, Frontends: smbOptions(ShareOptions{Encrypt: true})})
	for _, name := range []string{"docs", "sealed"} {
		t.Run(name, func(t *testing.T) {
			smbtest.GoClientOps(t, f.addr, name, "root", password, 16<<20)
			// What SMB wrote is in the share.
			sh, _ := f.shares.Get(name)
			ents, err := sh.ReadDir(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
			}
			if !slices.Contains(names, "big.bin") {
				t.Fatalf("share lists %v, want big.bin among them", names)
			}
		})
	}
}

// TestSyncAndRestart: shares come and go with Sync; a killed smbd comes
// back and serves again.
func TestSyncAndRestart(t *testing.T) {
	f := start(t, fileshare.Config{Name: "one", Protocols: []string{"smb"}})
	if _, err := f.shares.Create(context.Background(), fileshare.Config{Name: "two", Protocols: []string{"smb"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	smbtest.Eventually(t, "share two served after Sync", func() error {
		return smbtest.Smbclient(f.addr, "two", "root", password, "ls")
	})
	conf, _ := os.ReadFile(f.srv.ConfPath())
	for _, want := range []string{"[one]", "[two]", "server signing = mandatory", "bind interfaces only = yes", "server min protocol = SMB2_02", "guest ok = no"} {
		if !strings.Contains(string(conf), want) {
			t.Fatalf("smb.conf lacks %q:\n%s", want, conf)
		}
	}
	if err := f.shares.Delete(context.Background(), "two"); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if isMountpoint(filepath.Join(f.dir, "mnt", "two")) {
		t.Fatal("view of a deleted share still mounted")
	}
	smbtest.Eventually(t, "deleted share refused", func() error {
		if smbtest.Smbclient(f.addr, "two", "root", password, "ls") == nil {
			return errors.New("still served")
		}
		return nil
	})
	// Kill smbd: the supervisor starts a new one.
	f.srv.mu.Lock()
	pid := f.srv.proc.Pid
	f.srv.mu.Unlock()
	// smbd holds no FUSE device of the views: they must die with gatewayd.
	for _, p := range Processes(f.srv.ConfPath()) {
		fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "fd"))
		for _, fd := range fds {
			if target, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "fd", fd.Name())); target == "/dev/fuse" {
				t.Fatalf("smbd process %d holds /dev/fuse (fd %s), inherited from the views", p, fd.Name())
			}
		}
	}
	f.killSmbd(t, pid)
	smbtest.Eventually(t, "share served by the new smbd", func() error {
		return smbtest.Smbclient(f.addr, "one", "root", password, "ls")
	})
	// The supervisor learns that the new smbd accepts connections by
	// connecting itself, which a client may do first: wait for it.
	smbtest.Eventually(t, "state after a restart", func() error {
		if st := f.srv.State(); !strings.Contains(st, "serving 1 shares") || !strings.Contains(st, "restarted 1 times") {
			return errors.New("state " + strconv.Quote(st))
		}
		return nil
	})
}

func TestUsers(t *testing.T) {
	f := start(t, fileshare.Config{Name: "u", Protocols: []string{"smb"}})
	ctx := context.Background()
	users, err := f.srv.Users(ctx)
	if err != nil || strings.Join(users, ",") != "root" {
		t.Fatalf("users %v %v, want root", users, err)
	}
	if err := smbtest.Smbclient(f.addr, "u", "root", "wrong-password", "ls"); err == nil {
		t.Fatal("wrong password accepted")
	}
	for _, bad := range []struct{ name, pw, want string }{
		{"no-such-unix-account-x", "pw", "no Unix account"},
		{"bad:name", "pw", "use letters"},
		{"root", "", "password must be non-empty"},
	} {
		if err := f.srv.AddUser(ctx, bad.name, bad.pw); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("AddUser(%q, %q): %v, want %q", bad.name, bad.pw, err, bad.want)
		}
	}
	if err := f.srv.DeleteUser(ctx, "nobody"); !errors.Is(err, ErrNoUser) {
		t.Fatalf("deleting a user not in the passdb: %v", err)
	}
	if err := f.srv.DeleteUser(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if err := smbtest.Smbclient(f.addr, "u", "root", password, "ls"); err == nil {
		t.Fatal("deleted user still logs in")
	}
	if users, _ := f.srv.Users(ctx); len(users) != 0 {
		t.Fatalf("users after delete: %v", users)
	}
}

func TestStaleMountsCleaned(t *testing.T) {
	f := start(t, fileshare.Config{Name: "s", Protocols: []string{"smb"}})
	mnt := filepath.Join(f.dir, "mnt")
	// A second mount under the directory, as a killed gatewayd leaves.
	extra := filepath.Join(mnt, "left-behind")
	sh, _ := f.shares.Get("s")
	if err := os.MkdirAll(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := Mount(sh, extra, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = v // abandoned, as by a crash
	done, err := CleanStale(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 {
		t.Fatalf("cleaned %v, want the share's view and the extra mount", done)
	}
	for _, d := range []string{extra, filepath.Join(mnt, "s")} {
		if isMountpoint(d) {
			t.Fatalf("%s still mounted", d)
		}
	}
	v.server.Wait()
}

func TestSettingsRejectBadInput(t *testing.T) {
	for _, s := range []Settings{
		{Listen: "127.0.0.1", StateDir: "x"},
		{Listen: "127.0.0.1:0", StateDir: "x"},
		{Listen: "127.0.0.1:445", StateDir: ""},
		{Listen: "127.0.0.1:445", StateDir: "x", Signing: "sometimes"},
	} {
		if err := s.Normalize(); err == nil {
			t.Fatalf("%+v accepted", s)
		}
	}
	s := Settings{Listen: "0.0.0.0:" + strconv.Itoa(445), StateDir: "/x"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	conf := Conf(s, nil, []ShareConf{{Name: "g", Path: "/m/g", Guest: true, Encrypt: true}})
	for _, want := range []string{"bind interfaces only = no", "map to guest = bad user", "guest ok = yes", "smb encrypt = required"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("conf lacks %q:\n%s", want, conf)
		}
	}
}

// TestGuestAndReadOnly: a guest share lets a user smbd does not know in
// (smbclient, signing mandatory as by default), a share without guest
// access does not, and a read-only share refuses writes.
func TestGuestAndReadOnly(t *testing.T) {
	f := startWith(t, "mandatory",
		fileshare.Config{Name: "open", Protocols: []string{"smb"}, Frontends: smbOptions(ShareOptions{Guest: true})},
		fileshare.Config{Name: "closed", Protocols: []string{"smb"}},
		fileshare.Config{Name: "ro", Protocols: []string{"smb"}, ReadOnly: true})
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "g.txt"), []byte("guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := smbtest.Smbclient(f.addr, "open", "someone-unknown", "x", "put g.txt; ls g.txt", local); err != nil {
		t.Fatalf("guest on a guest share: %v", err)
	}
	if err := smbtest.Smbclient(f.addr, "closed", "someone-unknown", "x", "ls", local); err == nil {
		t.Fatal("guest let into a share without guest access")
	}
	if err := smbtest.Smbclient(f.addr, "ro", "root", password, "ls", local); err != nil {
		t.Fatal(err)
	}
	if err := smbtest.Smbclient(f.addr, "ro", "root", password, "put g.txt", local); err == nil {
		t.Fatal("put to a read-only share succeeded")
	}
}

// TestNamesDifferingInCase: SMB share names ignore case, so of two shares
// whose names differ only in case the one served first stays served.
func TestNamesDifferingInCase(t *testing.T) {
	f := start(t, fileshare.Config{Name: "team", Protocols: []string{"smb"}})
	if _, err := f.shares.Create(context.Background(), fileshare.Config{Name: "Team", Protocols: []string{"smb"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "only in case") {
		t.Fatalf("Sync with two names differing in case: %v", err)
	}
	conf, _ := os.ReadFile(f.srv.ConfPath())
	if !strings.Contains(string(conf), "[team]") || strings.Contains(string(conf), "[Team]") {
		t.Fatalf("smb.conf:\n%s", conf)
	}
	if err := smbtest.Smbclient(f.addr, "team", "root", password, "ls"); err != nil {
		t.Fatal(err)
	}
}

// TestSubsecondTimes: times reach SMB clients whole, to SMB's 100 ns,
// the same in a file's information and in a directory listing. smbd
// keeps whole seconds only if the share's root has none finer, and the
// root's times (the share's creation) are whole seconds; it then rounded
// times to seconds, in a create's reply and a listing differently.
func TestSubsecondTimes(t *testing.T) {
	// Encrypted: go-smb2 (see TestGoSMB2).
	f := start(t, fileshare.Config{Name: "times", Protocols: []string{"smb"}, Frontends: smbOptions(ShareOptions{Encrypt: true})})
	root := filepath.Join(f.dir, "mnt", "times")
	mt := time.Date(2021, 3, 4, 5, 6, 7, 700_000_000, time.UTC)
	if err := os.WriteFile(filepath.Join(root, "t.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(root, "t.txt"), mt, mt); err != nil {
		t.Fatal(err)
	}
	fs, done := smbtest.MustDial(t, f.addr, "times", "root", password)
	defer done()
	st, err := fs.Stat("t.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.(*smb2.FileStat).LastWriteTime; !got.Equal(mt) {
		t.Errorf("file information: write time %v, want %v", got, mt)
	}
	if got := listed(t, fs, "", "t.txt").LastWriteTime; !got.Equal(mt) {
		t.Errorf("listing: write time %v, want %v", got, mt)
	}
}

// TestCreationTimeStable: a file created over SMB has one creation time,
// the same in its create's reply, its information and every listing.
// Without DOS attributes, smbd computed a creation time from the earliest
// of the file's times field by field (seconds, then nanoseconds,
// separately), and a ctime moved into the next second made listings report
// a creation time before the file's creation (smbtorture's
// smb2.dir.find); it keeps the creation time in them now.
func TestCreationTimeStable(t *testing.T) {
	f := start(t, fileshare.Config{Name: "ctime", Protocols: []string{"smb"}, Frontends: smbOptions(ShareOptions{Encrypt: true})})
	fs, done := smbtest.MustDial(t, f.addr, "ctime", "root", password)
	defer done()
	w, err := fs.Create("new.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sh, _ := f.shares.Get("ctime")
	a, err := sh.Stat(context.Background(), "new.txt")
	if err != nil {
		t.Fatal(err)
	}
	// smbd keeps the creation time in the file's DOS attributes, set
	// at the create (which moves the ctime, as on a local filesystem).
	created := a.Mtime.Truncate(100 * time.Nanosecond) // SMB's resolution
	st, err := fs.Stat("new.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.(*smb2.FileStat).CreationTime; !got.Equal(created) {
		t.Errorf("file information: creation time %v, want %v", got, created)
	}
	if got := listed(t, fs, "", "new.txt").CreationTime; !got.Equal(created) {
		t.Errorf("listing: creation time %v, want %v", got, created)
	}
}

// listed returns name's entry in the SMB listing of dir.
func listed(t *testing.T, fs *smb2.Share, dir, name string) *smb2.FileStat {
	t.Helper()
	list, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.Name() == name {
			return e.(*smb2.FileStat)
		}
	}
	t.Fatalf("%s not listed in %q", name, dir)
	return nil
}

// smbOptions are a share configuration's frontend options holding o.
func smbOptions(o ShareOptions) map[string]json.RawMessage {
	var c fileshare.Config
	if err := SetShareOptions(&c, o); err != nil {
		panic(err)
	}
	return c.Frontends
}

// killSmbd kills smbd process pid and waits for the supervisor to start
// another.
func (f *fixture) killSmbd(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	smbtest.Eventually(t, "a new smbd started", func() error {
		f.srv.mu.Lock()
		defer f.srv.mu.Unlock()
		if f.srv.proc == nil || f.srv.proc.Pid == pid {
			return errors.New("not yet")
		}
		return nil
	})
}

// TestReloadWhileSmbdStarts: a share added while a restarted smbd is still
// starting, before it handles SIGHUP (a shell in front of smbd holds it
// there), is served without killing it; the reload waits until smbd
// accepts connections.
func TestReloadWhileSmbdStarts(t *testing.T) {
	real, err := FindSmbd("")
	if err != nil {
		t.Skip(err)
	}
	bin := t.TempDir()
	hold, fifo := filepath.Join(bin, "hold"), filepath.Join(bin, "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// While hold exists, the shell waits on the fifo before it becomes
	// smbd; it takes SIGHUP's default action, as smbd does that early.
	script := "#!/bin/sh\nif [ -e " + hold + " ]; then read x < " + fifo + "; fi\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "smbd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := startOpts(t, "", func(o *Options) { o.Smbd = filepath.Join(bin, "smbd") }, fileshare.Config{Name: "one", Protocols: []string{"smb"}})
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.srv.mu.Lock()
	pid := f.srv.proc.Pid
	f.srv.mu.Unlock()
	f.killSmbd(t, pid)
	if _, err := f.shares.Create(context.Background(), fileshare.Config{Name: "two", Protocols: []string{"smb"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.srv.mu.Lock()
	pending := f.srv.reload
	f.srv.mu.Unlock()
	if !pending {
		t.Fatal("no reload pending for an smbd that is still starting")
	}
	// Opening the fifo without blocking succeeds once the shell waits on
	// it.
	var release *os.File
	smbtest.Eventually(t, "the starting smbd waiting", func() error {
		release, err = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		return err
	})
	if _, err := release.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	release.Close()
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	smbtest.Eventually(t, "share two served by the new smbd", func() error {
		return smbtest.Smbclient(f.addr, "two", "root", password, "ls")
	})
	smbtest.Eventually(t, "the reload sent once smbd accepts connections", func() error {
		f.srv.mu.Lock()
		defer f.srv.mu.Unlock()
		if f.srv.reload || f.srv.serving != f.srv.proc.Pid {
			return errors.New("not yet")
		}
		return nil
	})
	// Only the kill restarted smbd: SIGHUP never reached it too early.
	if st := f.srv.State(); !strings.Contains(st, "serving 2 shares") || !strings.Contains(st, "restarted 1 times") {
		t.Fatalf("state %q", st)
	}
}
