package fileshare

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

// bigSet is a set of extended attributes too large for object metadata,
// different for each n.
func bigSet(n int) map[string][]byte {
	return map[string][]byte{"security.NTACL": bytes.Repeat([]byte{byte(n)}, 3000), "user.DOSATTRIB": []byte(fmt.Sprint(n))}
}

func sidecarOf(set map[string][]byte) string {
	sum := sha256.Sum256(encodeXattrs(set))
	return hex.EncodeToString(sum[:])
}

// sidecarsIn lists the sidecars in the store by hash.
func sidecarsIn(t *testing.T, st objstore.Store) []string {
	t.Helper()
	var refs []string
	if err := st.List(context.Background(), xattrPrefix, func(oi objstore.ObjectInfo) error {
		if ref, ok := sidecarRef(oi.Key); ok {
			refs = append(refs, ref)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(refs)
	return refs
}

// TestXattrSidecarsCollected writes files with sets of extended
// attributes too large for object metadata to MinIO, overwrites, removes
// and renames some, and checks that a collection deletes exactly the
// sidecars no object names, only once they are past the grace period and
// not while an upload names one, and that every live file's attributes
// read back afterwards on a gateway with no local state.
func TestXattrSidecarsCollected(t *testing.T) {
	srv := miniotest.Start(t)
	srv.CreateBucket(t, "xgc")
	ctx := context.Background()
	store, err := s3.Open(ctx, s3.Config{Bucket: "xgc", Prefix: "gw", Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir(), store: store, md: metamem.New(), opts: func(o *Options) { o.XattrGCInterval = -1 }}
	t.Cleanup(e.close)
	e.start()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	setAll := func(p string, set map[string][]byte) {
		t.Helper()
		for k, v := range set {
			if err := s.SetXattr(ctx, p, k, v, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	// a and d share set 1; b has 2, c 3, the directory dir 4.
	for p, n := range map[string]int{"a": 1, "b": 2, "c": 3, "d": 1} {
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
		must[Attr](t)(s.WriteAt(ctx, p, []byte("data of "+p), 0))
		setAll(p, bigSet(n))
	}
	must[Attr](t)(s.Mkdir(ctx, "dir", 0o755, 0, 0))
	setAll("dir", bigSet(4))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// An object another application keeps outside the shares (say, of a
	// share removed from the gateway) names set 5's sidecar: kept.
	b5 := encodeXattrs(bigSet(5))
	for key, body := range map[string][]byte{xattrKey(sidecarOf(bigSet(5))): b5, "xattrs/notes.txt": []byte("not a sidecar")} {
		if err := store.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.PutMeta(ctx, "old/kept", bytes.NewReader(nil), 0, map[string]string{metaXattrRef: sidecarOf(bigSet(5))}); err != nil {
		t.Fatal(err)
	}
	all := []string{sidecarOf(bigSet(1)), sidecarOf(bigSet(2)), sidecarOf(bigSet(3)), sidecarOf(bigSet(4)), sidecarOf(bigSet(5))}
	slices.Sort(all)
	if got := sidecarsIn(t, store); !slices.Equal(got, all) {
		t.Fatalf("sidecars %v, want %v", got, all)
	}

	// b's set changes (2 to 6), c is removed, d renamed (still set 1).
	setAll("b", bigSet(6))
	if err := s.Remove(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "d", "dir/d2"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	live := map[string]map[string][]byte{"a": bigSet(1), "b": bigSet(6), "dir": bigSet(4), "dir/d2": bigSet(1)}
	garbage := []string{sidecarOf(bigSet(2)), sidecarOf(bigSet(3))}

	// Within the grace period: nothing goes.
	res, err := e.m.CollectXattrs(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 || res.Sidecars != 6 {
		t.Fatalf("within the grace period: %+v, want 6 sidecars, none deleted", res)
	}

	// A rename under way: nothing is swept.
	done := e.m.sidecarUses.copying()
	if res, err := e.m.CollectXattrs(ctx, 0); err != nil || !res.Skipped || res.Deleted != 0 {
		t.Fatalf("with a rename under way: %+v, %v; want skipped", res, err)
	}
	done()

	// An upload naming set 2 again is under way: 2 is kept, 3 goes.
	release := e.m.sidecarUses.use(sidecarOf(bigSet(2)), e.m.opts.Clock)
	res, err = e.m.CollectXattrs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 || slices.Contains(sidecarsIn(t, store), garbage[1]) || !slices.Contains(sidecarsIn(t, store), garbage[0]) {
		t.Fatalf("with set 2 in use: %+v, sidecars %v", res, sidecarsIn(t, store))
	}
	release()
	// The next run deletes it.
	res, err = e.m.CollectXattrs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{sidecarOf(bigSet(1)), sidecarOf(bigSet(4)), sidecarOf(bigSet(5)), sidecarOf(bigSet(6))}
	slices.Sort(want)
	if got := sidecarsIn(t, store); res.Deleted != 1 || !slices.Equal(got, want) {
		t.Fatalf("after the collection: %+v, sidecars %v, want %v", res, got, want)
	}
	if _, err := store.Stat(ctx, "xattrs/notes.txt"); err != nil {
		t.Fatalf("an object in xattrs/ that is not a sidecar: %v", err)
	}
	if st := e.m.XattrGCStats(); st.Runs != 4 || st.Deleted != 2 || st.Failed != 0 {
		t.Fatalf("counts %+v, want 4 runs, 2 deleted", st)
	}

	// A file given a set whose sidecar was collected puts it again.
	must[Attr](t)(s.Create(ctx, "again", 0o644, 0, 0, true))
	setAll("again", bigSet(3))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	live["again"] = bigSet(3)

	// Every live file reads back, here and on a gateway with no local
	// state (no cached sets).
	for p, w := range live {
		sameXattrs(t, s, p, w, "after the collection")
	}
	e2 := &env{t: t, dir: t.TempDir(), store: store, md: metamem.New(), opts: func(o *Options) { o.XattrGCInterval = -1 }}
	t.Cleanup(e2.close)
	e2.start()
	must[Config](t)(e2.m.Create(ctx, Config{Name: "s2", Prefix: "share/"}))
	for p, w := range live {
		sameXattrs(t, e2.share("s2"), p, w, "on a second gateway after the collection")
	}
}

// TestXattrSidecarsCollectedInTheBackground: the manager runs the
// collection on its own every XattrGCInterval, and counts what it did.
func TestXattrSidecarsCollectedInTheBackground(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New(), opts: func(o *Options) {
		o.XattrGCInterval, o.XattrGCGrace = 10*time.Millisecond, time.Nanosecond
	}}
	t.Cleanup(e.close)
	e.start()
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "kept", 0o644, 0, 0, true))
	for k, v := range bigSet(1) {
		if err := s.SetXattr(ctx, "kept", k, v, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	garbage := encodeXattrs(bigSet(2))
	if err := e.store.Put(ctx, xattrKey(sidecarOf(bigSet(2))), bytes.NewReader(garbage), int64(len(garbage))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for e.m.XattrGCStats().Deleted == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no sidecar collected in the background: %+v", e.m.XattrGCStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := sidecarsIn(t, e.store); !slices.Equal(got, []string{sidecarOf(bigSet(1))}) {
		t.Fatalf("sidecars %v, want only the one kept names", got)
	}
	sameXattrs(t, s, "kept", bigSet(1), "after a collection in the background")
}
