package tapes_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/objstore/localdir"
	"github.com/gatewayd/gatewayd/tapes"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// The kill test runs a writer process on real on-disk state (badger, a
// local-directory store, the upload buffer), kills it with SIGKILL while
// it writes and uploads, and checks that every write it acknowledged is on
// the tape after a restart, at its position, with its bytes.

const (
	killEnvDir      = "GATEWAYD_TAPES_KILL_DIR"
	killEnvSeed     = "GATEWAYD_TAPES_KILL_SEED"
	killEnvBuffered = "GATEWAYD_TAPES_KILL_BUFFERED"
	killBarcode     = "GW0001L5"
)

type onDisk struct {
	lib *tapes.Library
	log *uploadbuffer.Log
	md  *metabadger.Store
}

func openOnDisk(dir string, interval time.Duration, set ...func(*tapes.Options)) (*onDisk, error) {
	return openOnDiskSized(dir, interval, 256<<10, 128<<20, set...)
}

// openOnDiskSized is openOnDisk with segments of segSize bytes and an
// upload buffer of logSize; set changes the library's options.
func openOnDiskSized(dir string, interval time.Duration, segSize int, logSize int64, set ...func(*tapes.Options)) (*onDisk, error) {
	st, err := localdir.Open(filepath.Join(dir, "bucket"))
	if err != nil {
		return nil, err
	}
	md, err := metabadger.Open(filepath.Join(dir, "meta"), nil)
	if err != nil {
		return nil, err
	}
	log, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: logSize, SegmentSize: 4 << 20})
	if err != nil {
		md.Close()
		return nil, err
	}
	o := tapes.Options{Store: st, Meta: md, Log: log, Key: testKey(), Clock: clock.Real{},
		Slots: 10, Drives: 1, SegmentSize: segSize, FlushInterval: interval}
	for _, f := range set {
		f(&o)
	}
	lib, err := tapes.New(ctx, o)
	if err != nil {
		log.Close()
		md.Close()
		return nil, err
	}
	return &onDisk{lib, log, md}, nil
}

func (d *onDisk) close() error {
	err := d.lib.Close(ctx)
	d.log.Close()
	if cerr := d.md.Close(); err == nil {
		err = cerr
	}
	return err
}

// killChild is the writer: it appends records and filemarks, sometimes
// rewriting the last few objects, and prints each operation before it
// starts and once it is acknowledged. Buffered, it makes its writes
// buffered and syncs after every few, printing "synced" once a sync
// returns.
func killChild(dir string, seed uint64, buffered bool) {
	d, err := openOnDisk(dir, 20*time.Millisecond)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	tp, err := d.lib.Open(ctx, killBarcode)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	tp.SetBuffered(buffered)
	r := rand.New(rand.NewPCG(seed, 3))
	for step := uint64(0); ; step++ {
		if buffered && r.IntN(10) == 0 {
			if err := tp.Sync(ctx); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println("synced")
		}
		at := tp.EOD()
		if at > 3 && r.IntN(8) == 0 {
			at -= uint64(1 + r.IntN(3))
		}
		var line string
		if r.IntN(6) == 0 {
			line = fmt.Sprintf("fm %d", at)
			fmt.Println("begin", line)
			err = tp.WriteFilemarks(ctx, at, 1)
		} else {
			id, n := seed<<32|step, 1+r.IntN(200000)
			if buffered && r.IntN(3) > 0 {
				n = 100000 + r.IntN(200000) // a stream: segments fill
			}
			line = fmt.Sprintf("rec %d %d %d", at, id, n)
			fmt.Println("begin", line)
			err = tp.WriteRecord(ctx, at, record(id, n), r.IntN(2) == 0)
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ack", line)
	}
}

// applyLine applies "fm AT" or "rec AT ID N" to m.
func applyLine(m *model, f []string) {
	at, _ := strconv.ParseUint(f[1], 10, 64)
	if f[0] == "fm" {
		m.filemarks(at, 1)
		return
	}
	id, _ := strconv.ParseUint(f[2], 10, 64)
	n, _ := strconv.Atoi(f[3])
	m.write(at, record(id, n))
}

// newKillDir makes the on-disk state of a library with one tape.
func newKillDir(t *testing.T) string {
	dir := t.TempDir()
	d, err := openOnDisk(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.lib.Create(ctx, 1, "GW", 1<<30); err != nil {
		t.Fatal(err)
	}
	d.close()
	return dir
}

// killCycle runs the writer on dir, passes each line it prints to line
// (split in fields), kills it with SIGKILL at its after-th
// acknowledgement, and opens the library and the tape again.
func killCycle(t *testing.T, dir string, cycle uint64, buffered bool, after int, line func(f []string)) (*onDisk, *tapes.Tape) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), killEnvDir+"="+dir, killEnvSeed+"="+strconv.FormatUint(cycle, 10))
	if buffered {
		cmd.Env = append(cmd.Env, killEnvBuffered+"=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acks := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 1 && f[0] == "begin", len(f) == 1 && f[0] == "synced":
			line(f)
		case len(f) > 1 && f[0] == "ack":
			line(f)
			if acks++; acks == after {
				_ = cmd.Process.Kill()
			}
		default:
			_ = cmd.Process.Kill()
			t.Fatalf("child: %s", sc.Text())
		}
	}
	cmd.Wait()
	if acks < after {
		t.Fatalf("cycle %d: child stopped after %d acks", cycle, acks)
	}
	d, err := openOnDisk(dir, time.Hour)
	if err != nil {
		t.Fatalf("cycle %d: reopen: %v", cycle, err)
	}
	tp, err := d.lib.Open(ctx, killBarcode)
	if err != nil {
		t.Fatal(err)
	}
	return d, tp
}

