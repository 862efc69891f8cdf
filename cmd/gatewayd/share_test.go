package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/gatewayd/gatewayd/api/shareapi"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

func nfsAddr(t *testing.T, dataDir string) string {
	t.Helper()
	st := statusJSON(t, dataDir)
	for _, f := range st.Frontends {
		if f.Name == "nfs" && strings.HasPrefix(f.State, "serving") {
			return f.Listen
		}
	}
	t.Fatalf("no serving nfs frontend in %+v", st.Frontends)
	return ""
}

func shareInfo(t *testing.T, dataDir, name string) shareapi.ShareStatus {
	t.Helper()
	var s shareapi.ShareStatus
	if err := json.Unmarshal([]byte(mustRun(t, "share", "info", "--data-dir", dataDir, name, "-o", "json")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func nfsTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install Debian's libnfs-utils (.ci/run does)", tool)
	}
	// A bound for a wedged tool, not a speed check: a 1 GiB copy through a
	// race-checked daemon on a busy 2-core machine takes minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	return string(out)
}

func nfsMount(t *testing.T, addr, share string) (*nfsc.Target, func()) {
	t.Helper()
	return nfstest.MustMount(t, addr, share)
}

// waitObject waits until the bucket holds want at key (uploads follow the
// settle time) and returns its metadata. The deadline bounds a stuck
// upload: a 1 GiB file through the race-checked daemon, beside the other
// end-to-end tests on a busy machine, takes minutes.
// readNFS reads the whole of a file over NFS.
func readNFS(t *testing.T, v *nfsc.Target, name string) []byte {
	t.Helper()
	r, err := v.Open(name)
	if err != nil {
		t.Fatalf("open %s over NFS: %v", name, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s over NFS: %v", name, err)
	}
	return got
}

// putAndRefresh puts body at key in bucket, as another S3 application
// would, and refreshes share docs of the gateway in dir to see it.
func putAndRefresh(t *testing.T, srv *miniotest.Server, dir, bucket, key string, body []byte) {
	t.Helper()
	srv.PutObject(t, bucket, key, body)
	mustRun(t, "share", "refresh", "--data-dir", dir, "docs")
}

func waitObject(t *testing.T, srv *miniotest.Server, bucket, key string, want []byte) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	wantSum := sha256.Sum256(want)
	for {
		out, err := srv.Client().GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			h := sha256.New()
			_, err = io.Copy(h, out.Body)
			out.Body.Close()
			if err == nil && bytes.Equal(h.Sum(nil), wantSum[:]) {
				return out.Metadata
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("object %s/%s never held the %d bytes written (last error %v)", bucket, key, len(want), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fileSum is the SHA-256 of a file, read as a stream (a 1 GiB copy is
// not held in memory a second time).
func fileSum(t *testing.T, name string) (sum [sha256.Size]byte) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	copy(sum[:], h.Sum(nil))
	return sum
}

// TestSharesEndToEnd drives the real daemon on MinIO with libnfs's tools
// and a Go NFS client: files are objects with their metadata, objects put
// and deleted directly in S3 show after a refresh, handles survive a
// restart, acknowledged writes survive kill -9, and export options hold.
func TestSharesEndToEnd(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "files")
	s3args := minioFlags(srv)
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://files/gw"}, s3args...)...)
	d := serve(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--squash", "root")
	info := shareInfo(t, dir, "docs")
	if info.Mount == nil || !strings.Contains(info.Mount.Command, "mount -t nfs") {
		t.Fatalf("share info gives no mount command: %+v", info)
	}
	url := func(p string) string { return strings.Replace(info.Mount.URL, "/docs/", "/docs/"+p, 1) }

	// A 1 GiB file through libnfs, back by checksum, and as an object.
	size := 1 << 30
	if testing.Short() {
		size = 32 << 20
	}
	big := testrand.Bytes(7, size)
	local := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(local, big, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := metric(t, dir, "gatewayd_share_bytes_uploaded_total") // the counter before the file goes up
	nfsTool(t, "nfs-cp", local, url("big.bin"))
	back := filepath.Join(t.TempDir(), "back.bin")
	nfsTool(t, "nfs-cp", url("big.bin"), back)
	if sum := fileSum(t, back); sum != sha256.Sum256(big) {
		t.Fatal("large file read back differs")
	}
	md := waitObject(t, srv, "files", "gw/docs/big.bin", big)
	for deadline := time.Now().Add(5 * time.Minute); ; {
		// The counter follows the upload (it is counted just after the PUT).
		up, ok := metric(t, dir, "gatewayd_share_bytes_uploaded_total")
		if ok && up >= before+float64(len(big)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gatewayd_share_bytes_uploaded_total: %v (%v), want at least %v", up, ok, before+float64(len(big)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The pending count drops once the upload round has recorded the
	// upload, a moment after the PUT the byte counter follows.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		n, ok := metric(t, dir, `gatewayd_share_files_pending{share="docs"}`)
		if ok && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("files pending after the upload: %v %v", n, ok)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if md["gwd-mode"] == "" || md["gwd-mtime"] == "" {
		t.Fatalf("object metadata %v lacks the file's attributes", md)
	}

	// Objects from other S3 applications.
	putAndRefresh(t, srv, dir, "files", "gw/docs/from-s3/hello.txt", []byte("put directly\n"))
	if out := nfsTool(t, "nfs-ls", url("from-s3")); !strings.Contains(out, "hello.txt") {
		t.Fatalf("object put in S3 not listed after refresh:\n%s", out)
	}
	if out := nfsTool(t, "nfs-cat", url("from-s3/hello.txt")); out != "put directly\n" {
		t.Fatalf("nfs-cat of an object put in S3: %q", out)
	}
	if _, err := srv.Client().DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: aws.String("files"), Key: aws.String("gw/docs/from-s3/hello.txt")}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "share", "refresh", "--data-dir", dir, "docs", "--path", "from-s3", "--recursive")
	if out := nfsTool(t, "nfs-ls", url("")); strings.Contains(out, "from-s3") {
		t.Fatalf("directory of an object deleted in S3 still listed:\n%s", out)
	}

	// Every namespace operation through the Go client, on MinIO.
	addr := nfsAddr(t, dir)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "ops")
	ov, opsDone := nfsMount(t, addr, "ops")
	nfstest.Operations(t, ov)
	opsDone()

	// Writes through the Go client, a handle kept across kill -9.
	v, done := nfsMount(t, addr, "docs")
	f, err := v.OpenFile("notes.txt", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range 50 {
		line := []byte(fmt.Sprintf("line %d of notes, acknowledged before the crash\n", i))
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
		want = append(want, line...)
	}
	f.Close()
	_, fh, err := v.Lookup("notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	// root squash: a chown to root becomes the anonymous owner.
	if _, err := v.SetAttr(fh, nfsc.Sattr3{UID: nfsc.SetUID{SetIt: true, UID: 0}}); err != nil {
		t.Fatal(err)
	}
	if a, err := v.GetAttr(fh); err != nil || a.UID != 65534 {
		t.Fatalf("root-squashed chown: uid %d, %v", a.UID, err)
	}
	done()
	d.kill(t)
	serve(t, dir)
	addr = nfsAddr(t, dir)
	v, done = nfsMount(t, addr, "docs")
	defer done()
	a, err := v.GetAttr(fh) // the handle from before the crash
	if err != nil || a.Filesize != uint64(len(want)) {
		t.Fatalf("old handle after kill -9 and restart: %+v %v", a, err)
	}
	if got := readNFS(t, v, "notes.txt"); !bytes.Equal(got, want) {
		t.Fatalf("after kill -9: %d bytes, want %d", len(got), len(want))
	}
	waitObject(t, srv, "files", "gw/docs/notes.txt", want)

	// Export options.
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "ro", "--read-only")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "other", "--clients", "127.0.0.2/32")
	ro, roDone := nfsMount(t, addr, "ro")
	defer roDone()
	if _, err := ro.Create("x", 0o644); err == nil {
		t.Fatal("create on a read-only share succeeded")
	}
	if _, _, err := nfstest.Mount(t, addr, "other", rpc.AuthNull); err == nil || !strings.Contains(err.Error(), "ACCES") {
		t.Fatalf("mount from 127.0.0.1 of a share for 127.0.0.2: %v", err)
	}
	mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "docs"), "exists")
	mustFailClearly(t, run(t, nil, "share", "create", "--data-dir", dir, "--name", "bad", "--prefix", "chunks/"), "overlaps")
	mustFailClearly(t, run(t, nil, "share", "info", "--data-dir", dir, "nope"), "no such share")
}

// TestNFSRegistersWithRpcbind: with the host's rpcbind running, the daemon
// registers NFS and MOUNT, so a client needs no port options, and removes
// the mappings when it stops.
func TestNFSRegistersWithRpcbind(t *testing.T) {
	for _, tool := range []string{"rpcbind", "rpcinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's rpcbind (.ci/run does)", tool)
		}
	}
	if exec.Command("rpcinfo", "-p", "127.0.0.1").Run() != nil {
		rb := exec.Command("rpcbind", "-f", "-w", "-i")
		if err := rb.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rb.Process.Kill(); rb.Wait() })
		for i := 0; exec.Command("rpcinfo", "-p", "127.0.0.1").Run() != nil; i++ {
			if i > 100 {
				t.Fatal("rpcbind did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	d := serve(t, dir, "--nfs-rpcbind")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "pub")
	addr := nfsAddr(t, dir)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	out, err := exec.Command("rpcinfo", "-p", "127.0.0.1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "100003    3   tcp  "+fmt.Sprintf("%5s", port)) ||
		!strings.Contains(string(out), "100005    3   tcp  "+fmt.Sprintf("%5s", port)) {
		t.Fatalf("rpcinfo after serve (port %s): %v\n%s", port, err, out)
	}
	if st := mustRun(t, "status", "--data-dir", dir); !strings.Contains(st, "registered with rpcbind") {
		t.Fatalf("status does not say the server is registered:\n%s", st)
	}
	// No port options: libnfs asks rpcbind (auto-traverse-mounts=0: go-nfs
	// has no MOUNT EXPORT procedure).
	local := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(local, []byte("found through rpcbind\n"), 0o644)
	nfsTool(t, "nfs-cp", local, "nfs://127.0.0.1/pub/f.txt?auto-traverse-mounts=0")
	if got := nfsTool(t, "nfs-cat", "nfs://127.0.0.1/pub/f.txt?auto-traverse-mounts=0"); got != "found through rpcbind\n" {
		t.Fatalf("nfs-cat through rpcbind: %q", got)
	}
	d.stop(t)
	out, _ = exec.Command("rpcinfo", "-p", "127.0.0.1").CombinedOutput()
	if strings.Contains(string(out), "100003    3   tcp  "+fmt.Sprintf("%5s", port)) {
		t.Fatalf("mapping left in rpcbind after stop:\n%s", out)
	}
}

// shareOnMinIO starts a daemon storing in a new bucket of a MinIO server,
// with a share; serveArgs are more flags of serve.
func shareOnMinIO(t *testing.T, bucket, share string, serveArgs ...string) (*miniotest.Server, string, *daemon) {
	t.Helper()
	srv := miniotest.Start(t)
	srv.CreateBucket(t, bucket)
	s3args := minioFlags(srv)
	dir := t.TempDir()
	mustRun(t, append([]string{"init", "--data-dir", dir, "--store", "s3://" + bucket + "/gw"}, s3args...)...)
	d := serve(t, dir, serveArgs...)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", share)
	return srv, dir, d
}

// TestShareKillDuringWrites: kill -9 while a client is writing; every write
// the server acknowledged is in the file after the restart, and then in S3.
func TestShareKillDuringWrites(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	srv, dir, d := shareOnMinIO(t, "crash", "w")
	v, done := nfsMount(t, nfsAddr(t, dir), "w")
	f, err := v.OpenFile("log.bin", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	const rec = 16 << 10
	acked := make(chan int, 1<<16) // records acknowledged, in order
	go func() {
		defer close(acked)
		for i := 0; ; i++ {
			if _, err := f.Write(testrand.Bytes(uint64(i), rec)); err != nil {
				return
			}
			acked <- i
		}
	}()
	// Let some writes land, and some uploads happen, then kill.
	timeout := time.After(5 * time.Minute)
	for n := 0; n < 300; n++ {
		select {
		case _, ok := <-acked:
			if !ok {
				t.Fatal("writes failed before the kill")
			}
		case <-timeout:
			t.Fatalf("%d writes acknowledged in 5 minutes, want 300 before the kill", n)
		}
	}
	d.kill(t)
	done() // the writer's next call fails at once
	last := 299
	for ended := false; !ended; {
		select {
		case i, ok := <-acked:
			if ok {
				last = i
			}
			ended = !ok
		case <-time.After(5 * time.Minute):
			t.Fatal("the writer did not stop 5 minutes after its server was killed")
		}
	}
	serve(t, dir)
	v, done = nfsMount(t, nfsAddr(t, dir), "w")
	defer done()
	got := readNFS(t, v, "log.bin")
	n := last + 1
	if len(got) < n*rec {
		t.Fatalf("after kill -9: %d bytes, but %d records of %d bytes were acknowledged", len(got), n, rec)
	}
	for i := range n {
		if !bytes.Equal(got[i*rec:(i+1)*rec], testrand.Bytes(uint64(i), rec)) {
			t.Fatalf("acknowledged record %d differs after kill -9", i)
		}
	}
	t.Logf("%d records acknowledged before kill -9, all present after restart (%d bytes in the file)", n, len(got))
	waitObject(t, srv, "crash", "gw/w/log.bin", got)
}
