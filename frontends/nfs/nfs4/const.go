package nfs4

// Numbers of RFC 8881 (NFSv4.1) and its XDR description (RFC 8882
// section 2 in RFC 5662's numbering).

import "github.com/gatewayd/gatewayd/fileshare"

// Status codes (nfsstat4).
const (
	ok                   = 0
	errPerm              = 1
	errNoEnt             = 2
	errIO                = 5
	errAccess            = 13
	errExist             = 17
	errNotDir            = 20
	errIsDir             = 21
	errInval             = 22
	errFBig              = 27
	errNoSpc             = 28
	errROFS              = 30
	errNameTooLong       = 63
	errNotEmpty          = 66
	errDQuot             = 69
	errStale             = 70
	errBadHandle         = 10001
	errBadCookie         = 10003
	errNotSupp           = 10004
	errTooSmall          = 10005
	errServerFault       = 10006
	errDelay             = 10008
	errNotSame           = 10027 // NFS4ERR_NOT_SAME
	errResource          = 10018
	errNoFileHandle      = 10020
	errMinorVersMismatch = 10021
	errStaleClientID     = 10022
	errBadStateID        = 10025
	errSymlink           = 10029
	errRestoreFH         = 10030
	errBadXDR            = 10036
	errBadName           = 10041
	errOpIllegal         = 10044
	errBadSession        = 10052
	errBadSlot           = 10053
	errCompleteAlready   = 10054
	errConnNotBound      = 10055
	errSeqMisordered     = 10063
	errSequencePos       = 10064
	errReqTooBig         = 10065
	errRepTooBig         = 10066
	errRepTooBigToCache  = 10067
	errRetryUncachedRep  = 10068
	errTooManyOps        = 10070
	errOpNotInSession    = 10071
	errClientIDBusy      = 10074
	errSeqFalseRetry     = 10076
	errNotOnlyOp         = 10081
	errWrongType         = 10083
)

// Operations (nfs_opnum4).
const (
	opAccess            = 3
	opGetattr           = 9
	opGetFH             = 10
	opLookup            = 15
	opLookupP           = 16
	opPutFH             = 22
	opPutPubFH          = 23
	opPutRootFH         = 24
	opRead              = 25
	opReadDir           = 26
	opReadLink          = 27
	opRestoreFH         = 31
	opSaveFH            = 32
	opSecinfo           = 33
	opBindConnToSession = 41
	opExchangeID        = 42
	opCreateSession     = 43
	opDestroySession    = 44
	opSecinfoNoName     = 52
	opSequence          = 53
	opDestroyClientID   = 57
	opReclaimComplete   = 58
	opIllegal           = 10044

	// The operations of minor version 1 are 3 to 58.
	firstOp = 3
	lastOp  = 58
)

// Procedures of program 100003 version 4.
const (
	procNull     = 0
	procCompound = 1
)

// Accept stats (RFC 5531) of the RPC reply.
const (
	AcceptSuccess     = 0
	AcceptProcUnavail = 3
	AcceptGarbageArgs = 4
)

// File types (nfs_ftype4).
const (
	typeReg  = 1
	typeDir  = 2
	typeBlk  = 3
	typeChr  = 4
	typeLnk  = 5
	typeSock = 6
	typeFIFO = 7
)

// specialTypes are the special files' nfs_ftype4 and their share types;
// fileTypes the other way.
var specialTypes = map[uint32]fileshare.FileType{typeBlk: fileshare.TypeBlock, typeChr: fileshare.TypeChar,
	typeSock: fileshare.TypeSocket, typeFIFO: fileshare.TypeFIFO}

var fileTypes = func() map[fileshare.FileType]uint32 {
	m := map[fileshare.FileType]uint32{}
	for n, t := range specialTypes {
		m[t] = n
	}
	return m
}()

// EXCHANGE_ID flags.
const (
	exchgidSuppMovedRefer  = 0x1
	exchgidSuppMovedMigr   = 0x2
	exchgidBindPrincState  = 0x100
	exchgidUseNonPNFS      = 0x10000
	exchgidMaskPNFS        = 0x70000
	exchgidUpdConfirmedRec = 0x40000000
	exchgidConfirmedR      = 0x80000000

	exchgidArgFlags = exchgidSuppMovedRefer | exchgidSuppMovedMigr | exchgidBindPrincState |
		exchgidMaskPNFS | exchgidUpdConfirmedRec
)

// State protection (state_protect_how4).
const (
	sp4None     = 0
	sp4MachCred = 1
	sp4SSV      = 2
)

// CREATE_SESSION flags.
const (
	sessPersist      = 0x1
	sessConnBackChan = 0x2
	sessConnRDMA     = 0x4
)

// BIND_CONN_TO_SESSION directions.
const (
	cdfcFore       = 0x1
	cdfcBack       = 0x2
	cdfcForeOrBoth = 0x3
	cdfcBackOrBoth = 0x7
)

// ACCESS bits.
const (
	accessRead    = 0x01
	accessLookup  = 0x02
	accessModify  = 0x04
	accessExtend  = 0x08
	accessDelete  = 0x10
	accessExecute = 0x20
	accessAll     = 0x3f
)

// Security flavours.
const (
	authNone = 0
	authSys  = 1
	authGSS  = 6
)
