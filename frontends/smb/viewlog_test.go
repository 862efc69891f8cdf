package smb

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gatewayd/gatewayd/fileshare"
)

// readDirFS answers every directory read with status, after adding n
// entries from the offset asked.
type readDirFS struct {
	fuse.RawFileSystem
	status fuse.Status
	n      int
}

func (r readDirFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	for i := range r.n {
		out.AddDirEntry(fuse.DirEntry{Name: fmt.Sprintf("f%d", i), Mode: fuse.S_IFREG})
	}
	return r.status
}

func logTo(level slog.Level) (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: level})), &b
}

// TestViewLogsDirectoryReads: smbd takes a failed directory read for the
// end of the directory and ends the search there without a word, so the
// view says so as a warning; at debug level it logs every read, with the
// offset asked for and the offset reached.
func TestViewLogsDirectoryReads(t *testing.T) {
	for _, c := range []struct {
		what   string
		status fuse.Status
		level  slog.Level
		want   []string // "" for no line
	}{
		{"a failed read", fuse.EIO, slog.LevelInfo, []string{"level=WARN", `msg="view: a directory read failed"`, "offset=30", "input/output error"}},
		{"a read at info level", fuse.OK, slog.LevelInfo, nil},
		{"a read at debug level", fuse.OK, slog.LevelDebug, []string{"level=DEBUG", `msg="view: readdir"`, "offset=30", "reached=33"}},
	} {
		logger, b := logTo(c.level)
		fs := &tracedFS{RawFileSystem: readDirFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), status: c.status, n: 3}, dirs: &dirTable{open: map[dirKey]*dirHandle{}}, log: logger, debug: c.level <= slog.LevelDebug}
		in := &fuse.ReadIn{Offset: 30, Size: 4096}
		in.NodeId, in.Fh = 7, 1
		if st := fs.ReadDir(nil, in, fuse.NewDirEntryList(make([]byte, 4096), 30)); st != c.status {
			t.Fatalf("%s: status %v, want the one underneath, %v", c.what, st, c.status)
		}
		got := b.String()
		if c.want == nil && got != "" {
			t.Errorf("%s: logged %q", c.what, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: log %q lacks %q", c.what, got, w)
			}
		}
	}
}

// TestViewLogsFailedLookups: a name that does not exist (smbd looks for
// every name before it makes it) is a debug line; a lookup the gateway
// failed is a warning with its errno, since smbd leaves such a name out of
// a search without a word.
func TestViewLogsFailedLookups(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("a/b: %w", fileshare.ErrNotExist), "level=DEBUG"},
		{fmt.Errorf("a/b: %w", fileshare.ErrNameTooLong), "level=DEBUG"},
		{errors.New("store: connection reset"), "level=WARN"},
	} {
		logger, b := logTo(slog.LevelDebug)
		(&node{log: logger}).logFailure("view: lookup failed", "a/b", c.err)
		if got := b.String(); !strings.Contains(got, c.want) || !strings.Contains(got, "errno=") || !strings.Contains(got, "path=a/b") {
			t.Errorf("%v: logged %q, want %s with the path and errno", c.err, got, c.want)
		}
	}
}
