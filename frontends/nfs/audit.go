package nfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"path"

	gonfs "github.com/willscott/go-nfs"

	"github.com/gatewayd/gatewayd/audit"
	"github.com/gatewayd/gatewayd/fileshare"
)

// The audit log (package audit) gets a record of every NFSv3 call that
// changes a file of a share with auditing on (NFSv3 has no open), whether
// go-nfs or this package serves it: the RPC layer notes the call's
// credential and arguments when it reads the call, and writes the record
// when the reply passes with the call's XID and status. Paths are resolved
// from the handles then.

// audited3 are the NFSv3 procedures recorded, by their names in the log.
var audited3 = map[uint32]string{
	2: "setattr", 7: "write", 8: "create", 9: "mkdir", 10: "symlink", 11: "mknod",
	12: "remove", 13: "rmdir", 14: "rename", 15: "link",
}

// maxAuditPending bounds the calls noted and not yet answered on one
// connection; past it (calls never answered) the notes are dropped.
const maxAuditPending = 1024

// auditCall is a call noted for the audit log until its reply.
type auditCall struct {
	op       string
	share    *fileshare.Share
	uid, gid *uint32
	fh       []byte // the file (SETATTR, WRITE, LINK) or the directory
	name     string
	fh2      []byte // RENAME's and LINK's target directory
	name2    string
}

// noteAudit notes an NFSv3 call of procedure proc whose arguments x is
// at, if it is recorded and its share audited.
func (c *rpcConn) noteAudit(xid, proc, flavor uint32, cred []byte, x xdrReader) {
	op, recorded := audited3[proc]
	if !recorded {
		return
	}
	a := &auditCall{op: op, fh: append([]byte(nil), x.opaque(maxHandle)...)}
	a.share = c.auditedShare(a.fh)
	if a.share == nil {
		return
	}
	switch proc {
	case 8, 9, 10, 11, 12, 13:
		a.name = string(x.opaque(maxName))
	case 14:
		a.name = string(x.opaque(maxName))
		a.fh2 = append([]byte(nil), x.opaque(maxHandle)...)
		a.name2 = string(x.opaque(maxName))
	case 15:
		a.fh2 = append([]byte(nil), x.opaque(maxHandle)...)
		a.name2 = string(x.opaque(maxName))
	}
	if x.bad {
		return // go-nfs answers GARBAGE_ARGS; nothing to record
	}
	if flavor == authSys {
		a.uid, a.gid = authSysIDs(cred)
	}
	c.amu.Lock()
	if len(c.audits) >= maxAuditPending {
		c.h.s.log.Warn("nfs: audit: calls noted and never answered dropped", "client", c.RemoteAddr(), "calls", len(c.audits))
		clear(c.audits)
	}
	if c.audits == nil {
		c.audits = map[uint32]*auditCall{}
	}
	c.audits[xid] = a
	c.auditing.Store(int32(len(c.audits)))
	c.amu.Unlock()
}

// maxName bounds a file name read from a call (NFS3's names are at most
// 255 bytes on a share; anything up to this is read to be recorded).
const maxName = 4096

const authSys = 1

// authSysIDs reads the uid and gid of an AUTH_SYS credential (stamp,
// machine name, uid, gid, gids).
func authSysIDs(cred []byte) (*uint32, *uint32) {
	x := xdrReader{b: cred}
	x.u32()
	x.opaque(255)
	uid, gid := x.u32(), x.u32()
	if x.bad {
		return nil, nil
	}
	return audit.IDs(uid, gid)
}

// auditedShare is the share of a handle if it keeps an audit log.
func (c *rpcConn) auditedShare(fh []byte) *fileshare.Share {
	if len(fh) != handleLen || fh[0] != 'g' || fh[1] != 'w' {
		return nil
	}
	s, err := c.h.s.shares.ByID(binary.BigEndian.Uint32(fh[4:]))
	if err != nil || !s.Config().Audit {
		return nil
	}
	return s
}

// auditReply takes the call noted for reply record b (its record mark
// first), with the reply's result; nil if none was noted.
func (c *rpcConn) auditReply(b []byte) (*auditCall, string) {
	if len(b) < 8 {
		return nil, ""
	}
	xid := binary.BigEndian.Uint32(b[4:])
	c.amu.Lock()
	a := c.audits[xid]
	if a != nil {
		delete(c.audits, xid)
		c.auditing.Store(int32(len(c.audits)))
	}
	c.amu.Unlock()
	if a == nil {
		return nil, ""
	}
	return a, replyResult(b[4:])
}

