// Package objstore is the seam between gatewayd and the object store that
// holds its data: AWS S3, any S3-compatible server, or a local directory.
//
// Store is deliberately small (restic's backend.Backend is the model). What
// only some stores can do is an optional interface found by type assertion:
// Copier, StorageClasser, MetadataPutter, DirLister, ConditionalPutter,
// Composer, Retainer. Decorators keep the answer true with LimitCapabilities.
// Implementations live in sibling packages
// (s3, localdir, mem); decorators that add behaviour to any Store live beside
// them (retry, limiter, faulty, fenced). Every implementation must pass
// objstoretest.
//
// Keys are slash-separated relative names ("chunks/ab/abcd..."). A key never
// starts with "/" and never contains "." or ".." segments or an empty segment;
// it may end with "/" (file shares' directory marker objects).
//
// An object "a" must not coexist with keys below "a/" ("a/b"): AWS S3 allows
// it, but MinIO then hides "a/b" from listings. A marker "a/" may coexist
// with both "a" and "a/b".
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
	// there. The bytes are read from r's current position; r may be read
	// more than once (after seeking back to that position) when a retry or
	// a multipart upload needs it. The object becomes visible
	// only once complete: a reader sees the old object or the new one.
	Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error

	// Get returns a reader of length bytes of key starting at offset.
	// length < 0 means to the end of the object. A range that does not lie
	// within the object is an error wrapping ErrInvalidRange (an empty range
	// at the very end, offset == size, is not). The caller closes the reader.
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
	// Metadata is the object's user metadata, filled by Stat on stores
	// that keep it (MetadataPutter); List leaves it nil.
	Metadata map[string]string
}

// MetadataPutter is implemented by stores that keep user metadata with an
// object (S3's x-amz-meta-* headers). PutMeta is Put with metadata; Stat
// returns it in ObjectInfo.Metadata and Copy copies it with the object.
// Names are lower-case ASCII letters, digits and '-'; values printable
// ASCII (ValidMetadata), which every S3-compatible server keeps as given.
type MetadataPutter interface {
	PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error
	// SetMeta replaces an existing object's metadata, keeping its data
	// (S3: a copy onto itself). It may change the object's ETag and
	// modification time.
	SetMeta(ctx context.Context, key string, meta map[string]string) error
}

// DirLister is implemented by stores that list one level below a prefix,
// as S3's ListObjectsV2 with delimiter "/" does.
type DirLister interface {
	// ListDir calls fn, in lexical key order, for each object whose key
	// starts with prefix and has no "/" after it (prefix itself included,
	// when it is an object), and, with isPrefix set and only Key filled
	// in, for each distinct "prefix + name + /" that keys continue below.
	// prefix is "" or ends in "/".
	ListDir(ctx context.Context, prefix string, fn func(oi ObjectInfo, isPrefix bool) error) error
}

type listStartKey struct{}

// WithListStart returns ctx asking List (and ListDir) to begin after key,
// as S3's StartAfter does, so that a listing broken off partway resumes
// where it stopped instead of reading everything again. It is a hint that
// passes unchanged through decorators: a store may still list keys up to
// key, so the caller skips them itself.
func WithListStart(ctx context.Context, after string) context.Context {
	return context.WithValue(ctx, listStartKey{}, after)
}

// ListStart is the key a listing under ctx may begin after ("" for none).
func ListStart(ctx context.Context) string {
	after, _ := ctx.Value(listStartKey{}).(string)
	return after
}

// ListDir lists one level below prefix, with the store's DirLister when it
// has one, else by listing everything below prefix and folding it.
func ListDir(ctx context.Context, s Store, prefix string, fn func(oi ObjectInfo, isPrefix bool) error) error {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: list dir %q: prefix must end in /", s, prefix))
	}
	if dl, ok := s.(DirLister); ok {
		return dl.ListDir(ctx, prefix, fn)
	}
	last := ""
	return s.List(ctx, prefix, func(oi ObjectInfo) error {
		rest := oi.Key[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p := prefix + rest[:i+1]
			if p == last {
				return nil
			}
			last = p
			return fn(ObjectInfo{Key: p}, true)
		}
		return fn(oi, false)
	})
}

