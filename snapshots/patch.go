package snapshots

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/gatewayd/gatewayd/errkind"
)

// A patch is the bytes written to a few ranges of one chunk of one volume
// since the chunk was last uploaded whole: a small write to a large chunk
// uploads a patch instead of the chunk (docs/format.md, "Patch objects").
// A patch applies over one base (a chunk id, or a hole) at one position of
// the chunk's patch list, and says so in its plaintext, so that a patch of
// one volume, chunk or generation never applies to another: OpenPatch
// refuses it.

// PatchTarget is where a patch applies: the volume, the chunk index, the
// chunk size, the base the patch list starts from and the patch's position
// in the list.
type PatchTarget struct {
	Volume    string
	Index     uint64
	ChunkSize int
	Base      ChunkID // the base chunk; zero when BaseHole
	BaseHole  bool
	Seq       int // 0 for the first patch over Base
}

// PatchExtent is one range of a patch: Data is written at Off.
type PatchExtent struct {
	Off  int
	Data []byte
}

// Patch is a decoded patch object.
type Patch struct {
	Target  PatchTarget
	Extents []PatchExtent // sorted, neither overlapping nor touching, none empty
}

const (
	patchMagic     = "GWPT"
	patchVersion   = 1
	patchFlagHole  = 0x01
	patchHeaderLen = 4 + 1 + 1 + 2 + 8 + 4 + 4 + 32 + 1
	// MaxPatchVolumeID bounds the volume id a patch names.
	MaxPatchVolumeID = 64
)

// EncodePatch returns the plaintext of p.
func EncodePatch(p Patch) ([]byte, error) {
	t := p.Target
	if len(t.Volume) == 0 || len(t.Volume) > MaxPatchVolumeID {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("patch: volume id of %d bytes", len(t.Volume)))
	}
	if t.ChunkSize <= 0 || t.ChunkSize > MaxChunkSize || t.Seq < 0 {
		return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("patch: chunk size %d, position %d", t.ChunkSize, t.Seq))
	}
	n := patchHeaderLen + len(t.Volume) + 4
	for _, x := range p.Extents {
		n += 8 + len(x.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, patchMagic...)
	var flags byte
	if t.BaseHole {
		flags |= patchFlagHole
	}
	b = append(b, patchVersion, flags, 0, 0)
	b = binary.BigEndian.AppendUint64(b, t.Index)
	b = binary.BigEndian.AppendUint32(b, uint32(t.ChunkSize))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Seq))
	if t.BaseHole {
		b = append(b, make([]byte, 32)...)
	} else {
		b = append(b, t.Base[:]...)
	}
	b = append(b, byte(len(t.Volume)))
	b = append(b, t.Volume...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(p.Extents)))
	end := -1
	for _, x := range p.Extents {
		if len(x.Data) == 0 || x.Off <= end || x.Off+len(x.Data) > t.ChunkSize {
			return nil, errkind.Mark(errkind.Permanent, fmt.Errorf("patch: extent [%d,%d) out of order or outside the %d-byte chunk", x.Off, x.Off+len(x.Data), t.ChunkSize))
		}
		end = x.Off + len(x.Data)
		b = binary.BigEndian.AppendUint32(b, uint32(x.Off))
		b = binary.BigEndian.AppendUint32(b, uint32(len(x.Data)))
		b = append(b, x.Data...)
	}
	return b, nil
}

