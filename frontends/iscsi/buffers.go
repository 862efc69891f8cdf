package iscsi

import "sync"

// Data buffers: the data segments of SCSI Command and Data-Out PDUs and
// commands' data-out buffers come from pools of power-of-two sizes, 4 KiB
// to 1 MiB, instead of a new allocation for each.
//
// A buffer goes back to its pool only once nothing can read it any more:
// a Data-Out PDU's data segment once the reader has copied it into its
// command's buffer; a command's data-out buffer once the command has
// completed (its LU's Execute has returned), and only on a target whose
// LUs keep no reference to it after that (Target.ReuseDataOut). A buffer
// of any other command is left to the garbage collector.
const (
	minBufShift = 12
	maxBufShift = 20
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// bufClass is the pool for a buffer of n bytes, -1 for none (too large).
func bufClass(n int) int {
	if n > 1<<maxBufShift {
		return -1
	}
	c := 0
	for 1<<(minBufShift+c) < n {
		c++
	}
	return c
}

// getBuf returns a buffer of n bytes (its contents are not cleared) and,
// when it comes from a pool, the reference that returns it there.
func getBuf(n int) ([]byte, *[]byte) {
	c := bufClass(n)
	if c < 0 {
		return make([]byte, n), nil
	}
	if bp, ok := bufPools[c].Get().(*[]byte); ok {
		return (*bp)[:n], bp
	}
	b := make([]byte, 1<<(minBufShift+c))
	return b[:n], &b
}

// putBuf returns a buffer from getBuf to its pool; nothing may use it
// after. A nil reference is ignored.
func putBuf(bp *[]byte) {
	if bp == nil {
		return
	}
	if c := bufClass(cap(*bp)); c >= 0 && cap(*bp) == 1<<(minBufShift+c) {
		bufPools[c].Put(bp)
	}
}
