package lease

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

const ttl = 60 * time.Second

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// gateway is one lease holder under test, with what its callbacks saw.
type gateway struct {
	opts   Options
	states chan string // "ok", "warn: ...", "lost: ..."
	lost   chan error
	back   chan struct{}
}

func newGateway(s objstore.Store, c clock.Clock, id, host string) *gateway {
	g := &gateway{states: make(chan string, 100), lost: make(chan error, 10), back: make(chan struct{}, 10)}
	g.opts = Options{
		Store: s, Holder: Holder{ID: id, Host: host, DataDir: "/var/lib/" + id, PID: 100}, TTL: ttl, Clock: c,
		OnLost:     func(err error) { g.lost <- err },
		OnRegained: func() { g.back <- struct{}{} },
		OnState: func(level int, msg string) {
			g.states <- [...]string{"ok", "warn", "lost"}[level] + ": " + msg
		},
	}
	return g
}

func (g *gateway) acquire(t *testing.T, takeOver bool) (*Lease, error) {
	t.Helper()
	o := g.opts
	o.TakeOver = takeOver
	return Acquire(t.Context(), o)
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %s within 2 minutes", what)
		panic("unreachable")
	}
}

// advance moves the fake clock once Run sleeps on it.
func advance(t *testing.T, c *clock.Fake, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for c.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the renewal loop never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
	c.Advance(d)
}

func readRecord(t *testing.T, s objstore.Store) *Record {
	t.Helper()
	b, err := objstore.GetAll(t.Context(), s, Key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustHeld(t *testing.T, err error, want ...string) *HeldError {
	t.Helper()
	var he *HeldError
	if !errors.Is(err, ErrHeld) || !errors.As(err, &he) {
		t.Fatalf("got %v, want the lease held by another", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%q does not say %q", err, w)
		}
	}
	return he
}

func TestTakeRenewRefuseExpireTakeOver(t *testing.T) {
	s := mem.New("bucket")
	c := clock.NewFake(start)
	a := newGateway(s, c, "aaaa", "host-a")
	b := newGateway(s, c, "bbbb", "host-b")

	// Take: the first gateway creates the lease.
	la, err := a.acquire(t, false)
	if err != nil {
		t.Fatal(err)
	}
	r := readRecord(t, s)
	if r.HolderID != "aaaa" || r.Host != "host-a" || !r.Expires.Equal(start.Add(ttl)) || r.TTLMS != 60000 {
		t.Fatalf("lease after take: %+v", r)
	}

	// Refuse: a second gateway names the holder, with or without --take-over.
	_, err = b.acquire(t, false)
	mustHeld(t, err, "host-a", "/var/lib/aaaa", "2026-03-01T12:00:00Z", "expires in 1m0s")
	_, err = b.acquire(t, true)
	if he := mustHeld(t, err, "--take-over takes only an expired lease"); he.Remaining != ttl {
		t.Fatalf("remaining %v, want %v", he.Remaining, ttl)
	}

	// Renew: every TTL/3 the expiry moves on.
	ctx, stopA := context.WithCancel(t.Context())
	runA := make(chan error, 1)
	go func() { runA <- la.Run(ctx) }()
	wait(t, a.states, "state") // held, from Acquire
	for i := 1; i <= 3; i++ {
		advance(t, c, ttl/3)
		if st := wait(t, a.states, "renewal"); st != "ok: " {
			t.Fatalf("renewal %d: state %q", i, st)
		}
		if r := readRecord(t, s); !r.Expires.Equal(c.Now().Add(ttl)) || !r.Taken.Equal(start) {
			t.Fatalf("renewal %d: lease %+v", i, r)
		}
	}
	// Long after the first expiry, the lease is still live.
	_, err = b.acquire(t, true)
	mustHeld(t, err, "expires in 1m0s")

	// Expiry: the holder dies; its lease runs out.
	stopA()
	wait(t, runA, "end of the renewal loop")
	c.Advance(ttl / 2)
	_, err = b.acquire(t, true)
	mustHeld(t, err, "expires in 30s")
	c.Advance(ttl/2 + time.Second)
	_, err = b.acquire(t, false)
	mustHeld(t, err, "expired 1s ago", "start this one with --take-over")

	// Take over.
	lb, err := b.acquire(t, true)
	if err != nil {
		t.Fatalf("take over an expired lease: %v", err)
	}
	if r := readRecord(t, s); r.HolderID != "bbbb" || !r.Taken.Equal(c.Now()) {
		t.Fatalf("lease after take-over: %+v", r)
	}

	// The old holder, if it comes back to life, finds it lost for good.
	ctx, stopA = context.WithCancel(t.Context())
	defer stopA()
	go func() { runA <- la.Run(ctx) }()
	advance(t, c, ttl/3)
	lostErr := wait(t, a.lost, "lost lease")
	if !strings.Contains(lostErr.Error(), "host-b") || !strings.Contains(lostErr.Error(), "took it over") {
		t.Fatalf("lost reason %q does not name the new holder", lostErr)
	}
	if err := wait(t, runA, "end of the renewal loop"); !objstore.IsPreconditionFailed(err) {
		t.Fatalf("renewal loop of a lost lease ended with %v", err)
	}
	if la.Lost() == nil {
		t.Fatal("Lost() is nil after the lease was taken")
	}
	if r := readRecord(t, s); r.HolderID != "bbbb" {
		t.Fatalf("the old holder overwrote the lease: %+v", r)
	}

	// Restarted, the old holder refuses to start while the new one holds it.
	_, err = a.acquire(t, false)
	mustHeld(t, err, "host-b")

	// The holder itself, restarted (a new process, same id), takes its
	// lease back at once.
	b.opts.Holder.PID = 200
	if _, err := b.acquire(t, false); err != nil {
		t.Fatalf("restarted holder: %v", err)
	}
	if r := readRecord(t, s); r.PID != 200 || !r.Taken.Equal(lb.Record().Taken) {
		t.Fatalf("lease after the holder's restart: %+v", r)
	}
}

func TestReleasedLeaseIsFree(t *testing.T) {
	s := mem.New("bucket")
	c := clock.NewFake(start)
	a := newGateway(s, c, "aaaa", "host-a")
	b := newGateway(s, c, "bbbb", "host-b")
	if err := Check(t.Context(), s, c.Now()); err != nil {
		t.Fatalf("check of a prefix without a lease: %v", err)
	}
	la, err := a.acquire(t, false)
	if err != nil {
		t.Fatal(err)
	}
	mustHeld(t, Check(t.Context(), s, c.Now()), "host-a", "give this one another prefix")
	if err := la.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), s, c.Now()); err != nil {
		t.Fatalf("check of a released lease: %v", err)
	}
	if _, err := b.acquire(t, false); err != nil {
		t.Fatalf("a released lease: %v", err)
	}
	// Releasing a lease someone else took does not touch it.
	if err := la.Release(t.Context()); !objstore.IsPreconditionFailed(err) {
		t.Fatalf("release of a lost lease: %v", err)
	}
	if r := readRecord(t, s); r.HolderID != "bbbb" || r.Released != nil {
		t.Fatalf("lease: %+v", r)
	}
}

