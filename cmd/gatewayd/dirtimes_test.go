package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cloudsoda/go-smb2"
	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// dirTimes is a directory's mtime and ctime as one client saw them.
type dirTimes struct{ mtime, ctime time.Time }

func (d dirTimes) String() string {
	return fmt.Sprintf("mtime %s ctime %s", d.mtime.Format(time.RFC3339Nano), d.ctime.Format(time.RFC3339Nano))
}

func nfsTime(t nfsc.NFS3Time) time.Time { return time.Unix(int64(t.Seconds), int64(t.Nseconds)) }

// smbTime is a time as SMB carries it: in units of 100 ns.
func smbTime(t time.Time) time.Time { return time.Unix(0, t.UnixNano()/100*100) }

// TestDirectoryTimesOverNFSAndSMB: a directory's mtime and ctime move
// when an entry is created in it, renamed within it, renamed out of it
// (both directories), or removed, over NFS and over SMB; GETATTR,
// READDIRPLUS and the SMB client give the same times; a restart keeps
// them, and an upload round puts them in the directory marker's metadata.
// Before, they never changed, so an NFS client kept its cached listing of
// the directory and did not see the new files.
func TestDirectoryTimesOverNFSAndSMB(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	smbtest.Require(t)
	srv, dir := initOnMinIO(t, "dirtimes")
	addr := freeport.Addr(t)
	d := serveSMB(t, dir, addr)
	// go-smb2 on an encrypted share (see frontends/smb's TestGoSMB2).
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "dt", "--protocols", "nfs,smb", "--smb-encrypt")

	v, nfsDone := nfsMount(t, nfsAddr(t, dir), "dt")
	defer func() { nfsDone() }()
	// A bound for a wedged SMB call, not a speed check.
	ctx, cancel := testContext(t)
	defer cancel()
	fs, smbDone := smbtest.MustDial(t, addr, "dt", "root", smbPassword)
	defer func() { smbDone() }()
	fs = fs.WithContext(ctx)

	getattr := func(p string) dirTimes {
		t.Helper()
		a, err := v.Getattr(p)
		if err != nil {
			t.Fatalf("GETATTR %s: %v", p, err)
		}
		return dirTimes{nfsTime(a.Mtime), nfsTime(a.Ctime)}
	}
	// same checks that READDIRPLUS of p's parent and the SMB client give
	// GETATTR's times for p, and returns them. The SMB view's kernel
	// trusts attributes for a second: the SMB client may need a moment to
	// see a change made over NFS.
	same := func(p, parent string) dirTimes {
		t.Helper()
		want := getattr(p)
		ents, err := v.ReadDirPlus(parent)
		if err != nil {
			t.Fatalf("READDIRPLUS %s: %v", parent, err)
		}
		found := false
		for _, e := range ents {
			if e.FileName == p || parent != "" && parent+"/"+e.FileName == p {
				found = true
				got := dirTimes{nfsTime(e.Attr.Attr.Mtime), nfsTime(e.Attr.Attr.Ctime)}
				if !e.Attr.IsSet || got != want {
					t.Fatalf("%s: READDIRPLUS gives %v, GETATTR %v", p, got, want)
				}
			}
		}
		if !found {
			t.Fatalf("%s not in READDIRPLUS of %q", p, parent)
		}
		smbtest.Eventually(t, "SMB gives GETATTR's times of "+p, func() error {
			fi, err := fs.Stat(p)
			if err != nil {
				return err
			}
			st := fi.Sys().(*smb2.FileStat)
			got := dirTimes{st.LastWriteTime, st.ChangeTime}
			if w := (dirTimes{smbTime(want.mtime), smbTime(want.ctime)}); got != w {
				return fmt.Errorf("SMB gives %v, GETATTR %v", got, want)
			}
			return nil
		})
		return want
	}
	moved := func(what string, before, after dirTimes) {
		t.Helper()
		if !after.mtime.After(before.mtime) || !after.ctime.After(before.ctime) {
			t.Errorf("after %s: %v, before %v: want both later", what, after, before)
		}
	}

	for _, p := range []string{"a", "b"} {
		if _, err := v.Mkdir(p, 0o755); err != nil {
			t.Fatalf("MKDIR %s: %v", p, err)
		}
	}
	a0, b0 := same("a", ""), same("b", "")

	// Over NFS.
	f, err := v.OpenFile("a/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("nfs")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a1 := same("a", "")
	moved("an NFS create in a", a0, a1)
	if b := same("b", ""); b != b0 {
		t.Errorf("an NFS create in a changed b: %v, before %v", b, b0)
	}
	if err := v.Rename("a/f", "a/g"); err != nil {
		t.Fatal(err)
	}
	a2 := same("a", "")
	moved("an NFS rename within a", a1, a2)
	if err := v.Rename("a/g", "b/g"); err != nil {
		t.Fatal(err)
	}
	a3, b1 := same("a", ""), same("b", "")
	moved("an NFS rename from a to b (a)", a2, a3)
	moved("an NFS rename from a to b (b)", b0, b1)
	if err := v.Remove("b/g"); err != nil {
		t.Fatal(err)
	}
	b2 := same("b", "")
	moved("an NFS remove in b", b1, b2)
	if _, err := v.Mkdir("a/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	a4 := same("a", "")
	moved("an NFS mkdir in a", a3, a4)

	// Over SMB.
	if err := fs.WriteFile(`a\s.txt`, []byte("smb"), 0o644); err != nil {
		t.Fatal(err)
	}
	a5 := same("a", "")
	moved("an SMB create in a", a4, a5)
	if err := fs.Rename(`a\s.txt`, `b\t.txt`); err != nil {
		t.Fatal(err)
	}
	a6, b3 := same("a", ""), same("b", "")
	moved("an SMB rename from a to b (a)", a5, a6)
	moved("an SMB rename from a to b (b)", b2, b3)
	if err := fs.Remove(`b\t.txt`); err != nil {
		t.Fatal(err)
	}
	b4 := same("b", "")
	moved("an SMB remove in b", b3, b4)
	if err := fs.Mkdir(`b\sub`, 0o755); err != nil {
		t.Fatal(err)
	}
	b5 := same("b", "")
	moved("an SMB mkdir in b", b4, b5)

	// A restart keeps them; the marker carries them once uploaded.
	smbDone()
	nfsDone()
	d.stop(t)
	d = serve(t, dir, "--smb-listen", addr)
	v, nfsDone = nfsMount(t, nfsAddr(t, dir), "dt")
	fs, smbDone = smbtest.MustDial(t, addr, "dt", "root", smbPassword)
	fs = fs.WithContext(ctx)
	if a, b := same("a", ""), same("b", ""); a != a6 || b != b5 {
		t.Errorf("after a restart: a %v, b %v; before a %v, b %v", a, b, a6, b5)
	}
	for key, want := range map[string]time.Time{"gw/dt/a/": a6.mtime, "gw/dt/b/": b5.mtime} {
		wantNs := strconv.FormatInt(want.UnixNano(), 10)
		var md map[string]string
		deadline := time.Now().Add(3 * time.Minute)
		for {
			out, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("dirtimes"), Key: aws.String(key)})
			if err == nil {
				md = out.Metadata
				if md["gwd-mtime"] == wantNs && md["gwd-ctime"] == wantNs {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("marker %s: metadata %v (err %v), want gwd-mtime and gwd-ctime %s", key, md, err, wantNs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A directory with no entry changes carries the times of its making.
	sub := getattr("a/sub")
	wantNs := strconv.FormatInt(sub.mtime.UnixNano(), 10)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("dirtimes"), Key: aws.String("gw/dt/a/sub/")})
		if err == nil && out.Metadata["gwd-mtime"] == wantNs && out.Metadata["gwd-ctime"] == strconv.FormatInt(sub.ctime.UnixNano(), 10) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker gw/dt/a/sub/: %v (err %v), want gwd-mtime %s and gwd-ctime %d", out, err, wantNs, sub.ctime.UnixNano())
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(t)
}
