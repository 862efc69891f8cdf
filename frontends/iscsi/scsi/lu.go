package scsi

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sort"
	"sync"
)

// Nexus names one I_T nexus: an initiator port talking to a target port.
type Nexus struct {
	// InitiatorPort is the SCSI initiator port name; iSCSI makes it
	// "<initiator name>,i,0x<ISID>".
	InitiatorPort string
	// TargetPortID is the relative target port identifier.
	TargetPortID uint16
}

// Command is one SCSI command as a transport delivers it.
type Command struct {
	CDB     []byte
	DataOut []byte // the data-out buffer the initiator sent (Expected Data Transfer Length)
	Nexus   Nexus
	// DataInLimit, when positive, is the most data-in the transport will
	// deliver (its expected transfer length); a device may return only
	// that much of a larger read and say the full length in
	// Task.DataInLen. Zero: no limit.
	DataInLimit int
}

// Result is a command's outcome.
type Result struct {
	Status Status
	Sense  []byte // sense data when Status is CHECK CONDITION
	Data   []byte // data-in, before the transport truncates it to what the initiator expects
	// DataOutLen is the length of data-out the CDB called for, so the
	// transport can report overflow or underflow against what it received.
	// -1 means the command takes no data-out.
	DataOutLen int
	// DataInLen, when larger than len(Data), is the data-in length the CDB
	// called for (the device returned only DataInLimit bytes of it).
	DataInLen int
}

// Access classifies a command for reservation checks (SPC-4 5.13.1).
type Access int

const (
	// AccessAlways commands run whatever reservations are held
	// (INQUIRY, REPORT LUNS, REQUEST SENSE, PERSISTENT RESERVE ...).
	AccessAlways Access = iota
	// AccessPR commands conflict only with an SPC-2 RESERVE of another
	// nexus (TEST UNIT READY, READ CAPACITY, PERSISTENT RESERVE IN/OUT).
	AccessPR
	// AccessRead commands conflict with exclusive-access reservations.
	AccessRead
	// AccessWrite commands conflict with any reservation of another nexus.
	AccessWrite
)

// Task is a command on its way through a device's handler.
type Task struct {
	*Command
	LU *LU
	// DataOutLen is set by handlers taking data-out: the length the CDB
	// implies (see Result.DataOutLen).
	DataOutLen int
	// DataInLen is set by handlers that return less data-in than the CDB
	// asked for because of DataInLimit (see Result.DataInLen).
	DataInLen int
}

// Handler runs one command and returns its data-in or an error; an *Error
// becomes CHECK CONDITION with its sense, any other error a HARDWARE ERROR
// (internal target failure), logged. Data returned together with an
// *Error is sent before the CHECK CONDITION (a tape read that transfers a
// short record and reports the incorrect length).
type Handler func(ctx context.Context, t *Task) ([]byte, error)

// CommandSpec is one entry of a device type's command table.
type CommandSpec struct {
	Opcode        byte
	ServiceAction uint16
	HasSA         bool // the service action in CDB byte 1 (bits 0-4) selects the command
	Name          string
	CDBLen        int
	Access        Access
	Run           Handler
	// NoUA commands run and leave unit attentions pending (INQUIRY,
	// REPORT LUNS, REQUEST SENSE).
	NoUA bool
}

// Identity is what a device type reports in standard INQUIRY data.
type Identity struct {
	PeripheralType     byte // 0x00 disk, 0x01 tape, 0x08 medium changer
	Removable          bool
	Vendor, Product    string
	Revision           string
	VersionDescriptors []uint16
	Serial             string // unit serial number (VPD 0x80)
	// NAA is the 8-byte NAA locally assigned designator (VPD 0x83).
	NAA [8]byte
}

// DeviceType is what a device plugs into an LU.
type DeviceType interface {
	Identity() Identity
	Commands() []CommandSpec
	// VPD returns device-specific VPD pages by page code, without the
	// 4-byte page header.
	VPD() map[byte]func() []byte
	// ModePages lists the device's own mode pages; the LU adds Control.
	ModePages() []*ModePage
	// ModeDeviceSpecific is byte 3 (MODE SENSE 10: byte 3) of the mode
	// parameter header; BlockDescriptor the block descriptor or nil.
	ModeDeviceSpecific() byte
	BlockDescriptor() []byte
}

// ModeSelector is implemented by device types that take more than mode
// pages from MODE SELECT: the device-specific byte of the mode parameter
// header and the block descriptor (a tape drive's buffered mode, density
// and block length). CheckModeSelect validates them before any page is
// changed; bdOff is the block descriptor's offset in the parameter list,
// for field pointers, and bd is empty when the list has none. It returns
// the change to make once every page has been validated too (nil when
// nothing changes); the LU calls it without holding its own lock, before
// it changes the pages. If the change fails, it must leave the device as
// it was: MODE SELECT fails with its error and changes no page.
type ModeSelector interface {
	CheckModeSelect(devSpecific byte, bd []byte, bdOff int) (apply func() error, err error)
}

