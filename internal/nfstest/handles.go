package nfstest

import (
	"errors"
	"fmt"
	"io"
	"reflect"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// Handles sends NFSv3 calls by file handle, as a kernel client does once
// it has looked a directory up, instead of the go-nfs-client's path calls
// (a LOOKUP of every component from the root for each call, and listings
// 4 KiB at a time). V carries the connection; Cred is the credential
// (rpc.AuthNull when zero).
type Handles struct {
	V    *nfsc.Target
	Cred rpc.Auth
}

func (h Handles) header(proc uint32) rpc.Header {
	return rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Proc: proc, Cred: h.Cred, Verf: rpc.AuthNull}
}

// RootFH is the handle of the directory v was mounted at (the client
// keeps it unexported).
func RootFH(v *nfsc.Target) []byte {
	return append([]byte(nil), reflect.ValueOf(v).Elem().FieldByName("fh").Bytes()...)
}

// MountFH sends MOUNT's MNT for path on c (a connection to the MOUNT
// service) and returns the root handle: for servers whose MOUNT and NFS
// services listen on different ports, where nfsc.Mount does not fit.
func MountFH(c *rpc.Client, path string, cred rpc.Auth) ([]byte, error) {
	type mnt struct {
		rpc.Header
		Dirpath string
	}
	res, err := c.Call(&mnt{rpc.Header{Rpcvers: 2, Prog: nfsc.MountProg, Vers: nfsc.MountVers, Proc: nfsc.MountProc3MNT, Cred: cred, Verf: rpc.AuthNull}, path})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", path, err)
	}
	status, err := xdr.ReadUint32(res)
	if err != nil {
		return nil, fmt.Errorf("mount %s: reply: %w", path, err)
	}
	if status != nfsc.MNT3Ok {
		return nil, fmt.Errorf("mount %s: status %d", path, status)
	}
	fh, err := xdr.ReadOpaque(res)
	if err != nil {
		return nil, fmt.Errorf("mount %s: reply: %w", path, err)
	}
	return fh, nil
}

func (h Handles) call(args any) (io.Reader, error) { return call(h.V, args) }

// rangeArgs are the arguments of READ and COMMIT: a file and a range.
type rangeArgs struct {
	rpc.Header
	FH     []byte
	Offset uint64
	Count  uint32
}

// Lookup looks name up in the directory dir.
func (h Handles) Lookup(dir []byte, name string) ([]byte, nfsc.Fattr, error) {
	type args struct {
		rpc.Header
		What nfsc.Diropargs3
	}
	type result struct {
		FH      []byte
		Attr    nfsc.PostOpAttr
		DirAttr nfsc.PostOpAttr
	}
	res, err := h.call(&args{h.header(nfsc.NFSProc3Lookup), nfsc.Diropargs3{FH: dir, Filename: name}})
	if err != nil {
		return nil, nfsc.Fattr{}, fmt.Errorf("lookup %s: %w", name, err)
	}
	var r result
	if err := xdr.Read(res, &r); err != nil {
		return nil, nfsc.Fattr{}, fmt.Errorf("lookup %s: reply: %w", name, err)
	}
	return r.FH, r.Attr.Attr, nil
}

// newEntry sends CREATE (UNCHECKED: an existing file is kept, as
// open(O_CREAT) does) or MKDIR of name in dir with mode, and returns the
// new handle.
func (h Handles) newEntry(proc uint32, dir []byte, name string, mode uint32) ([]byte, error) {
	type createArgs struct {
		rpc.Header
		Where nfsc.Diropargs3
		How   uint32 // UNCHECKED
		Attr  nfsc.Sattr3
	}
	type mkdirArgs struct {
		rpc.Header
		Where nfsc.Diropargs3
		Attr  nfsc.Sattr3
	}
	type result struct {
		FH     nfsc.PostOpFH3
		Attr   nfsc.PostOpAttr
		DirWcc nfsc.WccData
	}
	where := nfsc.Diropargs3{FH: dir, Filename: name}
	attr := nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: mode}}
	var args any = &mkdirArgs{h.header(proc), where, attr}
	what := "mkdir"
	if proc == nfsc.NFSProc3Create {
		args, what = &createArgs{h.header(proc), where, 0, attr}, "create"
	}
	res, err := h.call(args)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	var r result
	if err := xdr.Read(res, &r); err != nil {
		return nil, fmt.Errorf("%s %s: reply: %w", what, name, err)
	}
	if !r.FH.IsSet {
		// Allowed by RFC 1813; gatewayd and ganesha always send it.
		fh, _, err := h.Lookup(dir, name)
		return fh, err
	}
	return r.FH.FH, nil
}

// Create creates the file name in dir (UNCHECKED) and returns its handle.
func (h Handles) Create(dir []byte, name string, mode uint32) ([]byte, error) {
	return h.newEntry(nfsc.NFSProc3Create, dir, name, mode)
}

// Mkdir makes the directory name in dir and returns its handle.
func (h Handles) Mkdir(dir []byte, name string, mode uint32) ([]byte, error) {
	return h.newEntry(nfsc.NFSProc3Mkdir, dir, name, mode)
}

