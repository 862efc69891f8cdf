// Package fileshare owns gatewayd's file shares: a tree of files and
// directories where every file is one plain object in the object store, at
// <share prefix><path>, readable and writable by any S3 application.
//
// Mapping:
//   - a file is the object <prefix><path>; its POSIX attributes (mode,
//     owner, times) are the object's user metadata (gwd-mode, gwd-uid,
//     gwd-gid, gwd-mtime, gwd-ctime); an object without them gets the
//     share's defaults;
//   - a directory is the marker object <prefix><path>/ (carrying its
//     attributes) or, without a marker, any key below <prefix><path>/;
//   - a symbolic link is a small object holding the target, with metadata
//     gwd-type=symlink; hard links and special files are refused.
//
// Every file and directory has a number (its inode) kept in meta, so NFS
// file handles stay valid across restarts and renames. A new one's number
// is in its creation's log record and reaches meta with those of the other
// paths made since, at the next upload round (inodes.go).
//
// Writes: a write (and the creation of a file, directory or symbolic
// link) is appended to the share upload buffer log (durable, group
// commit) and applied to the local cache, in blocks of 1 MiB, before it is
// acknowledged; a new file's object (a directory's marker, a link's
// object) appears with its first upload. A
// remove the store cannot take (it is away) is a log record too, done by
// the uploader when the store is back, and so is a rename (a copy to the
// new key, then the delete of the old one) and a change of attributes of
// an uploaded file; meanwhile the share answers from the attributes and
// listings it last read (away.go, deletes.go, moves.go). Once a file has been quiet for the settle time the
// whole file is uploaded as its object (multipart when large) with its
// metadata, and the log records it needed are released; a file uploaded
// before and changed in a few blocks sends only those, the store copying
// the rest of its object (ranges.go). After a crash the
// log is replayed onto the files it names and the uploads resume. Reads of
// data not in the cache fetch the needed block-sized ranges of the object,
// never the whole object.
package fileshare
