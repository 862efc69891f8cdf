// Package tapes is the virtual tape library's data service: tapes as
// variable-size records and filemarks, written durably through an upload
// buffer into the object store as encrypted segments with an index, and
// the library's inventory (which tape is in which slot, drive or
// import/export element; archive and retrieve) kept in meta.
package tapes
