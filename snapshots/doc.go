// Package snapshots owns what gatewayd stores in the object store for
// volumes: the chunk codec, map pages, snapshot manifests, incremental
// snapshots, garbage collection, restore and hydration.
package snapshots
