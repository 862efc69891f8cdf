package main

// The soak run: the real daemon on a real MinIO behind the fault proxy,
// a mixed workload over iSCSI (the project's initiator) and NFS (a Go
// client and libnfs's nfs-cp), snapshots, restores and garbage collection,
// kill -9 of the daemon in the middle of writes, and at the end every
// acknowledged byte checked: through the gateway, in the bucket with no
// daemon (`gatewayd restore`), and object by object for the share's files.
// The bucket is then scanned for the plaintext the workload wrote, and
// emptied of chunks and pages by deleting everything and collecting.
//
// The short run below is part of the normal suite; `go test -tags soak`
// makes it long (soak_long_test.go), on a distributed MinIO of 4 nodes
// one of which is killed and restarted now and then. GATEWAYD_SOAK_CYCLES,
// GATEWAYD_SOAK_MINUTES, GATEWAYD_SOAK_SEED and GATEWAYD_SOAK_NODES
// (1: one MinIO server; 4 or more: a cluster) override either. Both are
// bounded in cycles and in time and stop by themselves, but never before
// minSoakCycles kill cycles: a run with fewer fails. GATEWAYD_SOAK_LOG names
// a file that gets the daemon's whole log when a run fails.

import (
	"bytes"
	"context"
	"crypto/sha256"
	enc "encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"

	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/internal/faultproxy"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/internal/testrand"
	"github.com/gatewayd/gatewayd/volume"
)

type soakParams struct {
	cycles  int           // kill -9 cycles at most
	minutes time.Duration // no new cycle starts after this (once minSoakCycles ran)
	seed    uint64
	volSize int64
	nodes   int    // MinIO servers: 1, or a cluster of miniotest.MinClusterNodes or more
	cache   string // the volume cache's size
	faults  faultproxy.Faults
}

// soakOutageMax is the longest a store outage lasts.
const soakOutageMax = 30 * time.Second

// minSoakCycles is the fewest kill cycles a soak run may end with: the
// time bound does not stop a run before, and a run that did fewer fails.
const minSoakCycles = 3

// A node of the cluster is killed in the writes of cycles that are
// nodeDownCycle modulo nodeCyclePeriod, and restarted at the start of those
// that are nodeUpCycle: it stays down through a gateway kill and restart,
// a restore, garbage collection and a store outage.
const (
	nodeCyclePeriod = 6
	nodeDownCycle   = 2
	nodeUpCycle     = 4
)

// soak is the short run's size; soak_long_test.go replaces it.
var soak = soakParams{
	cycles:  4,
	minutes: 2 * time.Minute,
	seed:    1,
	volSize: 24 << 20,
	nodes:   1,
	cache:   "64MiB",
	faults: faultproxy.Faults{SlowDown: 0.03, InternalError: 0.02, ResetBefore: 0.02, ResetAfter: 0.02, Truncate: 0.02,
		Latency: 0.1, MaxLatency: 100 * time.Millisecond},
}

// Markers written in plaintext by the workload: the volume's may appear in
// no object at all (volume data is encrypted), the share's only in the
// share's own objects (each file is a plain object).
const (
	volumeMarker = "gatewayd-plaintext-marker-VOLUME-0d41"
	shareMarker  = "gatewayd-plaintext-marker-SHARE-77c3"
)

