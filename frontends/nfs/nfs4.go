package nfs

import (
	"encoding/binary"
	"strings"
	"sync/atomic"

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

// serve4 is the procedure serving a version 4 call: nfs4 answers it. A
// WRITE takes the call's record over, as NFSv3's does (stable.go): its
// data goes to the share's log from the record, which is reused once the
// log has written it and the COMPOUND is done (the operations after the
// WRITE, and the reply's tag, read it); UNSTABLE data not yet written
// counts against maxUnsynced, and past it the reply waits for the log.
func serve4(proc, flavor uint32, cred []byte) func(c *rpcConn, x *xdrReader, w *replyWriter) {
	cr := nfs4.Cred{Flavor: flavor, Body: cred}
	return func(c *rpcConn, x *xdrReader, w *replyWriter) {
		var taken *[]byte
		var users atomic.Int32 // of the taken record: the log and the COMPOUND
		drop := func() {
			if users.Add(-1) == 0 {
				putRecord(taken)
			}
		}
		var logged chan struct{} // closed once the log has written an UNSTABLE WRITE's record
		buf := nfs4.Buffer{B: *x.rec, Start: len(*x.rec) - len(x.b)}
		buf.Take = func(n int, unstable bool) func() {
			taken, x.rec = x.rec, nil
			users.Store(2)
			if !unstable {
				return drop
			}
			c.h.s.unsynced.Add(int64(n))
			logged = make(chan struct{})
			return func() {
				c.h.s.unsynced.Add(-int64(n))
				close(logged)
				drop()
			}
		}
		accept, body := c.h.s.v4.CallFrom(c.ctx, c.v4, proc, cr, buf)
		if taken != nil {
			drop()
		}
		if logged != nil && c.h.s.unsynced.Load() > maxUnsynced.Load() {
			_ = awaitLogged(c.ctx, logged) // the connection ends: the reply goes nowhere
		}
		w.u32(accept)
		w.reserve(len(body))
		w.b = append(w.b, body...)
	}
}
