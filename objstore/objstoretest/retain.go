package objstoretest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
)

// testNoObjectLock: on a store (or bucket) without Object Lock, retention
// is refused with ErrNoObjectLock, every object has none, and Purge
// deletes. Stores with Object Lock are checked by RunObjectLock.
func testNoObjectLock(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	lc, err := objstore.ObjectLock(ctx, s)
	if err != nil {
		t.Fatalf("object lock: %v", err)
	}
	if lc.Enabled {
		t.Fatalf("a fresh store reports Object Lock enabled; the suite expects a bucket without it")
	}
	put(t, s, "lock/a", []byte("data"))
	ret := objstore.Retention{Mode: objstore.Governance, Until: time.Now().Add(time.Hour)}
	if err := objstore.Retain(ctx, s, "lock/a", ret); !errors.Is(err, objstore.ErrNoObjectLock) {
		t.Fatalf("retain without Object Lock: got %v, want ErrNoObjectLock", err)
	}
	if err := objstore.PutRetained(ctx, s, "lock/b", bytes.NewReader([]byte("x")), 1, ret); !errors.Is(err, objstore.ErrNoObjectLock) {
		t.Fatalf("put retained without Object Lock: got %v, want ErrNoObjectLock", err)
	}
	if r, err := objstore.GetRetention(ctx, s, "lock/a"); err != nil || !r.IsZero() {
		t.Fatalf("retention without Object Lock: %v, %v; want none", r, err)
	}
	if _, err := objstore.GetRetention(ctx, s, "lock/missing"); !objstore.IsNotFound(err) {
		t.Fatalf("retention of a missing key: got %v, want not-found", err)
	}
	if err := objstore.Purge(ctx, s, "lock/a"); err != nil {
		t.Fatalf("purge: %v", err)
	}
	mustNotFound(t, s, "lock/a")
	if err := objstore.Purge(ctx, s, "lock/a"); err != nil {
		t.Fatalf("purge of a missing key: %v", err)
	}
}

