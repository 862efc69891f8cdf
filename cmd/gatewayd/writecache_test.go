package main

import (
	"bytes"
	"context"
	enc "encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

// The write cache end to end: the real daemon, volumes with the write cache
// on and off, writers over iSCSI (the project's initiator) and kill -9.
// With the write cache on, what must survive is every write acknowledged
// before a SYNCHRONIZE CACHE that was acknowledged, and every write with
// FUA (with everything acknowledged before it); with it off, every
// acknowledged write. The kill comes right after a SYNCHRONIZE CACHE or a
// FUA write is acknowledged, while writes acknowledged just before it are
// still on their way to the log: a target that answers SYNCHRONIZE CACHE
// without waiting for the log's sync loses them.

const (
	wcVolSize  = 32 << 20
	wcWriters  = 4 // per volume, each in its own quarter of the volume
	wcFUAEvery = 6 // one write in this many has FUA
)

// wcWrite is one write of the model.
type wcWrite struct {
	off   int64
	data  []byte
	acked int64 // the volume's acknowledgement count when it was acknowledged; 0: in flight
	sure  bool  // durable
}

// wcVolume is one volume under test and what it must hold.
type wcVolume struct {
	name       string
	writeCache bool
	base       []byte // the volume's content when the cycle began

	mu     sync.Mutex
	acks   int64
	writes [wcWriters][]*wcWrite // each writer's writes, in order
	err    error                 // why a writer or the syncer stopped
}

// acked records w as acknowledged: durable at once without the write
// cache, or with FUA (together with every write acknowledged before it was
// sent, seen is the count then).
func (v *wcVolume) acked(w *wcWrite, fua bool, seen int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.acks++
	w.acked = v.acks
	w.sure = !v.writeCache
	if fua {
		w.sure = true
		v.durableLocked(seen)
	}
}

// durableLocked marks durable every write acknowledged at or before seen.
func (v *wcVolume) durableLocked(seen int64) {
	for _, ws := range v.writes {
		for _, w := range ws {
			if w.acked != 0 && w.acked <= seen {
				w.sure = true
			}
		}
	}
}

func (v *wcVolume) stopped(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err == nil {
		v.err = err
	}
}

// check compares the volume's content with the model, sector by sector:
// each must hold the last durable write to it (or, if none, what it held
// when the cycle began) or a later write to it, acknowledged or in flight.
func (v *wcVolume) check(got []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for s := int64(0); s < int64(len(got)); s += 512 {
		region := int(s / (wcVolSize / wcWriters))
		allowed := [][]byte{v.base[s : s+512]}
		for _, w := range v.writes[region] {
			if s < w.off || s >= w.off+int64(len(w.data)) {
				continue
			}
			d := w.data[s-w.off : s-w.off+512]
			if w.sure {
				allowed = [][]byte{d}
			} else {
				allowed = append(allowed, d)
			}
		}
		ok := false
		for _, a := range allowed {
			ok = ok || bytes.Equal(got[s:s+512], a)
		}
		if !ok {
			return fmt.Errorf("volume %s (write cache %v): sector %d holds neither its last durable write nor a later one (%d candidates)",
				v.name, v.writeCache, s/512, len(allowed))
		}
	}
	return nil
}

// wcCommand runs a command and turns a failure into an error.
func wcCommand(ctx context.Context, c *initiator.Conn, cdb, out []byte, readLen int) ([]byte, error) {
	r, err := c.Command(ctx, 0, cdb, out, readLen)
	if err != nil {
		return nil, err
	}
	if r.Status != 0 {
		key, asc, _ := scsi.ParseSense(r.Sense)
		return nil, fmt.Errorf("SCSI status %#x, sense key %#x asc %#04x", r.Status, key, asc)
	}
	return r.Data, nil
}

// wce reads WCE from the volume's Caching mode page.
func wce(t *testing.T, ctx context.Context, c *initiator.Conn) bool {
	t.Helper()
	for range 3 { // a unit attention (mode parameters changed) first, perhaps
		data, err := wcCommand(ctx, c, []byte{0x1a, 0x08, 0x08, 0, 0xff, 0}, nil, 0xff)
		if err == nil {
			if len(data) < 7 || data[4] != 0x08 {
				t.Fatalf("MODE SENSE of the Caching page: % x", data)
			}
			return data[6]&0x04 != 0
		}
		if !strings.Contains(err.Error(), "key 0x6") {
			t.Fatalf("MODE SENSE: %v", err)
		}
	}
	t.Fatal("MODE SENSE: unit attentions without end")
	return false
}

// writeLoop is writer i of v: writes of 4-64 KiB in its quarter until one
// fails (the daemon died); every wcFUAEvery-th has FUA. onFUA runs after
// each acknowledged FUA write.
func (v *wcVolume) writeLoop(ctx context.Context, c *initiator.Conn, i int, seed uint64, onFUA func()) {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	region := int64(wcVolSize / wcWriters)
	for n := 1; ; n++ {
		size := int64(4096 * (1 + r.IntN(16)))
		w := &wcWrite{off: int64(i)*region + 4096*r.Int64N((region-size)/4096+1), data: testrand.Bytes(r.Uint64(), int(size))}
		fua := n%wcFUAEvery == 0
		cdb := make([]byte, 16)
		cdb[0] = 0x8a // WRITE(16)
		if fua {
			cdb[1] = 0x08
		}
		enc.BigEndian.PutUint64(cdb[2:], uint64(w.off/512))
		enc.BigEndian.PutUint32(cdb[10:], uint32(size/512))
		v.mu.Lock()
		v.writes[i] = append(v.writes[i], w)
		seen := v.acks
		v.mu.Unlock()
		if _, err := wcCommand(ctx, c, cdb, w.data, 0); err != nil {
			v.stopped(fmt.Errorf("writer %d: %w", i, err))
			return
		}
		v.acked(w, fua, seen)
		if fua {
			onFUA()
		}
	}
}

// syncLoop sends SYNCHRONIZE CACHE(10) until one fails; each acknowledged
// one makes durable what was acknowledged before it was sent. onSync runs
// after each.
func (v *wcVolume) syncLoop(ctx context.Context, c *initiator.Conn, onSync func()) {
	for {
		v.mu.Lock()
		seen := v.acks
		v.mu.Unlock()
		if _, err := wcCommand(ctx, c, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0); err != nil {
			v.stopped(fmt.Errorf("synchronize cache: %w", err))
			return
		}
		v.mu.Lock()
		v.durableLocked(seen)
		v.mu.Unlock()
		onSync()
	}
}

// TestISCSIWriteCacheKill runs writers on three volumes of the real daemon
// — cached with the write cache on, stored with it on, cached with it off
// — and kills the daemon with SIGKILL right after the n-th acknowledged
// SYNCHRONIZE CACHE or FUA write of a write-back volume; after the restart
// each volume must hold what the model says. Halfway, `volume set` turns
// the stored volume's write cache off, and initiators see WCE change.
func TestISCSIWriteCacheKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	dir := t.TempDir()
	mustRun(t, "init", "--data-dir", dir)
	g := &soakGateway{t: t, dir: dir, d: serve(t, dir)}
	vols := []*wcVolume{{name: "wbc", writeCache: true}, {name: "wbs", writeCache: true}, {name: "wt"}}
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "wbc", "--size", "32M", "--write-cache")
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "wbs", "--size", "32M", "--kind", "stored", "--write-cache")
	mustRun(t, "volume", "create", "--data-dir", dir, "--name", "wt", "--size", "32M")
	for _, v := range vols {
		v.base = make([]byte, wcVolSize)
		checkWriteCacheShown(t, dir, v.name, v.writeCache)
	}
	mustFailClearly(t, run(t, nil, "volume", "set", "--data-dir", dir, "wbc"), "no setting given")
	mustFailClearly(t, run(t, nil, "volume", "set", "--data-dir", dir, "nosuch", "--write-cache"), "no such volume")
	ctx, cancel := testContext(t)
	defer cancel()
	r := rand.New(rand.NewPCG(23, 5))
	const cycles = 4
	for cycle := 1; cycle <= cycles; cycle++ {
		if cycle == cycles/2+1 {
			// The administrator turns the stored volume's write cache off.
			out := mustRun(t, "volume", "set", "--data-dir", dir, "wbs", "--write-cache=false")
			if !strings.Contains(out, "write cache off") {
				t.Fatalf("volume set: %s", out)
			}
			vols[1].writeCache = false
			checkWriteCacheShown(t, dir, "wbs", false)
		}
		conns := make([]*initiator.Conn, len(vols))
		for i, v := range vols {
			conns[i] = g.attach(ctx, v.name)
			if got := wce(t, ctx, conns[i]); got != v.writeCache {
				t.Fatalf("cycle %d: volume %s reports WCE=%v, its write cache is %v", cycle, v.name, got, v.writeCache)
			}
		}
		// The kill: after the n-th acknowledged SYNCHRONIZE CACHE of the
		// cached write-back volume (odd cycles) or the n-th acknowledged
		// FUA write of a write-back volume (even cycles).
		n := 5 + r.IntN(30)
		var killMu sync.Mutex
		count, killed := 0, false
		trigger := func(kind string) func() {
			return func() {
				killMu.Lock()
				defer killMu.Unlock()
				if (kind == "sync") != (cycle%2 == 1) || killed {
					return
				}
				if count++; count == n {
					killed = true
					_ = g.d.cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
		var wg sync.WaitGroup
		for i, v := range vols {
			onFUA := func() {}
			if v.writeCache {
				onFUA = trigger("fua")
				if v.name == "wbc" {
					wg.Add(1)
					go func() { defer wg.Done(); v.syncLoop(ctx, conns[i], trigger("sync")) }()
				} else {
					wg.Add(1)
					go func() { defer wg.Done(); v.syncLoop(ctx, conns[i], func() {}) }()
				}
			}
			for w := range wcWriters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v.writeLoop(ctx, conns[i], w, uint64(cycle)<<8|uint64(i), onFUA)
				}()
			}
		}
		wg.Wait()
		killMu.Lock()
		if !killed {
			t.Fatalf("cycle %d: the writers stopped before the kill: %v; %v; %v", cycle, vols[0].err, vols[1].err, vols[2].err)
		}
		killMu.Unlock()
		<-g.d.done
		for _, c := range conns {
			c.Close()
		}

		g.d = serve(t, dir)
		acked := 0
		for _, v := range vols {
			c := g.attach(ctx, v.name)
			got := make([]byte, wcVolSize)
			for off := 0; off < wcVolSize; off += 1 << 20 {
				cdb := make([]byte, 16)
				cdb[0] = 0x88
				enc.BigEndian.PutUint64(cdb[2:], uint64(off/512))
				enc.BigEndian.PutUint32(cdb[10:], (1<<20)/512)
				data, err := wcCommand(ctx, c, cdb, nil, 1<<20)
				if err != nil {
					t.Fatalf("cycle %d: read %s: %v", cycle, v.name, err)
				}
				copy(got[off:], data)
			}
			c.Close()
			if err := v.check(got); err != nil {
				t.Fatalf("cycle %d, after kill -9 and restart: %v", cycle, err)
			}
			acked += int(v.acks)
			// What the volume holds now is where the next cycle starts.
			v.base, v.writes, v.acks, v.err = got, [wcWriters][]*wcWrite{}, 0, nil
		}
		t.Logf("cycle %d: %d writes acknowledged before the kill; every volume holds what it must", cycle, acked)
	}
}

// checkWriteCacheShown checks that `volume info` shows the write cache
// setting, in JSON and in text, and `status` too.
func checkWriteCacheShown(t *testing.T, dir, name string, on bool) {
	t.Helper()
	var vs volumeapi.VolumeStatus
	if err := json.Unmarshal([]byte(mustRun(t, "volume", "info", "--data-dir", dir, name, "-o", "json")), &vs); err != nil {
		t.Fatal(err)
	}
	if vs.WriteCache != on {
		t.Fatalf("volume info -o json of %s: write_cache %v, want %v", name, vs.WriteCache, on)
	}
	want := "write cache   off"
	if on {
		want = "write cache   on"
	}
	if text := mustRun(t, "volume", "info", "--data-dir", dir, name); !strings.Contains(text, want) {
		t.Fatalf("volume info of %s lacks %q:\n%s", name, want, text)
	}
	status := run(t, nil, "status", "--data-dir", dir).stdout
	for _, line := range strings.Split(status, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			if strings.Contains(line, "write cache on") != on {
				t.Fatalf("status says of %s %q; its write cache is %v", name, line, on)
			}
			return
		}
	}
	t.Fatalf("status does not list volume %s:\n%s", name, status)
}
