// Package procs names the ONC RPC procedures of NFSv3 and MOUNT v3
// (RFC 1813), for latency figures and test reports.
package procs

import "fmt"

// Program numbers.
const (
	NFS   = 100003
	Mount = 100005
)

var (
	nfsProcs = [...]string{"NULL", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "READLINK", "READ", "WRITE",
		"CREATE", "MKDIR", "SYMLINK", "MKNOD", "REMOVE", "RMDIR", "RENAME", "LINK", "READDIR", "READDIRPLUS",
		"FSSTAT", "FSINFO", "PATHCONF", "COMMIT"}
	mountProcs = [...]string{"NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"}
)

// Name is a call's procedure name ("READ", "MNT"), or "other" for a
// program or procedure neither protocol has.
func Name(prog, proc uint32) string {
	switch {
	case prog == NFS && proc < uint32(len(nfsProcs)):
		return nfsProcs[proc]
	case prog == Mount && proc < uint32(len(mountProcs)):
		return mountProcs[proc]
	}
	return "other"
}

// Describe is Name with the numbers, for messages.
func Describe(prog, proc uint32) string {
	return fmt.Sprintf("%s (program %d, procedure %d)", Name(prog, proc), prog, proc)
}
