package fileshare

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/uploadbuffer"
)

// Extended attributes (the SMB view keeps Windows ACLs, DOS attributes,
// streams and EAs in them) live with the file: in its object's metadata,
// gwd-xattr, the encoded set in base64; or, when that would take the
// metadata past S3's 2 KiB, in a sidecar object named by the hash of the
// encoded set, which the metadata names in gwd-xattr-ref. A change is one
// log record holding the file's whole new set (recXattrs), in the log
// before it is answered (synced, unless the caller asks for Written), and
// goes up with the file's next upload, as a setattr does. docs/format.md specifies the keys and the encoding byte by byte.

// Metadata names and the record kind.
const (
	metaXattr    = "gwd-xattr"
	metaXattrRef = "gwd-xattr-ref"
	recXattrs    = byte(12)
)

// Limits: a name as Linux allows (XATTR_NAME_MAX), a value as Linux allows
// (XATTR_SIZE_MAX), and a file's whole set encoded, which each change
// writes to the log again.
const (
	MaxXattrName  = 255
	MaxXattrValue = 64 << 10
	MaxXattrSet   = 256 << 10
)

// xattrPrefix holds the sidecar objects, beside the gateway's other
// objects at the store's root (reservedPrefixes).
const xattrPrefix = "xattrs/"

// Errors of the extended attribute calls.
var (
	ErrNoXattr      = errkind.Mark(errkind.NotFound, errors.New("no such extended attribute"))
	ErrXattrTooBig  = errkind.Mark(errkind.Permanent, errors.New("extended attributes over the limit"))
	errXattrCorrupt = errors.New("extended attributes")
)

// xattrSet is a file's extended attributes as its attributes carry them;
// never changed once made (a change makes a new one). nil: none.
type xattrSet struct {
	m   map[string][]byte // nil when only ref is known (not read yet)
	ref string            // the sidecar's hash (hex) when they are in one
	bad string            // a gwd-xattr value that does not decode, kept as found
}

// XattrFlags are setxattr's flags.
type XattrFlags uint32

// Setxattr flags, as Linux numbers them.
const (
	XattrCreate  XattrFlags = 1 // fail if the name exists
	XattrReplace XattrFlags = 2 // fail if it does not
)

// encodeXattrs encodes a set: version 1 (1 byte), then by name in byte
// order, the name's length (1), the name, the value's length (4,
// big-endian) and the value.
func encodeXattrs(m map[string][]byte) []byte {
	n := 1
	for k, v := range m {
		n += 1 + len(k) + 4 + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, 1)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = append(b, byte(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}

// decodeXattrs decodes a set, copying what it keeps out of b; nil for an
// empty set.
func decodeXattrs(b []byte) (map[string][]byte, error) {
	bad := func(why string) (map[string][]byte, error) {
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("%w: %s", errXattrCorrupt, why))
	}
	if len(b) < 1 || b[0] != 1 {
		return bad("not version 1")
	}
	if len(b) > MaxXattrSet {
		return bad("over the limit")
	}
	var m map[string][]byte
	last := ""
	for b = b[1:]; len(b) > 0; {
		n := int(b[0])
		if n == 0 || len(b) < 1+n+4 {
			return bad("short name")
		}
		k := string(b[1 : 1+n])
		vn := int(binary.BigEndian.Uint32(b[1+n:]))
		if vn > MaxXattrValue || len(b) < 1+n+4+vn {
			return bad("short value")
		}
		if m != nil && k <= last {
			return bad("names out of order")
		}
		if m == nil {
			m = map[string][]byte{}
		}
		m[k] = bytes.Clone(b[1+n+4 : 1+n+4+vn])
		if m[k] == nil {
			m[k] = []byte{}
		}
		last, b = k, b[1+n+4+vn:]
	}
	return m, nil
}

// addMetadata puts the set into object metadata m.
func (x *xattrSet) addMetadata(m map[string]string) {
	switch {
	case x == nil:
	case x.ref != "":
		m[metaXattrRef] = x.ref
	case x.bad != "":
		m[metaXattr] = x.bad
	case len(x.m) > 0:
		m[metaXattr] = base64.StdEncoding.EncodeToString(encodeXattrs(x.m))
	}
}

// xattrsFromMetadata reads the set object metadata carries (nil: none).
func xattrsFromMetadata(md map[string]string) *xattrSet {
	if ref := md[metaXattrRef]; ref != "" {
		if b, err := hex.DecodeString(ref); err == nil && len(b) == sha256.Size && ref == hex.EncodeToString(b) {
			return &xattrSet{ref: ref}
		}
		return &xattrSet{bad: ref} // reported at the first read
	}
	v := md[metaXattr]
	if v == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return &xattrSet{bad: v}
	}
	m, err := decodeXattrs(b)
	if err != nil {
		return &xattrSet{bad: v}
	}
	if m == nil {
		return nil
	}
	return &xattrSet{m: m}
}

