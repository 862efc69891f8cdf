package sbc_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/iscsi/sbc"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// memBackend is an sbc.Backend in memory that records any access outside
// its size instead of panicking, so the fuzz target can report it.
// With cached set it has a write cache: WriteAt changes b only, and
// durable (what a crash would leave) catches up at Flush, WriteThrough and
// Unmap, as a volume with its write cache on.
type memBackend struct {
	mu      sync.Mutex
	b       []byte
	cached  bool
	durable []byte
	bad     error
	fail    error // injected: every read and write returns it
}

func (m *memBackend) check(off, n int64) bool {
	if off < 0 || n < 0 || off+n > int64(len(m.b)) {
		m.bad = fmt.Errorf("backend access [%d,%d) outside %d bytes", off, off+n, len(m.b))
		return false
	}
	return true
}

func (m *memBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.check(off, int64(len(p))) {
		copy(p, m.b[off:])
	}
	return nil
}

func (m *memBackend) WriteAt(_ context.Context, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.check(off, int64(len(p))) {
		copy(m.b[off:], p)
	}
	if !m.cached {
		m.sync()
	}
	return nil
}

func (m *memBackend) WriteThrough(ctx context.Context, p []byte, off int64) error {
	if err := m.WriteAt(ctx, p, off); err != nil {
		return err
	}
	return m.Flush(ctx)
}

func (m *memBackend) Unmap(_ context.Context, off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.check(off, n) {
		clear(m.b[off : off+n])
	}
	m.sync()
	return nil
}

func (m *memBackend) Flush(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.sync()
	return nil
}

// sync makes everything written durable. Called with m.mu held.
func (m *memBackend) sync() {
	if m.durable == nil {
		m.durable = make([]byte, len(m.b))
	}
	copy(m.durable, m.b)
}
func (m *memBackend) Size() int64 { return int64(len(m.b)) }

