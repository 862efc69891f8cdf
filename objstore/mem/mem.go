// Package mem is an in-memory object store for tests. It is safe for
// concurrent use and implements objstore.Copier, objstore.StorageClasser,
// objstore.ConditionalPutter, objstore.Composer and, as a bucket created
// with Object Lock does (NewLocked), objstore.Retainer.
package mem

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// Store keeps objects in a map. Objects are immutable once stored: Put and
// Copy replace the map entry, so a reader keeps the version it opened.
type Store struct {
	name string
	now  func() time.Time

	mu      sync.RWMutex
	objects map[string]*object

	// Object Lock: a bucket created with it keeps the retained versions
	// that a Put, Delete or copy replaced, as S3 keeps them under a newer
	// version or a delete marker, until Purge removes them.
	locked bool
	kept   map[string][]*object
}

type object struct {
	data    []byte
	modTime time.Time
	etag    string
	class   string
	meta    map[string]string // never modified once stored
	ret     objstore.Retention
}

// New returns an empty store named name in logs and errors ("mem" if empty).
func New(name string) *Store {
	if name == "" {
		name = "mem"
	}
	return &Store{name: name, now: time.Now, objects: make(map[string]*object)}
}

// NewLocked returns an empty store that models a bucket created with
// Object Lock: objects can be retained (objstore.Retainer).
func NewLocked(name string) *Store {
	s := New(name)
	s.locked = true
	s.kept = map[string][]*object{}
	return s
}

// SetClock makes the store read the time from now: modification times,
// and when retentions end.
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// replace puts o under key (nil: removes key), keeping a retained
// version it replaces. Called with s.mu held.
func (s *Store) replace(key string, o *object) {
	if old := s.objects[key]; old != nil && s.locked && old.ret.Holds(s.now()) {
		s.kept[key] = append(s.kept[key], old)
	}
	if o == nil {
		delete(s.objects, key)
		return
	}
	s.objects[key] = o
}

func (s *Store) String() string { return "mem://" + s.name }

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, key string, r io.ReadSeeker, size int64) error {
	return s.PutMeta(ctx, key, r, size, nil)
}

// PutMeta implements objstore.MetadataPutter.
func (s *Store) PutMeta(ctx context.Context, key string, r io.ReadSeeker, size int64, meta map[string]string) error {
	_, err := s.put(ctx, "put", key, r, size, meta, objstore.Retention{}, nil)
	return err
}

// PutIfAbsent implements objstore.ConditionalPutter.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.ReadSeeker, size int64) (string, error) {
	return s.put(ctx, "put if absent", key, r, size, nil, objstore.Retention{}, func(o *object) string {
		if o != nil {
			return "an object exists"
		}
		return ""
	})
}

// PutIfMatch implements objstore.ConditionalPutter.
func (s *Store) PutIfMatch(ctx context.Context, key string, r io.ReadSeeker, size int64, etag string) (string, error) {
	return s.put(ctx, "put if match", key, r, size, nil, objstore.Retention{}, func(o *object) string {
		switch {
		case o == nil:
			return "no object"
		case o.etag != etag:
			return fmt.Sprintf("ETag is %s, not %s", o.etag, etag)
		}
		return ""
	})
}

// put stores an object if refuse, called under the lock with the object
// there (nil if none), returns "", and returns the new object's ETag.
func (s *Store) put(ctx context.Context, op, key string, r io.ReadSeeker, size int64, meta map[string]string, ret objstore.Retention, refuse func(*object) string) (string, error) {
	if err := objstore.ValidKey(key); err != nil {
		return "", err
	}
	if err := objstore.ValidMetadata(meta); err != nil {
		return "", fmt.Errorf("%s: %s %s: %w", s, op, key, err)
	}
	if size < 0 {
		return "", fmt.Errorf("%s: %s %s: negative size %d", s, op, key, size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return "", fmt.Errorf("%s: %s %s: read %d bytes: %w", s, op, key, size, err)
	}
	// A cancelled caller must not leave an object behind.
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %s %s: %w", s, op, key, err)
	}
	sum := md5.Sum(data)
	etag := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if refuse != nil {
		if why := refuse(s.objects[key]); why != "" {
			return "", objstore.PreconditionFailed(s, op, key, why)
		}
	}
	s.replace(key, &object{data: data, modTime: s.now(), etag: etag, meta: maps.Clone(meta), ret: ret})
	return etag, nil
}

func (s *Store) lookup(key string) (*object, error) {
	s.mu.RLock()
	o, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return nil, objstore.NotFound(s, key)
	}
	return o, nil
}