// soakTally is what RELIABILITY.md reports.
type soakTally struct {
	cycles, kills, snapshots, restores, gcs int
	nodeKills, nodeRestarts                 int
	longOutages                             int // outages that lasted soakOutageMax
	acked, verified, lost                   int64
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// scsiRW sends one READ(16) or WRITE(16) and reports failure as an error:
// the background writers see the daemon die.
func scsiRW(ctx context.Context, c *initiator.Conn, write bool, off int64, data []byte, n int) ([]byte, error) {
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	if write {
		cdb[0], n = 0x8a, len(data)
	}
	enc.BigEndian.PutUint64(cdb[2:], uint64(off/512))
	enc.BigEndian.PutUint32(cdb[10:], uint32(n/512))
	readLen := n
	if write {
		readLen = 0
	}
	r, err := c.Command(ctx, 0, cdb, data, readLen)
	if err != nil {
		return nil, err
	}
	if r.Status != 0 {
		return nil, fmt.Errorf("SCSI status %#x sense %x", r.Status, r.Sense)
	}
	return r.Data, nil
}

// blockModel is what the volume must hold: every acknowledged write, and
// the one write that was in flight when the daemon died.
type blockModel struct {
	mu       sync.Mutex
	data     []byte
	inflight *extent
	acked    int64
	writes   int
	err      error // why the writer stopped, if a write failed
}

// failed says why the volume writer stopped, or nil.
func (m *blockModel) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

type extent struct {
	off  int64
	data []byte
}

// randomExtent draws a write of 4 KiB..256 KiB at a 4 KiB boundary that
// starts with the volume marker.
func randomExtent(r *rand.Rand, size int64) extent {
	n := int64(4096 * (1 + r.IntN(64)))
	off := 4096 * r.Int64N((size-n)/4096+1)
	data := testrand.Bytes(r.Uint64(), int(n))
	copy(data, volumeMarker)
	return extent{off, data}
}

// writeLoop writes random extents until stop closes or a write fails; each
// acknowledged write goes into the model, and acks counts it.
func (m *blockModel) writeLoop(ctx context.Context, c *initiator.Conn, r *rand.Rand, stop <-chan struct{}, acks chan<- struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		e := randomExtent(r, int64(len(m.data)))
		m.mu.Lock()
		m.inflight = &e
		m.mu.Unlock()
		if _, err := scsiRW(ctx, c, true, e.off, e.data, 0); err != nil {
			m.mu.Lock()
			m.err = fmt.Errorf("write of %d bytes at %d: %w", len(e.data), e.off, err)
			m.mu.Unlock()
			return // the daemon died (or the write failed): e stays in flight
		}
		m.mu.Lock()
		copy(m.data[e.off:], e.data)
		m.inflight = nil
		m.acked += int64(len(e.data))
		m.writes++
		m.mu.Unlock()
		select {
		case acks <- struct{}{}:
		default:
		}
	}
}

// settleInflight resolves the write that was in flight at the kill: each
// sector of it must hold either what was there before or what was being
// written, and the model takes what the volume holds.
func (m *blockModel) settleInflight(t *testing.T, ctx context.Context, c *initiator.Conn) {
	t.Helper()
	e := m.inflight
	m.inflight = nil
	if e == nil {
		return
	}
	got, err := scsiRW(ctx, c, false, e.off, nil, len(e.data))
	if err != nil {
		t.Fatalf("read the write in flight at the kill: %v", err)
	}
	for s := 0; s < len(e.data); s += 512 {
		g, old, nw := got[s:s+512], m.data[int(e.off)+s:int(e.off)+s+512], e.data[s:s+512]
		if !bytes.Equal(g, old) && !bytes.Equal(g, nw) {
			t.Fatalf("sector %d of the write in flight at the kill holds neither the old nor the new data", (e.off+int64(s))/512)
		}
	}
	copy(m.data[e.off:], got)
}

// verifyVolume reads the whole volume and counts the bytes that differ.
func verifyVolume(t *testing.T, ctx context.Context, c *initiator.Conn, want []byte) (verified, lost int64) {
	t.Helper()
	for off := 0; off < len(want); off += 1 << 20 {
		n := min(1<<20, len(want)-off)
		got, err := scsiRW(ctx, c, false, int64(off), nil, n)
		if err != nil {
			t.Fatalf("read volume at %d: %v", off, err)
		}
		for i := range n {
			if got[i] != want[off+i] {
				lost++
			}
		}
		verified += int64(n)
	}
	return verified, lost
}

// shareFile is one file written through NFS: what the server acknowledged.
type shareFile struct {
	name string
	data []byte
}

