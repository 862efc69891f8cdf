package smb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/smbtest"
)

// Lines as Samba 4.17's vfs_full_audit writes them with auditConf's
// options, and the records they stand for.
func TestAuditLine(t *testing.T) {
	const dir = "/var/lib/gw/smb/mnt/Docs"
	root := func(share string) (string, string) {
		if strings.EqualFold(share, "docs") {
			return "Docs", dir
		}
		return "", ""
	}
	for _, c := range []struct {
		line string
		want audit.Record
	}{
		{"gwaudit|10.1.2.3|alice|Docs|create_file|ok|0x12019f|file|overwrite_if|" + dir + "/a b.txt",
			audit.Record{Client: "10.1.2.3", User: "alice", Op: "create_file", Result: "ok", Path: "a b.txt", Detail: "0x12019f, file, overwrite_if"}},
		{"  gwaudit|10.1.2.3|alice|docs|renameat|ok|" + dir + "/a.txt|" + dir + "/d/b.txt",
			audit.Record{Client: "10.1.2.3", User: "alice", Op: "renameat", Result: "ok", Path: "a.txt", NewPath: "d/b.txt"}},
		{"gwaudit|10.1.2.3|alice|Docs|unlinkat|fail (Permission denied)|" + dir + "/d",
			audit.Record{Client: "10.1.2.3", User: "alice", Op: "unlinkat", Result: "Permission denied", Path: "d"}},
		{"gwaudit|10.1.2.3|alice|Docs|fntimes|ok|" + dir + "/x|Thu Jan  1 00:00:01 1970 UTC|Thu Jan  1 00:00:01 1970 UTC|Sat Dec  5 01:42:29 2026 UTC|Thu Jan  1 00:00:01 1970 UTC",
			audit.Record{Client: "10.1.2.3", User: "alice", Op: "fntimes", Result: "ok", Path: "x",
				Detail: "Thu Jan  1 00:00:01 1970 UTC, Thu Jan  1 00:00:01 1970 UTC, Sat Dec  5 01:42:29 2026 UTC, Thu Jan  1 00:00:01 1970 UTC"}},
		{"gwaudit|10.1.2.3|alice|Docs|create_file|ok|0x81|dir|open|" + dir,
			audit.Record{Client: "10.1.2.3", User: "alice", Op: "create_file", Result: "ok", Path: "", Detail: "0x81, dir, open"}},
		{"gwaudit|10.1.2.3|alice|Docs|pwrite_send|ok|" + dir + "/Docs2/f",
			audit.Record{Client: "10.1.2.3", User: "alice", Op: "pwrite_send", Result: "ok", Path: "Docs2/f"}},
	} {
		c.want.Protocol, c.want.Share = "smb", "Docs"
		got, isAudit := auditLine(c.line, root)
		if !isAudit || got != c.want {
			t.Errorf("%s:\n got %+v (%v)\nwant %+v", c.line, got, isAudit, c.want)
		}
	}
	// Not the module's line; a share without auditing; a line cut short.
	if _, isAudit := auditLine("smbd version 4.17.12-Debian started.", root); isAudit {
		t.Error("smbd's own line taken for the module's")
	}
	for _, line := range []string{"gwaudit|10.1.2.3|alice|other|unlinkat|ok|/x/y", "gwaudit|10.1.2.3|alice"} {
		if r, isAudit := auditLine(line, root); !isAudit || r.Share != "" {
			t.Errorf("%s: %+v, %v: want a line of the module, with nothing to record", line, r, isAudit)
		}
	}
}

// TestAuditConf: an audited share loads full_audit before the global
// modules (a share's list replaces the global one).
func TestAuditConf(t *testing.T) {
	var b strings.Builder
	w := func(k, v string) { b.WriteString("\t" + k + " = " + v + "\n") }
	auditConf(w, "[global]\n\tvfs objects = acl_xattr streams_xattr\n\n[other]\n\tvfs objects = x\n")
	if !strings.Contains(b.String(), "\tvfs objects = full_audit acl_xattr streams_xattr\n") {
		t.Errorf("with global modules:\n%s", b.String())
	}
	b.Reset()
	auditConf(w, "[global]\n\tserver role = standalone server\n")
	if !strings.Contains(b.String(), "\tvfs objects = full_audit\n") || !strings.Contains(b.String(), "full_audit:prefix = gwaudit|%I|%U|%S\n") {
		t.Errorf("without:\n%s", b.String())
	}
}

// TestAuditSmbclient: an smbclient session's creates, writes, renames,
// removes and a failed open on an audited share are in the audit log
// with the user who logged in (not the share's owner, smbd's forced user), the client
// address, the share and the paths; a share without auditing records
// nothing.
func TestAuditSmbclient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(audit.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := startOpts(t, "", func(o *Options) { o.Audit = l },
		fileshare.Config{Name: "Docs", Protocols: []string{"smb"}, Audit: true},
		fileshare.Config{Name: "quiet", Protocols: []string{"smb"}})
	// The session's user is daemon (an account every Debian system has);
	// smbd works in the share as its owner, root: the log names daemon.
	const user = "daemon"
	if err := f.srv.AddUser(context.Background(), user, password); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "in.txt"), []byte("audited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, share := range []string{"Docs", "quiet"} {
		if out, err := smbtest.SmbclientOutput(f.addr, share, user, password,
			`put in.txt a.txt; mkdir d; rename a.txt d\b.txt; del d\b.txt; rmdir d`, local); err != nil {
			t.Fatalf("%s: %v\n%s", share, err, out)
		}
		if out, err := smbtest.SmbclientOutput(f.addr, share, user, password, "rmdir missing", local); err == nil {
			t.Fatalf("rmdir of a missing directory succeeded:\n%s", out)
		}
	}
	type want struct{ op, result, path, newPath string }
	wants := []want{
		{"create_file", "ok", "a.txt", ""},
		{"mkdirat", "ok", "d", ""},
		{"renameat", "ok", "a.txt", "d/b.txt"},
		{"unlinkat", "ok", "d/b.txt", ""},
		{"unlinkat", "ok", "d", ""},
		{"create_file", "No such file or directory", "missing", ""},
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, err := os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var recs []audit.Record
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var r audit.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if r.Protocol != "smb" || r.Share != "Docs" || r.User != user || r.Client != "127.0.0.1" || r.Time.IsZero() {
				t.Fatalf("record %+v: want protocol smb, share Docs, user daemon, client 127.0.0.1", r)
			}
			recs = append(recs, r)
		}
		var missing []want
		wrote := false
		for _, w := range wants {
			found := false
			for _, r := range recs {
				found = found || r.Op == w.op && r.Result == w.result && r.Path == w.path && r.NewPath == w.newPath
			}
			if !found {
				missing = append(missing, w)
			}
		}
		for _, r := range recs {
			wrote = wrote || (r.Op == "pwrite" || r.Op == "pwrite_send") && r.Path == "a.txt"
		}
		if len(missing) == 0 && wrote {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not in the audit log: %+v (a write of a.txt: %v)\nlog:\n%s", missing, wrote, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := l.Stats(); st.Written["smb"] == 0 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}