// Truncate sets the size of fh to 0 (SETATTR).
func (h Handles) Truncate(fh []byte) error {
	type args struct {
		rpc.Header
		FH    []byte
		Attr  nfsc.Sattr3
		Guard uint32 // no check
	}
	_, err := h.call(&args{Header: h.header(nfsc.NFSProc3SetAttr), FH: fh, Attr: nfsc.Sattr3{Size: nfsc.SetSize{SetIt: true}}})
	if err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	return nil
}

// WriteAll writes data to fh from offset 0 in WRITEs of at most 1 MiB,
// as a kernel client writes a file at close: one WRITE FILE_SYNC when it
// fits, else UNSTABLE WRITEs and a COMMIT (also when a FILE_SYNC WRITE
// was answered less stable). The data is durable when it returns nil.
func (h Handles) WriteAll(fh []byte, data []byte) error {
	const most = 1 << 20
	how := FileSync
	if len(data) > most {
		how = Unstable
	}
	commit := false
	for off := 0; off < len(data); {
		n := min(most, len(data)-off)
		r, err := h.Write(fh, uint64(off), data[off:off+n], how)
		if err != nil {
			return err
		}
		if r.Count == 0 {
			return fmt.Errorf("write at %d: the server wrote nothing", off)
		}
		commit = commit || r.Committed != FileSync
		off += int(r.Count)
	}
	if commit {
		if _, err := h.Commit(fh); err != nil {
			return err
		}
	}
	return nil
}

// Read reads up to count bytes of fh at off; eof says the file ends there.
func (h Handles) Read(fh []byte, off uint64, count uint32) ([]byte, bool, error) {
	type result struct {
		Attr  nfsc.PostOpAttr
		Count uint32
		EOF   bool
		Data  []byte
	}
	res, err := h.call(&rangeArgs{h.header(nfsc.NFSProc3Read), fh, off, count})
	if err != nil {
		return nil, false, fmt.Errorf("read at %d: %w", off, err)
	}
	var r result
	if err := xdr.Read(res, &r); err != nil {
		return nil, false, fmt.Errorf("read at %d: reply: %w", off, err)
	}
	return r.Data, r.EOF, nil
}

// ReadAll reads the whole of fh, 1 MiB at a time.
func (h Handles) ReadAll(fh []byte) ([]byte, error) {
	var out []byte
	for {
		b, eof, err := h.Read(fh, uint64(len(out)), 1<<20)
		if err != nil {
			return out, err
		}
		out = append(out, b...)
		if eof {
			return out, nil
		}
		if len(b) == 0 {
			return out, errors.New("read: no data and no end of file")
		}
	}
}

// ReadDirPlus lists the directory dir with READDIRPLUS, 64 KiB replies,
// with each entry's attributes and handle ("." and ".." left out).
func (h Handles) ReadDirPlus(dir []byte) ([]nfsc.EntryPlus, error) {
	var out []nfsc.EntryPlus
	err := h.ReadDirPlusEach(dir, func(page []nfsc.EntryPlus) error {
		out = append(out, page...)
		return nil
	})
	return out, err
}

// ReadDirPlusEach is ReadDirPlus calling fn with each reply's entries as
// it comes; an error from fn ends the listing with it.
func (h Handles) ReadDirPlusEach(dir []byte, fn func([]nfsc.EntryPlus) error) error {
	type args struct {
		rpc.Header
		FH         []byte
		Cookie     uint64
		CookieVerf uint64
		DirCount   uint32
		MaxCount   uint32
	}
	type head struct {
		DirAttr    nfsc.PostOpAttr
		CookieVerf uint64
	}
	type item struct {
		IsSet bool           `xdr:"union"`
		Entry nfsc.EntryPlus `xdr:"unioncase=1"`
	}
	var cookie, verf uint64
	for total := 0; ; {
		res, err := h.call(&args{h.header(nfsc.NFSProc3ReadDirPlus), dir, cookie, verf, 16 << 10, 64 << 10})
		if err != nil {
			return fmt.Errorf("readdirplus after %d entries: %w", total, err)
		}
		var hd head
		if err := xdr.Read(res, &hd); err != nil {
			return fmt.Errorf("readdirplus: reply: %w", err)
		}
		var page []nfsc.EntryPlus
		n := 0
		for {
			var it item
			if err := xdr.Read(res, &it); err != nil {
				return fmt.Errorf("readdirplus: entry: %w", err)
			}
			if !it.IsSet {
				break
			}
			n++
			cookie = it.Entry.Cookie
			if it.Entry.FileName != "." && it.Entry.FileName != ".." {
				page = append(page, it.Entry)
			}
		}
		total += len(page)
		eof, err := xdr.ReadUint32(res)
		if err != nil {
			return fmt.Errorf("readdirplus: end: %w", err)
		}
		if err := fn(page); err != nil {
			return err
		}
		if eof != 0 {
			return nil
		}
		if n == 0 {
			return errors.New("readdirplus: a reply with no entries and no end")
		}
		verf = hd.CookieVerf
	}
}
