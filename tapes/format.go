package tapes

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/keys"
)

// docs/tapes.md specifies every structure in this file byte by byte; keep
// the two in step.

const (
	sealMagic     = "GWTP"
	sealVersion   = 1
	sealHeaderLen = 24
	sealTagLen    = 16
	// sealOverhead is what sealing adds to a payload.
	sealOverhead = sealHeaderLen + sealTagLen

	kindBlock = 1 // one record's payload, in a segment
	kindPage  = 2 // an index page
	kindRoot  = 3 // the index root

	sealFlagZstd = 0x01 // block payload is a zstd frame of the record

	// entrySize is one index entry on the wire.
	entrySize = 21

	// PageObjects is how many logical objects one index page covers.
	PageObjects = 4096

	// MaxRecord is the largest record a tape takes (SSC block lengths are
	// 24-bit).
	MaxRecord = 1<<24 - 1

	hkdfInfo = "gatewayd tapes v1"
)

// entry flags (index entries).
const (
	entFilemark = 0x01
	entZstd     = 0x02
)

// sealer seals and opens the encrypted objects of tapes with AES-256-GCM
// under a key derived from the repository's data key.
type sealer struct {
	keyID string
	aead  cipher.AEAD
}

func newSealer(dk keys.DataKey) (*sealer, error) {
	var zero [32]byte
	if dk.Encryption == zero {
		return nil, errkind.Mark(errkind.Permanent, errors.New("tapes: all-zero data key"))
	}
	k, err := hkdf.Key(sha256.New, dk.Encryption[:], nil, hkdfInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{keyID: dk.ID, aead: aead}, nil
}

// seal returns header || ciphertext || tag of payload, authenticated
// together with binding.
func (s *sealer) seal(kind, flags byte, binding, payload []byte) []byte {
	return s.sealTo(make([]byte, 0, sealHeaderLen+len(payload)+sealTagLen), kind, flags, binding, payload)
}

// sealTo is seal appending the sealed object to dst (a segment being
// filled: no copy of the block on the way).
func (s *sealer) sealTo(dst []byte, kind, flags byte, binding, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, sealHeaderLen)...)
	out := dst[start:]
	copy(out, sealMagic)
	out[4] = sealVersion
	out[5] = kind
	out[6] = flags
	binary.BigEndian.PutUint32(out[8:], uint32(len(payload)))
	if _, err := rand.Read(out[12:24]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	var adBuf [sealHeaderLen + 64]byte
	ad := append(append(adBuf[:0], out[:sealHeaderLen]...), binding...)
	return s.aead.Seal(dst, out[12:24], payload, ad)
}

// open authenticates blob as an object of kind bound to binding and
// returns its payload and flags. Anything else is an error marked
// errkind.Corrupt, never data.
func (s *sealer) open(kind byte, binding, blob []byte) ([]byte, byte, error) {
	if len(blob) < sealOverhead {
		return nil, 0, corruptf("%d bytes is shorter than a sealed object", len(blob))
	}
	h := blob[:sealHeaderLen]
	switch {
	case string(h[:4]) != sealMagic:
		return nil, 0, corruptf("bad magic %q", h[:4])
	case h[4] != sealVersion:
		return nil, 0, corruptf("unknown version %d", h[4])
	case h[5] != kind:
		return nil, 0, corruptf("object kind %d, want %d", h[5], kind)
	case h[6]&^sealFlagZstd != 0 || h[7] != 0:
		return nil, 0, corruptf("unknown flags %#x/%#x", h[6], h[7])
	}
	n := binary.BigEndian.Uint32(h[8:])
	if int64(n) != int64(len(blob)-sealOverhead) {
		return nil, 0, corruptf("payload length %d in a %d-byte object", n, len(blob))
	}
	ad := append(append([]byte(nil), h...), binding...)
	plain, err := s.aead.Open(nil, h[12:24], blob[sealHeaderLen:], ad)
	if err != nil {
		return nil, 0, corruptf("authentication failed")
	}
	return plain, h[6], nil
}

// ErrCorrupt is wrapped (and marked errkind.Corrupt) by every error about
// stored tape data that does not authenticate or parse.
var ErrCorrupt = errors.New("tapes: corrupt tape data")

func corruptf(format string, args ...any) error {
	return errkind.Mark(errkind.Corrupt, fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...)))
}

func blockBinding(barcode string, seg uint64, off uint32, obj uint64) []byte {
	b := append([]byte(barcode), 0)
	b = binary.BigEndian.AppendUint64(b, seg)
	b = binary.BigEndian.AppendUint32(b, off)
	return binary.BigEndian.AppendUint64(b, obj)
}

func pageBinding(barcode string, page uint32, gen uint64) []byte {
	b := append([]byte(barcode), 0)
	b = binary.BigEndian.AppendUint32(b, page)
	return binary.BigEndian.AppendUint64(b, gen)
}

