package nfs4

import (
	"context"
	"strings"

	"github.com/gatewayd/gatewayd/fileshare"
)

// The operations that change files: OPEN, CLOSE, OPEN_DOWNGRADE, WRITE,
// COMMIT, SETATTR, CREATE, REMOVE, RENAME, TEST_STATEID and FREE_STATEID.

// writeOp runs an operation of this file; handled says whether it is one.
func (x *exec) writeOp(o op) (st uint32, handled bool) {
	switch o.code {
	case opTestStateID:
		return x.testStateIDs(o.args.(stateidsArgs)), true
	case opBackchannelCtl:
		return x.backchannelCtl(o.args.(backchannelCtlArgs)), true
	case opFreeStateID:
		return x.freeStateID(o.args.(stateidsArgs).ids[0]), true
	case opOpen, opClose, opOpenDowngrade, opWrite, opCommit, opSetattr, opCreate, opRemove, opRename,
		opLock, opLockT, opLockU, opDelegReturn:
	default:
		return 0, false
	}
	if x.cur == nil {
		return errNoFileHandle, true
	}
	switch o.code {
	case opOpen:
		return x.openFile(o.args.(openArgs)), true
	case opClose:
		return x.closeFile(o.args.(closeArgs)), true
	case opOpenDowngrade:
		return x.downgrade(o.args.(downgradeArgs)), true
	case opWrite:
		return x.write(o.args.(writeArgs)), true
	case opCommit:
		return x.commit(), true
	case opSetattr:
		return x.setattr(o.args.(setattrArgs)), true
	case opLock:
		return x.lock(o.args.(lockArgs)), true
	case opLockT:
		return x.lockT(o.args.(locktArgs)), true
	case opLockU:
		return x.lockU(o.args.(lockuArgs)), true
	case opDelegReturn:
		return x.delegReturn(o.args.(stateidsArgs).ids[0]), true
	}
	// The namespace operations: the current file is a directory of a
	// writable share.
	if st := x.dirOf(); st != ok {
		return st, true
	}
	if x.cur.share == nil || x.cur.share.Config().ReadOnly {
		return errROFS, true
	}
	switch o.code {
	case opCreate:
		return x.create(o.args.(createArgs)), true
	case opRemove:
		return x.remove(o.args.(nameArgs).name), true
	}
	return x.rename(o.args.(renameArgs)), true
}

// owner is who a new file belongs to: the caller's AUTH_SYS ids (or the
// share's defaults without them), squashed as the share says.
func (x *exec) owner(sh *fileshare.Share) (uint32, uint32) {
	cfg := sh.Config()
	uid, gid := cfg.UID, cfg.GID
	if x.cred.Flavor == authSys {
		d := &dec{b: x.cred.Body}
		d.u32()
		d.opaque(255)
		u, g := d.u32(), d.u32()
		if !d.bad {
			uid, gid = u, g
		}
	}
	return cfg.MapOwner(uid, gid)
}

// childPath is the share path of name in the current directory.
func (x *exec) childPath(name []byte) string {
	if x.cur.path == "" {
		return string(name)
	}
	return x.cur.path + "/" + string(name)
}

// changeInfo appends a change_info4 of the current directory: its change
// attribute before and after (not atomic: the share does not say).
func (x *exec) changeInfo(before fileshare.Attr) {
	after, _ := x.cur.share.Stat(x.ctx, x.cur.path)
	x.out.bool(false)
	x.out.u64(uint64(before.Ctime.UnixNano()))
	x.out.u64(uint64(after.Ctime.UnixNano()))
}