// holdAndRenew takes the lease on s for gateway "aaaa" and renews it on a
// fake clock until the test ends.
func holdAndRenew(t *testing.T, s objstore.Store) (*clock.Fake, *gateway, *Lease) {
	t.Helper()
	c := clock.NewFake(start)
	a := newGateway(s, c, "aaaa", "host-a")
	la, err := a.acquire(t, false)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, a.states, "state")
	go la.Run(t.Context())
	return c, a, la
}

// A store that stays away past the deadline stops the writes; a renewal
// that gets through later lifts the stop, since nobody took the lease.
func TestUnrenewableLeaseFencesUntilRenewed(t *testing.T) {
	inj := faulty.New(mem.New("bucket"), faulty.Options{})
	s := inj.Store()
	c, a, la := holdAndRenew(t, s)

	inj.SetRate(faulty.OpPut, 1)
	advance(t, c, ttl/3) // first failure: a warning
	if st := wait(t, a.states, "state"); !strings.HasPrefix(st, "warn: lease renewal failing") {
		t.Fatalf("state after a failed renewal: %q", st)
	}
	if la.Lost() != nil {
		t.Fatal("lost after one failed renewal")
	}
	// Retries every TTL/12 until the deadline (TTL - TTL/6 after the
	// last renewal) passes.
	for la.Lost() == nil {
		if c.Now().After(start.Add(ttl)) {
			t.Fatal("still writing after the lease expired")
		}
		advance(t, c, ttl/12)
		wait(t, a.states, "state")
	}
	if c.Now().Before(start.Add(ttl - ttl/6)) {
		t.Fatalf("stopped writing at %v, before the deadline", c.Now().Sub(start))
	}
	if err := wait(t, a.lost, "lost"); !strings.Contains(err.Error(), "not renewed since 2026-03-01T12:00:00Z") {
		t.Fatalf("lost reason: %v", err)
	}

	inj.SetRate(faulty.OpPut, 0)
	advance(t, c, ttl/12)
	wait(t, a.back, "regained")
	for st := wait(t, a.states, "state"); st != "ok: "; st = wait(t, a.states, "state") {
	}
	if la.Lost() != nil {
		t.Fatalf("still lost after a renewal: %v", la.Lost())
	}
}

