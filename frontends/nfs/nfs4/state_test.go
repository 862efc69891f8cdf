package nfs4

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
)

// The client records and the grace period, through COMPOUNDs, on a store
// that outlives the server (a restart is a new Server on the same store),
// with a clock the tests move. The opens run on the pseudo root: a reclaim
// that passes the grace period's checks then fails as an open of a
// directory (NFS4ERR_ISDIR), one that does not with the grace period's
// error. The real daemon's kill -9 is cmd/gatewayd's
// TestNFS4ReclaimAfterKill.

// restart starts a server on store, as after a restart, with the clock at
// now.
func restart(t *testing.T, store meta.Store, now time.Time) *sessionFixture {
	t.Helper()
	f := newSessionFixture(t)
	f.now = now
	if err := f.s.Recover(context.Background(), store, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// v41 is a client with a session, which numbers its calls on slot 0.
type v41 struct {
	f        *sessionFixture
	id       sessionID
	clientID uint64
	seq      uint32
}

func (f *sessionFixture) client(owner string) *v41 {
	id, clientID := f.session(owner)
	return &v41{f: f, id: id, clientID: clientID}
}

// send sends SEQUENCE and the operation, and returns the compound's
// status.
func (c *v41) send(code uint32, args func(e *enc)) uint32 {
	c.f.t.Helper()
	c.seq++
	return c.f.send(newCall("t").op(opSequence, sequenceOp(c.id, c.seq, 0, false)).op(code, args)).status
}

func (c *v41) reclaimComplete() uint32 {
	return c.send(opReclaimComplete, func(e *enc) { e.bool(false) })
}

// open sends PUTROOTFH and OPEN of claim (CLAIM_NULL of "f", or
// CLAIM_PREVIOUS) by open owner "o".
func (c *v41) open(claim uint32) uint32 {
	c.f.t.Helper()
	c.seq++
	return c.f.send(newCall("t").op(opSequence, sequenceOp(c.id, c.seq, 0, false)).op(opPutRootFH, nil).op(opOpen, func(e *enc) {
		e.u32(0)
		e.u32(shareAccessBoth)
		e.u32(0)
		e.u64(c.clientID)
		e.str("o")
		e.u32(0) // no create
		e.u32(claim)
		if claim == claimNull {
			e.str("f")
		} else {
			e.u32(0) // no delegation
		}
	})).status
}

// records are the client records in store: epoch by owner.
func records(t *testing.T, store meta.Store) map[string]uint32 {
	t.Helper()
	got := map[string]uint32{}
	err := store.View(context.Background(), func(tx meta.Txn) error {
		got = map[string]uint32{}
		return tx.Iterate([]byte(clientPrefix), func(k, v []byte) error {
			epoch, _, valid := decodeRecord(v)
			if !valid {
				return errors.New("bad record")
			}
			got[string(k[len(clientPrefix):])] = epoch
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestClientRecords: a client's record is written by its RECLAIM_COMPLETE
// or its first OPEN, not before, and deleted with its client id; each
// start is a new epoch, and the client ids and sessions of the last one
// are stale.
func TestClientRecords(t *testing.T) {
	store := metamem.New()
	f := restart(t, store, time.Unix(1e9, 0))
	first := f.s.boot
	p, q, r := f.client("p"), f.client("q"), f.client("r")
	for _, c := range []*v41{p, q} {
		if st := c.reclaimComplete(); st != ok {
			t.Fatalf("RECLAIM_COMPLETE: %d", st)
		}
	}
	if got := records(t, store); len(got) != 2 || got["p"] != first || got["q"] != first {
		t.Fatalf("records %v, want p and q of epoch %d", got, first)
	}
	if st := r.open(claimNull); st != errGrace {
		t.Fatalf("OPEN before RECLAIM_COMPLETE: %d, want GRACE", st)
	}
	if st := f.send(newCall("ds").op(opDestroySession, func(e *enc) { e.fixed(q.id[:]) })).status; st != ok {
		t.Fatalf("DESTROY_SESSION: %d", st)
	}
	if st := f.send(newCall("dc").op(opDestroyClientID, func(e *enc) { e.u64(q.clientID) })).status; st != ok {
		t.Fatalf("DESTROY_CLIENTID: %d", st)
	}
	if got := records(t, store); len(got) != 1 || got["p"] != first {
		t.Fatalf("records after q's DESTROY_CLIENTID: %v, want p's alone", got)
	}

	f2 := restart(t, store, f.now)
	if f2.s.boot != first+1 {
		t.Fatalf("epoch %d after a restart, was %d", f2.s.boot, first)
	}
	if st := f2.send(newCall("cs").op(opCreateSession, createSessionOp(p.clientID, 2))).status; st != errStaleClientID {
		t.Fatalf("CREATE_SESSION with a client id of the last instance: %d, want STALE_CLIENTID", st)
	}
	p.f = f2
	if st := p.send(opPutRootFH, nil); st != errBadSession {
		t.Fatalf("SEQUENCE on a session of the last instance: %d, want BADSESSION", st)
	}
}

// TestGraceReclaim: after a restart, only the clients of the records may
// reclaim, until their RECLAIM_COMPLETE; new opens wait for the end of
// the grace period, which the last of them to send RECLAIM_COMPLETE ends.
func TestGraceReclaim(t *testing.T) {
	store := metamem.New()
	f := restart(t, store, time.Unix(1e9, 0))
	for _, owner := range []string{"p", "q"} {
		if st := f.client(owner).reclaimComplete(); st != ok {
			t.Fatalf("RECLAIM_COMPLETE: %d", st)
		}
	}

	f = restart(t, store, f.now)
	p, q, stranger := f.client("p"), f.client("q"), f.client("stranger")
	for _, tc := range []struct {
		name string
		st   uint32
		want uint32
	}{
		{"reclaim of a client without a record", stranger.open(claimPrevious), errReclaimBad},
		{"new open in the grace period", p.open(claimNull), errGrace},
		{"reclaim", p.open(claimPrevious), errIsDir},
		{"RECLAIM_COMPLETE", p.reclaimComplete(), ok},
		{"reclaim after RECLAIM_COMPLETE", p.open(claimPrevious), errNoGrace},
		{"new open while another client reclaims", p.open(claimNull), errGrace},
		{"RECLAIM_COMPLETE of the last client", q.reclaimComplete(), ok},
		{"new open after the grace period", p.open(claimNull), errIsDir},
		{"reclaim after the grace period", q.open(claimPrevious), errNoGrace},
		{"stranger's RECLAIM_COMPLETE", stranger.reclaimComplete(), ok},
		{"stranger's new open", stranger.open(claimNull), errIsDir},
	} {
		if tc.st != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, tc.st, tc.want)
		}
	}
}

// TestGraceTimeout: a grace period some client of the records does not
// come back in ends when its time (the lease time here) is up; a reclaim
// near its end extends it. The records of the clients that did not come
// back are deleted then, the others kept.
func TestGraceTimeout(t *testing.T) {
	store := metamem.New()
	f := restart(t, store, time.Unix(1e9, 0))
	for _, owner := range []string{"p", "q", "gone"} {
		if st := f.client(owner).reclaimComplete(); st != ok {
			t.Fatalf("RECLAIM_COMPLETE: %d", st)
		}
	}

	start := f.now
	f = restart(t, store, start)
	p := f.client("p")
	if st := p.reclaimComplete(); st != ok {
		t.Fatalf("RECLAIM_COMPLETE: %d", st)
	}
	f.now = start.Add(85 * time.Second)
	if st := p.send(opPutRootFH, nil); st != ok { // renews p's lease
		t.Fatalf("SEQUENCE: %d", st)
	}
	q := f.client("q")
	if st := q.open(claimPrevious); st != errIsDir {
		t.Fatalf("reclaim 85 s into the grace period: %d, want it accepted (ISDIR)", st)
	}
	f.now = start.Add(91 * time.Second)
	if st := p.open(claimNull); st != errGrace {
		t.Fatalf("new open 91 s after the start, 6 s after a reclaim: %d, want GRACE", st)
	}
	if got := records(t, store); len(got) != 3 {
		t.Fatalf("records in the grace period: %v, want p, q and gone", got)
	}
	f.now = start.Add(96 * time.Second)
	if st := p.open(claimNull); st != errIsDir {
		t.Fatalf("new open 96 s after the start, 11 s after the last reclaim: %d, want it accepted (ISDIR)", st)
	}
	epoch := f.s.boot
	if got := records(t, store); len(got) != 2 || got["p"] != epoch || got["q"] != epoch {
		t.Fatalf("records after the grace period: %v, want p and q of epoch %d", got, epoch)
	}
}
