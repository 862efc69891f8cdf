package main

import (
	"path/filepath"
	"testing"

	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// TestSMBKernelOplocks runs smbtorture's smb2.kernel-oplocks against a
// share served over NFS and SMB, with its FUSE view as the "local"
// directory the tests open files in beside smbd: smbd's oplocks there are
// kernel leases on the view, and an open by another process breaks them
// (as the view's own open does for a change over NFS or in the bucket,
// frontends/smb TestLeaseBrokenByOtherPaths). With oplocks kept inside
// smbd, kernel_oplocks5 and kernel_oplocks7 fail (a level II oplock is
// granted).
func TestSMBKernelOplocks(t *testing.T) {
	smbtest.Require(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	addr := smbtest.FreeAddr(t)
	d := serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "root", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "both", "--protocols", "nfs,smb")
	view := filepath.Join(dir, "smb", "mnt", "both")
	results, lines, err := smbtest.Torture(addr, "both", "root", smbPassword, "smb2.kernel-oplocks", "--option=torture:localdir="+view)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 8 {
		t.Errorf("smb2.kernel-oplocks ran %d tests, want 8: %v", len(results), results)
	}
	for name, res := range results {
		if res != "success" {
			t.Errorf("%s: %s\n%s", name, res, lines[name])
		}
	}
	d.stop(t)
}
