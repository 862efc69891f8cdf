package nfs4

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/gatewayd/gatewayd/fileshare"
)

// The pseudo file system and the operations that read (RFC 8881 sections
// 7 and 18). The pseudo root (PUTROOTFH) is a read-only directory holding
// one entry per share exported to the client over NFS, named as the share:
// below it is the share's own tree, whose handles are the NFSv3 ones
// (share id and inode), so a handle a v3 client got works here too.

// rootHandle is the pseudo root's file handle: "gw", version 2 (a v3
// handle is version 1, so neither is taken for the other), zeros.
var rootHandle = []byte{'g', 'w', 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// rootFileID is the pseudo root's fileid; its fsid is {0, 0}, a share's
// {1, share id}.
const rootFileID = 1

// fh is a current or saved file handle: the pseudo root (share nil) or a
// file of a share.
type fh struct {
	raw   []byte
	share *fileshare.Share
	path  string // in the share
	// gone: the file was removed (or renamed over) while open; its handle
	// serves only to end the opens (CLOSE, OPEN_DOWNGRADE, LOCKU), every
	// other use is NFS4ERR_STALE.
	gone bool
}

// object is a file as GETATTR and READDIR describe it.
type object struct {
	fh    *fh
	attr  fileshare.Attr
	mount bool // a share's root seen from the pseudo root
}

// fileOp runs an operation on files.
func (x *exec) fileOp(o op) uint32 {
	switch o.code {
	case opPutRootFH, opPutPubFH, opPutFH, opLookup, opLookupP, opCreate:
		// A new current file: the current stateid is no more (RFC 8881
		// section 16.2.3.1.2).
		x.curState, x.curLock = nil, nil
	}
	switch o.code {
	case opPutRootFH, opPutPubFH:
		x.cur = &fh{raw: rootHandle}
		return ok
	case opPutFH:
		return x.putFH(o.args.(fhArgs).fh)
	case opSaveFH:
		if x.cur == nil {
			return errNoFileHandle
		}
		x.saved = x.cur
		x.savedState, x.savedLock = x.curState, x.curLock
		return ok
	case opRestoreFH:
		if x.saved == nil {
			return errRestoreFH
		}
		x.cur = x.saved
		x.curState, x.curLock = x.savedState, x.savedLock
		return ok
	}
	if st, handled := x.writeOp(o); handled {
		return st
	}
	if x.cur == nil {
		return errNoFileHandle
	}
	switch o.code {
	case opGetFH:
		x.out.opaque(x.cur.raw)
		return ok
	case opLookup:
		return x.lookup(o.args.(nameArgs).name)
	case opLookupP:
		return x.lookupP()
	case opGetattr:
		return x.getattr(o.args.(getattrArgs).attrs)
	case opAccess:
		return x.access(o.args.(accessArgs).mask)
	case opReadLink:
		return x.readlink()
	case opRead:
		return x.read(o.args.(readArgs))
	case opReadDir:
		return x.readdir(o.args.(readdirArgs))
	case opSecinfo:
		return x.secinfo(o.args.(nameArgs).name)
	case opSecinfoNoName:
		return x.secinfoNoName(o.args.(secinfoNoArg).style)
	case opVerify, opNVerify:
		return x.verify(o.args.(verifyArgs), o.code == opVerify)
	}
	return errNotSupp
}

// status is the NFSv4 status of a share's error.
func status(err error) uint32 {
	for _, e := range []struct {
		err error
		st  uint32
	}{
		{ErrBadHandle, errBadHandle},
		{fileshare.ErrNotExist, errNoEnt},
		{fileshare.ErrStale, errStale},
		{fileshare.ErrExist, errExist},
		{fileshare.ErrReadOnly, errROFS},
		{fileshare.ErrNotEmpty, errNotEmpty},
		{fileshare.ErrNotDir, errNotDir},
		{fileshare.ErrIsDir, errIsDir},
		{fileshare.ErrNotSupp, errNotSupp},
		{fileshare.ErrNameTooLong, errNameTooLong},
		{fileshare.ErrInvalid, errInval},
	} {
		if errors.Is(err, e.err) {
			return e.st
		}
	}
	return errIO
}

// share checks that the client may use a share over NFS.
func (x *exec) allowed(sh *fileshare.Share) bool {
	cfg := sh.Config()
	if !cfg.Serves("nfs") {
		return false
	}
	if len(cfg.Clients) == 0 {
		return true
	}
	return x.conn.addr.IsValid() && cfg.Allows(x.conn.addr)
}

func (x *exec) putFH(raw []byte) uint32 {
	if bytes.Equal(raw, rootHandle) {
		x.cur = &fh{raw: rootHandle}
		return ok
	}
	if x.s.handles == nil {
		return errBadHandle
	}
	sh, p, err := x.s.handles.Resolve(raw)
	if err != nil {
		st := status(err)
		if st == errNoEnt {
			st = errStale
		}
		if st == errStale {
			if f := x.s.goneOpen(raw); f != nil && x.allowed(f.share) {
				x.cur = f
				return ok
			}
		}
		return st
	}
	if !x.allowed(sh) {
		return errAccess
	}
	x.cur = &fh{raw: bytes.Clone(raw), share: sh, path: p}
	return ok
}

// goneOpen is the handle of a file that is gone but still open: the
// file a RENAME or REMOVE took while a client had it open, which the
// client may still CLOSE.
func (s *Server) goneOpen(raw []byte) *fh {
	if s.shares == nil || s.handles == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.open.byFile {
		sh, err := s.shares.ByID(key.share)
		if err == nil && bytes.Equal(s.handles.Handle(sh, key.ino), raw) {
			return &fh{raw: bytes.Clone(raw), share: sh, gone: true}
		}
	}
	return nil
}

// stat reads the current file's attributes.
func (x *exec) stat(f *fh) (object, uint32) {
	if f.gone {
		return object{}, errStale
	}
	if f.share == nil {
		return object{fh: f, attr: fileshare.Attr{Ino: rootFileID, Type: fileshare.TypeDir, Mode: 0o555,
			Mtime: x.s.started, Ctime: x.s.started}}, ok
	}
	a, err := f.share.Stat(x.ctx, f.path)
	if err != nil {
		st := status(err)
		if st == errNoEnt {
			st = errStale // the handle's file is gone
		}
		return object{}, st
	}
	return object{fh: f, attr: a}, ok
}

// checkName checks a component (RFC 8881 section 14.2): UTF-8, not empty,
// not "." or "..", no "/".
func checkName(name []byte) uint32 {
	switch {
	case len(name) == 0 || !validUTF8(name):
		return errInval
	case len(name) > 255:
		return errNameTooLong
	case string(name) == "." || string(name) == ".." || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0:
		return errBadName
	}
	return ok
}

// dirOf checks that the current file is a directory (NFS4ERR_SYMLINK for
// a symbolic link, NFS4ERR_NOTDIR for any other file).
func (x *exec) dirOf() uint32 {
	o, st := x.stat(x.cur)
	switch {
	case st != ok:
		return st
	case o.attr.Type == fileshare.TypeSymlink:
		return errSymlink
	case o.attr.Type != fileshare.TypeDir:
		return errNotDir
	}
	return ok
}

// child looks name up in the current directory.
func (x *exec) child(name []byte) (*fh, uint32) {
	if st := x.dirOf(); st != ok {
		return nil, st
	}
	if st := checkName(name); st != ok {
		return nil, st
	}
	if x.cur.share == nil {
		sh := x.shareNamed(string(name))
		if sh == nil {
			return nil, errNoEnt
		}
		a, err := sh.Stat(x.ctx, "")
		if err != nil {
			return nil, status(err)
		}
		return &fh{raw: x.s.handles.Handle(sh, a.Ino), share: sh}, ok
	}
	p := string(name)
	if x.cur.path != "" {
		p = x.cur.path + "/" + p
	}
	a, err := x.cur.share.Stat(x.ctx, p)
	if err != nil {
		return nil, status(err)
	}
	return &fh{raw: x.s.handles.Handle(x.cur.share, a.Ino), share: x.cur.share, path: p}, ok
}

// shareNamed is the share of that name if the client may see it.
func (x *exec) shareNamed(name string) *fileshare.Share {
	if x.s.shares == nil {
		return nil
	}
	sh, err := x.s.shares.Get(name)
	if err != nil || !x.allowed(sh) {
		return nil
	}
	return sh
}

func (x *exec) lookup(name []byte) uint32 {
	f, st := x.child(name)
	if st == ok {
		x.cur = f
	}
	return st
}

func (x *exec) lookupP() uint32 {
	if st := x.dirOf(); st != ok {
		return st
	}
	f := x.cur
	switch {
	case f.share == nil:
		return errNoEnt
	case f.path == "":
		x.cur = &fh{raw: rootHandle}
		return ok
	}
	p := ""
	if i := strings.LastIndexByte(f.path, '/'); i >= 0 {
		p = f.path[:i]
	}
	a, err := f.share.Stat(x.ctx, p)
	if err != nil {
		return status(err)
	}
	x.cur = &fh{raw: x.s.handles.Handle(f.share, a.Ino), share: f.share, path: p}
	return ok
}

func (x *exec) getattr(req bitmap) uint32 {
	if req.has(attrTimeAccessSet) || req.has(attrTimeModifySet) {
		return errInval // write-only attributes
	}
	o, st := x.stat(x.cur)
	if st != ok {
		return st
	}
	x.s.encodeAttrs(&x.out, req, o)
	return ok
}

// access serves ACCESS: permission checks are the client's (as for
// NFSv3); a read-only share or the pseudo root grants no change.
func (x *exec) access(mask uint32) uint32 {
	o, st := x.stat(x.cur)
	if st != ok {
		return st
	}
	mask &= accessAll
	granted := mask
	if x.cur.share == nil || x.cur.share.Config().ReadOnly {
		granted &= accessRead | accessLookup | accessExecute
	}
	if o.attr.Type != fileshare.TypeDir {
		granted &^= accessLookup | accessDelete
	}
	x.out.u32(mask)
	x.out.u32(granted)
	return ok
}

func (x *exec) readlink() uint32 {
	o, st := x.stat(x.cur)
	switch {
	case st != ok:
		return st
	case o.attr.Type != fileshare.TypeSymlink:
		return errInval
	}
	target, err := x.cur.share.Readlink(x.ctx, x.cur.path)
	if err != nil {
		return status(err)
	}
	x.out.str(target)
	return ok
}

// read serves READ with an open's stateid or a special one (anonymous or
// read bypass).
func (x *exec) read(a readArgs) uint32 {
	if st := x.checkIO(a.stateid, false); st != ok {
		return st
	}
	o, st := x.regularFile()
	if st != ok {
		return st
	}
	n := int64(min(a.count, maxIO))
	if x.sess != nil {
		n = min(n, int64(x.sess.fore.maxResponse)-int64(len(x.out.b))-512)
	}
	size := o.attr.Size
	if a.offset >= uint64(size) {
		n = 0
	} else {
		n = max(0, min(n, size-int64(a.offset)))
	}
	at := len(x.out.b)
	x.out.b = append(x.out.b, make([]byte, 8+n+3)...)
	data := x.out.b[at+8 : at+8+int(n)]
	got := 0
	if n > 0 {
		var err error
		got, err = x.cur.share.ReadAt(x.ctx, x.cur.path, data, int64(a.offset))
		if err != nil && err != io.EOF {
			x.s.log.Warn("nfs4: read", "share", x.cur.share.Config().Name, "path", x.cur.path, "err", err)
			x.out.b = x.out.b[:at]
			return status(err)
		}
	}
	eof := a.offset+uint64(got) >= uint64(size)
	x.out.b = x.out.b[:at]
	x.out.bool(eof)
	x.out.u32(uint32(got))
	x.out.b = x.out.b[:len(x.out.b)+got]
	x.out.b = append(x.out.b, make([]byte, (4-got%4)%4)...)
	return ok
}

// regularFile reads the current file's attributes and checks that it is a
// regular file (NFS4ERR_ISDIR for a directory, NFS4ERR_INVAL for others).
func (x *exec) regularFile() (object, uint32) {
	o, st := x.stat(x.cur)
	switch {
	case st != ok:
		return o, st
	case o.attr.Type == fileshare.TypeDir:
		return o, errIsDir
	case o.attr.Type != fileshare.TypeFile:
		return o, errInval
	}
	return o, ok
}

// special says whether a stateid is the anonymous one (all zeros) or the
// read bypass one (all ones).
func (s stateid) special() bool {
	var zero, ones [12]byte
	for i := range ones {
		ones[i] = 0xff
	}
	return s.seq == 0 && s.other == zero || s.seq == 0xffffffff && s.other == ones
}

// readdir serves READDIR. Cookies are positions in the listing, sorted by
// name, from 3 (0 starts, 1 and 2 are reserved); the verifier is zero.
func (x *exec) readdir(a readdirArgs) uint32 {
	if st := x.dirOf(); st != ok {
		return st
	}
	if a.cookie == 1 || a.cookie == 2 {
		return errBadCookie
	}
	if a.cookie != 0 && a.verf != [8]byte{} {
		return errNotSame
	}
	if a.attrs.has(attrTimeAccessSet) || a.attrs.has(attrTimeModifySet) {
		return errInval
	}
	type entry struct {
		name string
		obj  object
		st   uint32
	}
	var entries []entry
	if x.cur.share == nil {
		if x.s.shares != nil {
			for _, cfg := range x.s.shares.List() {
				sh := x.shareNamed(cfg.Name)
				if sh == nil {
					continue
				}
				e := entry{name: cfg.Name}
				a, err := sh.Stat(x.ctx, "")
				e.obj, e.st = object{fh: &fh{share: sh}, attr: a, mount: true}, status(err)
				if err == nil {
					e.obj.fh.raw, e.st = x.s.handles.Handle(sh, a.Ino), ok
				}
				entries = append(entries, e)
			}
		}
	} else {
		list, err := x.cur.share.ReadDir(x.ctx, x.cur.path)
		if err != nil {
			return status(err)
		}
		for _, d := range list {
			p := d.Name
			if x.cur.path != "" {
				p = x.cur.path + "/" + p
			}
			f := &fh{raw: x.s.handles.Handle(x.cur.share, d.Attr.Ino), share: x.cur.share, path: p}
			entries = append(entries, entry{name: d.Name, obj: object{fh: f, attr: d.Attr}})
		}
	}
	first := uint64(0)
	if a.cookie >= 3 {
		first = a.cookie - 2
	}
	// maxcount bounds the whole result: the verifier, the entries, the
	// end of the list and eof.
	const overhead = 8 + 4 + 4
	if a.maxcount < overhead+4 {
		return errTooSmall
	}
	x.out.fixed(make([]byte, 8))
	start := len(x.out.b)
	var e enc
	eof := true
	n := 0
	for i := first; i < uint64(len(entries)); i++ {
		en := entries[i]
		e.b = e.b[:0]
		e.u32(1)
		e.u64(i + 3)
		e.str(en.name)
		req := a.attrs
		if en.st != ok {
			if !req.has(attrRdattrError) {
				x.out.b = x.out.b[:start-8]
				return en.st
			}
			var only bitmap
			only.set(attrRdattrError)
			e.bitmap(only)
			var v enc
			v.u32(en.st)
			e.opaque(v.b)
		} else {
			x.s.encodeAttrs(&e, req, en.obj)
		}
		if uint32(len(x.out.b)-start+len(e.b))+overhead > a.maxcount {
			eof = false
			break
		}
		x.out.b = append(x.out.b, e.b...)
		n++
	}
	if n == 0 && !eof {
		x.out.b = x.out.b[:start-8]
		return errTooSmall
	}
	x.out.u32(0)
	x.out.bool(eof)
	return ok
}

// secinfo serves SECINFO: the name must exist; the current file handle is
// consumed.
func (x *exec) secinfo(name []byte) uint32 {
	if _, st := x.child(name); st != ok {
		return st
	}
	x.secinfoList()
	x.cur = nil
	return ok
}

// secinfoNoName serves SECINFO_NO_NAME (style 0: the current file, 1 its
// parent); the current file handle is consumed.
func (x *exec) secinfoNoName(style uint32) uint32 {
	switch style {
	case 0:
	case 1:
		if x.cur.share == nil {
			return errNoEnt
		}
	default:
		return errInval
	}
	x.secinfoList()
	x.cur = nil
	return ok
}

// secinfoList appends the flavours served: AUTH_SYS and AUTH_NONE.
func (x *exec) secinfoList() {
	x.out.u32(2)
	x.out.u32(authSys)
	x.out.u32(authNone)
}

const (
	opNVerify = 17
	opVerify  = 37
	errSame   = 10009
)

type verifyArgs struct {
	mask bitmap
	vals []byte
}

func init() {
	dv := func(d *dec) any { return verifyArgs{mask: d.bitmap(), vals: d.opaque(maxRequest)} }
	decoders[opVerify], decoders[opNVerify] = dv, dv
}

// verify serves VERIFY (same: the attributes given are the file's) and
// NVERIFY (not the same).
func (x *exec) verify(a verifyArgs, same bool) uint32 {
	for _, n := range a.mask.bits() {
		switch {
		case n == attrRdattrError || n == attrTimeAccessSet || n == attrTimeModifySet:
			return errInval
		case !supported.has(n):
			return errAttrNotSupp
		}
	}
	o, st := x.stat(x.cur)
	if st != ok {
		return st
	}
	var e enc
	x.s.encodeAttrs(&e, a.mask, o)
	d := &dec{b: e.b}
	d.bitmap()
	equal := bytes.Equal(d.opaque(maxRequest), a.vals)
	switch {
	case same && !equal:
		return errNotSame
	case !same && equal:
		return errSame
	}
	return ok
}

// owner strings are numeric ids, which Linux clients take as they are.
func idString(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
