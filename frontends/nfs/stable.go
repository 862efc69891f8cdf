package nfs

import (
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/fileshare"
)

// WRITE and COMMIT (RFC 1813 sections 3.3.7 and 3.3.21) are served by
// rpcConn (rpc.go), not go-nfs: go-nfs answers every WRITE with
// FILE_SYNC once its file's Write returns and makes COMMIT a no-op.
//
//   - An UNSTABLE WRITE is applied and answered without waiting for a
//     sync (fileshare.Buffered) and says so: committed UNSTABLE.
//   - COMMIT makes every write answered before it durable
//     (fileshare.Share.Sync), whatever the range it names.
//   - DATA_SYNC and FILE_SYNC writes are durable when answered, and
//     answer FILE_SYNC.
//   - WRITE and COMMIT carry the server's write verifier: 8 random bytes
//     drawn when the daemon starts. A client that sees it change between
//     an UNSTABLE WRITE and its COMMIT (the daemon restarted: what was not
//     committed may be lost) sends that data again.

// maxUnsynced bounds the UNSTABLE bytes whose log records are not yet
// written (a group of them is written without a sync): past it, a WRITE
// waits until the log has written its own record (awaitLogged), not for
// a sync, before it is answered (still UNSTABLE). The call's buffer is
// the record, kept until the log has written it, so without a bound a
// disk slower than the clients would let memory grow to the buffer's
// size. (A variable for tests, atomic: a test sets it back while calls of
// its server may still read it.)
var maxUnsynced atomic.Int64

func init() { maxUnsynced.Store(64 << 20) }

const (
	stableUnstable = 0 // stable_how
	stableFileSync = 2
)

// write serves WRITE3. A WRITE carries at most the record bound's worth of
// data (maxCall); one whose count is above the wtmax FSINFO offers
// (maxTransfer), which Linux and libnfs never send, is written whole and
// answered with its count, as any other: RFC 1813 would allow writing
// less, but writing it all costs nothing more (the call is in memory
// already) and needs nothing of the client.
func (c *rpcConn) write(x *xdrReader, w *replyWriter) {
	fh := x.opaque(maxHandle)
	offset, count, how := x.u64(), x.u32(), x.u32()
	rec := x.take()
	head := len(*rec) - len(x.b) + 4 // where the data starts in rec
	data := x.opaque(maxCall)
	if x.bad || how > stableFileSync {
		putRecord(rec)
		w.garbage()
		return
	}
	w.u32(acceptSuccess)
	n := min(int(count), len(data))
	c.writeData(w, fh, offset, (*rec)[:head+n], head, how, func() { putRecord(rec) })
}

// commit serves COMMIT3 (its offset and count are not looked at).
func (c *rpcConn) commit(x *xdrReader, w *replyWriter) {
	fh := x.opaque(maxHandle)
	x.u64()
	x.u32()
	if x.bad {
		w.garbage()
		return
	}
	w.u32(acceptSuccess)
	c.commitFile(w, fh)
}

// resolve finds the share and path of a handle, and checks the client.
func (c *rpcConn) resolve(fh []byte) (*fileshare.Share, string, gonfs.NFSStatus) {
	fs, path, err := c.h.FromHandle(fh)
	if err != nil {
		st := nfsStatus(err)
		if st != gonfs.NFSStatusStale {
			c.h.s.log.Warn("nfs: resolve a handle", "err", err)
		}
		return nil, "", st
	}
	sf := fs.(*shareFS)
	if !allowed(sf.share, c.RemoteAddr()) {
		return nil, "", gonfs.NFSStatusAccess
	}
	return sf.share, strings.Join(path, "/"), gonfs.NFSStatusOk
}