func (x *exec) openFile(a openArgs) uint32 {
	access, deny := a.access&^shareWantMask, a.deny
	if access == 0 || access > shareAccessBoth || deny > shareAccessBoth {
		return errInval
	}
	if a.create && a.attrs.bad != ok {
		return a.attrs.bad
	}
	reclaim := a.claim == claimPrevious
	switch a.claim {
	case claimNull, claimFH, claimPrevious, claimDelegateCur, claimDelegCurFH:
		if st := x.mayOpen(reclaim); st != ok {
			return st
		}
		// The client's record is in the store before its first open is
		// answered (state.go).
		if st := x.keep(x.sess.client); st != ok {
			return st
		}
	}
	dir := x.cur
	var f *fh
	var created, delegated bool
	var before fileshare.Attr
	if a.claim == claimDelegateCur || a.claim == claimDelegCurFH {
		// An open the client made under its delegation, told the server
		// before the delegation goes back (a recall): the file as named.
		if a.create {
			return errInval
		}
		a.claim -= claimDelegateCur // CLAIM_NULL, or CLAIM_FH
		delegated = true
	}
	switch a.claim {
	case claimFH:
		if a.create {
			return errInval
		}
		f = x.cur
	case claimNull:
		if st := x.dirOf(); st != ok {
			return st
		}
		if st := checkName(a.name); st != ok {
			return st
		}
		if x.cur.share == nil {
			if a.create {
				return errROFS
			}
			return errIsDir // the shares of the pseudo root are directories
		}
		before, _ = x.cur.share.Stat(x.ctx, x.cur.path)
		var st uint32
		f, created, st = x.openCreate(a)
		if st != ok {
			return st
		}
	case claimPrevious:
		// A reclaim after a restart: of the current file, which the
		// client had open; nothing is created or truncated.
		a.create = false
		f = x.cur
	default:
		return errNotSupp // delegations: none yet
	}
	o, st := x.stat(f)
	switch {
	case st != ok:
		return st
	case o.attr.Type == fileshare.TypeDir:
		return errIsDir
	case o.attr.Type == fileshare.TypeSymlink:
		return errSymlink
	case o.attr.Type.Special():
		return errWrongType
	case access&shareAccessWrite != 0 && f.share.Config().ReadOnly:
		return errROFS
	}
	key := fileKey{f.share.Config().ID, o.attr.Ino}
	if access&shareAccessWrite != 0 && x.changing(key) {
		return errDelay // a delegation of it is being recalled
	}
	if !created && a.create && a.attrs.size != nil && *a.attrs.size == 0 && o.attr.Size != 0 {
		zero := int64(0)
		if _, err := f.share.SetAttr(x.ctx, f.path, fileshare.SetAttr{Size: &zero}); err != nil {
			return status(err)
		}
	}
	s := x.s
	s.mu.Lock()
	if delegated {
		if d, st, found := x.findDeleg(a.deleg); !found || st != ok || d.file != key {
			s.mu.Unlock()
			if found && st != ok {
				return st
			}
			return errBadStateID
		}
	}
	var mine *openState
	for _, p := range s.open.byFile[key] {
		if p.client == x.sess.client && p.owner == string(a.owner) {
			mine = p
			continue
		}
		if access&p.deny != 0 || deny&p.access != 0 {
			s.mu.Unlock()
			if reclaim {
				return errReclaimConflict
			}
			return errShareDenied
		}
	}
	if mine == nil {
		mine = &openState{other: s.newOther(), client: x.sess.client, owner: string(a.owner), file: key}
		s.open.byOther[mine.other] = mine
		s.open.byFile[key] = append(s.open.byFile[key], mine)
	}
	mine.seq++
	mine.access |= access
	mine.deny |= deny
	sid := mine.stateid()
	x.curState = mine
	var deleg *delegation
	var why uint32
	if s.opts.ReadDelegations && !delegated && (a.claim == claimNull || a.claim == claimFH) {
		deleg, why = x.maybeGrant(key, f.raw, access, a.access&wantMask)
		if deleg != nil {
			s.watch(f.share)
		}
	}
	s.mu.Unlock()

	x.cur = f
	e := &x.out
	e.u32(sid.seq)
	e.fixed(sid.other[:])
	if a.claim == claimNull {
		x.cur = dir
		x.changeInfo(before)
		x.cur = f
	} else {
		e.bool(false)
		e.u64(0)
		e.u64(0)
	}
	e.u32(0x4) // OPEN4_RESULT_LOCKTYPE_POSIX
	var set bitmap
	if created {
		set = a.attrs.mask
		if a.mode == createExclusive {
			set = nil
		}
	}
	e.bitmap(set)
	if !s.opts.ReadDelegations && a.access&wantMask != 0 && a.access&wantMask != wantNoDeleg {
		why = 3 // WND4_NOT_SUPP_FTYPE: no delegations are handed out
	}
	e.delegation(deleg, a.access&wantMask, why)
	return ok
}

