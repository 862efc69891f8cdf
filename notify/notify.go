// Package notify sends the gateway's events out to webhooks: a file
// uploaded to the object store, an upload that failed and is retried, a
// file deleted or renamed, a volume's recovery point written or snapshot
// taken, a tape archived or retrieved (docs/events.md).
//
// Services publish Events through a Sink and know nothing of where they
// go. The Queue keeps every event durably in the metadata store until each
// configured webhook took it; its senders post the events as JSON, one per
// request, in queue order, retrying with backoff. Delivery is at least
// once: an event may be posted again after a crash (or a retry of a
// request whose answer was lost), always with the same id, which the
// receiver dedupes on.
package notify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
)

// Kind names what happened.
type Kind string

const (
	FileUploaded        Kind = "file.uploaded"         // an object of a share is in the store
	FileUploadFailed    Kind = "file.upload_failed"    // an upload failed; it is retried
	FileDeleted         Kind = "file.deleted"          // an object of a share was deleted in the store
	FileRenamed         Kind = "file.renamed"          // an object of a share was moved to another key in the store
	VolumeRecoveryPoint Kind = "volume.recovery_point" // a cached volume's recovery point was written
	VolumeSnapshot      Kind = "volume.snapshot"       // a snapshot of a volume was completed
	TapeArchived        Kind = "tape.archived"         // a tape was archived
	TapeRetrieved       Kind = "tape.retrieved"        // an archived tape was retrieved
)

// Kinds are every kind, in the order docs/events.md lists them.
var Kinds = []Kind{FileUploaded, FileUploadFailed, FileDeleted, FileRenamed, VolumeRecoveryPoint, VolumeSnapshot, TapeArchived, TapeRetrieved}

// Event is one notification. Its JSON (the field order below, empty
// fields left out) is what a webhook receives, byte for byte as
// docs/events.md shows it.
type Event struct {
	ID   string `json:"id"`   // stable: a repeat of the event has the same id
	Seq  uint64 `json:"seq"`  // position in the gateway's queue: increasing in publish order
	Kind Kind   `json:"kind"` // what happened
	// Time is when it happened (UTC).
	Time    time.Time `json:"time"`
	Gateway string    `json:"gateway,omitempty"` // the gateway's id
	Bucket  string    `json:"bucket,omitempty"`  // the store's bucket, for objects of a share
	Key     string    `json:"key,omitempty"`     // the object's key in the bucket
	Share   string    `json:"share,omitempty"`
	Path    string    `json:"path,omitempty"`     // in the share, from its root ("/a/b.txt")
	OldKey  string    `json:"old_key,omitempty"`  // of a renamed object: its key before
	OldPath string    `json:"old_path,omitempty"` // of a renamed object: its path before
	Type    string    `json:"type,omitempty"`     // file, directory or symlink
	Size    *int64    `json:"size,omitempty"`     // bytes of the object or volume; of the data on a tape
	ETag    string    `json:"etag,omitempty"`     // without quotes, as in S3 event notifications
	Attempt int       `json:"attempt,omitempty"`  // of a failed upload: how many have failed
	Error   string    `json:"error,omitempty"`    // of a failed upload
	// Volume and VolumeID name a volume; Snapshot a snapshot of it.
	Volume   string `json:"volume,omitempty"`
	VolumeID string `json:"volume_id,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Tape     string `json:"tape,omitempty"` // a tape's barcode
}

// Sink is where services publish events. A nil Sink in a service's
// options means notifications are off.
type Sink interface {
	// Publish queues e durably: when it returns nil, e is delivered even
	// if the process is killed at once. An event whose ID was published
	// before (and is still remembered) is not queued again. An empty ID
	// gets a random one; an empty Time the current time.
	Publish(ctx context.Context, e Event) error
	// Update runs fn in a transaction of md, the metadata store the queue
	// is in, and queues es in that same transaction: the events are
	// queued if and only if fn's writes are committed, so a kill at any
	// moment keeps both or neither. An error of fn's is returned as is.
	// Like Publish, an event whose ID is remembered is not queued again.
	Update(ctx context.Context, md meta.Store, fn func(meta.Txn) error, es ...Event) error
	// Full says the queue holds as many undelivered events as it may:
	// work that would publish one waits, so that an unreachable receiver
	// does not grow the queue without bound.
	Full() bool
}

// Update runs fn in a transaction of md that queues es with its writes
// (Sink.Update), or in a plain one when sink is nil (notifications off).
func Update(ctx context.Context, sink Sink, md meta.Store, fn func(meta.Txn) error, es ...Event) error {
	if sink == nil {
		return md.Update(ctx, fn)
	}
	return sink.Update(ctx, md, fn, es...)
}

// ErrFull means the queue holds as many undelivered events as it may.
var ErrFull = errkind.Mark(errkind.Retryable, errors.New("notifications: the event queue is full (a webhook is not taking events)"))

// StableID is an event id derived from parts: the same parts give the
// same id, so an event published again after a crash is known as the
// same one.
func StableID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// randomID is the id of an event that gives none.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Size returns a pointer to n, for Event.Size.
func Size(n int64) *int64 { return &n }