// writeData writes buf[head:] at offset. buf[:head] is the rest of the
// call, which the share may overwrite: the data goes to the upload
// buffer's log from buf, its record's header just before it, with no
// copy. release is called once nothing reads buf: for an UNSTABLE write,
// once the log has written the record, perhaps after the reply.
func (c *rpcConn) writeData(w *replyWriter, fh []byte, offset uint64, buf []byte, head int, how uint32, release func()) {
	data := buf[head:]
	share, p, st := c.resolve(fh)
	switch {
	case st != gonfs.NFSStatusOk:
	case share.Config().ReadOnly:
		st = gonfs.NFSStatusROFS
	case offset > fileshare.MaxFileSize || offset+uint64(len(data)) > fileshare.MaxFileSize:
		st = gonfs.NFSStatusFBig
	case c.h.s.v4.Recall(share, binary.BigEndian.Uint64(fh[8:])):
		st = gonfs.NFSStatusJukebox // an NFSv4.1 read delegation of the file is being recalled
	}
	if st != gonfs.NFSStatusOk {
		release()
		w.fail(st, nil)
		return
	}
	d, committed := fileshare.Durable, uint32(stableFileSync)
	var logged chan struct{} // closed once the log has written an UNSTABLE write's record
	if how == stableUnstable {
		d, committed = fileshare.Buffered, stableUnstable
		// The data counts against maxUnsynced until the log has written
		// its record and handed the call's buffer back.
		n := int64(len(data))
		c.h.s.unsynced.Add(n)
		done := release
		logged = make(chan struct{})
		release = func() {
			c.h.s.unsynced.Add(-n)
			close(logged)
			done()
		}
	}
	// Not c.ctx: a write cut off between its record and its apply would
	// leave the cache behind the log until a restart (as go-nfs's own
	// WRITE, which uses the share's background context).
	pre, post, err := share.WriteFrom(context.Background(), p, buf, head, int64(offset), d, release)
	if err == nil && d == fileshare.Buffered && c.h.s.unsynced.Load() > maxUnsynced.Load() {
		err = awaitLogged(c.ctx, logged)
	}
	switch {
	case err == nil:
	case pre.Type == 0: // not found
		w.fail(nfsStatus(err), nil)
		return
	case pre.Type == fileshare.TypeDir:
		w.fail(gonfs.NFSStatusIsDir, &pre)
		return
	case pre.Type != fileshare.TypeFile:
		w.fail(gonfs.NFSStatusInval, &pre)
		return
	default:
		c.h.s.log.Warn("nfs: write", "share", share.Config().Name, "path", p, "err", err)
		w.fail(nfsStatus(err), &pre)
		return
	}
	w.u32(uint32(gonfs.NFSStatusOk))
	w.wcc(p, &pre, &post)
	w.u32(uint32(len(data)))
	w.u32(committed)
	w.b = append(w.b, c.h.s.verifier[:]...)
}

// awaitLogged waits until the log has written an UNSTABLE write's record
// (logged is closed), or ctx ends.
func awaitLogged(ctx context.Context, logged <-chan struct{}) error {
	select {
	case <-logged:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *rpcConn) commitFile(w *replyWriter, fh []byte) {
	share, p, st := c.resolve(fh)
	if st != gonfs.NFSStatusOk {
		w.fail(st, nil)
		return
	}
	if !share.Config().ReadOnly {
		if err := share.Sync(c.ctx); err != nil {
			c.h.s.log.Warn("nfs: commit", "share", share.Config().Name, "err", err)
			w.fail(gonfs.NFSStatusIO, nil)
			return
		}
	}
	w.u32(uint32(gonfs.NFSStatusOk))
	var post *fileshare.Attr
	if a, err := share.Stat(c.ctx, p); err == nil {
		post = &a
	}
	w.wcc(p, nil, post)
	w.b = append(w.b, c.h.s.verifier[:]...)
}

// fail writes a failed WRITE3res or COMMIT3res: the status and wcc_data.
func (w *replyWriter) fail(st gonfs.NFSStatus, pre *fileshare.Attr) {
	w.u32(uint32(st))
	w.wcc("", pre, nil)
}

// wcc writes wcc_data: the attributes before (size and times) and after.
func (w *replyWriter) wcc(p string, pre, post *fileshare.Attr) {
	if pre == nil {
		w.u32(0)
	} else {
		a := attrOf(p, *pre)
		w.u32(1)
		w.u64(a.Filesize)
		w.u32(a.Mtime.Seconds)
		w.u32(a.Mtime.Nseconds)
		w.u32(a.Ctime.Seconds)
		w.u32(a.Ctime.Nseconds)
	}
	if post == nil {
		w.postOp(nil)
	} else {
		w.postOp(attrOf(p, *post))
	}
}

// attrOf is a file's fattr3, as go-nfs's GETATTR gives it.
func attrOf(p string, a fileshare.Attr) *gonfs.FileAttribute {
	return gonfs.ToFileAttribute(info{name: p[strings.LastIndex(p, "/")+1:], a: a}, p)
}