func xattrKey(ref string) string { return xattrPrefix + ref[:2] + "/" + ref }

// sidecars caches the sets read from sidecar objects, by hash.
type sidecars struct {
	mu   sync.Mutex
	sets map[string]map[string][]byte
}

// sidecarCacheSize bounds the cache; it starts afresh when full.
const sidecarCacheSize = 4096

func (c *sidecars) get(ref string) (map[string][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.sets[ref]
	return m, ok
}

func (c *sidecars) put(ref string, m map[string][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets == nil || len(c.sets) >= sidecarCacheSize {
		c.sets = map[string]map[string][]byte{}
	}
	c.sets[ref] = m
}

// xattrsOf returns the set x names, reading its sidecar if it has one.
// The map is shared: callers do not change it.
func (m *Manager) xattrsOf(ctx context.Context, x *xattrSet) (map[string][]byte, error) {
	switch {
	case x == nil:
		return nil, nil
	case x.m != nil:
		return x.m, nil
	case x.bad != "":
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("%w: metadata %q does not decode", errXattrCorrupt, x.bad))
	}
	if set, ok := m.sidecars.get(x.ref); ok {
		return set, nil
	}
	key := xattrKey(x.ref)
	rc, err := m.opts.Store.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("extended attributes %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxXattrSet+1))
	if err != nil {
		return nil, fmt.Errorf("extended attributes %s: %w", key, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != x.ref {
		return nil, errkind.Mark(errkind.Corrupt, fmt.Errorf("%w: %s does not hash to its name", errXattrCorrupt, key))
	}
	set, err := decodeXattrs(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if set == nil {
		set = map[string][]byte{}
	}
	m.sidecars.put(x.ref, set)
	return set, nil
}

// sealXattrs makes a's metadata fit S3's limit: a set that does not fit
// beside the other attributes goes into its sidecar object (put first, so
// that metadata never names a sidecar that is not there) and the metadata
// names it. The caller calls release once the metadata naming the sidecar
// is in the store, or will not be: until then the sidecar is not
// collected (xattrgc.go).
func (m *Manager) sealXattrs(ctx context.Context, a *Attr) (release func(), err error) {
	x := a.xa
	switch {
	case x == nil || x.bad != "":
		return func() {}, nil
	case x.ref != "":
		return m.sidecarUses.use(x.ref, m.opts.Clock), nil
	case len(x.m) == 0:
		return func() {}, nil
	}
	n := 0
	for k, v := range a.metadata() {
		n += len(k) + len(v)
	}
	if n <= objstore.MaxMetadataBytes {
		return func() {}, nil
	}
	b := encodeXattrs(x.m)
	sum := sha256.Sum256(b)
	ref := hex.EncodeToString(sum[:])
	key := xattrKey(ref)
	// Registered before it is looked for: a collection either keeps it or
	// has deleted it by then, and it is put again.
	release = m.sidecarUses.use(ref, m.opts.Clock)
	exists, err := statExists(ctx, m.opts.Store, key)
	if err != nil {
		release()
		return nil, err
	}
	if !exists {
		if err := m.opts.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			release()
			return nil, fmt.Errorf("extended attributes %s: %w", key, err)
		}
	}
	m.sidecars.put(ref, x.m)
	a.xa = &xattrSet{m: x.m, ref: ref}
	return release, nil
}

// Xattrs returns p's extended attributes by name (nil: none). The map is
// the caller's.
func (s *Share) Xattrs(ctx context.Context, p string) (map[string][]byte, error) {
	a, err := s.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if a.xa == nil {
		return nil, nil // no store call: the attributes say there are none
	}
	set, err := s.m.xattrsOf(ctx, a.xa)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return maps.Clone(set), nil
}

// Xattr returns one extended attribute of p (ErrNoXattr: none of that
// name).
func (s *Share) Xattr(ctx context.Context, p, name string) ([]byte, error) {
	a, err := s.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if a.xa == nil {
		return nil, ErrNoXattr
	}
	set, err := s.m.xattrsOf(ctx, a.xa)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	v, ok := set[name]
	if !ok {
		return nil, ErrNoXattr
	}
	return bytes.Clone(v), nil
}

// SetXattr sets an extended attribute of p; it returns once the change is
// durable, or written to the log's file when ctx asks for Written
// (WithDurability).
func (s *Share) SetXattr(ctx context.Context, p, name string, value []byte, flags XattrFlags) error {
	if name == "" || len(name) > MaxXattrName {
		return fmt.Errorf("extended attribute name of %d bytes: %w", len(name), ErrInvalid)
	}
	if len(value) > MaxXattrValue {
		return fmt.Errorf("extended attribute %s of %d bytes: %w", name, len(value), ErrXattrTooBig)
	}
	return s.changeXattrs(ctx, p, func(set map[string][]byte) error {
		_, ok := set[name]
		switch {
		case ok && flags&XattrCreate != 0:
			return fmt.Errorf("extended attribute %s: %w", name, ErrExist)
		case !ok && flags&XattrReplace != 0:
			return fmt.Errorf("extended attribute %s: %w", name, ErrNoXattr)
		}
		set[name] = bytes.Clone(value)
		if set[name] == nil {
			set[name] = []byte{}
		}
		return nil
	})
}

// RemoveXattr removes an extended attribute of p, as SetXattr sets one.
func (s *Share) RemoveXattr(ctx context.Context, p, name string) error {
	return s.changeXattrs(ctx, p, func(set map[string][]byte) error {
		if _, ok := set[name]; !ok {
			return fmt.Errorf("extended attribute %s: %w", name, ErrNoXattr)
		}
		delete(set, name)
		return nil
	})
}

// xattrLocks order the changes of one file's set: each reads the set,
// changes it and logs the whole new one.
var xattrLocks [64]sync.Mutex

// changeXattrs applies change to p's set and logs the new set.
func (s *Share) changeXattrs(ctx context.Context, p string, change func(map[string][]byte) error) error {
	p, err := cleanPath(p)
	if err != nil {
		return err
	}
	if err := s.writable(); err != nil {
		return err
	}
	a, err := s.Stat(ctx, p)
	if err != nil {
		return err
	}
	if a.Type == TypeSymlink {
		return fmt.Errorf("%s: extended attributes of a symbolic link: %w", p, ErrNotSupp)
	}
	l := &xattrLocks[a.Ino%uint64(len(xattrLocks))]
	l.Lock()
	defer l.Unlock()
	if a, err = s.Stat(ctx, p); err != nil { // as the last change left it
		return err
	}
	cur, err := s.m.xattrsOf(ctx, a.xa)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	set := maps.Clone(cur)
	if set == nil {
		set = map[string][]byte{}
	}
	if err := change(set); err != nil {
		return err
	}
	enc := encodeXattrs(set)
	if len(enc) > MaxXattrSet {
		return fmt.Errorf("%s: extended attributes of %d bytes, at most %d: %w", p, len(enc), MaxXattrSet, ErrXattrTooBig)
	}
	var x *xattrSet
	if len(set) > 0 {
		x = &xattrSet{m: set}
	}
	rec := record{typ: recXattrs, share: s.cfg.Name, ino: a.Ino, data: enc}
	return s.m.logAndApply(ctx, rec, func(lsn uploadbuffer.LSN) error {
		st := s.m.state(s, a.Ino, a)
		defer st.release()
		now := s.now()
		st.mu.Lock()
		st.attr.xa = x
		st.attr.Ctime = now
		st.touched(lsn, now)
		st.mu.Unlock()
		return nil
	})
}