// Resetter is implemented by device types that drop state on LUN or
// target reset.
type Resetter interface{ Reset() }

// LU is a logical unit: a device type plus the state every SCSI device
// keeps per nexus.
type LU struct {
	dev      DeviceType
	log      *slog.Logger
	commands map[uint32]*CommandSpec
	ordered  []*CommandSpec

	mu        sync.Mutex
	ua        map[string][]ASC // per initiator port, pending unit attentions
	known     map[string]bool  // nexuses seen: new ones get POWER ON UA
	sense     map[string]*Error
	reserve2  *string // SPC-2 RESERVE(6) holder
	pr        persistentReservations
	modePages []*ModePage
	dsense    bool
}

// NewLU wraps dev in an LU.
func NewLU(dev DeviceType, log *slog.Logger) *LU {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lu := &LU{dev: dev, log: log, commands: map[uint32]*CommandSpec{},
		ua: map[string][]ASC{}, known: map[string]bool{}, sense: map[string]*Error{}}
	lu.pr.regs = map[string]uint64{}
	lu.modePages = append([]*ModePage{controlPage()}, dev.ModePages()...)
	// A device's own entry replaces the SPC one (a tape drive's TEST UNIT
	// READY reports a missing medium).
	for _, c := range append(lu.spcCommands(), dev.Commands()...) {
		c := c
		lu.commands[commandKey(c.Opcode, c.ServiceAction, c.HasSA)] = &c
	}
	for _, c := range lu.commands {
		lu.ordered = append(lu.ordered, c)
	}
	sort.Slice(lu.ordered, func(i, j int) bool {
		a, b := lu.ordered[i], lu.ordered[j]
		if a.Opcode != b.Opcode {
			return a.Opcode < b.Opcode
		}
		return a.ServiceAction < b.ServiceAction
	})
	return lu
}

func commandKey(op byte, sa uint16, hasSA bool) uint32 {
	if !hasSA {
		return uint32(op)
	}
	return uint32(op) | uint32(sa)<<8 | 1<<31
}

// Device returns the LU's device type.
func (lu *LU) Device() DeviceType { return lu.dev }

func (lu *LU) lookup(cdb []byte) *CommandSpec {
	if c, ok := lu.commands[uint32(cdb[0])]; ok {
		return c
	}
	if len(cdb) > 1 {
		if c, ok := lu.commands[commandKey(cdb[0], uint16(cdb[1]&0x1f), true)]; ok {
			return c
		}
	}
	return nil
}

// hasServiceActions reports whether opcode selects commands by service action.
func (lu *LU) hasServiceActions(op byte) bool {
	for _, c := range lu.ordered {
		if c.Opcode == op && c.HasSA {
			return true
		}
	}
	return false
}

// Execute runs cmd and always returns a Result; it never panics on bad
// input (a handler's panic is caught and reported as a target failure).
func (lu *LU) Execute(ctx context.Context, cmd *Command) (res Result) {
	res.DataOutLen = -1
	if len(cmd.CDB) == 0 {
		return lu.fail(cmd, Sense(KeyIllegalRequest, ASCInvalidCommandOpcode))
	}
	defer func() {
		if r := recover(); r != nil {
			lu.log.Error("scsi: command handler panicked", "opcode", cmd.CDB[0], "panic", r)
			res = lu.fail(cmd, Sense(KeyHardwareError, ASCInternalTargetFailure))
		}
	}()
	spec := lu.lookup(cmd.CDB)
	if spec != nil && len(cmd.CDB) < spec.CDBLen {
		return lu.fail(cmd, Sense(KeyIllegalRequest, ASCInvalidFieldInCDB))
	}
	if spec != nil && len(cmd.CDB) > spec.CDBLen {
		// Handlers see exactly their CDB; a transport may pad it (an
		// iSCSI CDB field is 16 bytes).
		c := *cmd
		c.CDB = cmd.CDB[:spec.CDBLen]
		cmd = &c
	}
	if spec == nil || !spec.NoUA {
		if asc, ok := lu.takeUA(cmd.Nexus.InitiatorPort); ok {
			return lu.fail(cmd, Sense(KeyUnitAttention, asc))
		}
	}
	if spec == nil {
		if lu.hasServiceActions(cmd.CDB[0]) {
			return lu.fail(cmd, InvalidCDBField(1, 4))
		}
		return lu.fail(cmd, ErrInvalidOpcode())
	}
	if lu.conflicts(cmd.Nexus.InitiatorPort, spec) {
		return Result{Status: StatusReservationConflict, DataOutLen: -1}
	}
	t := &Task{Command: cmd, LU: lu, DataOutLen: -1}
	data, err := spec.Run(ctx, t)
	res = Result{Status: StatusGood, Data: data, DataOutLen: t.DataOutLen, DataInLen: t.DataInLen}
	if errors.Is(err, ErrReservationConflict) {
		return Result{Status: StatusReservationConflict, DataOutLen: t.DataOutLen}
	}
	if err != nil {
		r := lu.fail(cmd, err)
		r.DataOutLen = t.DataOutLen
		var se *Error
		if r.Status == StatusCheckCondition && errors.As(err, &se) {
			r.Data, r.DataInLen = data, t.DataInLen
		}
		return r
	}
	return res
}

