package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// TestSMBShareOwnedByAnotherAccount: a share owned by an account other
// than root (daemon, uid 1) of a gateway whose data directory is private
// (0700, as gatewayd init makes it) is used over SMB by that account:
// smbd, working in the share as daemon, reaches the view, which is
// mounted out of the data directory.
func TestSMBShareOwnedByAnotherAccount(t *testing.T) {
	smbtest.Require(t)
	dir := filepath.Join(t.TempDir(), "data") // made by init
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory %s: %v, %v; want it private (0700), as init makes it", dir, fi.Mode(), err)
	}
	addr := freeport.Addr(t)
	d := serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "daemon", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "owned", "--protocols", "smb", "--uid", "1", "--gid", "1")
	view := viewDir(t, dir, "owned")
	if strings.HasPrefix(view, dir+"/") {
		t.Fatalf("the view is mounted at %s, in the private data directory", view)
	}

	fs, done := smbtest.MustDial(t, addr, "owned", "daemon", smbPassword)
	// Logged off before the stop below (smbd would hold the view).
	data := []byte("written over SMB by the share's owner\n")
	if err := fs.Mkdir("sub", 0o755); err != nil {
		t.Fatalf("mkdir over SMB as daemon: %v", err)
	}
	if err := fs.WriteFile("sub/f.txt", data, 0o644); err != nil {
		t.Fatalf("write over SMB as daemon: %v", err)
	}
	if got, err := fs.ReadFile("sub/f.txt"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read over SMB as daemon: %q, %v", got, err)
	}
	if names, err := fs.ReadDir("sub"); err != nil || len(names) != 1 || names[0].Name() != "f.txt" {
		t.Fatalf("listing over SMB as daemon: %v, %v", names, err)
	}
	fi, err := os.Stat(filepath.Join(view, "sub", "f.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1 || st.Gid != 1 {
		t.Fatalf("the file made over SMB belongs to %d:%d, want the share's owner 1:1", st.Uid, st.Gid)
	}
	done()
	d.stop(t)
	if _, err := os.Stat(view); err == nil {
		t.Fatalf("the view's mount point %s is left after a clean stop", view)
	}
}

// viewDir is the directory smbd serves share name from, as the gateway's
// smb.conf says.
func viewDir(t *testing.T, dataDir, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, "smb", "smb.conf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in = strings.EqualFold(line, "["+name+"]")
			continue
		}
		if k, v, ok := strings.Cut(line, "="); in && ok && strings.TrimSpace(k) == "path" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("share %s has no path in smb.conf", name)
	return ""
}