// openCreate finds or makes the file of a CLAIM_NULL open.
func (x *exec) openCreate(a openArgs) (*fh, bool, uint32) {
	sh := x.cur.share
	p := x.childPath(a.name)
	attr, err := sh.Stat(x.ctx, p)
	exists := err == nil
	if err != nil && status(err) != errNoEnt {
		return nil, false, status(err)
	}
	if !a.create {
		if !exists {
			return nil, false, errNoEnt
		}
		return &fh{raw: x.s.handles.Handle(sh, attr.Ino), share: sh, path: p}, false, ok
	}
	if sh.Config().ReadOnly {
		return nil, false, errROFS
	}
	exclusive := a.mode == createExclusive || a.mode == createExclusive41
	if exists {
		switch {
		case a.mode == createGuarded:
			return nil, false, errExist
		case exclusive:
			x.s.mu.Lock()
			v, found := x.s.open.exclusive[fileKey{sh.Config().ID, attr.Ino}]
			x.s.mu.Unlock()
			if !found || v != a.verifier {
				return nil, false, errExist
			}
		}
		return &fh{raw: x.s.handles.Handle(sh, attr.Ino), share: sh, path: p}, false, ok
	}
	mode := sh.Config().FileMode
	if a.attrs.mode != nil {
		mode = *a.attrs.mode & 0o7777
	}
	uid, gid := x.owner(sh)
	attr, err = sh.Create(x.ctx, p, mode, uid, gid, exclusive || a.mode == createGuarded)
	if err != nil {
		return nil, false, status(err)
	}
	if exclusive {
		x.s.mu.Lock()
		x.s.open.exclusive[fileKey{sh.Config().ID, attr.Ino}] = a.verifier
		x.s.mu.Unlock()
	}
	f := &fh{raw: x.s.handles.Handle(sh, attr.Ino), share: sh, path: p}
	if a.mode != createExclusive {
		if st := x.applyAttrs(f, a.attrs, true); st != ok {
			return nil, false, st
		}
	}
	return f, true, ok
}

// applyAttrs sets what a fattr4 asks (a new file's owner is already set).
func (x *exec) applyAttrs(f *fh, a fattr, created bool) uint32 {
	var ch fileshare.SetAttr
	if a.size != nil {
		n := int64(*a.size)
		if *a.size > fileshare.MaxFileSize {
			return errFBig
		}
		ch.Size = &n
	}
	if a.mode != nil && !created {
		m := *a.mode & 0o7777
		ch.Mode = &m
	}
	if a.uid != nil || a.gid != nil {
		cfg := f.share.Config()
		uid, gid := a.uid, a.gid
		if uid != nil {
			u, _ := cfg.MapOwner(*uid, 1)
			uid = &u
		}
		if gid != nil {
			_, g := cfg.MapOwner(1, *gid)
			gid = &g
		}
		ch.UID, ch.GID = uid, gid
	}
	if a.mtime != nil {
		t := *a.mtime
		if t.IsZero() {
			t = x.s.opts.Now()
		}
		ch.Mtime = &t
	}
	if ch == (fileshare.SetAttr{}) {
		return ok
	}
	if _, err := f.share.SetAttr(x.ctx, f.path, ch); err != nil {
		return status(err)
	}
	return ok
}

func (x *exec) closeFile(a closeArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	o, st := x.findState(a.stateid)
	switch {
	case st != ok:
		return st
	case o == nil || s.open.locks[a.stateid.other] != nil:
		return errBadStateID
	}
	for _, l := range o.locks {
		if len(l.ranges) > 0 {
			return errLocksHeld
		}
	}
	s.removeOpen(o)
	x.curState = nil
	x.out.u32(0xffffffff) // the invalid special stateid
	x.out.fixed(make([]byte, 12))
	return ok
}

func (x *exec) downgrade(a downgradeArgs) uint32 {
	access := a.access &^ shareWantMask
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	o, st := x.findState(a.stateid)
	switch {
	case st != ok:
		return st
	case o == nil:
		return errBadStateID
	case access == 0 || access&^o.access != 0 || a.deny&^o.deny != 0:
		return errInval
	}
	o.access, o.deny = access, a.deny
	o.seq++
	x.out.u32(o.seq)
	x.out.fixed(o.other[:])
	return ok
}

// checkIO checks a READ's or WRITE's stateid against the current file.
func (x *exec) checkIO(id stateid, write bool) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	o, st := x.findState(id)
	switch {
	case st != ok:
		return st
	case o == nil && write && !id.special():
		return errOpenMode // a read delegation's stateid
	case o == nil:
		return ok
	case write && o.access&shareAccessWrite == 0:
		return errOpenMode
	}
	return ok
}

// takeBuffer returns the part of the call's buffer a WRITE's data can go
// to the share from (WriteFrom: the data, and room before it), and where
// the data starts in it; nil when the buffer is not there to take (taken
// by a WRITE before in the COMPOUND). The room is what follows the tag:
// the arguments of the operations run before the WRITE and its own,
// which nothing reads again; the tag is in the reply.
func (x *exec) takeBuffer(a writeArgs) (buf []byte, head int) {
	b := x.buf
	if b == nil || len(a.data) == 0 {
		return nil, 0
	}
	from, start, end := b.Start+x.c.afterTag, b.Start+a.at, b.Start+a.at+len(a.data)
	if from > start || end > len(b.B) || &b.B[start] != &a.data[0] {
		return nil, 0 // cannot happen: a.at is where the decoder took the data from
	}
	return b.B[from:end], start - from
}

