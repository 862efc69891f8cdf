package nfstest

import (
	"encoding/binary"
	"fmt"
	"io"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// Stable is a WRITE's stable_how (RFC 1813 section 3.3.7): when the
// server must have made the data durable. The go-nfs-client's File.Write
// always sends FILE_SYNC and its Close sends COMMIT; WriteStable and
// Commit send the calls as given.
type Stable uint32

const (
	Unstable Stable = 0
	DataSync Stable = 1
	FileSync Stable = 2
)

func (s Stable) String() string {
	switch s {
	case Unstable:
		return "UNSTABLE"
	case DataSync:
		return "DATA_SYNC"
	case FileSync:
		return "FILE_SYNC"
	}
	return fmt.Sprintf("stable_how %d", uint32(s))
}

// WriteResult is a WRITE's answer: how many bytes were written, how
// durable they are (committed) and the server's write verifier.
type WriteResult struct {
	Count     uint32
	Committed Stable
	Verifier  [8]byte
}

// WriteStable sends one WRITE of data at off to the file fh with
// stable_how how. data must be at most the server's wtmax (FSINFO: 1 MiB
// for gatewayd, which closes the connection of a larger call); write more
// in several calls, as Target's Write does (it splits at wtpref).
func WriteStable(v *nfsc.Target, fh []byte, off uint64, data []byte, how Stable) (WriteResult, error) {
	return Handles{V: v}.Write(fh, off, data, how)
}

// Write is WriteStable with h's credential.
func (h Handles) Write(fh []byte, off uint64, data []byte, how Stable) (WriteResult, error) {
	type args struct {
		rpc.Header
		FH       []byte
		Offset   uint64
		Count    uint32
		How      uint32
		Contents []byte
	}
	type result struct {
		Wcc       nfsc.WccData
		Count     uint32
		How       uint32
		WriteVerf uint64
	}
	res, err := h.call(&args{Header: h.header(nfsc.NFSProc3Write), FH: fh, Offset: off, Count: uint32(len(data)), How: uint32(how), Contents: data})
	if err != nil {
		return WriteResult{}, fmt.Errorf("write %s at %d: %w", how, off, err)
	}
	var r result
	if err := xdr.Read(res, &r); err != nil {
		return WriteResult{}, fmt.Errorf("write %s at %d: reply: %w", how, off, err)
	}
	out := WriteResult{Count: r.Count, Committed: Stable(r.How)}
	binary.BigEndian.PutUint64(out.Verifier[:], r.WriteVerf)
	return out, nil
}

// Commit sends COMMIT for all of the file fh and returns the verifier.
func Commit(v *nfsc.Target, fh []byte) ([8]byte, error) {
	return Handles{V: v}.Commit(fh)
}

// Commit is the package's Commit with h's credential.
func (h Handles) Commit(fh []byte) ([8]byte, error) {
	type result struct {
		Wcc       nfsc.WccData
		WriteVerf uint64
	}
	var verf [8]byte
	res, err := h.call(&rangeArgs{Header: h.header(nfsc.NFSProc3Commit), FH: fh})
	if err != nil {
		return verf, fmt.Errorf("commit: %w", err)
	}
	var r result
	if err := xdr.Read(res, &r); err != nil {
		return verf, fmt.Errorf("commit: reply: %w", err)
	}
	binary.BigEndian.PutUint64(verf[:], r.WriteVerf)
	return verf, nil
}

// call sends a call and reads the NFS status of its reply.
func call(v *nfsc.Target, args any) (io.Reader, error) {
	res, err := v.Call(args)
	if err != nil {
		return nil, err
	}
	status, err := xdr.ReadUint32(res)
	if err != nil {
		return nil, err
	}
	if err := nfsc.NFS3Error(status); err != nil {
		return nil, err
	}
	return res, nil
}
