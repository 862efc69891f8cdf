// Package audit writes the audit log of file shares: one JSON object a
// line (JSON Lines) for every operation of an NFS or SMB client that opens
// or changes a file of a share with auditing on, rotated by size with a
// fixed number of old files kept. It owns the record format, the writer
// and the rotation; the frontends, which know their protocols, say what
// each record holds (docs/events.md, "Audit log").
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Record is one operation of a client on a share.
type Record struct {
	Time time.Time `json:"time"`
	// Protocol is "nfs3", "nfs4.1" or "smb".
	Protocol string `json:"protocol"`
	// Client is the client's address: host:port for NFS (the connection's
	// peer), the address alone for SMB (what smbd reports).
	Client string `json:"client"`
	// User is the SMB user name; UID and GID are an NFS caller's AUTH_SYS
	// ids (absent for AUTH_NONE).
	User string  `json:"user,omitempty"`
	UID  *uint32 `json:"uid,omitempty"`
	GID  *uint32 `json:"gid,omitempty"`
	// Share is the share's name; Path the file's path in it ("" is the
	// share's root); NewPath a rename's target.
	Share   string `json:"share"`
	Path    string `json:"path"`
	NewPath string `json:"new_path,omitempty"`
	// Op is the operation as the protocol names it, in lower case (NFS
	// procedure or operation; for SMB the Samba VFS call).
	Op string `json:"op"`
	// Result is "ok", or the failure as the protocol says it
	// (NFS3ERR_ACCES, NFS4ERR_NOENT, an SMB call's errno text).
	Result string `json:"result"`
	// Detail adds what the operation asked, where it says more than its
	// name (an SMB create's access mask, kind and disposition; an NFSv4.1
	// OPEN's access and whether it created).
	Detail string `json:"detail,omitempty"`
}

// IDs returns pointers for Record's UID and GID.
func IDs(uid, gid uint32) (*uint32, *uint32) { return &uid, &gid }

// Options configure a Log.
type Options struct {
	// Path is the current log file; rotated files are Path.1 (the newest)
	// to Path.Keep.
	Path string
	// MaxSize is the size at which the file is rotated (default 64 MiB).
	MaxSize int64
	// Keep is how many rotated files are kept (default 10; at least 1).
	Keep   int
	Logger *slog.Logger
}

// Log is the audit log file. A nil *Log records nothing.
type Log struct {
	opts Options

	mu     sync.Mutex
	f      *os.File
	size   int64
	counts map[string]uint64 // records written, by protocol
	errs   uint64            // records that could not be written
	warned time.Time         // last write failure logged
	closed bool
}

// Open opens (or creates) the log file at opts.Path, appending.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, errors.New("audit: no log path")
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 64 << 20
	}
	if opts.Keep <= 0 {
		opts.Keep = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{opts: opts, counts: map[string]uint64{}}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends r as one line, rotating first when the line would take
// the file past MaxSize. A record that cannot be written (disk full) is
// counted and logged, at most once a minute; clients' operations go on.
func (l *Log) Write(r Record) {
	if l == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	line, err := json.Marshal(r)
	if err != nil { // a Record always encodes; kept for safety
		l.failed(err)
		return
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if l.f != nil && l.size > 0 && l.size+int64(len(line)) > l.opts.MaxSize {
		if err := l.rotate(); err != nil {
			l.failedLocked(err)
		}
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			l.failedLocked(err)
			return
		}
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err != nil {
		l.failedLocked(err)
		return
	}
	l.counts[r.Protocol]++
}

// rotate renames Path.i to Path.i+1 (the oldest, Path.Keep, is
// replaced), Path to Path.1, and opens a new Path.
func (l *Log) rotate() error {
	l.f.Close()
	l.f = nil
	for i := l.opts.Keep - 1; i >= 1; i-- {
		old := fmt.Sprintf("%s.%d", l.opts.Path, i)
		if err := os.Rename(old, fmt.Sprintf("%s.%d", l.opts.Path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit: rotate: %w", err)
		}
	}
	if err := os.Rename(l.opts.Path, l.opts.Path+".1"); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	return l.open()
}

func (l *Log) failed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failedLocked(err)
}

func (l *Log) failedLocked(err error) {
	l.errs++
	if now := time.Now(); now.Sub(l.warned) >= time.Minute {
		l.warned = now
		l.opts.Logger.Error("audit: record not written", "path", l.opts.Path, "err", err, "failed_records", l.errs)
	}
}

// Stats are what the log has written.
type Stats struct {
	Written map[string]uint64 // records, by protocol
	Errors  uint64            // records not written
}

// Stats returns the counts so far.
func (l *Log) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Written: make(map[string]uint64, len(l.counts)), Errors: l.errs}
	for p, n := range l.counts {
		st.Written[p] = n
	}
	return st
}

// Close closes the file.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