// MaxMetadataBytes bounds an object's user metadata, names and values
// together: S3 allows 2 KiB.
const MaxMetadataBytes = 2048

// ValidMetadata checks user metadata against what every S3-compatible
// store keeps unchanged.
func ValidMetadata(meta map[string]string) error {
	n := 0
	for k, v := range meta {
		n += len(k) + len(v)
		if k == "" {
			return errkind.Mark(errkind.Permanent, errors.New("metadata: empty name"))
		}
		for _, c := range []byte(k) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return errkind.Mark(errkind.Permanent, fmt.Errorf("metadata name %q: use lower-case letters, digits and '-'", k))
			}
		}
		for _, c := range []byte(v) {
			if c < 0x20 || c > 0x7e {
				return errkind.Mark(errkind.Permanent, fmt.Errorf("metadata %s: value must be printable ASCII", k))
			}
		}
	}
	if n > MaxMetadataBytes {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("metadata of %d bytes: at most %d", n, MaxMetadataBytes))
	}
	return nil
}

// PutWith puts an object with metadata through MetadataPutter, or with
// plain Put when meta is empty.
func PutWith(ctx context.Context, s Store, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	if len(meta) == 0 {
		return s.Put(ctx, key, r, size)
	}
	mp, ok := s.(MetadataPutter)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: the store keeps no object metadata", s, key))
	}
	return mp.PutMeta(ctx, key, r, size, meta)
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

// ConditionalPutter is implemented by stores that write an object only
// when it is in the state the caller expects (S3's If-None-Match and
// If-Match on PutObject). It is meant for small coordination objects (a
// lease), not data: stores may refuse objects too large for a single
// request. A write that finds the object in another state fails with an
// error wrapping ErrPreconditionFailed and marked
// errkind.PreconditionFailed; retrying it cannot succeed.
//
// After a retried attempt, a precondition failure may mean that an earlier
// attempt, whose answer was lost, wrote the object: callers that must know
// read it back. The guarantee holds between conditional writers: a plain
// Put or Delete of the same key is not ordered against them.
type ConditionalPutter interface {
	// PutIfAbsent stores the object only if no object exists under key,
	// and returns the new object's ETag.
	PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (etag string, err error)
	// PutIfMatch replaces the object only if its ETag is etag (as Stat
	// or an earlier conditional put returned it); a missing object is a
	// precondition failure too. It returns the new object's ETag.
	PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (newETag string, err error)
}

// ErrPreconditionFailed is wrapped by the error of a conditional write
// that found the object in another state than required.
var ErrPreconditionFailed = errors.New("precondition failed")

// PreconditionFailed returns the error of a conditional write to key that
// lost: what says what was required ("object exists", "ETag is now X").
func PreconditionFailed(s fmt.Stringer, op, key, what string) error {
	return errkind.Mark(errkind.PreconditionFailed, fmt.Errorf("%s: %s %s: %s: %w", s, op, key, what, ErrPreconditionFailed))
}

// IsPreconditionFailed reports whether err is a lost conditional write.
func IsPreconditionFailed(err error) bool {
	return errors.Is(err, ErrPreconditionFailed) || errkind.IsPreconditionFailed(err)
}

// ErrNoConditionalPuts is wrapped by the error of a conditional write on
// a store that cannot make one.
var ErrNoConditionalPuts = errors.New("the store cannot write conditionally")

// PutIfAbsent writes b under key only if no object is there, through s's
// ConditionalPutter.
func PutIfAbsent(ctx context.Context, s Store, key string, b []byte) (string, error) {
	cp, ok := s.(ConditionalPutter)
	if !ok {
		return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: %w", s, key, ErrNoConditionalPuts))
	}
	return cp.PutIfAbsent(ctx, key, bytes.NewReader(b), int64(len(b)))
}

// PutIfMatch replaces key with b only if its ETag is etag, through s's
// ConditionalPutter.
func PutIfMatch(ctx context.Context, s Store, key string, b []byte, etag string) (string, error) {
	cp, ok := s.(ConditionalPutter)
	if !ok {
		return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: %w", s, key, ErrNoConditionalPuts))
	}
	return cp.PutIfMatch(ctx, key, bytes.NewReader(b), int64(len(b)), etag)
}

