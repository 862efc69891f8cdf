package cache

import "sort"

// Extent is a byte range [Off, End) of a chunk.
type Extent struct{ Off, End int64 }

// extents is a set of byte ranges: sorted, neither overlapping nor
// touching.
type extents []Extent

// add returns x with [off, end) added.
func (x extents) add(off, end int64) extents {
	if off >= end {
		return x
	}
	// The first extent that ends at or after off may merge with it, and
	// so may every one after it that starts at or before end.
	i := sort.Search(len(x), func(i int) bool { return x[i].End >= off })
	j := i
	for j < len(x) && x[j].Off <= end {
		off, end = min(off, x[j].Off), max(end, x[j].End)
		j++
	}
	if i == j {
		x = append(x, Extent{})
		copy(x[i+1:], x[i:])
		x[i] = Extent{off, end}
		return x
	}
	x[i] = Extent{off, end}
	return append(x[:i+1], x[j:]...)
}

// covers reports whether [off, end) lies within one extent.
func (x extents) covers(off, end int64) bool {
	if off >= end {
		return true
	}
	i := sort.Search(len(x), func(i int) bool { return x[i].End > off })
	return i < len(x) && x[i].Off <= off && end <= x[i].End
}

// gaps returns the ranges of [0, size) outside x.
func (x extents) gaps(size int64) []Extent {
	var out []Extent
	at := int64(0)
	for _, e := range x {
		if e.Off > at {
			out = append(out, Extent{at, min(e.Off, size)})
		}
		at = max(at, e.End)
	}
	if at < size {
		out = append(out, Extent{at, size})
	}
	return out
}

// clone returns a copy of x that does not share its array.
func (x extents) clone() []Extent { return append([]Extent(nil), x...) }

// AddExtent returns x (sorted, neither overlapping nor touching, as the
// cache keeps extents) with [off, end) added; x's array may be reused.
func AddExtent(x []Extent, off, end int64) []Extent { return extents(x).add(off, end) }