// replyResult reads an NFSv3 reply's result: "ok", the NFS3ERR status, or
// how the RPC layer refused the call.
func replyResult(b []byte) string {
	x := xdrReader{b: b}
	x.u32() // xid
	x.u32() // REPLY
	if x.u32() != 0 {
		return "rpc: denied"
	}
	x.u32()       // verifier flavour
	x.opaque(400) // verifier
	if acc := x.u32(); acc != acceptSuccess {
		return fmt.Sprintf("rpc: accept_stat %d", acc)
	}
	st := x.u32()
	if x.bad {
		return "rpc: short reply"
	}
	return nfs3StatusName(gonfs.NFSStatus(st))
}

// writeAudit writes the record of call a, answered with result.
func (c *rpcConn) writeAudit(a *auditCall, result string) {
	cfg := a.share.Config()
	r := audit.Record{Protocol: "nfs3", Client: c.RemoteAddr().String(), UID: a.uid, GID: a.gid,
		Share: cfg.Name, Op: a.op, Result: result}
	r.Path = c.auditPath(a.share, a.fh, a.name)
	switch a.op {
	case "rename":
		r.NewPath = c.auditPath(a.share, a.fh2, a.name2)
	case "link":
		r.NewPath = c.auditPath(a.share, a.fh2, a.name2)
	}
	c.h.s.Audit.Write(r)
}

// auditPath is the path a handle and a name in it (or no name) stand for;
// a handle no longer resolved is shown by its inode.
func (c *rpcConn) auditPath(s *fileshare.Share, fh []byte, name string) string {
	if len(fh) != handleLen || binary.BigEndian.Uint32(fh[4:]) != s.Config().ID {
		return fmt.Sprintf("(handle of another share %x)", fh)
	}
	ino := binary.BigEndian.Uint64(fh[8:])
	dir, err := s.PathOf(context.WithoutCancel(c.ctx), ino)
	if err != nil {
		dir = fmt.Sprintf("(inode %d)", ino)
	}
	if name == "" {
		return dir
	}
	if dir == "" {
		return name
	}
	return path.Join(dir, name)
}

// nfs3Statuses name the NFSv3 statuses (RFC 1813).
var nfs3Statuses = map[gonfs.NFSStatus]string{
	gonfs.NFSStatusOk: "ok", gonfs.NFSStatusPerm: "NFS3ERR_PERM", gonfs.NFSStatusNoEnt: "NFS3ERR_NOENT",
	gonfs.NFSStatusIO: "NFS3ERR_IO", gonfs.NFSStatusNXIO: "NFS3ERR_NXIO", gonfs.NFSStatusAccess: "NFS3ERR_ACCES",
	gonfs.NFSStatusExist: "NFS3ERR_EXIST", gonfs.NFSStatusXDev: "NFS3ERR_XDEV", gonfs.NFSStatusNoDev: "NFS3ERR_NODEV",
	gonfs.NFSStatusNotDir: "NFS3ERR_NOTDIR", gonfs.NFSStatusIsDir: "NFS3ERR_ISDIR", gonfs.NFSStatusInval: "NFS3ERR_INVAL",
	gonfs.NFSStatusFBig: "NFS3ERR_FBIG", gonfs.NFSStatusNoSPC: "NFS3ERR_NOSPC", gonfs.NFSStatusROFS: "NFS3ERR_ROFS",
	gonfs.NFSStatusMlink: "NFS3ERR_MLINK", gonfs.NFSStatusNameTooLong: "NFS3ERR_NAMETOOLONG",
	gonfs.NFSStatusNotEmpty: "NFS3ERR_NOTEMPTY", gonfs.NFSStatusDQuot: "NFS3ERR_DQUOT", gonfs.NFSStatusStale: "NFS3ERR_STALE",
	gonfs.NFSStatusRemote: "NFS3ERR_REMOTE", gonfs.NFSStatusBadHandle: "NFS3ERR_BADHANDLE",
	gonfs.NFSStatusNotSync: "NFS3ERR_NOT_SYNC", gonfs.NFSStatusBadCookie: "NFS3ERR_BAD_COOKIE",
	gonfs.NFSStatusNotSupp: "NFS3ERR_NOTSUPP", gonfs.NFSStatusTooSmall: "NFS3ERR_TOOSMALL",
	gonfs.NFSStatusServerFault: "NFS3ERR_SERVERFAULT", gonfs.NFSStatusBadType: "NFS3ERR_BADTYPE",
	gonfs.NFSStatusJukebox: "NFS3ERR_JUKEBOX",
}

func nfs3StatusName(st gonfs.NFSStatus) string {
	if n, found := nfs3Statuses[st]; found {
		return n
	}
	return fmt.Sprintf("NFS3ERR_%d", uint32(st))
}