// InnerConditionalPutter returns inner's ConditionalPutter for a decorator
// to forward to, or one that fails every call with ErrNoConditionalPuts.
func InnerConditionalPutter(inner Store) ConditionalPutter {
	if cp, ok := inner.(ConditionalPutter); ok {
		return cp
	}
	return noConditionalPuts{inner}
}

type noConditionalPuts struct{ s Store }

func (n noConditionalPuts) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (string, error) {
	return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: %w", n.s, key, ErrNoConditionalPuts))
}

func (n noConditionalPuts) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (string, error) {
	return "", errkind.Mark(errkind.Permanent, fmt.Errorf("%s: put %s: %w", n.s, key, ErrNoConditionalPuts))
}

// Composer is implemented by stores that build an object from ranges of
// objects they hold and new data, without the copied ranges passing through
// the gateway (S3: a multipart upload of UploadPartCopy and UploadPart
// parts). It is how a large object changed in a few places is written
// without sending it whole.
type Composer interface {
	// Compose stores under key the concatenation of parts, in order, with
	// user metadata meta (as PutMeta; nil for none), replacing any object
	// there. Like Put, the new object appears whole or not at all: on any
	// failure (a missing source, a range outside its source, a failed data
	// reader, an ended ctx) key keeps the object it had and nothing is left
	// behind (no partial object, no unfinished upload). A source may be key
	// itself: its version before the Compose is read. No parts make an
	// empty object.
	//
	// Copied ranges come from the source as it is when they are copied: a
	// source written meanwhile may give parts of two versions, unless the
	// parts name its ETag (Part.SrcETag). Data readers may be read more
	// than once (after seeking back), as Put's.
	Compose(ctx context.Context, key string, parts []Part, meta map[string]string) error
}

// Part is one stretch of an object built by Composer.Compose: Size bytes
// of the object SrcKey from SrcOffset (a copy inside the store), or, when
// Data is set, Size bytes read from Data's current position.
type Part struct {
	SrcKey    string
	SrcOffset int64
	// SrcETag, when set, is the ETag SrcKey must have (as Stat returned
	// it): otherwise Compose fails with an error wrapping
	// ErrPreconditionFailed and changes nothing. It makes sure the copied
	// ranges all come from the version the caller knows. A compose onto
	// its own source retried after an attempt whose answer was lost finds
	// the new ETag and fails so, though the object was made.
	SrcETag string
	Data    io.ReadSeeker
	Size    int64
}

// CopyPart is a Part of size bytes copied from key at offset, which must
// have ETag etag unless etag is empty.
func CopyPart(key string, offset, size int64, etag string) Part {
	return Part{SrcKey: key, SrcOffset: offset, SrcETag: etag, Size: size}
}

// DataPart is a Part of size bytes read from r.
func DataPart(r io.ReadSeeker, size int64) Part { return Part{Data: r, Size: size} }

// ErrNoCompose is wrapped by the error of a Compose on a store that
// cannot compose.
var ErrNoCompose = errors.New("the store cannot compose objects")

// Compose builds key from parts through s's Composer.
func Compose(ctx context.Context, s Store, key string, parts []Part, meta map[string]string) error {
	c, ok := s.(Composer)
	if !ok {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: compose %s: %w", s, key, ErrNoCompose))
	}
	return c.Compose(ctx, key, parts, meta)
}

// CheckCompose checks a Compose call's key, metadata and parts, as a
// Composer does before anything else (the sources are its to check, with
// CheckParts).
func CheckCompose(s fmt.Stringer, key string, parts []Part, meta map[string]string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ValidMetadata(meta); err != nil {
		return fmt.Errorf("%s: compose %s: %w", s, key, err)
	}
	_, err := CheckParts(s, key, parts, nil)
	return err
}

