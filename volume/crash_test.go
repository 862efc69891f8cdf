package volume

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/cache"
	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/objstore/localdir"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// The crash test runs a real writer process against real on-disk state
// (badger, local-directory store, upload buffer, cache, disk file), kills
// it with SIGKILL at a random moment, and checks that every write it
// acknowledged reads back exactly after a restart.

const (
	crashEnvDir  = "GATEWAYD_VOLUME_CRASH_DIR"
	crashEnvKind = "GATEWAYD_VOLUME_CRASH_KIND"
	crashEnvSeed = "GATEWAYD_VOLUME_CRASH_SEED"
	crashVolSize = 4 * mib
	crashChunk   = 64 * kib
)

type crashState struct {
	m     *Manager
	close func()
}

// openCrashState opens the on-disk gateway state in dir with the uploader
// running fast, so kills land in every phase (appending, uploading, trimming).
func openCrashState(t testing.TB, dir string) *crashState { return openCrashStateWith(t, dir, nil) }

// openCrashStateWith is openCrashState with options changed by set.
func openCrashStateWith(t testing.TB, dir string, set func(*Options)) *crashState {
	md, err := metabadger.Open(filepath.Join(dir, "meta"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := localdir.Open(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := uploadbuffer.Open(vfs.Default, filepath.Join(dir, "log"), uploadbuffer.Options{Capacity: 16 * mib})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(vfs.Default, filepath.Join(dir, "cache"), cache.Options{Capacity: 1 * mib})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Meta: md, Store: store, Codec: testCodec(t), Log: log, Cache: c,
		DiskDir: filepath.Join(dir, "disks"), UploadInterval: 2 * time.Millisecond, SettleTime: time.Millisecond,
	}
	if set != nil {
		set(&o)
	}
	m, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return &crashState{m: m, close: func() { m.Close(); c.Close(); log.Close(); md.Close() }}
}

// The child half: write random patterns at random offsets, flushing now
// and then, printing "ack i off len" once each write returns.
func init() {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		return
	}
	v, seed := crashChildVolume(dir, false)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 7))
	for i := uint64(0); ; i++ {
		n := 1 + r.IntN(100*kib)
		off := r.Int64N(crashVolSize - int64(n))
		id := seed<<32 | i
		fmt.Printf("begin %d %d %d\n", id, off, n)
		childCheck(v.WriteAt(ctx, pattern(id, n), off))
		if i%7 == 0 {
			childCheck(v.Flush(ctx))
		}
		fmt.Printf("ack %d %d %d\n", id, off, n)
	}
}

// crashChildVolume opens a crash test child's state in dir and its volume
// (made on the first run, with its write cache on or off), says "ready"
// and returns the volume and the child's seed.
func crashChildVolume(dir string, writeCache bool) (*Volume, uint64) {
	seed, _ := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	st := openCrashState(fatalTB{}, dir)
	v, err := st.m.Get("crash")
	if err != nil {
		_, err = st.m.Create(context.Background(), CreateOptions{Name: "crash", Kind: Kind(os.Getenv(crashEnvKind)),
			Size: crashVolSize, ChunkSize: crashChunk, WriteCache: writeCache})
		if err == nil {
			v, err = st.m.Get("crash")
		}
	}
	if err == nil && v.Info().WriteCache != writeCache {
		err = fmt.Errorf("volume reopened with its write cache %v", v.Info().WriteCache)
	}
	childCheck(err)
	fmt.Println("ready")
	return v, seed
}

// childCheck ends a crash test child that met an error, saying so.
func childCheck(err error) {
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
}

// fatalTB lets the child use the test helpers outside a test.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper() {}
func (fatalTB) Fatal(args ...any) {
	fmt.Println("error:", fmt.Sprint(args...))
	os.Exit(2)
}

type crashWrite struct {
	id      uint64
	off     int64
	n       int
	settled bool // acknowledged
}