func TestKillWhileWriting(t *testing.T) {
	dir := newKillDir(t)
	var m model
	r := rand.New(rand.NewPCG(7, 7))
	for cycle := uint64(1); cycle <= 4; cycle++ {
		var inflight []string
		d, tp := killCycle(t, dir, cycle, false, 5+r.IntN(60), func(f []string) {
			switch f[0] {
			case "begin":
				inflight = f[1:]
			case "ack":
				applyLine(&m, f[1:])
				inflight = nil
			}
		})
		// The write in flight at the kill may or may not have landed.
		if inflight != nil {
			with := model{objs: append([]tapes.Object(nil), m.objs...), data: append([][]byte(nil), m.data...)}
			applyLine(&with, inflight)
			if tp.EOD() == uint64(len(with.objs)) && (len(with.objs) != len(m.objs) || landed(tp, with)) {
				m = with
			}
		}
		m.check(t, tp)
		if cycle == 4 { // still writable at end-of-data, and that survives too
			d := record(99, 1234)
			if err := tp.WriteRecord(ctx, tp.EOD(), d, false); err != nil {
				t.Fatal(err)
			}
			m.write(uint64(len(m.objs)), d)
		}
		tp.Close(ctx)
		if err := d.close(); err != nil {
			t.Fatal(err)
		}
	}
	d, err := openOnDisk(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := d.lib.Open(ctx, killBarcode)
	m.check(t, tp)
	tp.Close(ctx)
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	// After a clean close every write is in the store: nothing is left
	// to replay.
	log, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n := 0
	log.Replay(func(uploadbuffer.LSN, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d log records left after a clean close", n)
	}
}

// landed says whether the last object of tp is the last object of m (for
// an in-flight rewrite that leaves EOD where it was).
func landed(tp *tapes.Tape, m model) bool {
	i := len(m.objs) - 1
	st, err := tp.Stat(ctx, uint64(i))
	if err != nil || st != m.objs[i] {
		return false
	}
	if st.Filemark {
		return true
	}
	buf := make([]byte, st.Size)
	n, err := tp.ReadRecord(ctx, uint64(i), buf)
	return err == nil && n == st.Size && string(buf) == string(m.data[i])
}

// The kill test of buffered writes: every write acknowledged before a sync
// that returned is on the tape after a restart; of those acknowledged
// after it, the tape holds the first few, in order, with their bytes, and
// nothing else (a stored index may hold more than the log, never a gap).
func TestKillWhileWritingBuffered(t *testing.T) {
	dir := newKillDir(t)
	var durable model
	r := rand.New(rand.NewPCG(8, 8))
	for cycle := uint64(1); cycle <= 4; cycle++ {
		var since [][]string // acknowledged since the last sync, and the one in flight
		acks, syncs := 0, 0
		d, tp := killCycle(t, dir, cycle, true, 20+r.IntN(60), func(f []string) {
			switch f[0] {
			case "begin":
				since = append(since, f[1:])
			case "ack":
				acks++
			case "synced":
				for _, l := range since {
					applyLine(&durable, l)
				}
				since, syncs = nil, syncs+1
			}
		})
		// The tape is the durable state and the first k writes after it.
		found := -1
		for k := len(since); k >= 0 && found < 0; k-- {
			with := durable.clone()
			for _, l := range since[:k] {
				applyLine(&with, l)
			}
			if matches(tp, with) {
				found, durable = k, with
			}
		}
		if found < 0 {
			t.Fatalf("cycle %d: the tape (EOD %d) is not the state of the last sync (EOD %d) followed by some of the %d writes after it", cycle, tp.EOD(), len(durable.objs), len(since))
		}
		t.Logf("cycle %d: %d acks, %d syncs; %d of the %d writes after the last sync kept", cycle, acks, syncs, found, len(since))
		durable.check(t, tp)
		tp.Close(ctx)
		if err := d.close(); err != nil {
			t.Fatal(err)
		}
	}
}

// matches says whether tp holds exactly m.
func matches(tp *tapes.Tape, m model) bool {
	if tp.EOD() != uint64(len(m.objs)) {
		return false
	}
	for i, o := range m.objs {
		st, err := tp.Stat(ctx, uint64(i))
		if err != nil || st != o {
			return false
		}
		if o.Filemark {
			continue
		}
		buf := make([]byte, st.Size)
		n, err := tp.ReadRecord(ctx, uint64(i), buf)
		if err != nil || n != st.Size || string(buf) != string(m.data[i]) {
			return false
		}
	}
	return true
}
