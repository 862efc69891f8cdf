package nfs4

import (
	"fmt"
	"path"

	"github.com/gatewayd/gatewayd/audit"
)

// The audit log (package audit) gets a record of every operation that
// opens or changes a file of a share with auditing on: OPEN, CREATE,
// REMOVE, RENAME, SETATTR and WRITE, whatever their result.

// SetAudit makes the server record in l; called before the first call.
func (s *Server) SetAudit(l *audit.Log) { s.opts.Audit = l }

// auditOps are the operations recorded, by their names in the log.
var auditOps = map[uint32]string{
	opOpen: "open", opCreate: "create", opRemove: "remove", opRename: "rename",
	opSetattr: "setattr", opWrite: "write",
}

// audit records operation o, which ended with status st; dir and saved
// are the current and saved file handles it started with.
func (x *exec) audit(o op, st uint32, dir, saved *fh) {
	name, recorded := auditOps[o.code]
	if !recorded || o.args == nil || dir == nil || dir.share == nil || !dir.share.Config().Audit {
		return
	}
	r := audit.Record{Protocol: "nfs4.1", Client: x.conn.peer, Share: dir.share.Config().Name, Op: name, Result: statusName(st)}
	if x.cred.Flavor == authSys {
		d := &dec{b: x.cred.Body}
		d.u32()       // stamp
		d.opaque(255) // machine name
		uid, gid := d.u32(), d.u32()
		if !d.bad {
			r.UID, r.GID = audit.IDs(uid, gid)
		}
	}
	switch a := o.args.(type) {
	case openArgs:
		r.Path = dir.path
		if a.claim == claimNull {
			r.Path = join(dir.path, string(a.name))
		}
		r.Detail = "access " + [4]string{"none", "read", "write", "read-write"}[a.access&shareAccessBoth]
		if a.create {
			r.Detail += ", create"
		}
	case createArgs:
		r.Path = join(dir.path, string(a.name))
		r.Detail = map[uint32]string{typeDir: "directory", typeLnk: "symlink"}[a.ftype]
	case nameArgs: // REMOVE
		r.Path = join(dir.path, string(a.name))
	case renameArgs:
		if saved != nil && saved.share == dir.share {
			r.Path = join(saved.path, string(a.from))
		}
		r.NewPath = join(dir.path, string(a.to))
	default: // SETATTR, WRITE: the current file
		r.Path = dir.path
	}
	x.s.opts.Audit.Write(r)
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return path.Join(dir, name)
}

// statusNames are the names of the statuses an operation that opens or
// changes a file may end with.
var statusNames = map[uint32]string{
	ok: "ok", errPerm: "NFS4ERR_PERM", errNoEnt: "NFS4ERR_NOENT", errIO: "NFS4ERR_IO",
	errAccess: "NFS4ERR_ACCESS", errExist: "NFS4ERR_EXIST", errXDev: "NFS4ERR_XDEV",
	errNotDir: "NFS4ERR_NOTDIR", errIsDir: "NFS4ERR_ISDIR", errInval: "NFS4ERR_INVAL",
	errFBig: "NFS4ERR_FBIG", errNoSpc: "NFS4ERR_NOSPC", errROFS: "NFS4ERR_ROFS",
	errNameTooLong: "NFS4ERR_NAMETOOLONG", errNotEmpty: "NFS4ERR_NOTEMPTY", errDQuot: "NFS4ERR_DQUOT",
	errStale: "NFS4ERR_STALE", errBadHandle: "NFS4ERR_BADHANDLE", errNotSupp: "NFS4ERR_NOTSUPP",
	errServerFault: "NFS4ERR_SERVERFAULT", errBadType: "NFS4ERR_BADTYPE", errDelay: "NFS4ERR_DELAY",
	errShareDenied: "NFS4ERR_SHARE_DENIED", errNoFileHandle: "NFS4ERR_NOFILEHANDLE",
	errBadStateID: "NFS4ERR_BAD_STATEID", errOldStateID: "NFS4ERR_OLD_STATEID",
	errOpenMode: "NFS4ERR_OPENMODE", errBadName: "NFS4ERR_BADNAME", errSymlink: "NFS4ERR_SYMLINK",
	errWrongType: "NFS4ERR_WRONG_TYPE", errLocksHeld: "NFS4ERR_LOCKS_HELD", errAttrNotSupp: "NFS4ERR_ATTRNOTSUPP",
	errRepTooBig: "NFS4ERR_REP_TOO_BIG", errRepTooBigToCache: "NFS4ERR_REP_TOO_BIG_TO_CACHE",
	errGrace: "NFS4ERR_GRACE", errNoGrace: "NFS4ERR_NO_GRACE", errReclaimBad: "NFS4ERR_RECLAIM_BAD",
	errReclaimConflict: "NFS4ERR_RECLAIM_CONFLICT",
}

func statusName(st uint32) string {
	if n, found := statusNames[st]; found {
		return n
	}
	return fmt.Sprintf("NFS4ERR_%d", st)
}
