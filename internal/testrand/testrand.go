// Package testrand makes the deterministic pseudo-random data tests write
// and check: the same seed gives the same bytes in every test and run.
package testrand

import "math/rand/v2"

// Bytes returns n pseudo-random bytes for seed.
func Bytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
