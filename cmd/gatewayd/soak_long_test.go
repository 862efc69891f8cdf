//go:build soak

package main

import "time"

// The long soak: `go test -tags soak -run TestSoak -timeout 3h ./cmd/gatewayd/`.
func init() {
	soak.cycles = 60
	soak.minutes = 90 * time.Minute
	// Below the cache's 64 MiB: dirty chunks stay pinned in the cache
	// while the store is away, and a volume as large as the cache would
	// (rightly) hold writes back for the whole outage.
	soak.volSize = 48 << 20
}