func rootBinding(barcode string) []byte { return append([]byte(barcode), 0) }

// Object keys, relative to the store.
func tapePrefix(barcode string) string { return "tapes/" + barcode + "/" }
func rootKey(barcode string) string    { return tapePrefix(barcode) + "index" }
func segKey(barcode string, seg uint64) string {
	return fmt.Sprintf("%sseg/%016x", tapePrefix(barcode), seg)
}
func pageKey(barcode string, page uint32, gen uint64) string {
	return fmt.Sprintf("%sidx/%08x-%016x", tapePrefix(barcode), page, gen)
}

// entry is one logical object in the index.
type entry struct {
	flags  byte
	size   uint32 // record length; 0 for a filemark
	stored uint32 // payload bytes in the segment (compressed size); counts against capacity
	seg    uint64 // segment holding the block (for a filemark: the segment open when it was written)
	off    uint32 // offset of the sealed block in the segment
}

func (e entry) filemark() bool { return e.flags&entFilemark != 0 }
func (e entry) sealedLen() int64 {
	if e.filemark() {
		return 0
	}
	return int64(e.stored) + sealOverhead
}

func appendEntry(b []byte, e entry) []byte {
	b = append(b, e.flags)
	b = binary.BigEndian.AppendUint32(b, e.size)
	b = binary.BigEndian.AppendUint32(b, e.stored)
	b = binary.BigEndian.AppendUint64(b, e.seg)
	return binary.BigEndian.AppendUint32(b, e.off)
}

func encodePage(es []entry) []byte {
	b := make([]byte, 0, 4+len(es)*entrySize)
	b = binary.BigEndian.AppendUint32(b, uint32(len(es)))
	for _, e := range es {
		b = appendEntry(b, e)
	}
	return b
}

func decodePage(b []byte, want int) ([]entry, error) {
	if len(b) < 4 {
		return nil, corruptf("index page of %d bytes", len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	if n != want || n > PageObjects || len(b) != 4+n*entrySize {
		return nil, corruptf("index page holds %d entries in %d bytes, want %d", n, len(b), want)
	}
	es := make([]entry, n)
	for i := range es {
		p := b[4+i*entrySize:]
		e := entry{flags: p[0], size: binary.BigEndian.Uint32(p[1:]), stored: binary.BigEndian.Uint32(p[5:]),
			seg: binary.BigEndian.Uint64(p[9:]), off: binary.BigEndian.Uint32(p[17:])}
		if e.flags&^(entFilemark|entZstd) != 0 || e.filemark() && (e.size != 0 || e.stored != 0) || e.size > MaxRecord || e.stored > MaxRecord+MaxRecord/8 {
			return nil, corruptf("index entry %d: bad fields", i)
		}
		es[i] = e
	}
	return es, nil
}

// pageInfo is what the root says about one page.
type pageInfo struct {
	gen       uint64 // generation of the page object in the store (0: never written)
	count     uint32 // objects in the page
	filemarks uint32
	used      int64 // stored bytes of the page's records
}

// segRun is a run of live segment ids, first..last inclusive.
type segRun struct{ first, last uint64 }

// root is the index root of a tape.
type root struct {
	keyID    string
	id       uint64 // the tape's incarnation: a barcode deleted and made again gets a new one
	capacity int64
	seq      uint64 // last log operation reflected
	gen      uint64
	nextSeg  uint64
	eod      uint64
	used     int64
	pages    []pageInfo
	runs     []segRun
	flags    byte // rootWORM
}

// Root versions: 1 has no flags; 2 ends with a flags byte. A root with no
// flag set is written as version 1, which every gatewayd reads.
const (
	rootVersion      = 1
	rootVersionFlags = 2
)

// rootWORM marks a WORM tape: nothing written to it is ever overwritten
// or erased (tape.wormCheck).
const rootWORM = 0x01

func encodeRoot(r *root) []byte {
	v := byte(rootVersion)
	if r.flags != 0 {
		v = rootVersionFlags
	}
	b := []byte{v, byte(len(r.keyID))}
	b = append(b, r.keyID...)
	b = binary.BigEndian.AppendUint64(b, r.id)
	b = binary.BigEndian.AppendUint64(b, uint64(r.capacity))
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = binary.BigEndian.AppendUint64(b, r.gen)
	b = binary.BigEndian.AppendUint64(b, r.nextSeg)
	b = binary.BigEndian.AppendUint64(b, r.eod)
	b = binary.BigEndian.AppendUint64(b, uint64(r.used))
	b = binary.BigEndian.AppendUint32(b, PageObjects)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.pages)))
	for _, p := range r.pages {
		b = binary.BigEndian.AppendUint64(b, p.gen)
		b = binary.BigEndian.AppendUint32(b, p.count)
		b = binary.BigEndian.AppendUint32(b, p.filemarks)
		b = binary.BigEndian.AppendUint64(b, uint64(p.used))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.runs)))
	for _, s := range r.runs {
		b = binary.BigEndian.AppendUint64(b, s.first)
		b = binary.BigEndian.AppendUint64(b, s.last)
	}
	if v == rootVersionFlags {
		b = append(b, r.flags)
	}
	return b
}

