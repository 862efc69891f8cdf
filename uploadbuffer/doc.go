// Package uploadbuffer is the upload buffer: the durable, segmented,
// append-only log every write lands in before it is acknowledged. Append
// returns once its record is synced (group commit: the records queued
// while one sync runs share the next one); when the log is full, Append
// waits until Trim releases records the layers above no longer need. The
// writer holds no lock that appends need while it writes and syncs, so
// they queue meanwhile and join the next group commit; Used and NextLSN
// take no lock at all. AppendBuffered queues a record without waiting for
// its sync and Sync (or Flush) waits until records are durable: the flush
// of a write-back cache. A group made only of buffered records is written
// without a sync of its own (Written says when a record is written and its
// buffer free); the next sync covers it: a Sync or Flush (the writer syncs
// what is written when one waits), a durable Append's group commit, Close.
// A full segment is not synced by the writer: it starts the next one (its
// header written, neither it nor the directory synced) and hands the full
// one to the syncer goroutine, which syncs it while the writer goes on; at
// most maxRetired wait for it, and a sync point (a group commit, Sync)
// waits for all of them, then syncs the directory if segments were made
// since its last sync. Yield lets background work (uploads) step aside
// until the appends waiting now are written. After a crash, Open finds the
// end of the log (a torn tail is cut off: it was never acknowledged
// durable) and Replay hands back every record not yet trimmed. Trim
// keeps the files of trimmed segments, within the log's capacity, and new
// segments are written over them (recycle.go): a write over a file's
// blocks costs the filesystem less than one that fills a new file.
//
// ReadRecord reads part of a record back, synced or still queued, also
// after a restart: a service can serve reads of written bytes from the
// log until it uploads them, instead of writing them a second time (the
// chunk cache's overlay). Each segment keeps where its records start (4
// bytes a record, so SegmentSize is at most 4 GiB) and a read handle,
// closed when Trim removes it.
//
// A full filesystem under the log (ENOSPC or EDQUOT from a write or a
// sync) is backpressure too, not a failure: the bytes of the failed
// attempt are truncated away (so no part of an unacknowledged record can
// be replayed), health carries the reason, and the writer tries again
// when Trim frees a segment or, for space freed by anyone else, after a
// short wait (100 ms, doubling to 2 s); appends wait meanwhile until their
// context ends. Once every record is trimmed, Trim empties the segment
// being appended to and renames it to the next LSN: with one large
// segment filling the disk, that is the only way uploads can free it.
// Other write or sync errors make the log fail-stop: it refuses appends
// until it is reopened.
//
// # Journal
//
// A Journal (journal.go, scheduler.go) is the one write path of every
// service on a log: volumes, file shares and tapes each supply a Client,
// which says only how a record is applied and how a unit (a chunk, a file,
// a tape) goes to the object store. The journal does the rest:
//
//   - Append makes a record durable (group commit), then applies it. From
//     before the record has an LSN until the apply returns, the log is
//     pinned below it.
//   - A service pins (Pin) the LSN of the oldest record each unit still
//     needs and releases the pin once the unit is in the store. The one
//     trimming rule: the log is trimmed below the lowest pin, below every
//     append not yet applied and below the record being replayed (Trim,
//     TrimPoint). Nothing is trimmed before Replay has started.
//   - Replay, after a restart, hands every record the log holds to the
//     client's Apply in order. Uploads may run meanwhile: the replay's pin
//     keeps the rest of the log.
//   - The scheduler uploads: a background round every Interval, or at
//     once when kicked (an append kicks it when the log is over half
//     full), takes the client's pending units that have gone SettleTime
//     unchanged (all of them under pressure: the log, or what the client
//     reports, over half full) and uploads them with Parallel workers, one
//     upload of a unit at a time. Flush (a snapshot, a recovery point, a
//     file needed in the store now) uploads everything it picks at once,
//     and its units go before any background unit waiting. A background
//     upload first yields to the writes: it waits while appends are queued
//     or committing (Log.Yield), and if they were, background uploads go
//     one at a time, each after up to 100 ms more of waiting for the
//     writes; under pressure neither applies, so a full log drains at full
//     parallelism. Pace is
//     the bandwidth limit's hook; when the log is full, Append waits
//     (backpressure, above). Each round ends with a trim. Stats is the one
//     set of figures: rounds, kicks, uploads, errors, bytes, queue, pins.
//
// The journal adds nothing to the log's format: records stay the
// services' own bytes.
//
// # On-disk format
//
// A log is a directory of segment files named by the hex LSN of their first
// record, "%016x.seg", a "trim" file, and trimmed segment files kept for
// reuse, "%016x.free". All integers are big-endian.
// docs/format.md has the same, byte by byte.
//
// Segment header (16 bytes):
//
//	0  4  magic "GWUB"
//	4  1  version (2; version 1 segments are read, never written)
//	5  3  reserved, zero
//	8  8  LSN of the segment's first record
//
// Record (24-byte header, then the payload):
//
//	0  4  payload length n
//	4  4  CRC-32C (Castagnoli) of bytes 8..24 of this header and the payload
//	8  8  LSN: the previous record's plus one
//	16 8  durable mark: every record below this LSN was synced when this record was written
//	24 n  payload
//
// A version 1 segment's records have a 16-byte header: length, CRC of bytes
// 8..16 and the payload, LSN; no durable mark. Open appends to a new
// version 2 segment after a version 1 one.
//
// The trim file holds the trim point (8 bytes) and its CRC-32C (4 bytes),
// replaced atomically. Records below the trim point are not replayed. The
// trim file is an optimisation: replaying from an earlier point re-applies
// older writes before the newer ones, which ends in the same state, so a
// lost trim update costs time, not data.
//
// Records written without a sync may reach the disk in part and in any
// order after a power loss, in the last segment and in the full ones
// whose background sync had not ended, as may the directory entries of
// segments made since the last sync: a bad record (short, of another LSN,
// failing its CRC), a segment header that is missing (short or zero) or a
// segment missing between two others is the end of the log, and it and
// everything after it are cut away (later segments removed), unless a
// valid record after it, in its segment or a later one, carries a
// durable mark past its LSN: then it had been synced, and Open fails with
// an error marked errkind.Corrupt. (Version 1 segments were synced whole
// before the next was made: a bad record in one is corruption, unless it
// is in the last segment with no valid record after it.) A record synced
// by the last sync, with no record written after it to say so, cannot be
// told from a torn one: its corruption is cut like a torn tail. Open syncs
// every segment it keeps and the directory before anything is appended,
// so the marks of new records hold.
package uploadbuffer
