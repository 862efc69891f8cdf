package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// TestNFS4DelegationRecalledBySMBAndBucket: an NFSv4.1 client with a back
// channel holds a read delegation of a file of a share served over NFS
// and SMB (the real daemon, with read delegations on, smbd, MinIO); it is
// recalled (CB_RECALL reaches the client) when smbclient writes the file,
// and when the object is overwritten in the bucket and the share
// refreshed; after each return the client reads the new content.
func TestNFS4DelegationRecalledBySMBAndBucket(t *testing.T) {
	smbtest.Require(t)
	srv, dir := initOnMinIO(t, "deleg")
	smbAddr := freeport.Addr(t)
	d := serveSMB(t, dir, smbAddr, "--nfs-read-delegations")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--protocols", "nfs,smb")

	local := t.TempDir()
	put := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(local, "f.txt"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := smbtest.Smbclient(smbAddr, "docs", "root", smbPassword, "put f.txt f.txt", local); err != nil {
			t.Fatal(err)
		}
	}
	c := nfstest.DialV4Back(t, nfsAddr(t, dir), "holder")
	read := func(fh []byte, sid nfstest.V4Stateid, want []byte) {
		t.Helper()
		if st, got := c.Read(fh, sid, 0, 4096); st != nfstest.V4OK || !bytes.Equal(got, want) {
			t.Fatalf("NFSv4.1 READ: %q (status %d), want %q", got, st, want)
		}
	}

	first := []byte("first version, put over SMB\n")
	put(first)
	deleg, open, fh := c.ReadDelegation("docs", "f.txt")
	read(fh, open, first)
	second := []byte("second version, put over SMB by smbclient, longer\n")
	put(second)
	c.WaitRecall("recall after smbclient's write", deleg, fh)
	read(fh, open, second)

	deleg, open, _ = c.ReadDelegation("docs", "f.txt") // the open's stateid moves with each OPEN
	waitObject(t, srv, "deleg", "gw/docs/f.txt", second)
	third := []byte("third version, put in the bucket\n")
	putAndRefresh(t, srv, dir, "deleg", "gw/docs/f.txt", third)
	c.WaitRecall("recall after a change in the bucket and a refresh", deleg, fh)
	read(fh, open, third)
	if n, ok := metric(t, dir, `gatewayd_nfs4_delegations_total{event="recalled"}`); !ok || n != 2 {
		t.Fatalf("delegations recalled: %v (found %v), want 2", n, ok)
	}
	d.stop(t)
}