// write serves WRITE: UNSTABLE is answered once the data is in the upload
// buffer, durable at COMMIT; DATA_SYNC and FILE_SYNC once it is durable,
// as NFSv3's WRITE.
func (x *exec) write(a writeArgs) uint32 {
	if st := x.checkIO(a.stateid, true); st != ok {
		return st
	}
	obj, st := x.regularFile()
	if st != ok {
		return st
	}
	switch {
	case x.cur.share.Config().ReadOnly:
		return errROFS
	case x.changing(fileKey{x.cur.share.Config().ID, obj.attr.Ino}):
		return errDelay // another client's delegation is being recalled
	case a.offset > fileshare.MaxFileSize || a.offset+uint64(len(a.data)) > fileshare.MaxFileSize:
		return errFBig
	}
	d, committed := fileshare.Durable, uint32(2) // FILE_SYNC4
	if a.stable == 0 {
		d, committed = fileshare.Buffered, 0 // UNSTABLE4
	}
	// Not cancelled with x.ctx (its values kept: changeSource): a write
	// cut off between its record and its apply would leave the cache
	// behind the log (as NFSv3's WRITE).
	ctx := context.WithoutCancel(x.ctx)
	var err error
	if buf, head := x.takeBuffer(a); buf != nil {
		release := x.buf.Take(len(a.data), d == fileshare.Buffered)
		x.buf = nil
		_, _, err = x.cur.share.WriteFrom(ctx, x.cur.path, buf, head, int64(a.offset), d, release)
	} else {
		_, err = x.cur.share.Write(ctx, x.cur.path, a.data, int64(a.offset), d)
	}
	if err != nil {
		x.s.log.Warn("nfs4: write", "share", x.cur.share.Config().Name, "path", x.cur.path, "err", err)
		return status(err)
	}
	x.out.u32(uint32(len(a.data)))
	x.out.u32(committed)
	x.out.fixed(x.s.opts.WriteVerifier[:])
	return ok
}

func (x *exec) commit() uint32 {
	if _, st := x.regularFile(); st != ok {
		return st
	}
	if !x.cur.share.Config().ReadOnly {
		if err := x.cur.share.Sync(x.ctx); err != nil {
			return errIO
		}
	}
	x.out.fixed(x.s.opts.WriteVerifier[:])
	return ok
}

// setattr serves SETATTR; its result carries the attributes set, also
// when it fails (none then).
func (x *exec) setattr(a setattrArgs) uint32 {
	x.keepBody = true
	x.out.bitmap(nil)
	at := len(x.out.b)
	st := func() uint32 {
		if a.attrs.bad != ok {
			return a.attrs.bad
		}
		if a.attrs.size != nil {
			if st := x.checkIO(a.stateid, true); st != ok {
				return st
			}
		}
		o, st := x.stat(x.cur)
		switch {
		case st != ok:
			return st
		case x.cur.share == nil || x.cur.share.Config().ReadOnly:
			return errROFS
		case a.attrs.size != nil && o.attr.Type == fileshare.TypeDir:
			return errIsDir
		case a.attrs.size != nil && o.attr.Type != fileshare.TypeFile:
			return errInval
		case o.attr.Type == fileshare.TypeFile && x.changing(fileKey{x.cur.share.Config().ID, o.attr.Ino}):
			return errDelay
		}
		return x.applyAttrs(x.cur, a.attrs, false)
	}()
	if st == ok {
		x.out.b = x.out.b[:at-4]
		x.out.bitmap(a.attrs.mask)
	}
	return st
}

