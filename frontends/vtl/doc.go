// Package vtl is the virtual tape library's SCSI side: an SMC medium
// changer and SSC tape drives, served as logical units by frontends/iscsi.
// The tapes themselves and their places in the library are behind the
// Medium and Shelf interfaces (package tapes implements them; package
// vtltest has in-memory twins).
//
// A Library builds the changer and one drive per drive element of a
// Shelf and keeps them consistent: the changer loads a drive when it
// moves a tape in (the drive opens the tape's Medium) and unloads it
// before moving the tape out (the drive closes it). To serve it, give a
// target the library's LUNs (the changer at LUN 0, drive i at LUN i):
//
//	lib, err := vtl.NewLibrary(ctx, vtl.LibraryOptions{Shelf: shelf, Serial: serial, Log: log})
//	srv.SetTarget(&iscsi.Target{Name: iqn, LUNs: lib.LUNs(), Auth: auth})
//
// or one target per device, each at LUN 0, named after
// lib.DeviceTargets()' suffixes. Close the library when the gateway stops.
// docs/vtl.md lists what each device supports.
package vtl
