package uploadbuffer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/vfs"
)

// The model test drives a journal with a small client: keys whose values
// are the sequence numbers of the writes to them, uploaded to a map that
// stands for the object store (it survives crashes). Random appends,
// applies that let a round and a trim run between the record's sync and
// its apply, runs of buffered appends (acknowledged by the Sync or the
// durable append after them) that fill segments, whose background syncs
// are then sync points too, rounds, flushes of some keys, failing uploads
// and trims run against a crashable filesystem; a crash is taken at every
// sync point of the run. After each crash the journal is reopened and replayed (with
// uploads and trims during the replay) and every key must hold its last
// acknowledged write or a later one: a record trimmed before its value
// reached the store would show as an older value.

var errStoreDown = errors.New("store away")

type modelStore struct {
	mu   sync.Mutex
	vals map[byte]uint64
	down bool
}

func (s *modelStore) copy() *modelStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &modelStore{vals: map[byte]uint64{}}
	for k, v := range s.vals {
		c.vals[k] = v
	}
	return c
}

type modelUnit struct {
	val     uint64
	gen     uint64
	pin     *Pin
	minLSN  LSN // the oldest record needed, for a client that is a Needer
	changed time.Time
}

// modelClient is a service on the journal: Apply sets a key, Upload puts
// it in the store and unpins it if it did not change meanwhile.
type modelClient struct {
	j     *Journal
	store *modelStore
	rnd   *rand.Rand // set: replay runs rounds now and then
	mu    sync.Mutex
	units map[byte]*modelUnit
	clk   *clock.Fake
	fs    vfs.FS
	needs bool // the client says what it needs (Needer) instead of pinning
}

// needer is the model client as a Needer.
type needer struct{ *modelClient }

func (c needer) Needs() (LSN, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lsn LSN
	ok := false
	for _, u := range c.units {
		if !ok || u.minLSN < lsn {
			lsn, ok = u.minLSN, true
		}
	}
	return lsn, ok
}

func encodeModel(key byte, seq uint64, pad int) []byte {
	b := make([]byte, 9+pad)
	b[0] = key
	binary.BigEndian.PutUint64(b[1:], seq)
	for i := range pad {
		b[9+i] = byte(seq) + byte(i)
	}
	return b
}

func (c *modelClient) Apply(ctx context.Context, lsn LSN, rec []byte) error {
	if len(rec) < 9 {
		return fmt.Errorf("short record %d", len(rec))
	}
	key, seq := rec[0], binary.BigEndian.Uint64(rec[1:])
	if c.j.Replaying() && c.rnd != nil && c.rnd.IntN(4) == 0 {
		// Uploads and trims run while the replay goes on, here between
		// the replay reaching the record and the record being applied.
		_ = c.j.Round(ctx)
	}
	c.mu.Lock()
	u := c.units[key]
	if u == nil {
		u = &modelUnit{}
		c.units[key] = u
	}
	if c.needs {
		if u.gen == 0 || lsn < u.minLSN {
			u.minLSN = lsn
		}
	} else if u.pin == nil {
		u.pin = c.j.Pin(lsn)
	}
	u.val = seq
	u.gen++
	u.changed = c.clk.Now()
	c.mu.Unlock()
	return nil
}

func (c *modelClient) Pending(context.Context) ([]Unit, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Unit
	for k, u := range c.units {
		out = append(out, Unit{Key: string(rune('a' + k)), Changed: u.changed, Value: k})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out, nil
}

func (c *modelClient) Upload(ctx context.Context, un Unit) (int64, error) {
	k := un.Value.(byte)
	c.mu.Lock()
	u := c.units[k]
	if u == nil {
		c.mu.Unlock()
		return 0, nil
	}
	val, gen := u.val, u.gen
	c.mu.Unlock()
	c.store.mu.Lock()
	if c.store.down {
		c.store.mu.Unlock()
		return 0, errStoreDown
	}
	c.store.vals[k] = val
	c.store.mu.Unlock()
	c.mu.Lock()
	if c.units[k] == u && u.gen == gen {
		delete(c.units, k)
		u.pin.Release()
	}
	c.mu.Unlock()
	return 8, nil
}

// value is what a key reads now: its pending value, else the store's.
func (c *modelClient) value(k byte) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if u := c.units[k]; u != nil {
		return u.val, true
	}
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	v, ok := c.store.vals[k]
	return v, ok
}

