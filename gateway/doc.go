// Package gateway assembles one gatewayd daemon from its subsystems: it
// opens the object store with its decorators, the metadata store and the
// keys, takes the lease on the bucket prefix (nothing is written before it
// is held, and losing it fences the store), registers health and metrics,
// serves the admin API, and shuts all of it down in order. It also initialises a data directory (Init).
//
// cmd/gatewayd only parses flags and calls into this package; tests build the
// real binary and drive it, or call Run directly.
package gateway
