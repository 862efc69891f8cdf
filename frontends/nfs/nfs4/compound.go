package nfs4

import "unicode/utf8"

// The COMPOUND procedure's arguments (COMPOUND4args), decoded whole
// before any operation runs. An operation whose arguments do not decode
// ends the list: it is kept with its error (NFS4ERR_BADXDR, or
// NFS4ERR_OP_ILLEGAL for an operation number not of minor version 1, or
// NFS4ERR_NOTSUPP for one this server does not serve), and the operations
// after it are not read, since their start is not known. The error is the
// operation's result when the compound reaches it.

// maxOps is the most operations a COMPOUND may carry; one with more is
// answered NFS4ERR_RESOURCE without running any. A session's own limit
// (ca_maxoperations, which SEQUENCE checks) is below it.
const maxOps = 128

// Bounds of XDR fields (RFC 8881).
const (
	maxFH       = 128  // NFS4_FHSIZE
	opaqueLimit = 1024 // NFS4_OPAQUE_LIMIT
	maxName     = 1024 // a component or tag read; longer is bad XDR
)

type compound struct {
	tag      []byte
	afterTag int // where the arguments after the tag start
	minor    uint32
	ops      []op
	status   uint32 // not ok: the whole compound fails with it, no operation runs
}

// op is one operation and its decoded arguments; err, when not ok, is its
// result without running (the last op of the list).
type op struct {
	code uint32
	args any
	err  uint32
}

// Arguments of the operations served.
type (
	fhArgs       struct{ fh []byte }
	nameArgs     struct{ name []byte }
	getattrArgs  struct{ attrs bitmap }
	accessArgs   struct{ mask uint32 }
	secinfoNoArg struct{ style uint32 }
	readArgs     struct {
		stateid stateid
		offset  uint64
		count   uint32
	}
	readdirArgs struct {
		cookie   uint64
		verf     [8]byte
		dircount uint32
		maxcount uint32
		attrs    bitmap
	}
	exchangeIDArgs struct {
		verifier [8]byte
		owner    []byte
		flags    uint32
		protect  uint32
	}
	channelAttrs struct {
		headerPad, maxRequest, maxResponse, maxResponseCached, maxOps, maxReqs uint32
		rdmaIRD                                                                []uint32
	}
	createSessionArgs struct {
		clientID   uint64
		seq        uint32
		flags      uint32
		fore, back channelAttrs
		cbProgram  uint32
		cbCred     Cred // the first of callback_sec_parms4 this server makes
	}
	sequenceArgs struct {
		session   sessionID
		seq       uint32
		slot      uint32
		highest   uint32
		cacheThis bool
	}
	sessionArgs  struct{ session sessionID }
	bindConnArgs struct {
		session sessionID
		dir     uint32
		rdma    bool
	}
	clientIDArgs        struct{ clientID uint64 }
	reclaimCompleteArgs struct{ oneFS bool }
)

// stateid is a stateid4.
type stateid struct {
	seq   uint32
	other [12]byte
}

type sessionID [16]byte

// decoders read the arguments of each operation served; an operation of
// minor version 1 not in it is NFS4ERR_NOTSUPP.
var decoders = map[uint32]func(d *dec) any{
	opAccess:    func(d *dec) any { return accessArgs{d.u32()} },
	opGetattr:   func(d *dec) any { return getattrArgs{d.bitmap()} },
	opGetFH:     nil,
	opLookup:    func(d *dec) any { return nameArgs{d.opaque(maxName)} },
	opLookupP:   nil,
	opPutFH:     func(d *dec) any { return fhArgs{d.opaque(maxFH)} },
	opPutPubFH:  nil,
	opPutRootFH: nil,
	opRead: func(d *dec) any {
		return readArgs{stateid: d.stateid(), offset: d.u64(), count: d.u32()}
	},
	opReadDir: func(d *dec) any {
		a := readdirArgs{cookie: d.u64()}
		copy(a.verf[:], d.fixed(8))
		a.dircount, a.maxcount, a.attrs = d.u32(), d.u32(), d.bitmap()
		return a
	},
	opReadLink:      nil,
	opRestoreFH:     nil,
	opSaveFH:        nil,
	opSecinfo:       func(d *dec) any { return nameArgs{d.opaque(maxName)} },
	opSecinfoNoName: func(d *dec) any { return secinfoNoArg{d.u32()} },
	opExchangeID:    decodeExchangeID,
	opCreateSession: decodeCreateSession,
	opDestroySession: func(d *dec) any {
		return sessionArgs{d.session()}
	},
	opSequence: func(d *dec) any {
		return sequenceArgs{session: d.session(), seq: d.u32(), slot: d.u32(), highest: d.u32(), cacheThis: d.bool()}
	},
	opBindConnToSession: func(d *dec) any {
		return bindConnArgs{session: d.session(), dir: d.u32(), rdma: d.bool()}
	},
	opDestroyClientID: func(d *dec) any { return clientIDArgs{d.u64()} },
	opReclaimComplete: func(d *dec) any { return reclaimCompleteArgs{d.bool()} },
}