// CheckParts checks parts for Compose on a store whose objects each
// part's source size reports (nil: skip the range checks): each part is
// a copy or data, of a size >= 0, copies within their source. The sum of
// the sizes is returned.
func CheckParts(s fmt.Stringer, key string, parts []Part, sourceSize func(Part) (int64, error)) (int64, error) {
	total := int64(0)
	for i, p := range parts {
		bad := func(why string) error {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: compose %s: part %d: %s", s, key, i+1, why))
		}
		switch {
		case p.Size < 0:
			return 0, bad(fmt.Sprintf("negative size %d", p.Size))
		case p.Data != nil && p.SrcKey != "":
			return 0, bad("both data and a source")
		case p.Data == nil && p.SrcKey == "":
			return 0, bad("neither data nor a source")
		case p.Data == nil:
			if err := ValidKey(p.SrcKey); err != nil {
				return 0, err
			}
			if sourceSize != nil {
				size, err := sourceSize(p)
				if err != nil {
					return 0, err
				}
				if _, err := RangeLength(size, p.SrcOffset, p.Size); err != nil {
					return 0, fmt.Errorf("%s: compose %s: part %d from %s: %w", s, key, i+1, p.SrcKey, err)
				}
			}
		}
		total += p.Size
	}
	if total > MaxObjectSize {
		return 0, errkind.Mark(errkind.Permanent, fmt.Errorf("%s: compose %s: %d bytes: objects hold at most %d", s, key, total, int64(MaxObjectSize)))
	}
	return total, nil
}

// MaxObjectSize is the largest object (S3's limit).
const MaxObjectSize = 5 << 40

// DataStarts returns the current position of each data part's reader (0
// for copies), for a caller that may read them more than once.
func DataStarts(s fmt.Stringer, key string, parts []Part) ([]int64, error) {
	starts := make([]int64, len(parts))
	for i, p := range parts {
		if p.Data == nil {
			continue
		}
		pos, err := p.Data.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("%s: compose %s: part %d: reader cannot seek: %w", s, key, i+1, err))
		}
		starts[i] = pos
	}
	return starts, nil
}

// RewindParts seeks each data part's reader back to its start.
func RewindParts(s fmt.Stringer, key string, parts []Part, starts []int64) error {
	for i, p := range parts {
		if p.Data == nil {
			continue
		}
		if _, err := p.Data.Seek(starts[i], io.SeekStart); err != nil {
			return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: compose %s: part %d: rewind reader: %w", s, key, i+1, err))
		}
	}
	return nil
}

// Full is a Store with every optional capability. Decorators implement Full
// by forwarding to the store they wrap, then hide what that store cannot do
// with LimitCapabilities.
type Full interface {
	Store
	Copier
	StorageClasser
	MetadataPutter
	DirLister
	ConditionalPutter
	Composer
	Retainer
}

// LimitCapabilities returns outer exposing exactly the optional interfaces
// that inner implements, so a type assertion on a decorated store answers as
// it would on the store underneath. DirLister is always exposed: a
// decorator's ListDir folds a full listing when inner cannot list a level.
// ConditionalPutter is always exposed too (every store of gatewayd has it);
// through a decorator on a store without it, its calls fail with an error
// wrapping ErrNoConditionalPuts. So is Retainer: whether a bucket has
// Object Lock is known only by asking it (Retainer.ObjectLock), and through
// a decorator on a store without it, the bucket has none.
func LimitCapabilities(outer Full, inner Store) Store {
	return limitedViews[capabilitiesOf(inner)](outer)
}

// capability is one optional interface that a decorator exposes only when
// the store it wraps has it; a set of them is a bit mask. A new optional
// interface of this kind is one more bit here and in capabilitiesOf; the
// table of views then doubles, and TestLimitCapabilities fails until each
// new set has its view.
type capability uint8

const (
	canCopy capability = 1 << iota
	hasClasses
	hasMeta
	canCompose
	allCapabilities = canCopy | hasClasses | hasMeta | canCompose
)

// capabilitiesOf is the set of capabilities s has.
func capabilitiesOf(s Store) capability {
	var set capability
	if _, ok := s.(Copier); ok {
		set |= canCopy
	}
	if _, ok := s.(StorageClasser); ok {
		set |= hasClasses
	}
	if _, ok := s.(MetadataPutter); ok {
		set |= hasMeta
	}
	if _, ok := s.(Composer); ok {
		set |= canCompose
	}
	return set
}

