package nfs

import (
	"encoding/binary"
	"io"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/fileshare"
)

// READ, GETATTR and ACCESS (RFC 1813 sections 3.3.6, 3.3.1, 3.3.4), the
// calls a client reading files sends most, are served by rpcConn
// (rpc.go), several of a connection's at once, with the replies go-nfs
// gave: the same attributes (attrOf), the same access bits.

// maxReadCount is the most a READ returns, the rtmax FSINFO offers; a
// READ asking for more gets this much, not at the end of the file (a short
// read: the client asks for the rest).
const maxReadCount = maxTransfer

// read serves READ3: the data is read from the share straight into the
// reply's buffer, after the header.
func (c *rpcConn) read(x *xdrReader, w *replyWriter) {
	fh := x.opaque(maxHandle)
	off, count := x.u64(), x.u32()
	share, p, a, ok := c.args(x, w, fh)
	if !ok {
		return
	}
	attr := attrOf(p, a)
	if a.Type != fileshare.TypeFile {
		st := gonfs.NFSStatusInval
		if a.Type == fileshare.TypeDir {
			st = gonfs.NFSStatusIsDir
		}
		w.status(st)
		w.postOp(attr)
		return
	}
	n := int64(min(count, maxReadCount))
	if off >= uint64(a.Size) {
		n = 0
	} else {
		n = min(n, a.Size-int64(off))
	}
	statusAt := len(w.b)
	w.reserve(4 + 4 + 84 + 12 + int(n) + 3)
	w.status(gonfs.NFSStatusOk)
	w.postOp(attr)
	countAt := len(w.b)
	w.b = w.b[:countAt+12] // count, eof, and the data's length: below
	data := w.b[countAt+12 : countAt+12+int(n)]
	got, err := 0, error(nil)
	if n > 0 {
		got, err = share.ReadAt(c.ctx, p, data, int64(off))
	}
	if err != nil && err != io.EOF {
		c.h.s.log.Warn("nfs: read", "share", share.Config().Name, "path", p, "err", err)
		w.b = w.b[:statusAt]
		w.status(nfsStatus(err))
		w.postOp(attr)
		return
	}
	eof := err == io.EOF || off+uint64(got) >= uint64(a.Size)
	b := w.b[:countAt]
	b = binary.BigEndian.AppendUint32(b, uint32(got))
	if eof {
		b = binary.BigEndian.AppendUint32(b, 1)
	} else {
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(got))
	b = b[:len(b)+got]
	w.b = append(b, make([]byte, (4-got%4)%4)...) // XDR padding
}

// getattr serves GETATTR3.
func (c *rpcConn) getattr(x *xdrReader, w *replyWriter) {
	fh := x.opaque(maxHandle)
	if x.bad {
		w.garbage()
		return
	}
	w.u32(acceptSuccess)
	_, p, a, st := c.stat(fh)
	w.status(st)
	if st == gonfs.NFSStatusOk {
		w.fattr(attrOf(p, a))
	}
}

// Access bits (ACCESS3_*) granted on a read-only share.
const accessReadOnly = 0x01 | 0x02 | 0x20 // READ, LOOKUP, EXECUTE

// access serves ACCESS3: everything asked is granted but changes on a
// read-only share; permission checks are the client's (as go-nfs's).
func (c *rpcConn) access(x *xdrReader, w *replyWriter) {
	fh := x.opaque(maxHandle)
	mask := x.u32()
	share, p, a, ok := c.args(x, w, fh)
	if !ok {
		return
	}
	if share.Config().ReadOnly {
		mask &= accessReadOnly
	}
	w.status(gonfs.NFSStatusOk)
	w.postOp(attrOf(p, a))
	w.u32(mask)
}

// args ends the reading of a call's arguments from x: if they were
// bad, the reply is GARBAGE_ARGS; else it resolves the file handle fh and
// reads the file's attributes, or answers the error with no attributes
// (a READ3resfail or ACCESS3resfail), and says whether it did.
func (c *rpcConn) args(x *xdrReader, w *replyWriter, fh []byte) (*fileshare.Share, string, fileshare.Attr, bool) {
	if x.bad {
		w.garbage()
		return nil, "", fileshare.Attr{}, false
	}
	w.u32(acceptSuccess)
	share, p, a, st := c.stat(fh)
	if st != gonfs.NFSStatusOk {
		w.status(st)
		w.postOp(nil)
		return nil, "", fileshare.Attr{}, false
	}
	return share, p, a, true
}

// stat resolves a handle and reads its attributes.
func (c *rpcConn) stat(fh []byte) (*fileshare.Share, string, fileshare.Attr, gonfs.NFSStatus) {
	share, p, st := c.resolve(fh)
	if st != gonfs.NFSStatusOk {
		return nil, "", fileshare.Attr{}, st
	}
	a, err := share.Stat(c.ctx, p)
	if err != nil {
		return nil, "", fileshare.Attr{}, nfsStatus(err)
	}
	return share, p, a, gonfs.NFSStatusOk
}
