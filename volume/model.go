package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/snapshots"
)

// Kind is where a volume's primary data lives.
type Kind string

const (
	// Cached volumes keep primary data in the object store.
	Cached Kind = "cached"
	// Stored volumes keep primary data on a local file or block device.
	Stored Kind = "stored"
)

// Info describes a volume; it is what meta keeps.
type Info struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      Kind      `json:"kind"`
	Size      int64     `json:"size"`
	ChunkSize int       `json:"chunk_size"`
	Disk      string    `json:"disk,omitempty"`      // stored: the local file or device
	OwnsDisk  bool      `json:"owns_disk,omitempty"` // stored: the gateway created Disk and removes it on delete
	Created   time.Time `json:"created"`
	// FromSnapshot is the snapshot the volume was restored from.
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// HydrationTotal is how many chunks a restored stored volume had to
	// copy onto its disk.
	HydrationTotal int `json:"hydration_total,omitempty"`
	// WriteCache is the volume's volatile write cache (write-back): a
	// write is acknowledged once applied and is durable at the next Flush
	// (SYNCHRONIZE CACHE) or when written through (FUA). Off (the
	// default), every write is durable when acknowledged.
	WriteCache bool `json:"write_cache"`
}

// Errors callers tell apart.
var (
	ErrNotFound   = errkind.Mark(errkind.NotFound, errors.New("no such volume"))
	ErrExists     = errkind.Mark(errkind.Permanent, errors.New("a volume with that name exists"))
	ErrOutOfRange = errkind.Mark(errkind.Permanent, errors.New("I/O beyond the end of the volume"))
	ErrClosed     = errkind.Mark(errkind.Permanent, errors.New("volume manager is closed"))
)

// Meta key layout.
//
//	vol/<id>                 JSON Info
//	vmap/<id>/<index BE64>   32-byte chunk id of the uploaded chunk (absent: hole),
//	                         or a patched entry: base and patches (patch.go)
//	vdirty/<id>/<index BE64> empty: stored-volume chunk changed, not yet uploaded
//	vhyd/<id>/<index BE64>   empty: restored stored-volume chunk not yet on the disk
//	snap/<snapshot id>       JSON SnapshotInfo
func infoKey(id string) []byte { return []byte("vol/" + id) }

func mapPrefix(id string) []byte { return []byte("vmap/" + id + "/") }

func mapKey(id string, index uint64) []byte { return binaryKey(mapPrefix(id), index) }

func binaryKey(prefix []byte, index uint64) []byte {
	return binary.BigEndian.AppendUint64(prefix, index)
}

func dirtyPrefix(id string) []byte { return []byte("vdirty/" + id + "/") }

func dirtyKey(id string, index uint64) []byte {
	return binary.BigEndian.AppendUint64(dirtyPrefix(id), index)
}

func indexFromKey(prefix, key []byte) (uint64, error) {
	if len(key) != len(prefix)+8 {
		return 0, errkind.Mark(errkind.Corrupt, fmt.Errorf("volume: malformed meta key %q", key))
	}
	return binary.BigEndian.Uint64(key[len(prefix):]), nil
}

// iterateMap calls fn for each map entry of a volume, in index order.
func iterateMap(tx meta.Txn, volumeID string, fn func(index uint64, e chunkEntry) error) error {
	prefix := mapPrefix(volumeID)
	return tx.Iterate(prefix, func(k, val []byte) error {
		index, err := indexFromKey(prefix, k)
		if err != nil {
			return err
		}
		e, err := parseEntry(val)
		if err != nil {
			return err
		}
		return fn(index, e)
	})
}

func parseChunkID(b []byte) (snapshots.ChunkID, error) {
	var id snapshots.ChunkID
	if len(b) != len(id) {
		return id, errkind.Mark(errkind.Corrupt, fmt.Errorf("volume: chunk map entry of %d bytes", len(b)))
	}
	copy(id[:], b)
	return id, nil
}

// Log record layout (all integers big-endian):
//
//	type   1 byte   1 = write, 2 = unmap
//	idlen  1 byte
//	id     idlen bytes (volume id)
//	offset 8 bytes
//	length 8 bytes
//	data   length bytes (write only)
const (
	recWrite byte = 1
	recUnmap byte = 2
)

type record struct {
	typ    byte
	volume string
	offset int64
	length int64
	data   []byte // write: aliases the encoded record
}

// recordDataOffset is where a write record's data starts in it: the cache
// reads the written bytes back from there until they are uploaded.
func recordDataOffset(volume string) int64 { return int64(18 + len(volume)) }

func encodeRecord(typ byte, volume string, offset int64, data []byte, length int64) []byte {
	b := make([]byte, 0, recordDataOffset(volume)+int64(len(data)))
	b = append(b, typ, byte(len(volume)))
	b = append(b, volume...)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint64(b, uint64(length))
	return append(b, data...)
}

func decodeRecord(b []byte) (record, error) {
	bad := func(why string) (record, error) {
		return record{}, errkind.Mark(errkind.Corrupt, fmt.Errorf("volume: bad log record: %s", why))
	}
	if len(b) < 2 {
		return bad("short")
	}
	r := record{typ: b[0]}
	n := int(b[1])
	if r.typ != recWrite && r.typ != recUnmap {
		return bad(fmt.Sprintf("type %d", r.typ))
	}
	if len(b) < 2+n+16 {
		return bad("short header")
	}
	r.volume = string(b[2 : 2+n])
	r.offset = int64(binary.BigEndian.Uint64(b[2+n:]))
	r.length = int64(binary.BigEndian.Uint64(b[10+n:]))
	rest := b[recordDataOffset(r.volume):]
	if r.offset < 0 || r.length < 0 {
		return bad("negative range")
	}
	if r.typ == recWrite {
		if int64(len(rest)) != r.length {
			return bad("length mismatch")
		}
		r.data = rest
	} else if len(rest) != 0 {
		return bad("unmap with data")
	}
	return r, nil
}