// appendLoop appends records to f until stop closes or a write fails; the
// file model gets each acknowledged record, pending the one in flight.
func appendLoop(f *nfsc.File, seed uint64, sf *shareFile, mu *sync.Mutex, inflight *[]byte, failed *error, stop <-chan struct{}, acks chan<- struct{}) {
	const rec = 16 << 10
	for i := uint64(0); ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		b := testrand.Bytes(seed<<20|i, rec)
		copy(b, shareMarker)
		mu.Lock()
		*inflight = b
		mu.Unlock()
		if _, err := f.Write(b); err != nil {
			mu.Lock()
			*failed = fmt.Errorf("append of %d bytes at %d: %w", len(b), len(sf.data), err)
			mu.Unlock()
			return
		}
		mu.Lock()
		sf.data = append(sf.data, b...)
		*inflight = nil
		mu.Unlock()
		select {
		case acks <- struct{}{}:
		default:
		}
	}
}

func countDiff(got, want []byte) int64 {
	var n int64
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			n++
		}
	}
	return n
}

// soakGateway is the daemon under test and how to reach it.
type soakGateway struct {
	t   *testing.T
	dir string
	d   *daemon
}

func (g *soakGateway) kill() { g.d.kill(g.t) }

func (g *soakGateway) attach(ctx context.Context, name string) *initiator.Conn {
	g.t.Helper()
	c, err := initiator.Dial(ctx, iscsiPortal(g.t, g.dir), initiator.Options{TargetName: "iqn.2024-01.io.gatewayd:" + name})
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	c.Command(ctx, 0, make([]byte, 6), nil, 0) // the power-on unit attention
	return c
}