func (d *dec) stateid() stateid {
	s := stateid{seq: d.u32()}
	copy(s.other[:], d.fixed(12))
	return s
}

func (d *dec) session() sessionID {
	var s sessionID
	copy(s[:], d.fixed(16))
	return s
}

func decodeExchangeID(d *dec) any {
	var a exchangeIDArgs
	copy(a.verifier[:], d.fixed(8))
	a.owner = d.opaque(opaqueLimit)
	a.flags = d.u32()
	a.protect = d.u32()
	switch a.protect {
	case sp4None:
	case sp4MachCred:
		d.bitmap() // must enforce
		d.bitmap() // must allow
	case sp4SSV:
		d.bitmap()
		d.bitmap()
		for i, n := 0, d.count(opaqueLimit, 4); i < n; i++ { // hash algorithms
			d.opaque(opaqueLimit)
		}
		for i, n := 0, d.count(opaqueLimit, 4); i < n; i++ { // encryption algorithms
			d.opaque(opaqueLimit)
		}
		d.u32() // window
		d.u32() // handles
	default:
		d.bad = true
	}
	if d.count(1, 12) == 1 { // client_impl_id<1>: domain, name, date
		d.opaque(opaqueLimit)
		d.opaque(opaqueLimit)
		d.u64()
		d.u32()
	}
	return a
}

func (d *dec) channelAttrs() channelAttrs {
	a := channelAttrs{headerPad: d.u32(), maxRequest: d.u32(), maxResponse: d.u32(),
		maxResponseCached: d.u32(), maxOps: d.u32(), maxReqs: d.u32()}
	for i, n := 0, d.count(1, 4); i < n; i++ {
		a.rdmaIRD = append(a.rdmaIRD, d.u32())
	}
	return a
}

func decodeCreateSession(d *dec) any {
	a := createSessionArgs{clientID: d.u64(), seq: d.u32(), flags: d.u32()}
	a.fore, a.back = d.channelAttrs(), d.channelAttrs()
	a.cbProgram = d.u32()
	a.cbCred = d.cbSecParms()
	return a
}

// cbSecParms reads a callback_sec_parms4 list: the first credential of
// it this server makes callbacks with (AUTH_NONE when none).
func (d *dec) cbSecParms() Cred {
	var cred Cred
	set := false
	for i, n := 0, d.count(16, 4); i < n && !d.bad; i++ {
		switch d.u32() {
		case authNone:
			if !set {
				cred, set = Cred{Flavor: authNone}, true
			}
		case authSys:
			start := d.b
			d.u32()       // stamp
			d.opaque(255) // machine name
			d.u32()       // uid
			d.u32()       // gid
			for j, m := 0, d.count(16, 4); j < m; j++ {
				d.u32()
			}
			if !set && !d.bad {
				cred, set = Cred{Flavor: authSys, Body: append([]byte(nil), start[:len(start)-len(d.b)]...)}, true
			}
		case authGSS:
			d.u32() // service
			d.opaque(opaqueLimit)
			d.opaque(opaqueLimit)
		default:
			d.bad = true
		}
	}
	return cred
}

// validUTF8 says whether b is UTF-8 holding no noncharacter U+FFFE or
// U+FFFF (RFC 8881 section 14: utf8str).
func validUTF8(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r == 0xfffe || r == 0xffff {
			return false
		}
	}
	return true
}

// decodeCompound reads COMPOUND4args.
func decodeCompound(b []byte) *compound {
	d := &dec{b: b, size: len(b)}
	c := &compound{tag: d.opaque(maxName)}
	c.afterTag = d.at()
	c.minor = d.u32()
	n := d.u32()
	switch {
	case d.bad:
		c.status = errBadXDR
		return c
	case !validUTF8(c.tag):
		c.status = errInval
		return c
	case c.minor != 1:
		c.status = errMinorVersMismatch
		return c
	case n > maxOps:
		c.status = errResource
		return c
	}
	for i := uint32(0); i < n; i++ {
		o := op{code: d.u32()}
		if d.bad {
			o.code, o.err = opIllegal, errBadXDR
			c.ops = append(c.ops, o)
			return c
		}
		fn, known := decoders[o.code]
		switch {
		case o.code < firstOp || o.code > lastOp:
			o.code, o.err = opIllegal, errOpIllegal
		case !known:
			o.err = errNotSupp
		case fn != nil:
			o.args = fn(d)
			if d.bad {
				o.args, o.err = nil, errBadXDR
			}
		}
		c.ops = append(c.ops, o)
		if o.err != ok {
			return c
		}
	}
	return c
}
