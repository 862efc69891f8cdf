// Package vtl is the virtual tape library's SCSI side: an SMC medium
// changer and SSC tape drives, served as logical units by frontends/iscsi.
// The tapes themselves and their places in the library are behind the
// Medium and Shelf interfaces (package tapes implements them).
package vtl
