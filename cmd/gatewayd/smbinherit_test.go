package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// TestSMBACLInheritedByObjectsFromTheBucket sets inheritable and
// non-inheritable ACEs on a folder with smbcacls, puts objects under it
// with an S3 client (not through the gateway): a file, a folder marker and
// a file in that folder, and checks that smbcacls shows each with the ACL
// smbd gives a file or folder created over SMB in the same place, and
// that nothing was stored in the bucket for them.
func TestSMBACLInheritedByObjectsFromTheBucket(t *testing.T) {
	t.Parallel()
	smbtest.Require(t)
	srv, dir := initOnMinIO(t, "inherit")
	addr := freeport.Addr(t)
	serveSMB(t, dir, addr)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--protocols", "smb")

	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "a.txt"), []byte("over SMB"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := smbtest.Smbclient(addr, "docs", "root", smbPassword, "mkdir folder", local); err != nil {
		t.Fatal(err)
	}
	const (
		all      = "S-1-5-21-1-2-3-1001" // OI|CI: files and folders, all the way down
		here     = "S-1-5-21-1-2-3-1002" // no inheritance: the folder only
		filesNP  = "S-1-5-21-1-2-3-1003" // OI|NP: the folder's files only
		dirsOnly = "S-1-5-21-1-2-3-1004" // CI: folders only
	)
	smbcacls(t, addr, "docs", "folder", "--add", strings.Join([]string{
		"ACL:" + all + ":ALLOWED/0x3/0x001f01ff",
		"ACL:" + here + ":ALLOWED/0x0/0x001200a9",
		"ACL:" + filesNP + ":ALLOWED/0x5/0x001200a9",
		"ACL:" + dirsOnly + ":ALLOWED/0x2/0x001200a9",
		"ACL:S-1-3-0:ALLOWED/0xb/0x001f01ff", // CREATOR OWNER, inherit-only
	}, ","))
	folder := smbcacls(t, addr, "docs", "folder")
	for _, sid := range []string{all, here, filesNP, dirsOnly, "S-1-3-0"} {
		if !strings.Contains(folder, sid) {
			t.Fatalf("folder's ACL lacks %s:\n%s", sid, folder)
		}
	}

	// Over SMB: what smbd gives a new file and folder there.
	if err := smbtest.Smbclient(addr, "docs", "root", smbPassword,
		"put a.txt folder/viasmb.txt; mkdir folder/viasmbdir; put a.txt folder/viasmbdir/deep.txt", local); err != nil {
		t.Fatal(err)
	}
	// From the bucket: the same, put by an S3 client.
	ctx := context.Background()
	for _, key := range []string{"gw/docs/folder/bucket.txt", "gw/docs/folder/bucketdir/", "gw/docs/folder/bucketdir/deep.txt"} {
		if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("inherit"), Key: aws.String(key), Body: strings.NewReader("")}); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "share", "refresh", "--data-dir", dir, "docs")
	// smbd and the kernel may still hold the folder's listing for a while.
	for _, f := range []string{"folder/bucket.txt", "folder/bucketdir", "folder/bucketdir/deep.txt"} {
		smbtest.Eventually(t, f+" seen over SMB", func() error {
			_, err := smbtest.SmbclientOutput(addr, "docs", "root", smbPassword, "allinfo "+f)
			return err
		})
	}

	for _, c := range []struct{ bucket, smb string }{
		{"folder/bucket.txt", "folder/viasmb.txt"},
		{"folder/bucketdir", "folder/viasmbdir"},
		{"folder/bucketdir/deep.txt", "folder/viasmbdir/deep.txt"},
	} {
		got, want := smbcacls(t, addr, "docs", c.bucket), smbcacls(t, addr, "docs", c.smb)
		t.Logf("%s:\n%s", c.bucket, got)
		if got != want {
			t.Errorf("%s (from the bucket):\n%s\nwant, as smbd gives %s:\n%s", c.bucket, got, c.smb, want)
		}
		if strings.Contains(got, here) {
			t.Errorf("%s inherited the folder's non-inheritable ACE %s:\n%s", c.bucket, here, got)
		}
		if !strings.Contains(got, all) {
			t.Errorf("%s did not inherit %s:\n%s", c.bucket, all, got)
		}
	}
	// A file in the folder has the OI|NP entry and not the CI-only one; a
	// subfolder the CI one and not the OI|NP one, nor do its files.
	file, sub, deep := smbcacls(t, addr, "docs", "folder/bucket.txt"), smbcacls(t, addr, "docs", "folder/bucketdir"), smbcacls(t, addr, "docs", "folder/bucketdir/deep.txt")
	if !strings.Contains(file, filesNP) || strings.Contains(file, dirsOnly) {
		t.Errorf("folder/bucket.txt: want %s and not %s:\n%s", filesNP, dirsOnly, file)
	}
	if strings.Contains(sub, filesNP) || !strings.Contains(sub, dirsOnly) {
		t.Errorf("folder/bucketdir: want %s and not %s:\n%s", dirsOnly, filesNP, sub)
	}
	if strings.Contains(deep, filesNP) || strings.Contains(deep, dirsOnly) {
		t.Errorf("folder/bucketdir/deep.txt: want neither %s nor %s:\n%s", filesNP, dirsOnly, deep)
	}

	// Computed, not stored: the objects from the bucket carry no
	// extended attributes.
	for _, key := range []string{"gw/docs/folder/bucket.txt", "gw/docs/folder/bucketdir/", "gw/docs/folder/bucketdir/deep.txt"} {
		out, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("inherit"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if out.Metadata["gwd-xattr"] != "" || out.Metadata["gwd-xattr-ref"] != "" {
			t.Errorf("%s: metadata %v, want no extended attributes stored", key, out.Metadata)
		}
	}
}
