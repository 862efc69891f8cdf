package fileshare

import (
	"context"
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

// notifyDeleted publishes the delete of key in the store; id is stable
// when the delete is a logged one (a replay may repeat it), else empty.
func (m *Manager) notifyDeleted(ctx context.Context, share, key, id string) {
	if m.opts.Events == nil {
		return
	}
	s, err := m.Get(share)
	if err != nil {
		return
	}
	e := notify.Event{ID: id, Kind: notify.FileDeleted, Share: share, Path: s.eventPath(key), Key: key, Type: typeName(keyType(key))}
	if err := m.opts.Events.Publish(context.WithoutCancel(ctx), e); err != nil {
		// The object is gone: the remove stands; the event is what is lost.
		m.log.Error("file share: event of a delete not queued", "share", share, "key", key, "err", err)
	}
}

// keyType is the type of the object at key as far as the key tells: a
// directory's marker ends in "/".
func keyType(key string) FileType {
	if strings.HasSuffix(key, "/") {
		return TypeDir
	}
	return TypeFile
}

// notifyMoved publishes the moves of a rename done at once: the object
// at fromKey (of type t), or a directory's objects, keys, each under
// fromKey.
func (m *Manager) notifyMoved(ctx context.Context, s *Share, t FileType, fromKey, toKey string, keys []string) {
	if t != TypeDir {
		m.notifyRenamed(ctx, s.cfg.Name, keyMove{fromKey, toKey}, t, "")
		return
	}
	for _, k := range keys {
		m.notifyRenamed(ctx, s.cfg.Name, keyMove{k, toKey + strings.TrimPrefix(k, fromKey)}, keyType(k), "")
	}
}

// notifyRenamed publishes the move of an object from k.from to k.to in
// the store; id is stable when the move is a logged one (a replay may
// repeat it), else empty. Like a delete's, it is queued even when the
// queue is full: the move is done.
func (m *Manager) notifyRenamed(ctx context.Context, share string, k keyMove, t FileType, id string) {
	if m.opts.Events == nil {
		return
	}
	s, err := m.Get(share)
	if err != nil {
		return
	}
	e := notify.Event{ID: id, Kind: notify.FileRenamed, Share: share, Path: s.eventPath(k.to), Key: k.to,
		OldPath: s.eventPath(k.from), OldKey: k.from, Type: typeName(t)}
	if err := m.opts.Events.Publish(context.WithoutCancel(ctx), e); err != nil {
		m.log.Error("file share: event of a rename not queued", "share", share, "from", k.from, "to", k.to, "err", err)
	}
}

// loggedMoveID is the event id of the move of k by the logged rename mv:
// the same when a replay repeats it.
func loggedMoveID(mv move, k keyMove) string {
	return notify.StableID(string(notify.FileRenamed), mv.share, k.from, k.to, strconv.FormatUint(uint64(mv.lsn), 10))
}