// limitedViews holds, for each set of capabilities, a view of a Full with
// exactly that set beside Store, DirLister, ConditionalPutter and Retainer. A type
// assertion sees the static method set of a value's type, and Go makes no
// type from parts at run time, so each set has a struct type of its own.
var limitedViews = [allCapabilities + 1]func(Full) Store{
	0: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
		}{o, o, o, o}
	},
	canCopy: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
		}{o, o, o, o, o}
	},
	hasClasses: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			StorageClasser
		}{o, o, o, o, o}
	},
	canCopy | hasClasses: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
			StorageClasser
		}{o, o, o, o, o, o}
	},
	hasMeta: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			MetadataPutter
		}{o, o, o, o, o}
	},
	canCopy | hasMeta: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
			MetadataPutter
		}{o, o, o, o, o, o}
	},
	hasClasses | hasMeta: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			StorageClasser
			MetadataPutter
		}{o, o, o, o, o, o}
	},
	canCopy | hasClasses | hasMeta: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
			StorageClasser
			MetadataPutter
		}{o, o, o, o, o, o, o}
	},
	canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Composer
		}{o, o, o, o, o}
	},
	canCopy | canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
			Composer
		}{o, o, o, o, o, o}
	},
	hasClasses | canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			StorageClasser
			Composer
		}{o, o, o, o, o, o}
	},
	canCopy | hasClasses | canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
			StorageClasser
			Composer
		}{o, o, o, o, o, o, o}
	},
	hasMeta | canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			MetadataPutter
			Composer
		}{o, o, o, o, o, o}
	},
	canCopy | hasMeta | canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			Copier
			MetadataPutter
			Composer
		}{o, o, o, o, o, o, o}
	},
	hasClasses | hasMeta | canCompose: func(o Full) Store {
		return struct {
			Store
			DirLister
			ConditionalPutter
			Retainer
			StorageClasser
			MetadataPutter
			Composer
		}{o, o, o, o, o, o, o}
	},
	canCopy | hasClasses | hasMeta | canCompose: func(o Full) Store { return o },
}

// ErrNotFound is returned (wrapped, and marked errkind.NotFound) when a key
// does not exist.
var ErrNotFound = errors.New("object not found")

// ErrInvalidRange is returned (wrapped, and marked errkind.Permanent) by Get
// when the requested range does not lie within the object.
var ErrInvalidRange = errors.New("range outside object")

// RangeLength checks a Get range against an object of size bytes and returns
// how many bytes the range covers. The error wraps ErrInvalidRange.
func RangeLength(size, offset, length int64) (int64, error) {
	if offset < 0 || offset > size {
		return 0, errkind.Mark(errkind.Permanent, fmt.Errorf("offset %d of a %d-byte object: %w", offset, size, ErrInvalidRange))
	}
	if length < 0 {
		return size - offset, nil
	}
	if length > size-offset {
		return 0, errkind.Mark(errkind.Permanent, fmt.Errorf("%d bytes at offset %d of a %d-byte object: %w", length, offset, size, ErrInvalidRange))
	}
	return length, nil
}

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
	return ReadRange(ctx, s, key, 0, -1)
}

// ReadRange reads length bytes of key from offset (length -1: to the end)
// into memory. A store that is a RangeReader reads them its own way.
func ReadRange(ctx context.Context, s Store, key string, offset, length int64) ([]byte, error) {
	if rr, ok := s.(RangeReader); ok {
		return rr.ReadRange(ctx, key, offset, length)
	}
	rc, err := s.Get(ctx, key, offset, length)
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

// RangeReader is a store that reads objects into memory its own way: the
// retry decorator reads the range again from its start when the body
// breaks, so the bytes always come from one read.
type RangeReader interface {
	ReadRange(ctx context.Context, key string, offset, length int64) ([]byte, error)
}

// PutBytes stores b under key.
func PutBytes(ctx context.Context, s Store, key string, b []byte) error {
	return s.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
}
