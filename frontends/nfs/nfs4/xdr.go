package nfs4

import "encoding/binary"

// dec reads XDR (RFC 4506); bad is set once the input runs out or a
// length is over its bound, and every read after returns zeros.
type dec struct {
	b    []byte
	bad  bool
	size int // of the whole input, when known (at)
}

// at is where the next read starts in the whole input.
func (d *dec) at() int { return d.size - len(d.b) }

func (d *dec) u32() uint32 {
	if d.bad || len(d.b) < 4 {
		d.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dec) u64() uint64 { return uint64(d.u32())<<32 | uint64(d.u32()) }

// bool reads an XDR bool: 0 or 1, anything else is bad.
func (d *dec) bool() bool {
	v := d.u32()
	if v > 1 {
		d.bad = true
	}
	return v == 1
}

// fixed reads n bytes of fixed-length opaque data and its padding.
func (d *dec) fixed(n int) []byte {
	padded := (n + 3) &^ 3
	if d.bad || padded > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[padded:]
	return v
}

// opaque reads variable-length opaque data of at most max bytes.
func (d *dec) opaque(max int) []byte {
	n := d.u32()
	if d.bad || n > uint32(max) {
		d.bad = true
		return nil
	}
	return d.fixed(int(n))
}

// count reads an array's length, at most max elements of at least min
// bytes each (so a length the input cannot hold is bad at once).
func (d *dec) count(max int, min int) int {
	n := d.u32()
	if d.bad || n > uint32(max) || int(n)*min > len(d.b) {
		d.bad = true
		return 0
	}
	return int(n)
}

// bitmap reads a bitmap4 of at most maxBitmap words.
func (d *dec) bitmap() bitmap {
	n := d.count(maxBitmap, 4)
	var m bitmap
	for i := 0; i < n; i++ {
		m = append(m, d.u32())
	}
	return m
}

// enc writes XDR.
type enc struct{ b []byte }

func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *enc) bool(v bool) {
	if v {
		e.u32(1)
	} else {
		e.u32(0)
	}
}

// fixed writes fixed-length opaque data and its padding.
func (e *enc) fixed(v []byte) {
	e.b = append(e.b, v...)
	e.b = append(e.b, make([]byte, (4-len(v)%4)%4)...)
}

func (e *enc) opaque(v []byte) {
	e.u32(uint32(len(v)))
	e.fixed(v)
}

func (e *enc) str(v string) {
	e.u32(uint32(len(v)))
	e.b = append(e.b, v...)
	e.b = append(e.b, make([]byte, (4-len(v)%4)%4)...)
}

func (e *enc) bitmap(m bitmap) {
	e.u32(uint32(len(m)))
	for _, w := range m {
		e.u32(w)
	}
}

// bitmap is a bitmap4: bit n of word n/32.
type bitmap []uint32

// maxBitmap is the most words of a bitmap4 read: attributes and
// operations this server knows fit in 3.
const maxBitmap = 8

func (m bitmap) has(n int) bool { return n/32 < len(m) && m[n/32]&(1<<(n%32)) != 0 }

func (m *bitmap) set(n int) {
	for len(*m) <= n/32 {
		*m = append(*m, 0)
	}
	(*m)[n/32] |= 1 << (n % 32)
}

// bits lists the bits set, in order.
func (m bitmap) bits() []int {
	var v []int
	for i, w := range m {
		for j := 0; j < 32; j++ {
			if w&(1<<j) != 0 {
				v = append(v, i*32+j)
			}
		}
	}
	return v
}