// seedCDBs is one valid CDB of every command the device and the LU
// answer, and a few malformed ones.
var seedCDBs = [][]byte{
	{0x00, 0, 0, 0, 0, 0},                                   // TEST UNIT READY
	{0x03, 0, 0, 0, 252, 0},                                 // REQUEST SENSE
	{0x12, 0, 0, 0, 96, 0},                                  // INQUIRY
	{0x12, 1, 0x83, 0, 255, 0},                              // INQUIRY VPD 83
	{0x12, 1, 0xb0, 0, 64, 0},                               // INQUIRY VPD B0
	{0x15, 0x10, 0, 0, 24, 0},                               // MODE SELECT(6)
	{0x1a, 0, 0x3f, 0, 255, 0},                              // MODE SENSE(6)
	{0x5a, 0, 0x0a, 0, 0, 0, 0, 1, 0, 0},                    // MODE SENSE(10)
	{0x16, 0, 0, 0, 0, 0},                                   // RESERVE(6)
	{0x17, 0, 0, 0, 0, 0},                                   // RELEASE(6)
	{0x08, 0, 0, 1, 1, 0},                                   // READ(6)
	{0x0a, 0, 0, 1, 1, 0},                                   // WRITE(6)
	{0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0},                       // READ(10)
	{0x2a, 0x08, 0, 0, 0, 8, 0, 0, 1, 0},                    // WRITE(10) FUA
	{0x2e, 0, 0, 0, 0, 8, 0, 0, 1, 0},                       // WRITE AND VERIFY(10)
	{0x2f, 0x02, 0, 0, 0, 8, 0, 0, 1, 0},                    // VERIFY(10) BYTCHK
	{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0},                       // SYNCHRONIZE CACHE(10)
	{0x34, 0, 0, 0, 0, 0, 0, 0, 8, 0},                       // PRE-FETCH(10)
	{0x41, 0x08, 0, 0, 0, 0, 0, 0, 16, 0},                   // WRITE SAME(10) UNMAP
	{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0},                      // UNMAP
	{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0},                       // READ CAPACITY(10)
	{0x37, 0, 0x18, 0, 0, 0, 0, 0, 4, 0},                    // READ DEFECT DATA(10)
	{0x5e, 0, 0, 0, 0, 0, 0, 1, 0, 0},                       // PERSISTENT RESERVE IN
	{0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0},                      // PERSISTENT RESERVE OUT REGISTER
	{0x1b, 0, 0, 0, 1, 0},                                   // START STOP UNIT
	{0x1e, 0, 0, 0, 0, 0},                                   // PREVENT ALLOW
	{0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0},                 // READ(12)
	{0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0},                 // WRITE(12)
	{0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0},              // REPORT SUPPORTED OPERATION CODES
	{0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0},     // READ(16)
	{0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0},     // WRITE(16)
	{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},     // COMPARE AND WRITE
	{0x8b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},     // ORWRITE(16)
	{0x93, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0},  // WRITE SAME(16) NDOB
	{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, // READ CAPACITY(16)
	{0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0}, // GET LBA STATUS
	{0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},     // SYNCHRONIZE CACHE(16)
	{0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0},     // READ(10) far out of range
	{0x88, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, // LBA+length overflow
	{0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},                                  // bad service action
	{0xff}, // unknown opcode, short CDB
	{0x2a}, // WRITE(10) cut short
}

// FuzzCDB runs arbitrary CDBs and data-out buffers through a disk LU. The
// LU must answer every one with a status and well-formed sense, never
// touch the backend outside the volume, never return more data than a
// command may move, and never panic (Execute turns a panic into HARDWARE
// ERROR / INTERNAL TARGET FAILURE, which therefore fails the test too).
func FuzzCDB(f *testing.F) {
	for _, cdb := range seedCDBs {
		f.Add(cdb, make([]byte, 512), false)
	}
	f.Add([]byte{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, make([]byte, 1024), false)
	f.Add([]byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, []byte{0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0}, false)
	f.Add([]byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, []byte(nil), true)
	f.Fuzz(func(t *testing.T, cdb, dataOut []byte, failBackend bool) {
		if len(cdb) == 0 || len(cdb) > 32 || len(dataOut) > 64<<10 {
			return
		}
		backend := &memBackend{b: make([]byte, 1<<20)}
		if failBackend {
			backend.fail = fmt.Errorf("injected backend failure")
		}
		lu := sbc.NewLU(backend, sbc.Options{Name: "fuzz", Serial: "fuzz"}, nil)
		nexus := scsi.Nexus{InitiatorPort: "iqn.2024-01.io.gatewayd:fuzz,i,0x1"}
		// The first command of a nexus is answered with the power-on
		// unit attention; the second is the one under test.
		lu.Execute(context.Background(), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}, Nexus: nexus})
		res := lu.Execute(context.Background(), &scsi.Command{CDB: cdb, DataOut: dataOut, Nexus: nexus})
		if backend.bad != nil {
			t.Fatalf("CDB %x: %v", cdb, backend.bad)
		}
		switch res.Status {
		case scsi.StatusGood, scsi.StatusReservationConflict:
		case scsi.StatusCheckCondition:
			key, asc, ok := scsi.ParseSense(res.Sense)
			if !ok {
				t.Fatalf("CDB %x: CHECK CONDITION with unparseable sense %x", cdb, res.Sense)
			}
			if key == scsi.KeyHardwareError && asc == scsi.ASCInternalTargetFailure {
				t.Fatalf("CDB %x: internal target failure (a caught panic or an unclassified error)", cdb)
			}
			if key == scsi.KeyMediumError && !failBackend {
				t.Fatalf("CDB %x: MEDIUM ERROR from a healthy backend", cdb)
			}
		default:
			t.Fatalf("CDB %x: status %#x", cdb, res.Status)
		}
		if len(res.Data) > sbc.MaxTransferBytes {
			t.Fatalf("CDB %x: %d bytes of data-in", cdb, len(res.Data))
		}
	})
}
