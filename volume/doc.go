// Package volume owns gatewayd's block volumes: cached volumes (primary data
// in the object store, hot data in the local cache) and stored volumes
// (primary data on a local file or block device, changed chunks uploaded in
// the background). It gives frontends ReadAt, WriteAt, Flush, Unmap and Size.
//
// The write path: a write is appended to the upload buffer log, which makes
// it durable (group commit), then applied to the cache (cached) or the local
// disk (stored), and only then acknowledged. The log is the durable record
// of every write not yet safe elsewhere, so after a crash Manager replays it
// onto the cache or disk and the upload resumes.
//
// When a log record may be trimmed:
//   - cached volume: once the chunk it wrote has been uploaded and the chunk
//     map in meta points at the uploaded chunk;
//   - stored volume: once the disk file has been fsynced and the chunk is in
//     the volume's dirty set in meta (the set the uploader works from), which
//     a checkpoint does every few seconds or when the log fills up.
//
// Chunks are fixed-size pieces of a volume (default 1 MiB); a chunk's index
// is offset / chunk size. The chunk map (meta) maps an index to the id of
// its uploaded encrypted chunk; an absent entry is a hole (zeroes). A
// per-chunk lock orders a chunk's writes, the commit of its upload and the
// use of a chunk fetched from the store, so an upload of older data never
// overwrites a newer write's map entry and a fetched chunk never replaces a
// newer cached one.
//
// A write never reads the object store. A write to part of a chunk that is
// not cached leaves a partial cache entry (the bytes written and their
// extents; see package cache); the chunk's base, its uploaded content, is
// fetched when a read needs bytes not written or before the upload, without
// the chunk lock, and merged in (written bytes win) under the chunk lock if
// the chunk's map entry did not change meanwhile. A hole's base is zeroes
// and is never fetched. The extents are not stored anywhere: after a crash
// the log's replay writes the records again, which rebuilds them. A
// snapshot's copy-on-write of a partial chunk keeps the bytes written and
// the base's id, and merges them when the snapshot takes the chunk.
//
// Small writes upload small (patch.go, docs/format.md "Patch objects"). A
// cached volume keeps, per chunk, the extents written since its last
// upload (in memory; the replay rebuilds them). When they are small (at
// most a quarter of the chunk, the patch list shorter than 8, all patches
// at most half the chunk), the upload is a patch: those bytes, encrypted
// and bound to the volume, chunk, base and position in the list; the map
// entry becomes the base plus its patches. A full list is merged with the
// new writes into one patch over the same base while that patch stays
// within half the chunk; otherwise the whole chunk goes up and the entry
// is one chunk id again (compaction). Reads from the
// store apply the patches over the base. Snapshots and recovery points
// name whole chunks only: they compact patched chunks and record the
// compaction in the map if the entry did not change. A patch or a
// compacted chunk is put before the map names it, and an entry is only
// ever replaced after comparing it in the same transaction; superseded
// patches go with garbage collection, which marks what the maps name.
package volume
