package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/internal/tapeclient"
)

// tapeSession is a login to the daemon's tape library with its tape in
// the drive, ready, in variable-block mode.
type tapeSession struct {
	t       *testing.T
	dir     string
	d       *daemon
	changer tapeclient.Changer
	drive   tapeclient.Drive
	logout  func()
}

func (s *tapeSession) login(ctx context.Context) {
	s.t.Helper()
	s.changer, s.drive, s.logout = library(s.t, s.dir)
	must(s.t, s.changer.Ready(ctx))
	must(s.t, s.drive.Ready(ctx)) // the tape is still in the drive, at the beginning
	// A drive starts in buffered mode 1, whatever was selected before.
	if m, err := s.drive.BufferedMode(ctx); err != nil || m != 1 {
		s.t.Fatalf("buffered mode after a restart: %d %v, want 1", m, err)
	}
	must(s.t, s.drive.VariableMode(ctx))
}

// kill kills the daemon with SIGKILL, starts it again and logs in.
func (s *tapeSession) kill(ctx context.Context) {
	s.t.Helper()
	s.logout()
	must(s.t, s.d.cmd.Process.Signal(syscall.SIGKILL))
	<-s.d.done
	s.d = serve(s.t, s.dir)
	s.login(ctx)
}

// readObject reads the next object and compares it with want (nil: a
// filemark). It returns errEOD at end-of-data.
func (s *tapeSession) readObject(ctx context.Context, want []byte) error {
	got, err := s.drive.Read(ctx, 1<<20)
	var se *tapeclient.SenseError
	switch {
	case tapeclient.KeyOf(err) == tapeclient.KeyBlankCheck:
		return errEOD
	case want == nil:
		if !errors.As(err, &se) || !se.Filemark() {
			return fmt.Errorf("want a filemark, got %d bytes, %v", len(got), err)
		}
		return nil
	case errors.As(err, &se) && se.ILI() && int(se.Information()) == (1<<20)-len(want):
		err = nil // a shorter record than asked for: ILI and the residual
	}
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("got %d bytes (want %d), %v", len(got), len(want), err)
	}
	return nil
}

var errEOD = errors.New("end of data")

// readBack rewinds and reads the tape: its first durable objects must be
// want's, and after them the tape may end anywhere in want (the records
// a crash may lose), each object there being want's. It returns how many
// objects the tape holds.
func (s *tapeSession) readBack(ctx context.Context, want [][]byte, durable int) int {
	s.t.Helper()
	must(s.t, s.drive.Rewind(ctx))
	for i, w := range want {
		err := s.readObject(ctx, w)
		if err == errEOD && i >= durable {
			if pos, err := s.drive.Position(ctx); err != nil || pos != uint32(i) {
				s.t.Fatalf("at end-of-data after %d objects the position is %d (%v)", i, pos, err)
			}
			return i
		}
		if err != nil {
			s.t.Fatalf("object %d (of %d, %d of them durable): %v", i, len(want), durable, err)
		}
	}
	if err := s.readObject(ctx, nil); err != errEOD {
		s.t.Fatalf("past the %d objects written: %v, want end-of-data", len(want), err)
	}
	return len(want)
}

// TestTapeBufferedModeKill drives a tape drive of the daemon in buffered
// mode 1 (its default, reported in MODE SENSE) and unbuffered mode 0, and
// kills the daemon with SIGKILL after each kind of synchronize point:
// every record written before an acknowledged WRITE FILEMARKS, REWIND or
// unload is on the tape after the restart; records buffered after the
// last of them may be lost, and then the tape ends at its last durable
// record and takes new writes there. In mode 0 every acknowledged record
// survives.
func TestTapeBufferedModeKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	setConfig(t, dir, map[string]map[string]any{"vtl": {"slots": 4, "drives": 1}})
	s := &tapeSession{t: t, dir: dir, d: serve(t, dir)}
	defer func() { s.d.stop(t) }()
	mustRun(t, "tape", "create", "--data-dir", dir, "--count", "1", "--barcode-prefix", "BUF", "--size", "2G")
	ctx, cancel := testContext(t)
	defer cancel()
	s.changer, s.drive, s.logout = library(t, dir)
	defer func() { s.logout() }()
	must(t, s.changer.Ready(ctx))
	slot, err := s.changer.FirstFull(ctx, 2)
	must(t, err)
	drv, err := s.changer.FirstEmpty(ctx, 4)
	must(t, err)
	must(t, s.changer.Move(ctx, slot.Address, drv.Address))
	must(t, s.drive.Ready(ctx))
	if m, err := s.drive.BufferedMode(ctx); err != nil || m != 1 {
		t.Fatalf("buffered mode after load: %d %v, want 1", m, err)
	}
	must(t, s.drive.VariableMode(ctx))

	var written [][]byte // nil: a filemark
	write := func(n int) {
		t.Helper()
		for range n {
			rec := tapeRecord(len(written))
			must(t, s.drive.Write(ctx, rec))
			written = append(written, rec)
		}
	}
	filemark := func() {
		t.Helper()
		must(t, s.drive.WriteFilemarks(ctx, 1))
		written = append(written, nil)
	}
	// After a crash the tape holds what was read back: later writes go on
	// from there.
	kept := func(n int) {
		written = written[:n]
		must(t, s.drive.Space(ctx, tapeclient.SpaceEOD, 0))
		if pos, err := s.drive.Position(ctx); err != nil || pos != uint32(n) {
			t.Fatalf("end-of-data at %d (%v), want %d", pos, err, n)
		}
	}

	// A filemark is a synchronize point; the records after it are only
	// buffered when the daemon dies.
	write(10)
	filemark()
	durable := len(written)
	write(10)
	s.kill(ctx)
	n := s.readBack(ctx, written, durable)
	t.Logf("after the filemark: %d of 10 buffered records kept", n-durable)
	kept(n)

	// REWIND is one.
	write(8)
	must(t, s.drive.Rewind(ctx))
	s.kill(ctx)
	kept(s.readBack(ctx, written, len(written)))

	// Unload is one.
	write(5)
	must(t, s.drive.Unload(ctx))
	s.kill(ctx)
	kept(s.readBack(ctx, written, len(written)))

	// A filemark with IMMED is not; what the tape keeps is still a
	// prefix of what was written, from the last synchronize point on
	// (kept's SPACE): the records before the filemark may be lost too.
	durable = len(written)
	write(4)
	must(t, s.drive.WriteFilemarksImmed(ctx, 1))
	written = append(written, nil)
	write(3)
	s.kill(ctx)
	n = s.readBack(ctx, written, durable)
	kept(n)

	// Unbuffered: every acknowledged record is durable.
	must(t, s.drive.SelectMode(ctx, 0, 0))
	if m, err := s.drive.BufferedMode(ctx); err != nil || m != 0 {
		t.Fatalf("buffered mode after MODE SELECT 0: %d %v", m, err)
	}
	write(10)
	s.kill(ctx) // the drive is back in buffered mode 1 after the restart (login checks)
	kept(s.readBack(ctx, written, len(written)))
	write(2)
	filemark()
	s.readBack(ctx, written, len(written))
}
