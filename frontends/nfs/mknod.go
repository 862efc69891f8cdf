package nfs

import (
	"time"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/fileshare"
)

// MKNOD (RFC 1813 section 3.3.11) is served by rpcConn (rpc.go), not
// go-nfs: go-nfs v0.0.4 answers the MKNOD of a character device NFS3_OK
// and a handle without making anything (its case for NF3CHR is empty), and
// its file system interface has no owner for what it makes. A special
// file is made by the share (fileshare.Share.Mknod): an empty object with
// its type and a device's numbers in its metadata.

const procMknod = 11

// ftype3 of the special files.
var mknodTypes = map[uint32]fileshare.FileType{
	uint32(gonfs.FileTypeBlock):     fileshare.TypeBlock,
	uint32(gonfs.FileTypeCharacter): fileshare.TypeChar,
	uint32(gonfs.FileTypeSocket):    fileshare.TypeSocket,
	uint32(gonfs.FileTypeFIFO):      fileshare.TypeFIFO,
}

// sattr3 is what MKNOD's sattr3 sets: mode, owner and mtime (a size is
// read and ignored, as for any new file; atime is not kept).
type sattr3 struct {
	mode, uid, gid *uint32
	mtime          *time.Time
}

func (x *xdrReader) sattr3() sattr3 {
	var s sattr3
	opt := func() *uint32 {
		if x.u32() != 0 {
			v := x.u32()
			return &v
		}
		return nil
	}
	s.mode, s.uid, s.gid = opt(), opt(), opt()
	if x.u32() != 0 {
		x.u64() // size
	}
	for i := 0; i < 2; i++ { // atime, mtime: DONT_CHANGE, SET_TO_SERVER_TIME, SET_TO_CLIENT_TIME
		switch x.u32() {
		case 1:
			if i == 1 {
				now := time.Now()
				s.mtime = &now
			}
		case 2:
			t := time.Unix(int64(x.u32()), int64(x.u32()))
			if i == 1 {
				s.mtime = &t
			}
		}
	}
	return s
}

// mknod serves MKNOD3: NF3CHR and NF3BLK with a sattr3 and the device's
// numbers, NF3SOCK and NF3FIFO with a sattr3; other types are
// NFS3ERR_BADTYPE. The reply: the new file's handle and attributes, and
// the directory's wcc_data.
func (c *rpcConn) mknod(x *xdrReader, w *replyWriter) {
	dirFH := x.opaque(maxHandle)
	name := x.opaque(gonfs.PathNameMax + 1)
	ftype := x.u32()
	t, special := mknodTypes[ftype]
	var attrs sattr3
	var rdev fileshare.Device
	if special {
		attrs = x.sattr3()
		if t == fileshare.TypeBlock || t == fileshare.TypeChar {
			rdev = fileshare.Device{Major: x.u32(), Minor: x.u32()}
		}
	}
	if x.bad {
		w.garbage()
		return
	}
	w.u32(acceptSuccess)
	share, dir, st := c.resolve(dirFH)
	if st != gonfs.NFSStatusOk {
		w.fail(st, nil)
		return
	}
	pre, err := share.Stat(c.ctx, dir)
	switch {
	case err != nil:
		w.fail(nfsStatus(err), nil)
		return
	case pre.Type != fileshare.TypeDir:
		w.fail(gonfs.NFSStatusNotDir, &pre)
		return
	case !special:
		w.fail(gonfs.NFSStatusBadType, &pre)
		return
	case len(name) > gonfs.PathNameMax:
		w.fail(gonfs.NFSStatusNameTooLong, &pre)
		return
	}
	cfg := share.Config()
	mode := cfg.FileMode
	if attrs.mode != nil {
		mode = *attrs.mode & 0o7777
	}
	uid, gid := cfg.UID, cfg.GID
	if attrs.uid != nil {
		uid = *attrs.uid
	}
	if attrs.gid != nil {
		gid = *attrs.gid
	}
	uid, gid = cfg.MapOwner(uid, gid)
	p := string(name)
	if dir != "" {
		p = dir + "/" + p
	}
	a, err := share.Mknod(c.ctx, p, t, mode, uid, gid, rdev)
	if err == nil && attrs.mtime != nil {
		a, err = share.SetAttr(c.ctx, p, fileshare.SetAttr{Mtime: attrs.mtime})
	}
	post, perr := share.Stat(c.ctx, dir)
	postp := &post
	if perr != nil {
		postp = nil
	}
	if err != nil {
		w.u32(uint32(nfsStatus(err)))
		w.wcc(dir, &pre, postp)
		return
	}
	w.status(gonfs.NFSStatusOk)
	w.u32(1) // post_op_fh3
	fh := fileHandle(cfg.ID, a.Ino)
	w.u32(uint32(len(fh)))
	w.b = append(w.b, fh...) // handleLen: a multiple of 4, no padding
	w.postOp(attrOf(p, a))
	w.wcc(dir, &pre, postp)
}
