package fileshare

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Events out (notify/, Options.Events): a file uploaded, an upload that
// failed and is retried, an object deleted or moved to another key (a
// rename) in the store.
//
// An upload's event is published after its object is in the store and
// before the file's state is retired, which is what lets its log records
// be trimmed: once the upload counts as done, its event is durable. A
// crash in between uploads the file again from the log, and the event of
// that upload has the same id (share, key, inode and the last log record
// the upload covers), which the queue recognises and does not queue again.

// eventsFull refuses an upload while the event queue is full: the file
// stays pending and is tried again, so an unreachable webhook bounds the
// queue instead of growing it.
func (m *Manager) eventsFull() error {
	if m.opts.Events != nil && m.opts.Events.Full() {
		return notify.ErrFull
	}
	return nil
}

// typeName names a file type in events.
func typeName(t FileType) string {
	switch t {
	case TypeDir:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return "file"
}

// eventPath is the share path of key ("/a/b"), a directory's marker too.
func (s *Share) eventPath(key string) string {
	return "/" + strings.TrimSuffix(strings.TrimPrefix(key, s.cfg.Prefix), "/")
}

// notifyUploaded publishes the upload of key (as a) covering the file's
// log records up to lsn, unless the file changed since the upload read
// its state at gen: it goes up again and that upload's event reports it.
func (m *Manager) notifyUploaded(ctx context.Context, s *Share, ino uint64, st *fileState, gen uint64, key string, a Attr, etag string, lsn uploadbuffer.LSN) error {
	if m.opts.Events == nil {
		return nil
	}
	st.mu.Lock()
	again := st.gen != gen || st.changing > 0
	st.mu.Unlock()
	if again {
		return nil
	}
	return m.opts.Events.Publish(ctx, notify.Event{
		ID:   notify.StableID(string(notify.FileUploaded), s.cfg.Name, key, strconv.FormatUint(ino, 10), strconv.FormatUint(uint64(lsn), 10)),
		Kind: notify.FileUploaded, Share: s.cfg.Name, Path: s.eventPath(key), Key: key, Type: typeName(a.Type),
		Size: notify.Size(a.Size), ETag: etag,
	})
}

// notifyUploadFailed publishes a failed upload of key, the attempt-th in
// a row: the first and then every power of two, so a store away for long
// does not fill the queue with them.
func (m *Manager) notifyUploadFailed(ctx context.Context, s *Share, key string, t FileType, attempt int, err error) {
	if m.opts.Events == nil || attempt&(attempt-1) != 0 {
		return
	}
	e := notify.Event{Kind: notify.FileUploadFailed, Share: s.cfg.Name, Path: s.eventPath(key), Key: key, Type: typeName(t),
		Attempt: attempt, Error: err.Error()}
	if perr := m.opts.Events.Publish(ctx, e); perr != nil {
		m.log.Warn("file share: event of a failed upload not queued", "share", s.cfg.Name, "key", key, "err", perr)
	}
}

// Removes and renames are reported through the log (deletes.go,
// moves.go): with events on, every delete and move of an object is a
// record first, done in the store after, and its event is queued between
// the store's change and the record that marks it done, with an id made
// of the share, the keys and the record's LSN. A kill anywhere leaves
// either the event queued or the record pending, whose replay does the
// change again (a delete, a copy whose source is gone, are no-ops) and
// queues the event with the same id, which the queue does not queue twice.

// notifyDeleted queues the delete of key in the store, the one the log
// record at lsn asked for.
func (m *Manager) notifyDeleted(ctx context.Context, share, key, id string) error {
	if m.opts.Events == nil {
		return nil
	}
	s, err := m.Get(share)
	if err != nil {
		return nil
	}
	e := notify.Event{ID: id, Kind: notify.FileDeleted, Share: share, Path: s.eventPath(key), Key: key, Type: typeName(keyType(key))}
	if err := m.opts.Events.Publish(context.WithoutCancel(ctx), e); err != nil {
		return fmt.Errorf("share %s: the event of the delete of %s: %w", share, key, err)
	}
	return nil
}

// keyType is the type of the object at key as far as the key tells: a
// directory's marker ends in "/".
func keyType(key string) FileType {
	if strings.HasSuffix(key, "/") {
		return TypeDir
	}
	return TypeFile
}

// notifyRenamed queues the move of an object from k.from to k.to in the
// store, by the logged rename mv. Like a delete's, it is queued even when
// the queue is full: the move is under way.
func (m *Manager) notifyRenamed(ctx context.Context, mv move, k keyMove) error {
	if m.opts.Events == nil {
		return nil
	}
	s, err := m.Get(mv.share)
	if err != nil {
		return nil
	}
	e := notify.Event{ID: loggedMoveID(mv, k), Kind: notify.FileRenamed, Share: mv.share, Path: s.eventPath(k.to), Key: k.to,
		OldPath: s.eventPath(k.from), OldKey: k.from, Type: typeName(keyType(k.from))}
	if err := m.opts.Events.Publish(context.WithoutCancel(ctx), e); err != nil {
		return fmt.Errorf("share %s: the event of the move of %s to %s: %w", mv.share, k.from, k.to, err)
	}
	return nil
}

// crashHook, when a test sets it, runs at the points of a delete's or a
// move's way between the store and the log named by crash's callers.
var crashHook func(point string)

func crash(point string) {
	if crashHook != nil {
		crashHook(point)
	}
}

// loggedMoveID is the event id of the move of k by the logged rename mv:
// the same when a replay repeats it.
func loggedMoveID(mv move, k keyMove) string {
	return notify.StableID(string(notify.FileRenamed), mv.share, k.from, k.to, strconv.FormatUint(uint64(mv.lsn), 10))
}