// waitUploaded waits until the volume and the share (unless "") have
// nothing left to upload.
func (g *soakGateway) waitUploaded(vol, share string) {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var vs volumeapi.VolumeStatus
		err := json.Unmarshal([]byte(mustRun(g.t, "volume", "info", "--data-dir", g.dir, vol, "-o", "json")), &vs)
		pending, ok := 0.0, true
		if share != "" {
			pending, ok = metric(g.t, g.dir, `gatewayd_share_files_pending{share="`+share+`"}`)
		}
		if err == nil && vs.Stats.PendingChunks == 0 && ok && pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("uploads never finished: volume %+v (%v), share files pending %v", vs.Stats, err, pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSoak(t *testing.T) {
	t.Parallel() // waits on the workload's time bound: beside the other end-to-end tests
	p := soak
	p.cycles = envInt("GATEWAYD_SOAK_CYCLES", p.cycles)
	p.minutes = time.Duration(envInt("GATEWAYD_SOAK_MINUTES", int(p.minutes/time.Minute))) * time.Minute
	p.seed = uint64(envInt("GATEWAYD_SOAK_SEED", int(p.seed)))
	p.nodes = envInt("GATEWAYD_SOAK_NODES", p.nodes)
	if p.cycles < minSoakCycles {
		t.Fatalf("%d cycles asked for: a soak run has at least %d", p.cycles, minSoakCycles)
	}
	if p.nodes != 1 && p.nodes < miniotest.MinClusterNodes {
		t.Fatalf("%d MinIO nodes asked for: 1, or a cluster of at least %d", p.nodes, miniotest.MinClusterNodes)
	}
	t.Logf("soak: at most %d cycles, %v, seed %d, volume %d MiB, cache %s, %d MinIO node(s), faults %+v", p.cycles, p.minutes, p.seed, p.volSize>>20, p.cache, p.nodes, p.faults)
	start := time.Now()
	rng := rand.New(rand.NewPCG(p.seed, 99))
	var tally soakTally

	// On a cluster the gateway talks to node 0, and the other nodes take
	// turns being killed: a restarted node may answer NoSuchKey for a
	// while for objects written while it was down (miniotest.RestartNode),
	// which a client of node 0 never sees.
	var cluster *miniotest.Cluster
	var srv *miniotest.Server
	if p.nodes > 1 {
		cluster = miniotest.StartCluster(t, p.nodes)
		srv = cluster.Nodes[0]
	} else {
		srv = miniotest.Start(t)
	}
	downNode := -1 // the cluster's node that is down, if any
	restartNode := func() {
		t.Helper()
		if err := cluster.RestartNode(downNode); err != nil {
			t.Fatal(err)
		}
		tally.nodeRestarts++
		t.Logf("MinIO node %d restarted", downNode)
		downNode = -1
	}
	srv.CreateBucket(t, "soak")
	proxy, err := faultproxy.Start(srv.Endpoint, p.seed)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	creds := []string{"--s3-path-style", "--s3-access-key", srv.AccessKey, "--s3-secret-key", srv.SecretKey}
	g := &soakGateway{t: t, dir: t.TempDir()}
	mustRun(t, append([]string{"init", "--data-dir", g.dir, "--store", "s3://soak/gw", "--s3-endpoint", proxy.URL()}, creds...)...)
	// A small cache; restored volumes read from the bucket through the
	// faults. Short settle times and recovery points keep uploads going
	// all the time.
	cfgPath := filepath.Join(g.dir, "gatewayd.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for old, nw := range map[string]string{
		"cache:\n  dir: cache\n  size: 8GiB": "cache:\n  dir: cache\n  size: " + p.cache,
		"log_level: info":                    "log_level: debug",
		"max_attempts: 8":                    "max_attempts: 12",
		"max_delay: 30s":                     "max_delay: 1s",
		"upload_interval: 1s":                "upload_interval: 200ms",
		"settle_time: 2s\n  recovery_point":  "settle_time: 300ms\n  recovery_point",
		"recovery_point_interval: 5m0s":      "recovery_point_interval: 10s",
		"  settle_time: 2s\n  attr_ttl":      "  settle_time: 300ms\n  attr_ttl",
		"vtl:\n  enabled: true":              "vtl:\n  enabled: false",
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("gatewayd.yaml from init lacks %q", old)
		}
		s = strings.Replace(s, old, nw, 1)
	}
	if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	g.d = serve(t, g.dir)
	t.Cleanup(func() {
		if t.Failed() {
			if g.d.cmd.ProcessState == nil {
				g.kill()
			}
			var b strings.Builder
			for _, line := range strings.Split(g.d.stderr.String(), "\n") {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "rror") {
					b.WriteString(line + "\n")
				}
			}
			log := b.String()
			t.Logf("the daemon's warnings and errors:\n%s", log[max(0, len(log)-8000):])
			// The whole log, for a run that failed after hours.
			if name := os.Getenv("GATEWAYD_SOAK_LOG"); name != "" {
				if err := os.WriteFile(name, []byte(g.d.stderr.String()), 0o644); err != nil {
					t.Log(err)
				}
			}
		}
	})
	ctx, cancel := testContext(t)
	defer cancel()

	const vol, share = "soakvol", "soakfiles"
	mustRun(t, "volume", "create", "--data-dir", g.dir, "--name", vol, "--size", strconv.FormatInt(p.volSize, 10), "--chunk-size", "256K")
	mustRun(t, "share", "create", "--data-dir", g.dir, "--name", share)
	proxy.SetFaults(p.faults)

	model := &blockModel{data: make([]byte, p.volSize)}
	var files []*shareFile
	snaps := map[string][32]byte{} // live snapshots and the image each holds
	var snapOrder []string
	localDir := t.TempDir()

	for cycle := 0; cycle < p.cycles && (cycle < minSoakCycles || time.Since(start) < p.minutes); cycle++ {
		tally.cycles++
		if cluster != nil && downNode >= 0 && cycle%nodeCyclePeriod == nodeUpCycle {
			restartNode()
		}
		c := g.attach(ctx, vol)
		v, unmount := nfsMount(t, nfsAddr(t, g.dir), share)

		// A file through libnfs's nfs-cp, whole before it is counted.
		cp := &shareFile{name: fmt.Sprintf("cp-%03d.bin", cycle), data: testrand.Bytes(p.seed<<32|uint64(cycle), 256<<10+rng.IntN(1<<20))}
		copy(cp.data, shareMarker)
		local := filepath.Join(localDir, cp.name)
		if err := os.WriteFile(local, cp.data, 0o644); err != nil {
			t.Fatal(err)
		}
		nfsTool(t, "nfs-cp", local, strings.Replace(shareInfo(t, g.dir, share).Mount.URL, "/"+share+"/", "/"+share+"/"+cp.name, 1))
		files = append(files, cp)
		tally.acked += int64(len(cp.data))

		// Writes, then a snapshot of a quiet volume.
		stop := make(chan struct{})
		acks := make(chan struct{}, 1)
		done := make(chan struct{})
		wr := rand.New(rand.NewPCG(rng.Uint64(), 1))
		go func() { model.writeLoop(ctx, c, wr, stop, acks); close(done) }()
		for n := 0; n < 10+rng.IntN(20); n++ {
			waitAck(t, acks, "volume write", model.failed)
		}
		close(stop)
		<-done
		if model.inflight != nil {
			t.Fatal("a write failed with the daemon running")
		}
		var si volume.SnapshotInfo
		if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", g.dir, vol, "-o", "json")), &si); err != nil {
			t.Fatal(err)
		}
		snaps[si.ID] = sha256.Sum256(model.data)
		snapOrder = append(snapOrder, si.ID)
		tally.snapshots++

		// Writers on the volume and on a share file, then kill -9 in the
		// middle of them.
		f, err := v.OpenFile(fmt.Sprintf("log-%03d.bin", cycle), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		lf := &shareFile{name: fmt.Sprintf("log-%03d.bin", cycle)}
		files = append(files, lf)
		var fmu sync.Mutex
		var finflight []byte
		var ferr error
		appendFailed := func() error { fmu.Lock(); defer fmu.Unlock(); return ferr }
		stop = make(chan struct{})
		vacks, facks := make(chan struct{}, 1), make(chan struct{}, 1)
		vdone, fdone := make(chan struct{}), make(chan struct{})
		go func() { model.writeLoop(ctx, c, wr, stop, vacks); close(vdone) }()
		go func() { appendLoop(f, p.seed<<8|uint64(cycle), lf, &fmu, &finflight, &ferr, stop, facks); close(fdone) }()
		// Every other cycle the store goes away while writes go on, until
		// the kill or for soakOutageMax: writes may rightly wait for the
		// store (a cache full of chunks not yet uploaded, uploads fenced
		// once the lease is overdue), and must go on once it is back.
		outage := cycle%2 == 1
		var outageEnd *time.Timer
		if outage {
			waitAck(t, vacks, "volume write", model.failed)
			waitAck(t, facks, "share append", appendFailed)
			proxy.SetOutage(true)
			outageEnd = time.AfterFunc(soakOutageMax, func() { proxy.SetOutage(false) })
		}
		nodeDown := cluster != nil && cycle%nodeCyclePeriod == nodeDownCycle
		for n := 0; n < 10+rng.IntN(40); n++ {
			if nodeDown && n == 5 {
				// Nodes 1.. in turn; node 0 is the gateway's.
				downNode = 1 + tally.nodeKills%(p.nodes-1)
				if err := cluster.KillNode(downNode); err != nil {
					t.Fatal(err)
				}
				tally.nodeKills++
				t.Logf("MinIO node %d killed", downNode)
			}
			waitAck(t, vacks, "volume write", model.failed)
			waitAck(t, facks, "share append", appendFailed)
		}
		g.kill()
		tally.kills++
		close(stop)
		<-vdone
		<-fdone
		unmount()
		c.Close()
		if outage && !outageEnd.Stop() {
			tally.longOutages++
		}
		proxy.SetOutage(false)
		model.mu.Lock()
		tally.acked = model.acked + sumFiles(files)
		model.mu.Unlock()

		// Back up: every acknowledged byte is there.
		g.d = serve(t, g.dir)
		c = g.attach(ctx, vol)
		model.settleInflight(t, ctx, c)
		ver, lost := verifyVolume(t, ctx, c, model.data)
		tally.verified += ver
		tally.lost += lost
		v, unmount = nfsMount(t, nfsAddr(t, g.dir), share)
		got := readNFS(t, v, lf.name)
		if len(got) < len(lf.data) || len(got) > len(lf.data)+len(finflight) ||
			!bytes.Equal(got[len(lf.data):], finflight[:len(got)-len(lf.data)]) {
			t.Errorf("%s after kill -9: %d bytes, %d acknowledged, %d in flight", lf.name, len(got), len(lf.data), len(finflight))
		}
		lf.data = got[:max(len(lf.data), min(len(got), len(lf.data)+len(finflight)))]
		for _, sf := range files {
			got := readNFS(t, v, sf.name)
			tally.verified += int64(len(sf.data))
			tally.lost += countDiff(got, sf.data)
			if len(got) != len(sf.data) {
				t.Errorf("%s: %d bytes, want %d", sf.name, len(got), len(sf.data))
			}
		}
		if tally.lost > 0 {
			t.Fatalf("cycle %d: %d acknowledged bytes lost", cycle, tally.lost)
		}

		// A restore of a snapshot taken earlier, read whole through iSCSI.
		id := snapOrder[rng.IntN(len(snapOrder))]
		rname := fmt.Sprintf("restore%d", cycle)
		mustRun(t, "volume", "create", "--data-dir", g.dir, "--name", rname, "--from-snapshot", id)
		rc := g.attach(ctx, rname)
		img := make([]byte, 0, p.volSize)
		for off := int64(0); off < p.volSize; off += 1 << 20 {
			b, err := scsiRW(ctx, rc, false, off, nil, int(min(1<<20, p.volSize-off)))
			if err != nil {
				t.Fatalf("read volume restored from %s: %v", id, err)
			}
			img = append(img, b...)
		}
		if sha256.Sum256(img) != snaps[id] {
			t.Fatalf("volume restored from %s differs from the volume when it was taken", id)
		}
		tally.verified += p.volSize
		tally.restores++
		rc.Close()
		mustRun(t, "volume", "delete", "--data-dir", g.dir, "--force", rname)

		// Old snapshots go, and garbage collection runs under the faults.
		for len(snapOrder) > 3 {
			mustRun(t, "snapshot", "delete", "--data-dir", g.dir, snapOrder[0])
			delete(snaps, snapOrder[0])
			snapOrder = snapOrder[1:]
		}
		if r := run(t, nil, "gc", "--data-dir", g.dir, "--grace", "0s"); r.code == 0 {
			tally.gcs++
		} else {
			t.Logf("gc under faults stopped: %s", r.stderr)
		}
		unmount()
		c.Close()
		t.Logf("cycle %d: %d writes acknowledged, %d bytes verified so far; proxy: %v", cycle, model.writes, tally.verified, proxy.Stats())
	}

	// The end: every node up, faults off, everything uploaded, checked in
	// the bucket.
	if downNode >= 0 {
		restartNode()
	}
	proxy.SetFaults(faultproxy.Faults{})
	c := g.attach(ctx, vol)
	var si volume.SnapshotInfo
	if err := json.Unmarshal([]byte(mustRun(t, "snapshot", "create", "--data-dir", g.dir, vol, "-o", "json")), &si); err != nil {
		t.Fatal(err)
	}
	snaps[si.ID] = sha256.Sum256(model.data)
	snapOrder = append(snapOrder, si.ID)
	g.waitUploaded(vol, share)
	for _, id := range snapOrder {
		if out := mustRun(t, "snapshot", "verify", "--data-dir", g.dir, id); !strings.Contains(out, "0 problems") {
			t.Fatalf("snapshot verify %s: %s", id, out)
		}
	}
	// Disaster recovery from the bucket alone, straight from MinIO.
	img := filepath.Join(t.TempDir(), "final.img")
	mustRun(t, append([]string{"restore", "--data-dir", t.TempDir(), si.ID, "--to", img, "--store", "s3://soak/gw",
		"--key-file", filepath.Join(g.dir, "master.key"), "--s3-endpoint", srv.Endpoint, "--quiet"}, creds...)...)
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	tally.verified += int64(len(model.data))
	tally.lost += countDiff(got, model.data)
	for _, sf := range files {
		waitObject(t, srv, "soak", "gw/"+share+"/"+sf.name, sf.data)
		tally.verified += int64(len(sf.data))
	}
	if tally.lost > 0 {
		t.Fatalf("%d acknowledged bytes lost in the bucket", tally.lost)
	}
	scanned := scanForMarkers(t, srv, "soak", map[string]string{volumeMarker: "", shareMarker: "gw/" + share + "/"})
	t.Logf("%d objects scanned for plaintext markers", scanned)

	// Garbage collection leaves nothing unreferenced; with every snapshot
	// and volume gone it leaves no chunk and no page.
	mustRun(t, "gc", "--data-dir", g.dir, "--grace", "0s")
	if out := mustRun(t, "gc", "--data-dir", g.dir, "--grace", "0s", "--dry-run"); !strings.Contains(out, "would delete 0 ") {
		t.Fatalf("a second gc finds garbage the first left: %s", out)
	}
	c.Close()
	for _, id := range snapOrder {
		mustRun(t, "snapshot", "delete", "--data-dir", g.dir, id)
	}
	mustRun(t, "volume", "delete", "--data-dir", g.dir, "--force", vol)
	mustRun(t, "gc", "--data-dir", g.dir, "--grace", "0s")
	if left := listKeys(t, srv, "soak", "gw/chunks/", "gw/maps/"); len(left) > 0 {
		t.Fatalf("%d chunks and pages left after deleting every snapshot and volume and collecting, e.g. %s", len(left), left[0])
	}

	st := proxy.Stats()
	t.Logf("soak result: %d cycles, %d kill -9, %d snapshots, %d restores, %d gc runs under faults; %d MinIO node(s), %d node kills, %d node restarts; %d outages ended by their time limit; %d faults injected (%v); "+
		"%d bytes acknowledged, %d bytes verified, %d bytes lost; %v",
		tally.cycles, tally.kills, tally.snapshots, tally.restores, tally.gcs, p.nodes, tally.nodeKills, tally.nodeRestarts, tally.longOutages, st.Injected(), st, tally.acked, tally.verified, tally.lost,
		time.Since(start).Round(time.Second))
	if tally.kills < minSoakCycles {
		t.Fatalf("%d kill cycles ran: a soak run needs at least %d", tally.kills, minSoakCycles)
	}
	if cluster != nil && tally.nodeKills == 0 {
		t.Fatal("no MinIO node was killed: the run proves nothing about a cluster losing a node")
	}
	if st.Injected() == 0 {
		t.Fatal("the proxy injected no faults: the run proves nothing about them")
	}
}

// waitAck waits for a writer's next acknowledgement, with a generous
// deadline: a writer that stops being acknowledged fails the run rather
// than hanging it.
// failed says why the writer stopped, if it did.
func waitAck(t *testing.T, acks <-chan struct{}, what string, failed func() error) {
	t.Helper()
	select {
	case <-acks:
	case <-time.After(5 * time.Minute):
		t.Fatalf("no %s acknowledged in 5 minutes; the writer's error: %v", what, failed())
	}
}

func sumFiles(files []*shareFile) int64 {
	var n int64
	for _, f := range files {
		n += int64(len(f.data))
	}
	return n
}
