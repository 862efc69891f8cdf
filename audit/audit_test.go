package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// readRecords reads a log file's records.
func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := IDs(0, 0)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	l.Write(Record{Time: at, Protocol: "nfs3", Client: "127.0.0.1:700", UID: uid, GID: gid, Share: "docs", Path: "a/b", NewPath: "a/c", Op: "rename", Result: "ok"})
	l.Write(Record{Time: at, Protocol: "smb", Client: "10.0.0.1", User: "alice", Share: "docs", Path: "x", Op: "unlinkat", Result: "fail (Permission denied)"})
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-01-02T03:04:05.000006Z","protocol":"nfs3","client":"127.0.0.1:700","uid":0,"gid":0,"share":"docs","path":"a/b","new_path":"a/c","op":"rename","result":"ok"}
{"time":"2026-01-02T03:04:05.000006Z","protocol":"smb","client":"10.0.0.1","user":"alice","share":"docs","path":"x","op":"unlinkat","result":"fail (Permission denied)"}
`
	if string(b) != want {
		t.Errorf("log:\n%s\nwant:\n%s", b, want)
	}
	if st := l.Stats(); st.Written["nfs3"] != 1 || st.Written["smb"] != 1 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
	l.Write(Record{Protocol: "smb"}) // after Close: nothing
	if st := l.Stats(); st.Written["smb"] != 1 {
		t.Errorf("a record written after Close: %+v", st)
	}
}

// TestRotation writes past MaxSize many times: the current file never
// passes it, exactly Keep old files stay, and they hold the newest
// records in order, none lost between the files kept.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	const maxSize, keep, n = 1000, 3, 200
	l, err := Open(Options{Path: path, MaxSize: maxSize, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		l.Write(Record{Protocol: "nfs3", Client: "c", Share: "s", Path: fmt.Sprintf("f%04d", i), Op: "write", Result: "ok"})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != keep+1 {
		t.Fatalf("files %v, want the log and %d old ones", names, keep)
	}
	var all []Record
	for i := keep; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxSize {
			t.Errorf("%s: %d bytes, over %d", p, st.Size(), maxSize)
		}
		recs := readRecords(t, p)
		if len(recs) == 0 {
			t.Errorf("%s: empty", p)
		}
		all = append(all, recs...)
	}
	// The kept files hold the last len(all) records, in order.
	for i, r := range all {
		if want := fmt.Sprintf("f%04d", n-len(all)+i); r.Path != want {
			t.Fatalf("record %d of the kept files: %s, want %s", i, r.Path, want)
		}
	}
	if len(all) >= n {
		t.Fatalf("all %d records kept: nothing rotated away", len(all))
	}
	if st := l.Stats(); st.Written["nfs3"] != n || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}

	// Reopened, the log appends to the current file and rotates at the
	// same size.
	before := readRecords(t, path)
	l, err = Open(Options{Path: path, MaxSize: maxSize, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Protocol: "nfs3", Path: "again", Op: "write", Result: "ok"})
	l.Close()
	cur := readRecords(t, path)
	if len(cur) == len(before)+1 {
		if cur[len(cur)-1].Path != "again" {
			t.Errorf("last record %+v", cur[len(cur)-1])
		}
	} else if len(cur) != 1 || cur[0].Path != "again" { // or it rotated first
		t.Errorf("after reopening: %d records, had %d", len(cur), len(before))
	}
}

// TestWriteFailureCounted: a record that cannot be written is counted,
// not lost silently, and the log goes on once it can write again.
func TestWriteFailureCounted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "audit.log")
	l, err := Open(Options{Path: path, MaxSize: 100, Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Protocol: "smb", Path: "first-record-fills-the-file", Op: "x", Result: "ok"})
	// The next record rotates; with the directory gone it cannot.
	if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Protocol: "smb", Path: "second-record-needs-rotation", Op: "x", Result: "ok"})
	if st := l.Stats(); st.Errors == 0 {
		t.Errorf("no error counted: %+v", st)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Protocol: "smb", Path: "third", Op: "x", Result: "ok"})
	l.Close()
	recs := readRecords(t, path)
	if len(recs) != 1 || recs[0].Path != "third" {
		t.Errorf("after the directory came back: %+v", recs)
	}
}