// Get implements objstore.Store.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	o, err := s.lookup(key)
	if err != nil {
		return nil, err
	}
	n, err := objstore.RangeLength(int64(len(o.data)), offset, length)
	if err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", s, key, err)
	}
	return io.NopCloser(bytes.NewReader(o.data[offset : offset+n])), nil
}

// Stat implements objstore.Store.
func (s *Store) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("%s: stat %s: %w", s, key, err)
	}
	o, err := s.lookup(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	oi := o.info(key)
	if len(o.meta) > 0 {
		oi.Metadata = maps.Clone(o.meta)
	}
	return oi, nil
}

func (o *object) info(key string) objstore.ObjectInfo {
	return objstore.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime, ETag: o.etag, StorageClass: o.class}
}

// List implements objstore.Store. It lists a snapshot taken at the start, so
// fn may call back into the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(objstore.ObjectInfo) error) error {
	after := objstore.ListStart(ctx)
	s.mu.RLock()
	var infos []objstore.ObjectInfo
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) && k > after {
			infos = append(infos, o.info(k))
		}
	}
	s.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: list %s: %w", s, prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %s: %w", s, key, err)
	}
	s.mu.Lock()
	s.replace(key, nil)
	s.mu.Unlock()
	return nil
}

// SetMeta implements objstore.MetadataPutter.
func (s *Store) SetMeta(ctx context.Context, key string, meta map[string]string) error {
	if err := objstore.ValidMetadata(meta); err != nil {
		return fmt.Errorf("%s: set metadata of %s: %w", s, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: set metadata of %s: %w", s, key, err)
	}
	meta = maps.Clone(meta)
	return s.modify(key, func(o *object) { o.meta = meta })
}

// modify replaces key's object with a changed copy (readers keep theirs).
func (s *Store) modify(key string, change func(*object)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return objstore.NotFound(s, key)
	}
	c := *o
	change(&c)
	c.modTime = s.now()
	c.ret = objstore.Retention{} // a copy onto itself: a new version
	s.replace(key, &c)
	return nil
}

// Copy implements objstore.Copier.
func (s *Store) Copy(ctx context.Context, srcKey, dstKey string) error {
	if err := objstore.ValidKey(dstKey); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: copy %s to %s: %w", s, srcKey, dstKey, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, ok := s.objects[srcKey]
	if !ok {
		return objstore.NotFound(s, srcKey)
	}
	// The data slice is never modified in place, so sharing it is safe.
	s.replace(dstKey, &object{data: src.data, modTime: s.now(), etag: src.etag, class: src.class, meta: src.meta})
	return nil
}

// SetStorageClass implements objstore.StorageClasser. Any class name is
// accepted; "STANDARD" is stored as the empty default, as S3 reports it.
func (s *Store) SetStorageClass(ctx context.Context, key, class string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: set storage class of %s: %w", s, key, err)
	}
	if class == "STANDARD" {
		class = ""
	}
	return s.modify(key, func(o *object) { o.class = class })
}

// Compose implements objstore.Composer: the data parts are read first,
// then the object is assembled and stored under the lock, so its copied
// ranges come from one state of the store.
func (s *Store) Compose(ctx context.Context, key string, parts []objstore.Part, meta map[string]string) error {
	if err := objstore.CheckCompose(s, key, parts, meta); err != nil {
		return err
	}
	data := make([][]byte, len(parts))
	for i, p := range parts {
		if p.Data == nil {
			continue
		}
		data[i] = make([]byte, p.Size)
		if _, err := io.ReadFull(p.Data, data[i]); err != nil {
			return fmt.Errorf("%s: compose %s: read part %d: %w", s, key, i+1, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: compose %s: %w", s, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	size, err := objstore.CheckParts(s, key, parts, func(p objstore.Part) (int64, error) {
		o, ok := s.objects[p.SrcKey]
		switch {
		case !ok:
			return 0, objstore.NotFound(s, p.SrcKey)
		case p.SrcETag != "" && o.etag != p.SrcETag:
			return 0, objstore.PreconditionFailed(s, "compose", key, fmt.Sprintf("source %s: ETag is %s, not %s", p.SrcKey, o.etag, p.SrcETag))
		}
		return int64(len(o.data)), nil
	})
	if err != nil {
		return err
	}
	b := make([]byte, 0, size)
	for i, p := range parts {
		if p.Data != nil {
			b = append(b, data[i]...)
		} else {
			b = append(b, s.objects[p.SrcKey].data[p.SrcOffset:p.SrcOffset+p.Size]...)
		}
	}
	sum := md5.Sum(b)
	s.replace(key, &object{data: b, modTime: s.now(), etag: hex.EncodeToString(sum[:]), meta: maps.Clone(meta)})
	return nil
}
