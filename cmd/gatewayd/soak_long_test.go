//go:build soak

package main

import "time"

// The long soak, on a distributed MinIO of 4 nodes:
// `go test -tags soak -run 'TestSoak$' -timeout 5h ./cmd/gatewayd/`.
//
// The cache is larger than the short run's. With the 64 MiB cache, runs
// on the cluster failed in a store outage: a snapshot keeps the old copy
// of each chunk rewritten before it is uploaded, restored volumes read
// through the same cache, and a write that had to fetch an evicted chunk
// from the store failed (a clear error at the initiator, nothing lost),
// which ends the soak's writer. With 256 MiB the volume, its copies and a
// restored volume all fit.
func init() {
	soak.cycles = 200
	soak.minutes = 240 * time.Minute
	soak.nodes = 4
	soak.cache = "256MiB"
}
