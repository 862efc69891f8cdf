package nfs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/willscott/go-nfs-client/nfs/rpc"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/vfs"
)

// startAudited starts the server with an audit log, returning its path.
func startAudited(t *testing.T, configs ...fileshare.Config) (*fixture, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := startServer(t, mem.New("nfs"), vfs.Default, filepath.Join(t.TempDir(), "log"), func(s *Server) { s.Audit = l }, configs...)
	return f, path
}

// auditRecords reads the audit log.
func auditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []audit.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// want is a record expected in the audit log: the fields compared.
type want struct {
	protocol, share, path, newPath, op, result string
	uid, gid                                   uint32
}

func (w want) matches(r audit.Record) bool {
	return r.Protocol == w.protocol && r.Share == w.share && r.Path == w.path && r.NewPath == w.newPath &&
		r.Op == w.op && r.Result == w.result && r.UID != nil && *r.UID == w.uid && r.GID != nil && *r.GID == w.gid
}

// waitRecords waits until every wanted record is in the log (records are
// written once the reply is on its way, so shortly after the client has
// it) and returns the log. Each record must come from 127.0.0.1.
func waitRecords(t *testing.T, path string, wants []want) []audit.Record {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		recs := auditRecords(t, path)
		var missing []want
		for _, w := range wants {
			found := false
			for _, r := range recs {
				if w.matches(r) {
					found = true
					host, port, err := net.SplitHostPort(r.Client)
					if err != nil || host != "127.0.0.1" || port == "0" {
						t.Errorf("record %+v: client %q, want 127.0.0.1:PORT", r, r.Client)
					}
					if r.Time.IsZero() || time.Since(r.Time) > time.Hour {
						t.Errorf("record %+v: time %v", r, r.Time)
					}
				}
			}
			if !found {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, r := range recs {
				j, _ := json.Marshal(r)
				b.Write(j)
				b.WriteByte('\n')
			}
			t.Fatalf("not in the audit log: %+v\nlog:\n%s", missing, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuditNFS3: an nfs-cp session (libnfs, uid 1234 gid 5678) and a Go
// client's (AUTH_SYS 4321:8765) changes to an audited share are recorded
// with their caller, the client address, the path and the result; a share
// without auditing records nothing.
func TestAuditNFS3(t *testing.T) {
	f, path := startAudited(t, fileshare.Config{Name: "docs", Audit: true}, fileshare.Config{Name: "quiet"})
	local := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(local, []byte("audited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, share := range []string{"docs", "quiet"} {
		if out, err := libnfs(t, "nfs-cp", local, f.url(share, "in.txt")+"&uid=1234&gid=5678"); err != nil {
			t.Fatalf("nfs-cp: %v\n%s", err, out)
		}
	}
	v, done, err := nfstest.Mount(t, f.addr, "docs", rpc.NewAuthUnix("t", 4321, 8765).Auth())
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if _, err := v.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Mkdir("d", 0o755); err == nil {
		t.Fatal("a second mkdir of d succeeded")
	}
	if err := v.Rename("in.txt", "d/moved.txt"); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove("d/moved.txt"); err != nil {
		t.Fatal(err)
	}
	if err := v.RmDir("d"); err != nil {
		t.Fatal(err)
	}
	recs := waitRecords(t, path, []want{
		{protocol: "nfs3", share: "docs", path: "in.txt", op: "create", result: "ok", uid: 1234, gid: 5678},
		{protocol: "nfs3", share: "docs", path: "in.txt", op: "write", result: "ok", uid: 1234, gid: 5678},
		{protocol: "nfs3", share: "docs", path: "d", op: "mkdir", result: "ok", uid: 4321, gid: 8765},
		{protocol: "nfs3", share: "docs", path: "d", op: "mkdir", result: "NFS3ERR_EXIST", uid: 4321, gid: 8765},
		{protocol: "nfs3", share: "docs", path: "in.txt", newPath: "d/moved.txt", op: "rename", result: "ok", uid: 4321, gid: 8765},
		{protocol: "nfs3", share: "docs", path: "d/moved.txt", op: "remove", result: "ok", uid: 4321, gid: 8765},
		{protocol: "nfs3", share: "docs", path: "d", op: "rmdir", result: "ok", uid: 4321, gid: 8765},
	})
	for _, r := range recs {
		if r.Share != "docs" {
			t.Errorf("a record of a share without auditing: %+v", r)
		}
	}
}

// TestAuditNFS4: a v4.1 client's OPEN and REMOVE (AUTH_SYS 1000:1000) are
// recorded, a REMOVE of a missing name with its error.
func TestAuditNFS4(t *testing.T) {
	f, path := startAudited(t, fileshare.Config{Name: "docs", Audit: true})
	f.newFile("docs", "f.txt")
	c := nfstest.DialV4(t, f.addr, "audit")
	if st, _, _ := c.Open("owner", "docs", "f.txt"); st != nfstest.V4OK {
		t.Fatalf("OPEN: %d", st)
	}
	const opRemove = 28
	for _, name := range []string{"f.txt", "missing"} {
		st, _ := c.Compound(new(nfstest.V4Args).Lookup("docs").Op(opRemove).Opaque([]byte(name)))
		if want := map[string]uint32{"f.txt": 0, "missing": 2}[name]; st != want {
			t.Fatalf("REMOVE %s: status %d, want %d", name, st, want)
		}
	}
	waitRecords(t, path, []want{
		{protocol: "nfs4.1", share: "docs", path: "f.txt", op: "open", result: "ok", uid: 1000, gid: 1000},
		{protocol: "nfs4.1", share: "docs", path: "f.txt", op: "remove", result: "ok", uid: 1000, gid: 1000},
		{protocol: "nfs4.1", share: "docs", path: "missing", op: "remove", result: "NFS4ERR_NOENT", uid: 1000, gid: 1000},
	})
}