// reader is a bounds-checked big-endian reader for decoding.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return make([]byte, max(n, 0))
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}
func (r *reader) u8() byte    { return r.take(1)[0] }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func decodeRoot(b []byte) (*root, error) {
	rd := &reader{b: b}
	v := rd.u8()
	if v != rootVersion && v != rootVersionFlags {
		return nil, corruptf("index root version %d", v)
	}
	r := &root{keyID: string(rd.take(int(rd.u8())))}
	r.id = rd.u64()
	r.capacity = int64(rd.u64())
	r.seq, r.gen, r.nextSeg, r.eod = rd.u64(), rd.u64(), rd.u64(), rd.u64()
	r.used = int64(rd.u64())
	if ps := rd.u32(); ps != PageObjects && !rd.bad {
		return nil, corruptf("index page size %d, this gatewayd reads %d", ps, PageObjects)
	}
	np := rd.u32()
	if uint64(np)*24 > uint64(len(rd.b)) {
		return nil, corruptf("index root lists %d pages in %d bytes", np, len(rd.b))
	}
	var total uint64
	var used int64
	for i := uint32(0); i < np; i++ {
		p := pageInfo{gen: rd.u64(), count: rd.u32(), filemarks: rd.u32(), used: int64(rd.u64())}
		if p.count == 0 || p.count > PageObjects || p.filemarks > p.count || (i+1 < np && p.count != PageObjects) || p.used < 0 {
			return nil, corruptf("index root: page %d: bad counts", i)
		}
		total += uint64(p.count)
		used += p.used
		r.pages = append(r.pages, p)
	}
	nr := rd.u32()
	tail := uint64(0)
	if v == rootVersionFlags {
		tail = 1
	}
	if uint64(nr)*16+tail != uint64(len(rd.b)) {
		return nil, corruptf("index root: %d segment runs in %d bytes", nr, len(rd.b))
	}
	for i := uint32(0); i < nr; i++ {
		r.runs = append(r.runs, segRun{rd.u64(), rd.u64()})
	}
	if v == rootVersionFlags {
		if r.flags = rd.u8(); r.flags == 0 || r.flags&^rootWORM != 0 {
			return nil, corruptf("index root: flags %02x", r.flags)
		}
	}
	if rd.bad || total != r.eod || used != r.used || r.capacity <= 0 {
		return nil, corruptf("index root: inconsistent totals")
	}
	return r, nil
}

// Log records (the upload buffer's payloads).
const (
	opRecord    = 1
	opFilemarks = 2
	opErase     = 3
)

type logOp struct {
	op      byte
	flags   byte // entZstd for a compressed record
	barcode string
	tapeID  uint64 // root.id of the tape written
	seq     uint64
	at      uint64
	size    uint32 // record length (opRecord) or filemark count (opFilemarks)
	payload []byte // record payload as stored (compressed when flags say so)
}

func encodeLogOp(o logOp) []byte { return appendLogOp(make([]byte, 0, logOpLen(o)), o) }

// logOpLen is the length of o's log record.
func logOpLen(o logOp) int { return 3 + len(o.barcode) + 28 + len(o.payload) }

// appendLogOp appends o's log record to b.
func appendLogOp(b []byte, o logOp) []byte {
	b = append(b, o.op, o.flags, byte(len(o.barcode)))
	b = append(b, o.barcode...)
	b = binary.BigEndian.AppendUint64(b, o.tapeID)
	b = binary.BigEndian.AppendUint64(b, o.seq)
	b = binary.BigEndian.AppendUint64(b, o.at)
	b = binary.BigEndian.AppendUint32(b, o.size)
	return append(b, o.payload...)
}

func decodeLogOp(b []byte) (logOp, error) {
	rd := &reader{b: b}
	o := logOp{op: rd.u8(), flags: rd.u8()}
	o.barcode = string(rd.take(int(rd.u8())))
	o.tapeID = rd.u64()
	o.seq, o.at, o.size = rd.u64(), rd.u64(), rd.u32()
	o.payload = rd.b
	if rd.bad || o.op < opRecord || o.op > opErase || o.flags&^entZstd != 0 || o.op != opRecord && len(o.payload) > 0 {
		return o, errkind.Mark(errkind.Corrupt, fmt.Errorf("tapes: bad log record (%d bytes)", len(b)))
	}
	return o, nil
}