const (
	modelKeys     = 6
	modelCapacity = 256 << 10
	modelSegment  = 8 << 10
)

func openModel(t *testing.T, fs vfs.FS, store *modelStore, rnd *rand.Rand, needs bool) (*Log, *Journal, *modelClient) {
	t.Helper()
	l, err := Open(fs, "/log", Options{Capacity: modelCapacity, SegmentSize: modelSegment})
	if err != nil {
		t.Fatal(err)
	}
	c := &modelClient{store: store, units: map[byte]*modelUnit{}, rnd: rnd, fs: fs, clk: clock.NewFake(time.Unix(1e9, 0)), needs: needs}
	var client Client = c
	if needs {
		client = needer{c}
	}
	c.j = NewJournal(l, client, JournalOptions{Name: "model", Parallel: 3, SettleTime: 5 * time.Second, Clock: c.clk})
	if err := c.j.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l, c.j, c
}

// modelRun is one run of the random workload.
type modelRun struct {
	t       *testing.T
	rnd     *rand.Rand
	seq     uint64
	mu      sync.Mutex
	acked   map[byte]uint64 // last acknowledged write of each key
	pending map[byte]uint64 // last buffered write of each key, not yet acknowledged
}

func (r *modelRun) ackedCopy() map[byte]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[byte]uint64, len(r.acked))
	for k, v := range r.acked {
		out[k] = v
	}
	return out
}

// ops runs n random operations on the journal.
func (r *modelRun) ops(l *Log, j *Journal, c *modelClient, n int) {
	ctx := context.Background()
	for range n {
		c.clk.Advance(time.Second)
		switch op := r.rnd.IntN(25); {
		case op < 10: // append, applied by the client
			r.appendOne(ctx, l, j, c, nil)
		case op < 13: // append whose apply waits while a round and a trim run
			r.appendOne(ctx, l, j, c, func(lsn LSN, rec []byte) error {
				_ = j.Flush(ctx, nil)
				j.Trim()
				return c.Apply(ctx, lsn, rec)
			})
		case op < 15:
			_ = j.Round(ctx)
		case op < 17:
			k := string(rune('a' + r.rnd.IntN(modelKeys)))
			_ = j.Flush(ctx, func(u Unit) bool { return u.Key == k })
		case op < 18:
			j.Trim()
		case op < 19:
			// Renames and removes of the trim reach the disk, as the
			// kernel's writeback would take them there in time.
			if err := c.fs.SyncDir("/log"); err != nil {
				r.t.Fatal(err)
			}
		case op < 21:
			c.store.mu.Lock()
			c.store.down = !c.store.down
			c.store.mu.Unlock()
		case op < 24: // a run of buffered appends, often past a segment's end
			for range 1 + r.rnd.IntN(40) {
				r.appendBuffered(ctx, l, j, c)
			}
		default:
			if err := j.Sync(ctx); err != nil {
				r.t.Fatal(err)
			}
			r.ackPending()
		}
	}
}

// makeRoom uploads everything when the log is over half full, as the
// uploader would, with the store back.
func (r *modelRun) makeRoom(ctx context.Context, l *Log, j *Journal, c *modelClient) {
	if l.Used() > modelCapacity/2 {
		c.store.mu.Lock()
		c.store.down = false
		c.store.mu.Unlock()
		if err := j.Flush(ctx, nil); err != nil {
			r.t.Fatal(err)
		}
	}
}

// appendBuffered appends a buffered write, acknowledged only by a later
// Sync or durable append.
func (r *modelRun) appendBuffered(ctx context.Context, l *Log, j *Journal, c *modelClient) {
	r.makeRoom(ctx, l, j, c)
	r.seq++
	k := byte(r.rnd.IntN(modelKeys))
	if _, err := j.AppendBuffered(ctx, encodeModel(k, r.seq, r.rnd.IntN(600)), nil); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	if r.pending == nil {
		r.pending = map[byte]uint64{}
	}
	r.pending[k] = r.seq
	r.mu.Unlock()
}

