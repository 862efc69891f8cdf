package uploadbuffer

import "hash/crc32"

// A record's CRC-32C covers its header's LSN and durable mark, which the
// writer fills in, and then its data. For a large record the caller
// computes the data's CRC before queueing it (in parallel with other
// callers) and the writer combines it with the header's, so that the
// one writer goroutine does not read every byte once more before writing
// it. crcCombine is zlib's crc32_combine for the Castagnoli polynomial.

// castagnoliReflected is the CRC-32C polynomial, bit-reversed as the
// table-driven CRC uses it.
const castagnoliReflected = 0x82f63b78

// x2n[k] is x^(2^k) modulo the polynomial.
var x2n = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// multModP is a*b modulo the polynomial (reflected bit order).
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReflected
		} else {
			b >>= 1
		}
	}
}

// crcCombine returns the CRC-32C of a followed by b from crcA, the
// CRC-32C of a, crcB, that of b, and the length of b.
func crcCombine(crcA, crcB uint32, lenB int) uint32 {
	// p = x^(8*lenB), from x^0 and the bits of lenB.
	p := uint32(1) << 31
	for n, k := uint64(lenB), 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = multModP(x2n[k&31], p)
		}
	}
	return multModP(p, crcA) ^ crcB
}

// dataCRC is the CRC-32C of a record's data, computed by the caller of an
// append when the writer is to combine it (a record of directWrite
// bytes or more; smaller ones are copied into the writer's buffer, where
// the CRC costs little more).
func dataCRC(rec []byte) (crc uint32, ok bool) {
	if len(rec) < directWrite {
		return 0, false
	}
	return crc32.Checksum(rec, castagnoli), true
}
