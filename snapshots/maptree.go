package snapshots

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// A volume's chunk map in the object store is a two-level tree: map pages,
// each holding the ids of up to PageEntries consecutive chunk indexes, stored
// as content-addressed sealed objects under maps/, and a manifest listing
// the pages. Equal pages have equal ids, so a new manifest re-uploads only
// the pages that changed. docs/format.md gives the byte layout.

// PageEntries is how many chunk indexes one map page covers.
const PageEntries = 4096

// Page entry encoding (plaintext, big-endian): "GWMP", version 1, 3 zero
// bytes, first chunk index (uint64), entry count (uint32), then per entry
// the offset from the first index (uint32, strictly increasing, below
// PageEntries) and the 32-byte chunk id. Absent indexes are holes.
const (
	pageMagic      = "GWMP"
	pageVersion    = 1
	pageHeaderLen  = 20
	pageEntryLen   = 4 + 32
	maxPagePlain   = pageHeaderLen + PageEntries*pageEntryLen
	maxManifestLen = 64 << 20
)

// Page is one map page: the chunk ids of indexes First .. First+PageEntries-1
// that are not holes.
type Page struct {
	First   uint64
	Entries map[uint32]ChunkID // offset from First -> chunk id
}

// EncodePage serialises p deterministically (sorted offsets).
func EncodePage(p Page) ([]byte, error) {
	if p.First%PageEntries != 0 {
		return nil, fmt.Errorf("map page starts at %d, not a multiple of %d", p.First, PageEntries)
	}
	offs := make([]uint32, 0, len(p.Entries))
	for o := range p.Entries {
		if o >= PageEntries {
			return nil, fmt.Errorf("map page offset %d out of range", o)
		}
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	b := make([]byte, pageHeaderLen, pageHeaderLen+len(offs)*pageEntryLen)
	copy(b, pageMagic)
	b[4] = pageVersion
	binary.BigEndian.PutUint64(b[8:], p.First)
	binary.BigEndian.PutUint32(b[16:], uint32(len(offs)))
	for _, o := range offs {
		id := p.Entries[o]
		b = binary.BigEndian.AppendUint32(b, o)
		b = append(b, id[:]...)
	}
	return b, nil
}

// DecodePage parses a page; anything malformed is corrupt.
func DecodePage(b []byte) (Page, error) {
	bad := func(why string) (Page, error) {
		return Page{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("map page: %s", why))
	}
	if len(b) < pageHeaderLen || string(b[:4]) != pageMagic || b[4] != pageVersion || b[5]|b[6]|b[7] != 0 {
		return bad("bad header")
	}
	p := Page{First: binary.BigEndian.Uint64(b[8:]), Entries: map[uint32]ChunkID{}}
	n := int(binary.BigEndian.Uint32(b[16:]))
	if p.First%PageEntries != 0 || n > PageEntries || len(b) != pageHeaderLen+n*pageEntryLen {
		return bad("bad length or first index")
	}
	prev := int64(-1)
	for i := 0; i < n; i++ {
		e := b[pageHeaderLen+i*pageEntryLen:]
		o := binary.BigEndian.Uint32(e)
		if int64(o) <= prev || o >= PageEntries {
			return bad("offsets out of order or range")
		}
		prev = int64(o)
		var id ChunkID
		copy(id[:], e[4:36])
		p.Entries[o] = id
	}
	return p, nil
}

// SealPage encodes and encrypts a page; its id is the keyed hash of the
// plaintext, so equal pages are stored once.
func (c *Codec) SealPage(p Page) (ChunkID, []byte, error) {
	plain, err := EncodePage(p)
	if err != nil {
		return ChunkID{}, nil, err
	}
	id := c.ID(plain)
	blob, err := c.frame.seal(objectMapPage, id[:], plain)
	return id, blob, err
}

// OpenPage authenticates and decodes a page stored under id.
func (c *Codec) OpenPage(id ChunkID, blob []byte) (Page, error) {
	plain, err := c.frame.open(objectMapPage, id[:], blob)
	if err != nil {
		return Page{}, err
	}
	if c.ID(plain) != id {
		return Page{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("map page %s: content does not match its id", id))
	}
	return DecodePage(plain)
}

// PageKey is where a page is stored: maps/<aa>/<id>.
func PageKey(id ChunkID) string { s := id.String(); return "maps/" + s[:2] + "/" + s }

// Manifest describes a volume's data at one point: its pages.
type Manifest struct {
	Version    int       `json:"version"`
	Kind       string    `json:"kind"` // "recovery-point" (a cached volume's head) or "snapshot"
	VolumeID   string    `json:"volume_id"`
	VolumeName string    `json:"volume_name"`
	Size       int64     `json:"size"`
	ChunkSize  int       `json:"chunk_size"`
	Created    time.Time `json:"created"`
	Pages      []PageRef `json:"pages"` // sorted by First; pages that are all holes are absent
	Parent     string    `json:"parent,omitempty"`
	// Snapshots only: what the user or the schedule said of it.
	Description string `json:"description,omitempty"`
	Schedule    string `json:"schedule,omitempty"` // set when a schedule took it ("every 1h0m0s")
	VolumeKind  string `json:"volume_kind,omitempty"`
	// Lock, on a locked snapshot, is its Object Lock retention: the
	// manifest and every page and chunk it names are retained at least
	// until Lock.Until, in Lock.Mode.
	Lock *objstore.Retention `json:"lock,omitempty"`
}

// PageRef names one page of a manifest.
type PageRef struct {
	First uint64  `json:"first"`
	ID    ChunkID `json:"id"`
}

// MarshalText writes a chunk id as hex in JSON.
func (id ChunkID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads a hex chunk id.
func (id *ChunkID) UnmarshalText(b []byte) error {
	v, err := ParseChunkID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// SealManifest encrypts m bound to the object key it is stored under, so a
// manifest moved to another name does not open.
func (c *Codec) SealManifest(key string, m Manifest) ([]byte, error) {
	if len(key) > maxBindingLen {
		return nil, fmt.Errorf("manifest key %q longer than %d bytes", key, maxBindingLen)
	}
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(plain) > maxManifestLen || len(plain) > c.frame.maxPlain {
		return nil, errors.New("manifest too large")
	}
	return c.frame.seal(objectManifest, []byte(key), plain)
}

// OpenManifest authenticates and decodes the manifest stored under key.
func (c *Codec) OpenManifest(key string, blob []byte) (Manifest, error) {
	var m Manifest
	plain, err := c.frame.open(objectManifest, []byte(key), blob)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(plain, &m); err != nil {
		return m, errkind.Mark(errkind.Corrupt, fmt.Errorf("manifest %s: %w", key, err))
	}
	if m.Version != 1 || m.ChunkSize <= 0 || m.Size < 0 {
		return m, errkind.Mark(errkind.Corrupt, fmt.Errorf("manifest %s: unsupported version %d or bad geometry", key, m.Version))
	}
	return m, nil
}