// ackPending acknowledges the buffered writes: a Sync or a durable append
// after them returned.
func (r *modelRun) ackPending() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, seq := range r.pending {
		r.acked[k] = max(r.acked[k], seq)
	}
	r.pending = nil
}

func (r *modelRun) appendOne(ctx context.Context, l *Log, j *Journal, c *modelClient, apply func(LSN, []byte) error) {
	r.makeRoom(ctx, l, j, c)
	r.seq++
	k := byte(r.rnd.IntN(modelKeys))
	rec := encodeModel(k, r.seq, r.rnd.IntN(600))
	var fn func(LSN) error
	if apply != nil {
		fn = func(lsn LSN) error { return apply(lsn, rec) }
	}
	if _, err := j.Append(ctx, rec, fn); err != nil {
		r.t.Fatal(err)
	}
	r.ackPending() // queued before it: its group commit made them durable
	r.mu.Lock()
	r.acked[k] = r.seq
	r.mu.Unlock()
}

// check says whether every key holds its acknowledged write or a later one.
func check(t *testing.T, what string, c *modelClient, acked map[byte]uint64) {
	t.Helper()
	for k, want := range acked {
		got, ok := c.value(k)
		if !ok || got < want {
			t.Fatalf("%s: key %d holds write %d (present %v), acknowledged %d", what, k, got, ok, want)
		}
	}
}

type crashPoint struct {
	fs    *vfs.MemFS
	store *modelStore
	acked map[byte]uint64
}

// runModel runs the workload of seed, taking a crash at sync point crashAt
// (0: none). It returns the crash and how many sync points the run had.
func runModel(t *testing.T, seed uint64, crashAt int, needs bool) (*crashPoint, int) {
	mem := vfs.NewMem()
	var (
		mu    sync.Mutex // the writer, the syncer and the run sync at once
		syncs int
		cp    *crashPoint
		run   = &modelRun{t: t, rnd: rand.New(rand.NewPCG(seed, 7)), acked: map[byte]uint64{}}
		store = &modelStore{vals: map[byte]uint64{}}
	)
	fs := vfs.NewErrorFS(mem, func(op vfs.Op, _ string) error {
		if op == vfs.OpSync || op == vfs.OpSyncDir {
			mu.Lock()
			defer mu.Unlock()
			syncs++
			if syncs == crashAt {
				// Power lost just before this sync: the disk first, then the
				// store, which only ever moves on.
				cp = &crashPoint{fs: mem.Crash()}
				cp.store, cp.acked = store.copy(), run.ackedCopy()
			}
		}
		return nil
	})
	l, j, c := openModel(t, fs, store, nil, needs)
	run.ops(l, j, c, 300)
	check(t, "without a crash", c, run.ackedCopy())
	j.Close()
	l.Close()
	return cp, syncs
}

func TestJournalModelCrashAtEverySync(t *testing.T) {
	t.Run("pins", func(t *testing.T) { modelCrashes(t, false) })
	t.Run("needer", func(t *testing.T) { modelCrashes(t, true) })
}

func modelCrashes(t *testing.T, needs bool) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		_, total := runModel(t, seed, 0, needs)
		if total < 50 {
			t.Fatalf("seed %d: only %d sync points", seed, total)
		}
		for at := 1; at <= total; at++ {
			cp, _ := runModel(t, seed, at, needs)
			if cp == nil {
				t.Fatalf("seed %d: no crash at sync %d of %d", seed, at, total)
			}
			what := fmt.Sprintf("seed %d, crash at sync %d of %d", seed, at, total)
			rnd := rand.New(rand.NewPCG(seed, uint64(at)))
			l, j, c := openModel(t, cp.fs, cp.store, rnd, needs)
			c.rnd = nil
			check(t, what+", after replay", c, cp.acked)
			if err := cp.fs.SyncDir("/log"); err != nil { // what the replay trimmed is gone
				t.Fatal(err)
			}
			l2, j2, c2 := openModel(t, cp.fs.Crash(), cp.store.copy(), nil, needs)
			check(t, what+", then a crash after the replay", c2, cp.acked)
			j2.Close()
			l2.Close()
			// A second life on the recovered state, then a crash of it.
			run := &modelRun{t: t, rnd: rnd, seq: 1 << 32, acked: cp.acked}
			run.ops(l, j, c, 40)
			acked := run.ackedCopy()
			j.Close()
			l.Close()
			l, j, c = openModel(t, cp.fs.Crash(), c.store.copy(), rnd, needs)
			check(t, what+", then a second crash", c, acked)
			j.Close()
			l.Close()
		}
	}
}