func TestCrashSIGKILLKeepsAcknowledgedWrites(t *testing.T) {
	cycles := 20
	if testing.Short() {
		cycles = 3
	}
	for _, kind := range []Kind{Cached, Stored} {
		t.Run(string(kind), func(t *testing.T) {
			dir := t.TempDir()
			shadow := make([]byte, crashVolSize)
			r := rand.New(rand.NewPCG(42, uint64(len(kind))))
			for cycle := 1; cycle <= cycles; cycle++ {
				inflight := runCrashChild(t, dir, kind, uint64(cycle), 5+r.IntN(150), shadow)

				st := openCrashState(t, dir)
				v, err := st.m.Get("crash")
				if err != nil {
					t.Fatal(err)
				}
				got := readAll(t, v, 64*kib)
				// A write in flight at the kill may have landed or not, byte
				// range by byte range: accept either there, exactness elsewhere.
				if inflight != nil {
					p := pattern(inflight.id, inflight.n)
					for i := 0; i < inflight.n; i++ {
						if got[inflight.off+int64(i)] == p[i] {
							shadow[inflight.off+int64(i)] = p[i]
						}
					}
				}
				mustEqual(t, fmt.Sprintf("cycle %d", cycle), got, shadow)
				// Uploads resume: everything goes up and the log empties.
				if err := st.m.Drain(context.Background()); err != nil {
					t.Fatalf("cycle %d: drain after restart: %v", cycle, err)
				}
				if st.m.opts.Log.Used() > 4*mib {
					t.Fatalf("cycle %d: log still holds %d bytes after drain", cycle, st.m.opts.Log.Used())
				}
				st.close()
			}
		})
	}
}

// runCrashChild starts a writer, applies its acknowledged writes to shadow,
// kills it after `after` acks and returns the write in flight, if any.
func runCrashChild(t *testing.T, dir string, kind Kind, seed uint64, after int, shadow []byte) *crashWrite {
	cmd, sc := startCrashChild(t, crashEnvDir+"="+dir, crashEnvKind+"="+string(kind), crashEnvSeed+"="+strconv.FormatUint(seed, 10))
	defer cmd.Wait()
	var cur *crashWrite
	acks := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && (f[0] == "begin" || f[0] == "ack"):
			id, _ := strconv.ParseUint(f[1], 10, 64)
			off, _ := strconv.ParseInt(f[2], 10, 64)
			n, _ := strconv.Atoi(f[3])
			if f[0] == "begin" {
				cur = &crashWrite{id: id, off: off, n: n}
				continue
			}
			copy(shadow[off:], pattern(id, n))
			cur = nil
			acks++
			if acks == after {
				_ = cmd.Process.Kill()
				// Lines already printed are acknowledged too; read them all.
			}
		case len(f) > 0 && f[0] == "ready":
		default:
			_ = cmd.Process.Kill()
			t.Fatalf("child: %s", sc.Text())
		}
	}
	if acks < after {
		t.Fatalf("child stopped after %d acks, before the kill", acks)
	}
	return cur
}

// startCrashChild starts this test binary as a crash test's child with
// env added, and returns it and a scanner of its output.
func startCrashChild(t *testing.T, env ...string) (*exec.Cmd, *bufio.Scanner) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// The simulated power loss: every file write that was not synced is
// dropped (MemFS.Crash), at many points while the uploader and, for stored
// volumes, checkpoints run. Acknowledged writes must all survive.
func TestPowerLossThroughFS(t *testing.T) {
	for _, kind := range []Kind{Cached, Stored} {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			mem := vfs.NewMem()
			e := newEnv(t, 8*mib, 2*mib)
			e.dir = "/gw"
			e.fs = mem
			e.opts = func(o *Options) { o.UploadInterval = time.Millisecond; o.SettleTime = time.Millisecond }
			e.start()
			e.create("p", kind, 4*mib, 64*kib)
			shadow := make([]byte, 4*mib)
			r := rand.New(rand.NewPCG(5, uint64(len(kind))))
			for cycle := 0; cycle < 10; cycle++ {
				v := e.vol("p")
				for i := 0; i < 20+r.IntN(60); i++ {
					n := 1 + r.IntN(80*kib)
					off := r.Int64N(4*mib - int64(n))
					p := pattern(uint64(cycle*1000+i), n)
					if err := v.WriteAt(ctx, p, off); err != nil {
						t.Fatal(err)
					}
					copy(shadow[off:], p)
				}
				e.close() // writes nothing durable: closing files syncs nothing
				mem = mem.Crash()
				e.fs = mem
				e.start()
				mustEqual(t, fmt.Sprintf("cycle %d after power loss", cycle), readAll(t, e.vol("p"), 64*kib), shadow)
			}
			if err := e.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