// renewalWithLostAnswer holds the lease and renews it once on a store
// that applies the write but loses its answer.
func renewalWithLostAnswer(t *testing.T) (objstore.Store, *clock.Fake, *gateway, *Lease) {
	t.Helper()
	var loseAnswer atomic.Bool
	inj := faulty.New(mem.New("bucket"), faulty.Options{AfterCall: true, Hook: func(op faulty.Op, key string) error {
		if op == faulty.OpPut && loseAnswer.CompareAndSwap(true, false) {
			return errors.New("answer lost")
		}
		return nil
	}})
	s := inj.Store()
	c, a, la := holdAndRenew(t, s)
	loseAnswer.Store(true)
	advance(t, c, ttl/3)
	if st := wait(t, a.states, "state"); !strings.HasPrefix(st, "warn: ") {
		t.Fatalf("state after a renewal without answer: %q", st)
	}
	return s, c, a, la
}

// A renewal that landed but whose answer was lost leaves the gateway with
// an old ETag; the next renewal finds its own write there and goes on.
func TestRenewalWithLostAnswerKeepsTheLease(t *testing.T) {
	s, c, a, la := renewalWithLostAnswer(t)
	if r := readRecord(t, s); !r.Renewed.Equal(c.Now()) {
		t.Fatalf("the renewal did not land: %+v", r)
	}
	advance(t, c, ttl/12)
	if st := wait(t, a.states, "state"); st != "ok: " {
		t.Fatalf("state after the next renewal: %q (lost: %v)", st, la.Lost())
	}
	if r := readRecord(t, s); !r.Renewed.Equal(c.Now()) || r.HolderID != "aaaa" {
		t.Fatalf("lease after the next renewal: %+v", r)
	}
}

// A stop that comes while a renewal's answer is lost (a renewal cut short
// by the stop, or one slow to answer on a busy machine) still releases:
// the lease object names this gateway, so its ETag is adopted.
func TestReleaseAfterRenewalWithLostAnswer(t *testing.T) {
	s, c, _, la := renewalWithLostAnswer(t)
	if err := la.Release(t.Context()); err != nil {
		t.Fatalf("release after a renewal without answer: %v", err)
	}
	if r := readRecord(t, s); r.Released == nil || r.HolderID != "aaaa" {
		t.Fatalf("lease after the release: %+v", r)
	}
	if err := Check(t.Context(), s, c.Now()); err != nil {
		t.Fatalf("check of the released lease: %v", err)
	}
}

func TestRecordBytes(t *testing.T) {
	r := Record{Format: 1, HolderID: "3f2a", Host: "gw1", DataDir: "/var/lib/gatewayd", PID: 4242,
		Taken: start, Renewed: start.Add(20 * time.Second), TTLMS: 60000, Expires: start.Add(80 * time.Second)}
	want := `{"format":1,"holder_id":"3f2a","host":"gw1","data_dir":"/var/lib/gatewayd","pid":4242,` +
		`"taken":"2026-03-01T12:00:00Z","renewed":"2026-03-01T12:00:20Z","ttl_ms":60000,"expires":"2026-03-01T12:01:20Z"}` + "\n"
	if got := string(r.Marshal()); got != want {
		t.Fatalf("lease object:\n%s\nwant\n%s", got, want)
	}
	back, err := Parse([]byte(want))
	if err != nil || back.HolderID != "3f2a" || !back.Expires.Equal(r.Expires) {
		t.Fatalf("parse: %+v, %v", back, err)
	}
	for _, bad := range []string{"", "{", `{"format":2,"holder_id":"x","expires":"2026-03-01T12:01:20Z"}`, `{"format":1}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted it", bad)
		}
	}
}

func TestLoadIDKeepsTheID(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadID(dir)
	if err != nil || len(id) != 32 {
		t.Fatalf("LoadID: %q, %v", id, err)
	}
	again, err := LoadID(dir)
	if err != nil || again != id {
		t.Fatalf("second LoadID: %q, %v; first %q", again, err, id)
	}
}
