//go:build soak

package main

import "time"

// The long soak, on a distributed MinIO of 4 nodes:
// `go test -tags soak -run 'TestSoak$' -timeout 5h ./cmd/gatewayd/`.
//
// The volume stays at the short run's 24 MiB. With 48 MiB a run failed in
// a store outage: a snapshot keeps the old copy of each chunk rewritten
// before it is uploaded, so the 64 MiB cache filled with chunks that
// cannot leave it until the store is back, and a write that had to fetch
// an evicted chunk from the store failed; the run's outage lasts until
// the writers were acknowledged, so it could not go on.
func init() {
	soak.cycles = 200
	soak.minutes = 240 * time.Minute
	soak.nodes = 4
}
