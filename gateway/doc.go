// Package gateway assembles one gatewayd daemon from its subsystems: it
// opens the object store with its decorators, the metadata store and the
// keys, registers health and metrics, serves the admin API, and shuts all of
// it down in order. It also initialises a data directory (Init).
//
// cmd/gatewayd only parses flags and calls into this package; tests build the
// real binary and drive it, or call Run directly.
package gateway
