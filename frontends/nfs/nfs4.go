package nfs

import (
	"encoding/binary"
	"strings"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/frontends/nfs/nfs4"
)

// NFSv4.1 (package nfs4) is served on the same connections as NFSv3: the
// RPC layer (rpc.go) hands it the calls of program 100003 version 4, with
// the same file handles (handles4).

// fileHandle is the file handle of inode ino of share id: "gw", version
// 1, a zero byte, the share id, the inode (handleLen bytes).
func fileHandle(id uint32, ino uint64) []byte {
	b := make([]byte, 0, handleLen)
	b = append(b, 'g', 'w', 1, 0)
	b = binary.BigEndian.AppendUint32(b, id)
	return binary.BigEndian.AppendUint64(b, ino)
}

// handles4 gives package nfs4 the NFSv3 file handles.
type handles4 struct{ h *handler }

func (h handles4) Handle(share *fileshare.Share, ino uint64) []byte {
	return fileHandle(share.Config().ID, ino)
}

func (h handles4) Resolve(fh []byte) (*fileshare.Share, string, error) {
	if len(fh) != handleLen || fh[0] != 'g' || fh[1] != 'w' || fh[2] != 1 || fh[3] != 0 {
		return nil, "", nfs4.ErrBadHandle
	}
	fs, path, err := h.h.FromHandle(fh)
	if err != nil {
		return nil, "", err
	}
	return fs.(*shareFS).share, strings.Join(path, "/"), nil
}

// serve4 is the procedure serving a version 4 call: nfs4 answers it.
func serve4(proc, flavor uint32, cred []byte) func(c *rpcConn, x *xdrReader, w *replyWriter) {
	cr := nfs4.Cred{Flavor: flavor, Body: cred}
	return func(c *rpcConn, x *xdrReader, w *replyWriter) {
		accept, body := c.h.s.v4.Call(c.ctx, c.v4, proc, cr, x.b)
		w.u32(accept)
		w.reserve(len(body))
		w.b = append(w.b, body...)
	}
}
