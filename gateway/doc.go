// Package gateway assembles one gatewayd daemon from its subsystems: it
// opens the object store with its decorators, the metadata store and the
// keys, takes the lease on the bucket prefix (nothing is written before it
// is held, and losing it fences the store), builds the data services and
// starts the frontends, registers health and metrics, registers each
// resource's admin API handlers, serves the admin API, and shuts all of it
// down in order. It also initialises a data directory (Init).
//
// It holds no resource's HTTP handlers nor request rules: those live in
// the packages under api/, one per resource (volumeapi, snapshotapi,
// shareapi, smbapi, tapeapi, bandwidthapi, statsapi), each with a
// Register function this package calls. An API package reaches a
// frontend's part of its resource (iSCSI targets of volumes, where NFS and
// SMB listen, smbd itself) through a small interface or function values
// given here, never through this package (docs/architecture.md).
//
// cmd/gatewayd only parses flags and calls into this package; tests build the
// real binary and drive it, or call Run directly.
package gateway