// ErrReservationConflict is returned by handlers to answer RESERVATION
// CONFLICT status.
var ErrReservationConflict = errors.New("scsi: reservation conflict")

// fail turns err into CHECK CONDITION and remembers it for REQUEST SENSE.
func (lu *LU) fail(cmd *Command, err error) Result {
	var se *Error
	if !errors.As(err, &se) {
		if errors.Is(err, context.Canceled) {
			return Result{Status: StatusTaskAborted, DataOutLen: -1}
		}
		lu.log.Error("scsi: command failed", "opcode", cmd.CDB[0], "err", err)
		se = Sense(KeyHardwareError, ASCInternalTargetFailure)
		var ce interface{ SCSIError() *Error }
		if errors.As(err, &ce) {
			se = ce.SCSIError()
		}
	}
	lu.mu.Lock()
	d := lu.dsense
	lu.sense[cmd.Nexus.InitiatorPort] = se
	lu.mu.Unlock()
	return Result{Status: StatusCheckCondition, Sense: se.bytes(d), DataOutLen: -1}
}

// SenseBytes formats e as the LU's current sense format.
func (lu *LU) SenseBytes(e *Error) []byte {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	return e.bytes(lu.dsense)
}

// takeUA returns and clears the oldest unit attention for port; a port
// never seen before first gets POWER ON, RESET, OR BUS DEVICE RESET.
func (lu *LU) takeUA(port string) (ASC, bool) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if !lu.known[port] {
		lu.known[port] = true
		return ASCPowerOnReset, true
	}
	q := lu.ua[port]
	if len(q) == 0 {
		return 0, false
	}
	asc := q[0]
	if len(q) == 1 {
		delete(lu.ua, port)
	} else {
		lu.ua[port] = q[1:]
	}
	return asc, true
}

// UnitAttention queues asc for every nexus but except ("" for all).
func (lu *LU) UnitAttention(asc ASC, except string) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	lu.queueUALocked(asc, except)
}

func (lu *LU) queueUALocked(asc ASC, except string) {
	for port := range lu.known {
		if port == except {
			continue
		}
		lu.queueUAForLocked(port, asc)
	}
}

func (lu *LU) queueUAForLocked(port string, asc ASC) {
	for _, a := range lu.ua[port] {
		if a == asc {
			return
		}
	}
	if len(lu.ua[port]) < 16 {
		lu.ua[port] = append(lu.ua[port], asc)
	}
}

// NexusForgetter is implemented by device types that keep state per
// I_T nexus (medium removal prevention); the LU tells them when a nexus
// is lost.
type NexusForgetter interface{ ForgetNexus(port string) }

// NexusLost drops what SPC ties to an I_T nexus when its session ends:
// an SPC-2 reservation it held, and the device's own state for it.
// Persistent reservations stay.
func (lu *LU) NexusLost(port string) {
	lu.mu.Lock()
	if lu.reserve2 != nil && *lu.reserve2 == port {
		lu.reserve2 = nil
	}
	delete(lu.sense, port)
	lu.mu.Unlock()
	if f, ok := lu.dev.(NexusForgetter); ok {
		f.ForgetNexus(port)
	}
}

// Reset is a LUN reset (or part of a target reset): SPC-2 reservations
// are released, mode pages return to defaults, the device drops its
// state, and every nexus gets a unit attention.
func (lu *LU) Reset(asc ASC) {
	lu.mu.Lock()
	lu.reserve2 = nil
	for _, p := range lu.modePages {
		copy(p.Current, p.Default)
	}
	lu.dsense = false
	lu.queueUALocked(asc, "")
	lu.mu.Unlock()
	if r, ok := lu.dev.(Resetter); ok {
		r.Reset()
	}
}

// conflicts reports whether a reservation held by another nexus forbids spec.
func (lu *LU) conflicts(port string, spec *CommandSpec) bool {
	if spec.Access == AccessAlways {
		return false
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.reserve2 != nil && *lu.reserve2 != port {
		return true
	}
	return spec.Access != AccessPR && lu.pr.conflicts(port, spec.Access == AccessWrite)
}

// be helpers shared by device types.

// U16 and friends read big-endian CDB fields.
func U16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func U24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
func U32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func U64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// Truncate returns at most n bytes of b (an allocation length).
func Truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
