package nfs4

import (
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
)

// File attributes (RFC 8881 section 5): those a Linux client asks for.
const (
	attrSupportedAttrs  = 0
	attrType            = 1
	attrFHExpireType    = 2
	attrChange          = 3
	attrSize            = 4
	attrLinkSupport     = 5
	attrSymlinkSupport  = 6
	attrNamedAttr       = 7
	attrFSID            = 8
	attrUniqueHandles   = 9
	attrLeaseTime       = 10
	attrRdattrError     = 11
	attrACLSupport      = 13
	attrCanSetTime      = 15
	attrCaseInsensitive = 16
	attrCasePreserving  = 17
	attrChownRestricted = 18
	attrFilehandle      = 19
	attrFileID          = 20
	attrFilesAvail      = 21
	attrFilesFree       = 22
	attrFilesTotal      = 23
	attrHomogeneous     = 26
	attrMaxFileSize     = 27
	attrMaxLink         = 28
	attrMaxName         = 29
	attrMaxRead         = 30
	attrMaxWrite        = 31
	attrMode            = 33
	attrNoTrunc         = 34
	attrNumLinks        = 35
	attrOwner           = 36
	attrOwnerGroup      = 37
	attrRawDev          = 41
	attrSpaceAvail      = 42
	attrSpaceFree       = 43
	attrSpaceTotal      = 44
	attrSpaceUsed       = 45
	attrTimeAccess      = 47
	attrTimeAccessSet   = 48
	attrTimeDelta       = 51
	attrTimeMetadata    = 52
	attrTimeModify      = 53
	attrTimeModifySet   = 54
	attrMountedOnFileID = 55
)

// supported is the attributes GETATTR and READDIR return, and the
// write-only ones SETATTR sets (time_access_set, time_modify_set), which
// supported_attrs must name: a client sets only what it lists (Linux's
// drops a utimes() of an attribute not in it, without an error).
var supported = func() bitmap {
	var m bitmap
	for _, a := range []int{attrSupportedAttrs, attrType, attrFHExpireType, attrChange, attrSize,
		attrLinkSupport, attrSymlinkSupport, attrNamedAttr, attrFSID, attrUniqueHandles, attrLeaseTime,
		attrRdattrError, attrACLSupport, attrCanSetTime, attrCaseInsensitive, attrCasePreserving,
		attrChownRestricted, attrFilehandle, attrFileID, attrFilesAvail, attrFilesFree, attrFilesTotal,
		attrHomogeneous, attrMaxFileSize, attrMaxLink, attrMaxName, attrMaxRead, attrMaxWrite, attrMode,
		attrNoTrunc, attrNumLinks, attrOwner, attrOwnerGroup, attrRawDev, attrSpaceAvail, attrSpaceFree,
		attrSpaceTotal, attrSpaceUsed, attrTimeAccess, attrTimeAccessSet, attrTimeDelta, attrTimeMetadata,
		attrTimeModify, attrTimeModifySet, attrMountedOnFileID} {
		m.set(a)
	}
	return m
}()

// A share's room, as NFSv3's FSSTAT reports it: practically unbounded.
const (
	nominalSpace = 1 << 50
	nominalFiles = 1 << 40
)

// encodeAttrs appends a fattr4: the attributes asked for that are
// supported, in order.
func (s *Server) encodeAttrs(e *enc, req bitmap, o object) {
	var got bitmap
	var v enc
	a := o.attr
	for _, n := range req.bits() {
		if !supported.has(n) || writeOnly(n) {
			continue
		}
		got.set(n)
		switch n {
		case attrSupportedAttrs:
			v.bitmap(supported)
		case attrType:
			switch a.Type {
			case fileshare.TypeDir:
				v.u32(typeDir)
			case fileshare.TypeSymlink:
				v.u32(typeLnk)
			case fileshare.TypeFile:
				v.u32(typeReg)
			default:
				v.u32(fileTypes[a.Type])
			}
		case attrFHExpireType:
			v.u32(0) // FH4_PERSISTENT
		case attrChange:
			v.u64(uint64(a.Ctime.UnixNano()))
		case attrSize:
			v.u64(uint64(a.Size))
		case attrLinkSupport:
			v.bool(false) // hard links are refused
		case attrSymlinkSupport:
			v.bool(true)
		case attrNamedAttr:
			v.bool(false)
		case attrFSID:
			if o.fh.share == nil {
				v.u64(0)
				v.u64(0)
			} else {
				v.u64(1)
				v.u64(uint64(o.fh.share.Config().ID))
			}
		case attrUniqueHandles:
			v.bool(true)
		case attrLeaseTime:
			v.u32(uint32(s.opts.Lease / time.Second))
		case attrRdattrError:
			v.u32(ok)
		case attrACLSupport:
			v.u32(0)
		case attrCanSetTime:
			v.bool(o.fh.share != nil && !o.fh.share.Config().ReadOnly)
		case attrCaseInsensitive:
			v.bool(false)
		case attrCasePreserving, attrChownRestricted, attrHomogeneous, attrNoTrunc:
			v.bool(true)
		case attrFilehandle:
			v.opaque(o.fh.raw)
		case attrFileID, attrMountedOnFileID:
			v.u64(a.Ino)
		case attrFilesAvail, attrFilesFree, attrFilesTotal:
			v.u64(nominalFiles)
		case attrMaxFileSize:
			v.u64(fileshare.MaxFileSize)
		case attrMaxLink:
			v.u32(1)
		case attrMaxName:
			v.u32(255)
		case attrMaxRead, attrMaxWrite:
			v.u64(maxIO)
		case attrMode:
			v.u32(a.Mode & 0o7777)
		case attrNumLinks:
			if a.Type == fileshare.TypeDir {
				v.u32(2)
			} else {
				v.u32(1)
			}
		case attrOwner:
			v.str(idString(a.UID))
		case attrOwnerGroup:
			v.str(idString(a.GID))
		case attrRawDev:
			v.u32(a.Rdev.Major)
			v.u32(a.Rdev.Minor)
		case attrSpaceAvail, attrSpaceFree, attrSpaceTotal:
			v.u64(nominalSpace)
		case attrSpaceUsed:
			v.u64(uint64(a.Size))
		case attrTimeAccess, attrTimeModify:
			v.time(a.Mtime)
		case attrTimeMetadata:
			v.time(a.Ctime)
		case attrTimeDelta:
			v.u64(0)
			v.u32(1)
		}
	}
	e.bitmap(got)
	e.opaque(v.b)
}

// writeOnly says whether an attribute can be set and not read.
func writeOnly(n int) bool { return n == attrTimeAccessSet || n == attrTimeModifySet }

// time appends an nfstime4.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.u64(0)
		e.u32(0)
		return
	}
	e.u64(uint64(t.Unix()))
	e.u32(uint32(t.Nanosecond()))
}
