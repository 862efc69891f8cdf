// Package nfstest holds the NFS operations every gatewayd NFS test runs
// through a Go client: against the frontend on an in-memory store and
// against the real daemon on MinIO.
package nfstest

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/internal/testrand"

	nfsc "github.com/willscott/go-nfs-client/nfs"
)

// Operations creates, writes, renames (file and directory), reads by an
// old handle, changes mode, owner, size and times, appends, lists and
// removes, in an empty share mounted as v.
func Operations(t *testing.T, v *nfsc.Target) {
	t.Helper()
	if _, err := v.Mkdir("dir", 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := v.OpenFile("dir/a.txt", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	want := testrand.Bytes(2, 200000)
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_, fh, err := v.Lookup("dir/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Rename("dir/a.txt", "dir/b.txt"); err != nil {
		t.Fatal(err)
	}
	if err := v.Rename("dir", "moved"); err != nil {
		t.Fatal(err)
	}
	// The handle taken before both renames still names the file.
	attr, err := v.GetAttr(fh)
	if err != nil || attr.Filesize != uint64(len(want)) {
		t.Fatalf("getattr by an old handle: %+v %v", attr, err)
	}
	r, err := v.Open("moved/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after renames: %d bytes, %v", len(got), err)
	}
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o600}, UID: nfsc.SetUID{SetIt: true, UID: 1234}}); err != nil {
		t.Fatal(err)
	}
	if attr, err := v.GetAttr(fh); err != nil || attr.FileMode&0o777 != 0o600 || attr.UID != 1234 {
		t.Fatalf("after chmod and chown: mode %o uid %d, %v", attr.FileMode, attr.UID, err)
	}
	// Append, truncate and set the modification time.
	w, err = v.OpenFile("moved/b.txt", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Seek(int64(len(want)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("appended")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	want = append(want, []byte("appended")...)
	if attr, err := v.GetAttr(fh); err != nil || attr.Filesize != uint64(len(want)) {
		t.Fatalf("after append: %+v %v", attr, err)
	}
	mtime := nfsc.NFS3Time{Seconds: 1700000000}
	if _, err := v.SetAttr(fh, nfsc.Sattr3{Size: nfsc.SetSize{SetIt: true, Size: 1000}, Mtime: nfsc.SetTime{SetIt: nfsc.SetToClientTime, Time: mtime}}); err != nil {
		t.Fatal(err)
	}
	attr, err = v.GetAttr(fh)
	if err != nil || attr.Filesize != 1000 || attr.Mtime.Seconds != 1700000000 {
		t.Fatalf("after truncate and utimes: size %d mtime %d, %v", attr.Filesize, attr.Mtime.Seconds, err)
	}
	r, err = v.Open("moved/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, want[:1000]) {
		t.Fatalf("read after truncate: %d bytes, %v", len(got), err)
	}
	entries, err := v.ReadDirPlus("moved")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.FileName != "." && e.FileName != ".." {
			names = append(names, e.FileName)
		}
	}
	if strings.Join(names, ",") != "b.txt" {
		t.Fatalf("readdirplus: %q", names)
	}
	if err := v.RmDir("moved"); err == nil {
		t.Fatal("rmdir of a non-empty directory succeeded")
	}
	if err := v.Remove("moved/b.txt"); err != nil {
		t.Fatal(err)
	}
	if err := v.RmDir("moved"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Lookup("moved"); err == nil {
		t.Fatal("lookup after rmdir succeeded")
	}
}