// RunObjectLock checks a store's Retainer on a bucket with Object Lock:
// newStore returns an empty store on such a bucket, once per subtest.
// Retentions are real: the subtests that watch one end wait for it (a few
// seconds), and compliance-mode objects outlive the test.
func RunObjectLock(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store)
	}{
		{"Config", testLockConfig},
		{"PutRetained", testPutRetained},
		{"RetainExtendsNeverShortens", testRetainExtends},
		{"DeleteKeepsRetained", testDeleteKeepsRetained},
		{"OverwriteKeepsRetained", testOverwriteKeepsRetained},
		{"PurgeAfterRetentionEnds", testPurgeAfterEnd},
		{"ExtendRetention", testExtendRetention},
		{"LargeObjectRetained", testLargeRetained},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// retainedFor is a retention of d from now, to the second (S3 keeps
// retention dates to the second or the millisecond).
func retainedFor(mode objstore.RetentionMode, d time.Duration) objstore.Retention {
	return objstore.Retention{Mode: mode, Until: time.Now().Add(d).UTC().Truncate(time.Second)}
}

func mustRetention(t *testing.T, s objstore.Store, key string, want objstore.Retention) {
	t.Helper()
	got, err := objstore.GetRetention(ctxT(t), s, key)
	if err != nil {
		t.Fatalf("retention of %s: %v", key, err)
	}
	if got.Mode != want.Mode || !got.Until.Equal(want.Until) {
		t.Fatalf("retention of %s: got %s, want %s", key, got, want)
	}
}

func mustLocked(t *testing.T, what string, err error) {
	t.Helper()
	if !objstore.IsObjectLocked(err) {
		t.Fatalf("%s: got %v, want an error wrapping ErrObjectLocked", what, err)
	}
}

func testLockConfig(t *testing.T, s objstore.Store) {
	lc, err := objstore.ObjectLock(ctxT(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if !lc.Enabled {
		t.Fatalf("object lock configuration: %+v, want enabled", lc)
	}
}

func testPutRetained(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	data := randBytes(40, 3000)
	ret := retainedFor(objstore.Governance, time.Hour)
	if err := objstore.PutRetained(ctx, s, "lock/obj", bytes.NewReader(data), int64(len(data)), ret); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "retained object", getRange(t, s, "lock/obj", 0, -1), data)
	mustRetention(t, s, "lock/obj", ret)
	put(t, s, "lock/plain", []byte("plain"))
	mustRetention(t, s, "lock/plain", objstore.Retention{})
	if _, err := objstore.GetRetention(ctx, s, "lock/missing"); !objstore.IsNotFound(err) {
		t.Fatalf("retention of a missing key: got %v, want not-found", err)
	}
	if err := objstore.Retain(ctx, s, "lock/missing", ret); !objstore.IsNotFound(err) {
		t.Fatalf("retain a missing key: got %v, want not-found", err)
	}
	bad := objstore.Retention{Mode: "FOREVER", Until: ret.Until}
	if err := objstore.Retain(ctx, s, "lock/plain", bad); err == nil || objstore.IsObjectLocked(err) {
		t.Fatalf("retain with mode %q: got %v, want a plain refusal", bad.Mode, err)
	}
}

func testRetainExtends(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	put(t, s, "lock/a", []byte("a"))
	first := retainedFor(objstore.Governance, time.Hour)
	if err := objstore.Retain(ctx, s, "lock/a", first); err != nil {
		t.Fatalf("retain an unretained object: %v", err)
	}
	mustRetention(t, s, "lock/a", first)
	later := objstore.Retention{Mode: objstore.Governance, Until: first.Until.Add(time.Hour)}
	if err := objstore.Retain(ctx, s, "lock/a", later); err != nil {
		t.Fatalf("extend: %v", err)
	}
	mustRetention(t, s, "lock/a", later)
	mustLocked(t, "shorten a governance retention", objstore.Retain(ctx, s, "lock/a", first))
	mustRetention(t, s, "lock/a", later)

	// Compliance: lengthened only, and never back to governance.
	put(t, s, "lock/c", []byte("c"))
	c := retainedFor(objstore.Compliance, 30*time.Second)
	if err := objstore.Retain(ctx, s, "lock/c", c); err != nil {
		t.Fatalf("retain in compliance mode: %v", err)
	}
	mustLocked(t, "compliance to governance", objstore.Retain(ctx, s, "lock/c", objstore.Retention{Mode: objstore.Governance, Until: c.Until.Add(time.Minute)}))
	mustLocked(t, "shorten a compliance retention", objstore.Retain(ctx, s, "lock/c", objstore.Retention{Mode: objstore.Compliance, Until: c.Until.Add(-10 * time.Second)}))
	mustRetention(t, s, "lock/c", c)
	mustLocked(t, "purge a compliance object", objstore.Purge(ctx, s, "lock/c"))
}

func testDeleteKeepsRetained(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	ret := retainedFor(objstore.Governance, time.Hour)
	if err := objstore.PutRetained(ctx, s, "lock/d", bytes.NewReader([]byte("keep")), 4, ret); err != nil {
		t.Fatal(err)
	}
	mustLocked(t, "purge a retained object", objstore.Purge(ctx, s, "lock/d"))
	mustEqual(t, "after a refused purge", getRange(t, s, "lock/d", 0, -1), []byte("keep"))
	// A plain delete hides the object (S3: a delete marker) and removes
	// nothing: purging removes the marker and finds the retained
	// version, which is the object again.
	if err := s.Delete(ctx, "lock/d"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	mustNotFound(t, s, "lock/d")
	mustLocked(t, "purge after a delete", objstore.Purge(ctx, s, "lock/d"))
	mustEqual(t, "a retained object after delete and purge", getRange(t, s, "lock/d", 0, -1), []byte("keep"))
	mustRetention(t, s, "lock/d", ret)
	// Unretained objects purge as before.
	put(t, s, "lock/e", []byte("e"))
	put(t, s, "lock/e", []byte("e2"))
	if err := objstore.Purge(ctx, s, "lock/e"); err != nil {
		t.Fatalf("purge an unretained object: %v", err)
	}
	mustNotFound(t, s, "lock/e")
}

func testOverwriteKeepsRetained(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	ret := retainedFor(objstore.Governance, time.Hour)
	if err := objstore.PutRetained(ctx, s, "lock/o", bytes.NewReader([]byte("old")), 3, ret); err != nil {
		t.Fatal(err)
	}
	put(t, s, "lock/o", []byte("new"))
	mustEqual(t, "overwritten", getRange(t, s, "lock/o", 0, -1), []byte("new"))
	mustRetention(t, s, "lock/o", objstore.Retention{})
	mustLocked(t, "purge an overwritten retained object", objstore.Purge(ctx, s, "lock/o"))
	// The unretained new version went; the retained one is the object.
	mustEqual(t, "after the purge", getRange(t, s, "lock/o", 0, -1), []byte("old"))
	mustRetention(t, s, "lock/o", ret)
}

func testPurgeAfterEnd(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	ret := retainedFor(objstore.Compliance, 3*time.Second)
	if err := objstore.PutRetained(ctx, s, "lock/p", bytes.NewReader([]byte("p")), 1, ret); err != nil {
		t.Fatal(err)
	}
	mustLocked(t, "purge before the end", objstore.Purge(ctx, s, "lock/p"))
	waitPurged(t, s, "lock/p", ret.Until)
	mustNotFound(t, s, "lock/p")
}

// waitPurged purges key until its retention, ending at until, lets it:
// real time has to pass, so it polls, with a bound far beyond until.
func waitPurged(t *testing.T, s objstore.Store, key string, until time.Time) {
	t.Helper()
	deadline := until.Add(2 * time.Minute)
	for {
		err := objstore.Purge(ctxT(t), s, key)
		if err == nil {
			if time.Now().Before(until) {
				t.Fatalf("purge of %s succeeded before its retention ended at %s", key, until)
			}
			return
		}
		if !objstore.IsObjectLocked(err) || time.Now().After(deadline) {
			t.Fatalf("purge of %s after its retention ended at %s: %v", key, until, err)
		}
		select {
		case <-ctxT(t).Done():
			t.Fatal(ctxT(t).Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func testExtendRetention(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	put(t, s, "lock/x", []byte("x"))
	long := retainedFor(objstore.Governance, 2*time.Hour)
	if got, err := objstore.ExtendRetention(ctx, s, "lock/x", long); err != nil || !got.Covers(long) {
		t.Fatalf("extend an unretained object: %s, %v", got, err)
	}
	short := objstore.Retention{Mode: objstore.Governance, Until: long.Until.Add(-time.Hour)}
	got, err := objstore.ExtendRetention(ctx, s, "lock/x", short)
	if err != nil || !got.Until.Equal(long.Until) {
		t.Fatalf("extend to an earlier date: %s, %v; want the longer retention kept and no error", got, err)
	}
	mustRetention(t, s, "lock/x", long)
	// A longer governance retention does not cover a compliance one,
	// and the store refuses to shorten it to make it compliance.
	comp := objstore.Retention{Mode: objstore.Compliance, Until: long.Until.Add(-time.Hour)}
	if _, err := objstore.ExtendRetention(ctx, s, "lock/x", comp); err == nil {
		t.Fatalf("compliance asked of an object retained longer in governance: no error")
	} else if !objstore.IsObjectLocked(err) {
		t.Fatalf("compliance asked of an object retained longer in governance: %v", err)
	}
	if _, err := objstore.ExtendRetention(context.Background(), s, "lock/missing", long); !objstore.IsNotFound(err) {
		t.Fatalf("extend a missing key: got %v, want not-found", err)
	}
}

func testLargeRetained(t *testing.T, s objstore.Store) {
	ctx := ctxT(t)
	data := randBytes(41, LargeObjectSize)
	ret := retainedFor(objstore.Governance, time.Hour)
	if err := objstore.PutRetained(ctx, s, "lock/large", bytes.NewReader(data), int64(len(data)), ret); err != nil {
		t.Fatal(err)
	}
	mustRetention(t, s, "lock/large", ret)
	mustLocked(t, "purge a large retained object", objstore.Purge(ctx, s, "lock/large"))
	mustEqual(t, "large retained object", getRange(t, s, "lock/large", 0, -1), data)
}