// DecodePatch parses a patch plaintext; anything malformed is corrupt.
func DecodePatch(b []byte) (Patch, error) {
	bad := func(format string, args ...any) (Patch, error) {
		return Patch{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("patch: "+format, args...))
	}
	if len(b) < patchHeaderLen || string(b[:4]) != patchMagic {
		return bad("not a patch (%d bytes)", len(b))
	}
	if b[4] != patchVersion {
		return bad("unknown version %d", b[4])
	}
	flags := b[5]
	if flags&^patchFlagHole != 0 || b[6] != 0 || b[7] != 0 {
		return bad("unknown flags or reserved bytes set")
	}
	var p Patch
	t := &p.Target
	t.Index = binary.BigEndian.Uint64(b[8:])
	t.ChunkSize = int(binary.BigEndian.Uint32(b[16:]))
	t.Seq = int(binary.BigEndian.Uint32(b[20:]))
	copy(t.Base[:], b[24:56])
	t.BaseHole = flags&patchFlagHole != 0
	if t.BaseHole && t.Base != (ChunkID{}) {
		return bad("hole base with a base id")
	}
	if t.ChunkSize <= 0 || t.ChunkSize > MaxChunkSize {
		return bad("chunk size %d", t.ChunkSize)
	}
	vl := int(b[56])
	rest := b[patchHeaderLen:]
	if vl == 0 || vl > MaxPatchVolumeID || len(rest) < vl+4 {
		return bad("volume id of %d bytes", vl)
	}
	t.Volume = string(rest[:vl])
	rest = rest[vl:]
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n)*8 > uint64(len(rest)) {
		return bad("%d extents in %d bytes", n, len(rest))
	}
	p.Extents = make([]PatchExtent, 0, n)
	end := -1
	for range n {
		if len(rest) < 8 {
			return bad("truncated extent")
		}
		off, l := binary.BigEndian.Uint32(rest), binary.BigEndian.Uint32(rest[4:])
		rest = rest[8:]
		if l == 0 || int64(off) <= int64(end) || uint64(off)+uint64(l) > uint64(t.ChunkSize) || uint64(l) > uint64(len(rest)) {
			return bad("extent [%d,+%d) empty, out of order or outside the chunk", off, l)
		}
		p.Extents = append(p.Extents, PatchExtent{Off: int(off), Data: rest[:l]})
		end = int(off + l)
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return bad("%d bytes after the last extent", len(rest))
	}
	return p, nil
}

// SealPatch encodes and encrypts a patch. Its id is the keyed hash of the
// plaintext (which names the volume, chunk, base and position), so a patch
// is content-addressed like a chunk.
func (c *Codec) SealPatch(p Patch) (ChunkID, []byte, error) {
	plain, err := EncodePatch(p)
	if err != nil {
		return ChunkID{}, nil, err
	}
	id := c.ID(plain)
	blob, err := c.frame.seal(objectPatch, id[:], plain)
	return id, blob, err
}

// OpenPatch authenticates blob as the patch named id and checks that it
// applies where want says: the same volume, chunk, chunk size, base and
// position. Anything else is corrupt, never data.
func (c *Codec) OpenPatch(id ChunkID, blob []byte, want PatchTarget) (Patch, error) {
	plain, err := c.frame.open(objectPatch, id[:], blob)
	if err != nil {
		return Patch{}, fmt.Errorf("patch %v: %w", id, err)
	}
	if c.ID(plain) != id {
		return Patch{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("patch %v: content does not match its id", id))
	}
	p, err := DecodePatch(plain)
	if err != nil {
		return Patch{}, fmt.Errorf("patch %v: %w", id, err)
	}
	if got := p.Target; got.Volume != want.Volume || got.Index != want.Index || got.ChunkSize != want.ChunkSize ||
		got.BaseHole != want.BaseHole || !bytes.Equal(got.Base[:], want.Base[:]) || got.Seq != want.Seq {
		return Patch{}, errkind.Mark(errkind.Corrupt, fmt.Errorf(
			"patch %v: written for volume %s chunk %d (size %d) at position %d over %v, read for volume %s chunk %d (size %d) at position %d over %v",
			id, got.Volume, got.Index, got.ChunkSize, got.Seq, baseName(got), want.Volume, want.Index, want.ChunkSize, want.Seq, baseName(want)))
	}
	return p, nil
}

func baseName(t PatchTarget) string {
	if t.BaseHole {
		return "a hole"
	}
	return t.Base.String()
}

// Apply writes the patch's extents into chunk, which is the chunk's
// content before the patch (ChunkSize bytes).
func (p Patch) Apply(chunk []byte) {
	for _, x := range p.Extents {
		copy(chunk[x.Off:], x.Data)
	}
}

// PatchKey is where a patch is stored: patches/<aa>/<id>.
func PatchKey(id ChunkID) string { s := id.String(); return "patches/" + s[:2] + "/" + s }
