package main

import (
	"testing"

	"github.com/gatewayd/gatewayd/internal/nfstest"
)

// TestNFS4ReclaimAfterKill: two NFSv4.1 clients open a file of the real
// daemon and one of them locks a range of it; after kill -9 and a
// restart their client ids and sessions are stale, the server is in its
// grace period (so long here that only the clients' RECLAIM_COMPLETE
// ends it): the second client's new lock waits (NFS4ERR_GRACE) while the
// first reclaims its open and its lock, a client that held nothing
// before cannot reclaim (NFS4ERR_RECLAIM_BAD), nor the first once its
// reclaim is complete (NFS4ERR_NO_GRACE). Once both sent
// RECLAIM_COMPLETE the grace period is over: the second client's lock
// conflicts with the reclaimed one (NFS4ERR_DENIED) until it is unlocked.
func TestNFS4ReclaimAfterKill(t *testing.T) {
	t.Parallel() // waits on servers: beside the others (see TestMain)
	_, dir, d := shareOnMinIO(t, "reclaim", "s")
	v, done := nfsMount(t, nfsAddr(t, dir), "s")
	if _, err := v.Create("f.bin", 0o644); err != nil {
		t.Fatal(err)
	}
	done()
	addr := nfsAddr(t, dir)
	a, b := nfstest.DialV4(t, addr, "holder"), nfstest.DialV4(t, addr, "waiter")
	st, openA, fh := a.Open("open-a", "s", "f.bin")
	if st != nfstest.V4OK {
		t.Fatalf("OPEN of %v: %d", a, st)
	}
	st, openB, _ := b.Open("open-b", "s", "f.bin")
	if st != nfstest.V4OK {
		t.Fatalf("OPEN of %v: %d", b, st)
	}
	held := nfstest.V4LockArgs{Owner: "lock-a", Open: openA, Write: true, Off: 0, N: 100}
	if st, _ := a.Lock(fh, held); st != nfstest.V4OK {
		t.Fatalf("LOCK of %v: %d", a, st)
	}
	wanted := nfstest.V4LockArgs{Owner: "lock-b", Open: openB, Write: true, Off: 50, N: 10}
	if st, _ := b.Lock(fh, wanted); st != nfstest.V4ErrDenied {
		t.Fatalf("conflicting LOCK of %v before the kill: %d, want DENIED", b, st)
	}

	setConfig(t, dir, map[string]map[string]any{"nfs": {"grace": "24h"}})
	d.kill(t)
	serve(t, dir)
	addr = nfsAddr(t, dir)

	// The clients learn of the restart as the protocol says, then come
	// back with new client ids.
	for _, c := range []*nfstest.V4Client{a, b} {
		c.Redial(addr)
		if st := c.ReclaimComplete(); st != nfstest.V4ErrBadSession {
			t.Fatalf("%v: a call on its session from before the restart: %d, want BADSESSION", c, st)
		}
		if st := c.CreateSession(); st != nfstest.V4ErrStaleClientID {
			t.Fatalf("%v: CREATE_SESSION with its client id from before the restart: %d, want STALE_CLIENTID", c, st)
		}
		if st := c.ExchangeID(); st != nfstest.V4OK {
			t.Fatalf("%v: EXCHANGE_ID after the restart: %d", c, st)
		}
		if st := c.CreateSession(); st != nfstest.V4OK {
			t.Fatalf("%v: CREATE_SESSION after the restart: %d", c, st)
		}
	}

	stranger := nfstest.NewV4(t, addr, "stranger")
	if st, _ := stranger.ReclaimOpen("open-s", fh); st != nfstest.V4ErrReclaimBad {
		t.Fatalf("reclaim of a client that held nothing before the restart: %d, want RECLAIM_BAD", st)
	}

	st, openB = b.ReclaimOpen("open-b", fh)
	if st != nfstest.V4OK {
		t.Fatalf("%v: reclaim of its open: %d", b, st)
	}
	wanted.Open = openB
	if st, _ := b.Lock(fh, wanted); st != nfstest.V4ErrGrace {
		t.Fatalf("%v: a new LOCK in the grace period: %d, want GRACE", b, st)
	}
	if st := b.LockTest(fh, "lock-b", 50, 10); st != nfstest.V4ErrGrace {
		t.Fatalf("%v: LOCKT in the grace period: %d, want GRACE", b, st)
	}
	if st, _, _ := b.Open("open-b2", "s", "f.bin"); st != nfstest.V4ErrGrace {
		t.Fatalf("%v: a new OPEN in the grace period: %d, want GRACE", b, st)
	}

	st, openA = a.ReclaimOpen("open-a", fh)
	if st != nfstest.V4OK {
		t.Fatalf("%v: reclaim of its open: %d", a, st)
	}
	held.Open, held.Reclaim = openA, true
	st, lockA := a.Lock(fh, held)
	if st != nfstest.V4OK {
		t.Fatalf("%v: reclaim of its lock: %d", a, st)
	}
	if st := a.ReclaimComplete(); st != nfstest.V4OK {
		t.Fatalf("%v: RECLAIM_COMPLETE: %d", a, st)
	}
	late := nfstest.V4LockArgs{Owner: "lock-a", Open: openA, Write: true, Reclaim: true, Off: 200, N: 10}
	if st, _ := a.Lock(fh, late); st != nfstest.V4ErrNoGrace {
		t.Fatalf("%v: a reclaim after its RECLAIM_COMPLETE: %d, want NO_GRACE", a, st)
	}
	if st, _ := b.Lock(fh, wanted); st != nfstest.V4ErrGrace {
		t.Fatalf("%v: a new LOCK while it has not sent RECLAIM_COMPLETE: %d, want GRACE", b, st)
	}

	// The last client of the last instance is done: the grace period
	// ends, the reclaimed lock holds.
	if st := b.ReclaimComplete(); st != nfstest.V4OK {
		t.Fatalf("%v: RECLAIM_COMPLETE: %d", b, st)
	}
	if st, _ := b.Lock(fh, wanted); st != nfstest.V4ErrDenied {
		t.Fatalf("%v: LOCK of the reclaimed range after the grace period: %d, want DENIED", b, st)
	}
	if st, _ := stranger.ReclaimOpen("open-s", fh); st != nfstest.V4ErrNoGrace {
		t.Fatalf("a reclaim after the grace period: %d, want NO_GRACE", st)
	}
	if st := a.Unlock(fh, lockA, 0, 100); st != nfstest.V4OK {
		t.Fatalf("%v: LOCKU: %d", a, st)
	}
	if st, _ := b.Lock(fh, wanted); st != nfstest.V4OK {
		t.Fatalf("%v: LOCK once the range is free: %d", b, st)
	}
	if st := b.ReclaimComplete(); st != nfstest.V4ErrCompleteAlready {
		t.Fatalf("%v: a second RECLAIM_COMPLETE: %d, want COMPLETE_ALREADY", b, st)
	}
}
