package nfs

import (
	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/fileshare"
)

// FSINFO (RFC 1813 section 3.3.19) is served by rpcConn (rpc.go), not
// go-nfs: go-nfs offers reads and writes of up to 1 GiB, which would
// make every call record a connection may send up to a GiB, and says
// hard links work, which a share refuses. The reply keeps go-nfs's
// encoding (its fsinfores) and values for the rest.

// maxTransfer is the rtmax, rtpref, wtmax and wtpref offered: the most a
// READ returns (maxReadCount) and the most data a WRITE may carry (the
// call record bound, maxCall, follows from it). 1 MiB is what Linux and
// libnfs ask for at most anyway.
const maxTransfer = 1 << 20

// FSINFO's answers besides the transfer sizes.
const (
	fsinfoMult   = 4096 // rtmult, wtmult
	fsinfoDtpref = 8192 // READDIR's preferred size, as go-nfs
	// time_delta: 1 ns (times are kept in nanoseconds).
	fsinfoTimeDeltaNs = 1

	// Properties (FSF3_*). Not FSF3_LINK: a share refuses hard links.
	fsfSymlink     = gonfs.FSInfoPropertySymlink
	fsfHomogeneous = gonfs.FSInfoPropertyHomogeneous
	fsfCanSetTime  = gonfs.FSInfoPropertyCanSetTime
)

// fsinfoProperties are the FSF3 bits of a share: symbolic links, the same
// answers for every file (PATHCONF need not be asked per file), and times
// that can be set, unless the share is read-only.
func fsinfoProperties(share *fileshare.Share) uint32 {
	p := uint32(fsfSymlink | fsfHomogeneous)
	if !share.Config().ReadOnly {
		p |= fsfCanSetTime
	}
	return p
}

// fsinfo serves FSINFO3: the root's attributes, as GETATTR's, then the
// fsinfo3resok fields.
func (c *rpcConn) fsinfo(x *xdrReader, w *replyWriter) {
	fh := x.opaque(maxHandle)
	share, p, a, ok := c.args(x, w, fh)
	if !ok {
		return
	}
	w.status(gonfs.NFSStatusOk)
	w.postOp(attrOf(p, a))
	w.fsinfoRes(fsinfoProperties(share))
}

// fsinfoRes appends an fsinfo3resok after its obj_attributes.
func (w *replyWriter) fsinfoRes(properties uint32) {
	w.reserve(48)
	for _, v := range []uint32{maxTransfer, maxTransfer, fsinfoMult, maxTransfer, maxTransfer, fsinfoMult, fsinfoDtpref} {
		w.u32(v)
	}
	w.u64(fileshare.MaxFileSize)
	w.u32(0) // time_delta: seconds, nanoseconds
	w.u32(fsinfoTimeDeltaNs)
	w.u32(properties)
}
