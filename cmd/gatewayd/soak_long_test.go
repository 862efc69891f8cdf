//go:build soak

package main

import "time"

// The long soak: `go test -tags soak -run TestSoak -timeout 3h ./cmd/gatewayd/`.
func init() {
	soak.cycles = 60
	soak.minutes = 90 * time.Minute
	soak.volSize = 64 << 20
}
