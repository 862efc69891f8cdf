// Package objstore is the seam between gatewayd and the object store that
// holds its data: AWS S3, any S3-compatible server, or a local directory.
//
// Store is deliberately small (restic's backend.Backend is the model). What
// only some stores can do is an optional one-method interface found by type
// assertion: Copier, StorageClasser. Implementations live in sibling packages
// (s3, localdir, mem); decorators that add behaviour to any Store live beside
// them (retry, limiter). Every implementation must pass objstoretest.
//
// Keys are slash-separated relative names ("chunks/ab/abcd..."). A key never
// starts with "/" and never contains "." or ".." segments or an empty segment;
// it may end with "/" (file shares' directory marker objects).
package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
)

// Store is an object store.
type Store interface {
	// Put stores size bytes read from r under key, replacing any object
	// there. r may be read more than once (after Seek(0, io.SeekStart)) when
	// a retry or a multipart upload needs it. The object becomes visible
	// only once complete: a reader sees the old object or the new one.
	Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error

	// Get returns a reader of length bytes of key starting at offset.
	// length < 0 means to the end of the object. A range past the end of
	// the object is an error. The caller closes the reader.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the object's metadata.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List calls fn for every object whose key starts with prefix, in
	// lexical key order. If fn returns an error, List stops and returns it.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// String names the store for logs and errors ("s3://bucket/prefix").
	String() string
}

// ObjectInfo describes one object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ModTime      time.Time
	ETag         string // opaque; may be empty
	StorageClass string // may be empty (store default)
}

// Copier is implemented by stores that copy objects without moving the data
// through the gateway (S3 CopyObject).
type Copier interface {
	Copy(ctx context.Context, srcKey, dstKey string) error
}

// StorageClasser is implemented by stores with storage classes (S3
// STANDARD, GLACIER, DEEP_ARCHIVE, ...). It moves an existing object to class.
type StorageClasser interface {
	SetStorageClass(ctx context.Context, key, class string) error
}

// ErrNotFound is returned (wrapped, and marked errkind.NotFound) when a key
// does not exist.
var ErrNotFound = errors.New("object not found")

// NotFound returns the error for a missing key in store s.
func NotFound(s fmt.Stringer, key string) error {
	return errkind.Mark(errkind.NotFound, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound))
}

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || errkind.IsNotFound(err)
}

// ValidKey reports whether key is a well-formed object key.
func ValidKey(key string) error {
	if key == "" {
		return errkind.Mark(errkind.Permanent, errors.New("objstore: empty key"))
	}
	if strings.HasPrefix(key, "/") {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("objstore: key %q starts with /", key))
	}
	for _, seg := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("objstore: key %q has an empty, . or .. segment", key))
		}
	}
	return nil
}

// GetAll reads a whole object into memory. For small objects (manifests,
// keys, config).
func GetAll(ctx context.Context, s Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", s, key, err)
	}
	return b, nil
}

// PutBytes stores b under key.
func PutBytes(ctx context.Context, s Store, key string, b []byte) error {
	return s.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}