// listClient lists fixed units and records the order of their uploads.
type listClient struct {
	units   []Unit
	mu      sync.Mutex
	order   []string
	running map[string]int
	overlap bool
	gate    map[string]chan struct{} // an upload of the key waits for it
	started chan string
}

func (c *listClient) Apply(context.Context, LSN, []byte) error { return nil }

func (c *listClient) Pending(context.Context) ([]Unit, error) { return c.units, nil }

func (c *listClient) Upload(ctx context.Context, u Unit) (int64, error) {
	c.mu.Lock()
	c.running[u.Key]++
	c.overlap = c.overlap || c.running[u.Key] > 1
	gate := c.gate[u.Key]
	c.mu.Unlock()
	if c.started != nil {
		c.started <- u.Key
	}
	if gate != nil {
		<-gate
	}
	c.mu.Lock()
	c.running[u.Key]--
	c.order = append(c.order, u.Key)
	c.mu.Unlock()
	return 1, nil
}

func newListJournal(t *testing.T, c *listClient, parallel int) *Journal {
	t.Helper()
	l, err := Open(vfs.NewMem(), "/log", Options{Capacity: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	j := NewJournal(l, c, JournalOptions{Parallel: parallel})
	t.Cleanup(func() { j.Close(); l.Close() })
	return j
}

// A flush goes before the background uploads already queued: a unit it
// asks for is raised out of the background queue, and uploaded once.
func TestJournalFlushGoesFirst(t *testing.T) {
	c := &listClient{running: map[string]int{}, gate: map[string]chan struct{}{"a": make(chan struct{})}, started: make(chan string, 16)}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c.units = append(c.units, Unit{Key: k})
	}
	j := newListJournal(t, c, 1)
	ctx := context.Background()
	bg := make(chan error, 1)
	go func() { bg <- j.Round(ctx) }()
	if k := <-c.started; k != "a" {
		t.Fatalf("first upload %q", k)
	}
	fl := make(chan error, 1)
	go func() { fl <- j.Flush(ctx, func(u Unit) bool { return u.Key == "d" }) }()
	for { // until the flush has raised d
		j.sched.mu.Lock()
		n := len(j.sched.queues[urgent])
		j.sched.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(c.gate["a"])
	for range 4 {
		<-c.started
	}
	if err := <-fl; err != nil {
		t.Fatal(err)
	}
	if err := <-bg; err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.order); got != "[a d b c e]" {
		t.Fatalf("upload order %s, want the flushed d right after the running a", got)
	}
	if st := j.Stats(); st.Uploads != 5 || st.UploadedBytes != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// A unit asked for while it uploads goes again after that upload, never
// beside it.
func TestJournalOneUploadPerKey(t *testing.T) {
	c := &listClient{running: map[string]int{}, gate: map[string]chan struct{}{"a": make(chan struct{})}, started: make(chan string, 16)}
	c.units = []Unit{{Key: "a"}}
	j := newListJournal(t, c, 4)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- j.Flush(ctx, nil) }()
	<-c.started
	second := make(chan error, 1)
	go func() { second <- j.Flush(ctx, nil) }()
	for { // until the second flush's job waits behind the running one
		j.sched.mu.Lock()
		n := len(j.sched.blocked)
		j.sched.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	gate := c.gate["a"]
	c.gate = nil // the second upload does not wait
	c.mu.Unlock()
	close(gate)
	<-c.started
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if c.overlap || len(c.order) != 2 {
		t.Fatalf("overlap %v, uploads %v", c.overlap, c.order)
	}
}
