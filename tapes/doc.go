// Package tapes is the virtual tape library's data service: tapes as
// variable-size records and filemarks, written durably through an upload
// buffer into the object store as encrypted segments with an index, and
// the library's inventory (which tape is in which slot, drive or
// import/export element; archive and retrieve) kept in meta.
//
// A Library (New) owns the tapes of one gateway. Its Open returns a Tape,
// the medium a drive reads and writes (frontends/vtl's Medium); the
// Library itself keeps the inventory the changer moves tapes in (Shelf,
// through a one-method adapter in the wiring, see docs/tapes.md).
//
// A write is acknowledged once its record is synced in the library's
// upload buffer; a buffered one (a drive in buffered mode) once it is
// applied, and it is durable once the index of the segment it filled is
// stored or a sync point logs it, so a buffered stream is written locally
// once. It lands in the tape's open segment in memory, which is
// sealed and uploaded when full; on every tick, when a tape is unloaded
// and before it is archived, the open segment and the index (pages that
// changed, then the root) go up and the log is trimmed. After a crash New
// replays the log onto the indexes in the store, per tape by sequence
// number, and deletes what a broken upload left behind.
//
// Reading a record fetches the index root once, its index page once and
// one range of one segment (with read-ahead in the same segment); a
// filemark search reads index pages only. Every stored object is
// AES-256-GCM under a key derived from the repository's data key and bound
// to its tape and place: one that does not authenticate is an error marked
// errkind.Corrupt, never data. docs/tapes.md specifies the format byte by
// byte.
package tapes