// create serves CREATE: directories and symbolic links (a share holds no
// device files, FIFOs or sockets).
func (x *exec) create(a createArgs) uint32 {
	if st := checkName(a.name); st != ok {
		return st
	}
	if a.attrs.bad != ok {
		return a.attrs.bad
	}
	sh := x.cur.share
	p := x.childPath(a.name)
	before, _ := sh.Stat(x.ctx, x.cur.path)
	uid, gid := x.owner(sh)
	var attr fileshare.Attr
	var err error
	switch a.ftype {
	case typeDir:
		mode := sh.Config().DirMode
		if a.attrs.mode != nil {
			mode = *a.attrs.mode & 0o7777
		}
		attr, err = sh.Mkdir(x.ctx, p, mode, uid, gid)
	case typeLnk:
		if !validUTF8(a.target) || len(a.target) == 0 {
			return errInval
		}
		attr, err = sh.Symlink(x.ctx, p, string(a.target), uid, gid)
	case typeBlk, typeChr, typeSock, typeFIFO:
		mode := sh.Config().FileMode
		if a.attrs.mode != nil {
			mode = *a.attrs.mode & 0o7777
		}
		attr, err = sh.Mknod(x.ctx, p, specialTypes[a.ftype], mode, uid, gid, a.rdev)
	default: // NF4REG (OPEN makes those), NF4ATTRDIR, NF4NAMEDATTR
		return errBadType
	}
	if err != nil {
		return status(err)
	}
	f := &fh{raw: x.s.handles.Handle(sh, attr.Ino), share: sh, path: p}
	if st := x.applyAttrs(f, fattr{size: nil, uid: nil, gid: nil, mtime: a.attrs.mtime}, true); st != ok {
		return st
	}
	x.changeInfo(before)
	x.out.bitmap(a.attrs.mask)
	x.cur = f
	return ok
}

func (x *exec) remove(name []byte) uint32 {
	if st := checkName(name); st != ok {
		return st
	}
	if x.changingPath(x.cur.share, x.childPath(name)) {
		return errDelay
	}
	before, _ := x.cur.share.Stat(x.ctx, x.cur.path)
	if err := x.cur.share.Remove(x.ctx, x.childPath(name)); err != nil {
		return status(err)
	}
	x.changeInfo(before)
	return ok
}

// rename serves RENAME from the saved directory to the current one, both
// of one share.
func (x *exec) rename(a renameArgs) uint32 {
	if x.saved == nil {
		return errNoFileHandle
	}
	if st := checkName(a.from); st != ok {
		return st
	}
	if st := checkName(a.to); st != ok {
		return st
	}
	src, dst := x.saved, x.cur
	if src.share == nil || src.share != dst.share {
		return errXDev
	}
	x.cur = src
	st := x.dirOf()
	x.cur = dst
	if st != ok {
		return st
	}
	sh := dst.share
	join := func(dir string, name []byte) string {
		if dir == "" {
			return string(name)
		}
		return dir + "/" + string(name)
	}
	from, to := join(src.path, a.from), join(dst.path, a.to)
	switch {
	case from == to:
		// A name renamed to itself: nothing to do if it exists.
		if _, err := sh.Stat(x.ctx, from); err != nil {
			return status(err)
		}
		for range 2 {
			x.out.bool(false)
			x.out.u64(0)
			x.out.u64(0)
		}
		return ok
	case strings.HasPrefix(to+"/", from+"/"):
		return errInval // a directory into itself
	}
	if x.changingPath(sh, from) || x.changingPath(sh, to) {
		return errDelay
	}
	srcBefore, _ := sh.Stat(x.ctx, src.path)
	dstBefore, _ := sh.Stat(x.ctx, dst.path)
	if err := sh.Rename(x.ctx, from, to); err != nil {
		return status(err)
	}
	x.cur = src
	x.changeInfo(srcBefore)
	x.cur = dst
	x.changeInfo(dstBefore)
	return ok
}

// testStateIDs serves TEST_STATEID: each stateid's status.
func (x *exec) testStateIDs(a stateidsArgs) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	x.out.u32(uint32(len(a.ids)))
	for _, id := range a.ids {
		if id.special() {
			x.out.u32(errBadStateID)
			continue
		}
		_, st := x.findState(id)
		x.out.u32(st)
	}
	return ok
}

// freeStateID serves FREE_STATEID: an open's stateid is freed by CLOSE.
func (x *exec) freeStateID(id stateid) uint32 {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, st, found := x.findDeleg(id); found {
		switch st {
		case errDelegRevoked:
			delete(s.open.delegs, d.other)
			d.client.revoked--
			return ok
		case ok:
			return errLocksHeld // a delegation is freed by DELEGRETURN
		}
		return st
	}
	o, st := x.findState(id)
	switch {
	case st != ok:
		return st
	case o == nil:
		return errBadStateID
	}
	l := s.open.locks[id.other]
	if l == nil || len(l.ranges) > 0 {
		return errLocksHeld // an open is freed by CLOSE, a lock stateid once it holds nothing
	}
	delete(s.open.locks, l.other)
	for i, p := range o.locks {
		if p == l {
			o.locks = append(o.locks[:i], o.locks[i+1:]...)
			break
		}
	}
	return ok
}
