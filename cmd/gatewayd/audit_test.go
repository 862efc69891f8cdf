package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// TestAuditEndToEnd: on the real daemon, a share created with --audit
// records an nfs-cp session (libnfs as uid 1234, gid 5678) and an
// smbclient session (user daemon) in the audit log under the data
// directory, with the client address; a share without --audit records
// nothing; share update turns auditing on and off; the metric counts the
// records by protocol.
func TestAuditEndToEnd(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	smbtest.Require(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanSMB(dir) })
	mustRun(t, "init", "--data-dir", dir)
	addr := freeport.Addr(t)
	serve(t, dir, "--smb-listen", addr)
	mustRun(t, "smb", "user", "add", "--data-dir", dir, "daemon", "--password", smbPassword)
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "docs", "--protocols", "nfs,smb", "--audit")
	mustRun(t, "share", "create", "--data-dir", dir, "--name", "quiet", "--protocols", "nfs,smb")
	if out := mustRun(t, "share", "info", "--data-dir", dir, "docs"); !strings.Contains(out, "audit       true") {
		t.Fatalf("share info of an audited share:\n%s", out)
	}
	if info := shareInfo(t, dir, "quiet"); info.Audit {
		t.Fatalf("share quiet audited: %+v", info)
	}
	if out := mustRun(t, "share", "list", "--data-dir", dir); !strings.Contains(out, "AUDIT") {
		t.Fatalf("share list has no audit column:\n%s", out)
	}

	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "in.txt"), []byte("audited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nfs := nfsAddr(t, dir)
	_, port, _ := net.SplitHostPort(nfs)
	// session copies a file in with nfs-cp (uid 1234, gid 5678) and puts,
	// renames and deletes one with smbclient (user daemon), on each share.
	session := func(nfsName, smbName string) {
		for _, share := range []string{"docs", "quiet"} {
			url := fmt.Sprintf("nfs://127.0.0.1/%s/%s?nfsport=%s&mountport=%s&auto-traverse-mounts=0&uid=1234&gid=5678", share, nfsName, port, port)
			nfsTool(t, "nfs-cp", filepath.Join(local, "in.txt"), url)
			if err := smbtest.Smbclient(addr, share, "daemon", smbPassword, fmt.Sprintf("put in.txt %s; rename %s renamed.txt; del renamed.txt", smbName, smbName), local); err != nil {
				t.Fatal(err)
			}
		}
	}
	type want struct{ share, protocol, op, path, newPath, user string }
	logPath := filepath.Join(dir, "audit", "audit.log")
	// waitFor waits for the records wanted and returns the log.
	waitFor := func(wants []want) []audit.Record {
		var recs []audit.Record
		smbtest.Eventually(t, "the sessions in the audit log", func() error {
			b, err := os.ReadFile(logPath)
			if err != nil {
				return err
			}
			recs = nil
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				var r audit.Record
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("audit log line %q: %v", sc.Text(), err)
				}
				host := r.Client
				if h, _, err := net.SplitHostPort(r.Client); err == nil {
					host = h
				}
				if host != "127.0.0.1" || r.Result != "ok" {
					t.Fatalf("record %+v: want client 127.0.0.1, result ok", r)
				}
				recs = append(recs, r)
			}
			for _, w := range wants {
				found := false
				for _, r := range recs {
					user := r.User
					if r.UID != nil && r.GID != nil {
						user = fmt.Sprintf("%d:%d", *r.UID, *r.GID)
					}
					found = found || r.Share == w.share && r.Protocol == w.protocol && r.Op == w.op && r.Path == w.path && r.NewPath == w.newPath && user == w.user
				}
				if !found {
					return fmt.Errorf("no record %+v in\n%s", w, b)
				}
			}
			return nil
		})
		return recs
	}
	session("nfs.txt", "smb.txt")
	recs := waitFor([]want{
		{"docs", "nfs3", "create", "nfs.txt", "", "1234:5678"},
		{"docs", "nfs3", "write", "nfs.txt", "", "1234:5678"},
		{"docs", "smb", "create_file", "smb.txt", "", "daemon"},
		{"docs", "smb", "renameat", "smb.txt", "renamed.txt", "daemon"},
		{"docs", "smb", "unlinkat", "renamed.txt", "", "daemon"},
	})
	for _, r := range recs {
		if r.Share != "docs" {
			t.Fatalf("a record of a share without --audit: %+v", r)
		}
	}

	// share update turns auditing on for quiet and off for docs; the
	// docs session runs first, so its records would be in before quiet's.
	mustRun(t, "share", "update", "--data-dir", dir, "quiet", "--audit")
	mustRun(t, "share", "update", "--data-dir", dir, "docs", "--audit=false")
	if !shareInfo(t, dir, "quiet").Audit || shareInfo(t, dir, "docs").Audit {
		t.Fatal("share update --audit did not change the shares")
	}
	session("nfs2.txt", "smb2.txt")
	recs = waitFor([]want{
		{"quiet", "nfs3", "create", "nfs2.txt", "", "1234:5678"},
		{"quiet", "smb", "renameat", "smb2.txt", "renamed.txt", "daemon"},
	})
	for _, r := range recs {
		if r.Share == "docs" && (r.Path == "nfs2.txt" || r.Path == "smb2.txt") {
			t.Fatalf("a record of a share whose auditing was turned off: %+v", r)
		}
	}
	for _, p := range []string{"nfs3", "smb"} {
		if v, ok := metric(t, dir, `gatewayd_audit_events_total{protocol="`+p+`"}`); !ok || v == 0 {
			t.Errorf("gatewayd_audit_events_total of %s: %v (%v)", p, v, ok)
		}
	}
	if v, ok := metric(t, dir, "gatewayd_audit_errors_total"); !ok || v != 0 {
		t.Errorf("gatewayd_audit_errors_total: %v (%v)", v, ok)
	}
}
