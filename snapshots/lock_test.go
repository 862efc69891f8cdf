package snapshots

import (
	"bytes"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/internal/miniotest"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/faulty"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

var lockBuckets atomic.Int64

// lockedMinIO is a store on a fresh MinIO bucket with Object Lock, its
// retention requests counted, and a raw client on the same bucket.
func lockedMinIO(t *testing.T) (objstore.Store, *faulty.Injector, *awss3.Client, string) {
	srv := miniotest.Shared(t)
	bucket := fmt.Sprintf("snaplock-%d-%d", os.Getpid(), lockBuckets.Add(1))
	srv.CreateLockedBucket(t, bucket)
	st, err := s3.Open(t.Context(), s3.Config{Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := faulty.New(st, faulty.Options{})
	return f.Store(), f, srv.Client(), bucket
}

func lockCodec(t *testing.T) *Codec {
	var enc, id [32]byte
	for i := range enc {
		enc[i], id[i] = byte(i+7), byte(100-i)
	}
	c, err := NewCodec(enc, id, CodecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putChunks stores n chunks and returns their keys.
func putChunks(t *testing.T, store objstore.Store, codec *Codec, seed, n int) []string {
	var keys []string
	for i := range n {
		id, blob, err := codec.Encode([]byte(fmt.Sprintf("chunk %d of %d", i, seed)))
		if err != nil {
			t.Fatal(err)
		}
		if err := objstore.PutBytes(t.Context(), store, id.ObjectKey(), blob); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, id.ObjectKey())
	}
	return keys
}

func versionsOf(t *testing.T, c *awss3.Client, bucket, key string) []string {
	t.Helper()
	out, err := c.ListObjectVersions(t.Context(), &awss3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key {
			vs = append(vs, aws.ToString(v.VersionId))
		}
	}
	return vs
}

// On MinIO with Object Lock: RetainObjects retains each object once per
// lock end, the record spares the requests a repeated lock would make, a
// lost record costs requests but no error where objects are retained
// longer already, and a raw client with the same keys can neither delete
// a retained version nor shorten its retention.
func TestRetainObjectsMinIO(t *testing.T) {
	store, f, raw, bucket := lockedMinIO(t)
	ctx := t.Context()
	codec := lockCodec(t)
	keys := putChunks(t, store, codec, 1, 20)
	rec := NewRetentionRecord(metamem.New())
	now := time.Now().UTC().Truncate(time.Second)
	ret1 := objstore.Retention{Mode: objstore.Governance, Until: now.Add(time.Hour)}
	ret2 := objstore.Retention{Mode: objstore.Governance, Until: now.Add(2 * time.Hour)}

	run := func(r *RetentionRecord, ks []string, ret objstore.Retention) (RetainStats, int) {
		t.Helper()
		before := f.Calls(faulty.OpRetain)
		st, err := RetainObjects(ctx, store, r, ks, ret, 4)
		if err != nil {
			t.Fatal(err)
		}
		return st, f.Calls(faulty.OpRetain) - before
	}
	if st, n := run(rec, keys, ret1); n != 20 || st.Retained != 20 {
		t.Fatalf("first lock: %+v, %d requests", st, n)
	}
	if st, n := run(rec, keys, ret1); n != 0 || st.Skipped != 20 {
		t.Fatalf("the same lock again: %+v, %d requests", st, n)
	}
	if st, n := run(rec, keys, ret2); n != 20 || st.Retained != 20 {
		t.Fatalf("a later lock: %+v, %d requests", st, n)
	}
	// A lost record: the store refuses to shorten, the objects are
	// retained longer already, which is what the record then learns.
	lost := NewRetentionRecord(metamem.New())
	if st, n := run(lost, keys, ret1); n != 20 || st.Retained != 20 {
		t.Fatalf("an earlier lock with a lost record: %+v, %d requests", st, n)
	}
	if st, n := run(lost, keys, ret2); n != 0 || st.Skipped != 20 {
		t.Fatalf("after the record learned the longer retention: %+v, %d requests", st, n)
	}
	for _, k := range keys {
		if r, err := objstore.GetRetention(ctx, store, k); err != nil || !r.Until.Equal(ret2.Until) {
			t.Fatalf("%s: %s %v, want %s", k, r, err, ret2)
		}
	}

	// The gateway's own keys, used directly: a retained version cannot be
	// deleted, nor its retention shortened, without bypass.
	for _, k := range keys[:3] {
		vs := versionsOf(t, raw, bucket, k)
		if len(vs) != 1 {
			t.Fatalf("%s: versions %v", k, vs)
		}
		if _, err := raw.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), VersionId: aws.String(vs[0])}); err == nil {
			t.Fatalf("a raw client deleted retained %s", k)
		}
		_, err := raw.PutObjectRetention(ctx, &awss3.PutObjectRetentionInput{Bucket: aws.String(bucket), Key: aws.String(k),
			Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeGovernance, RetainUntilDate: aws.Time(now.Add(time.Minute))}})
		if err == nil {
			t.Fatalf("a raw client shortened the retention of %s", k)
		}
		if got := versionsOf(t, raw, bucket, k); len(got) != 1 || got[0] != vs[0] {
			t.Fatalf("%s: versions %v after the attempts, want %v", k, got, vs)
		}
	}
}

// GC on a bucket with Object Lock removes unreferenced objects with every
// version, keeps retained ones without failing, and removes them once
// their retention has ended.
func TestGCObjectLockMinIO(t *testing.T) {
	store, _, raw, bucket := lockedMinIO(t)
	ctx := t.Context()
	codec := lockCodec(t)
	plain := putChunks(t, store, codec, 2, 3)
	// An older version under the same key: GC must remove it too.
	id, blob, err := codec.Encode([]byte("chunk 0 of 2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := objstore.PutBytes(ctx, store, id.ObjectKey(), blob); err != nil {
		t.Fatal(err)
	}
	id, blob, err = codec.Encode([]byte("retained"))
	if err != nil {
		t.Fatal(err)
	}
	ret := objstore.Retention{Mode: objstore.Compliance, Until: time.Now().Add(5 * time.Second).UTC().Truncate(time.Second).Add(time.Second)}
	if err := objstore.PutRetained(ctx, store, id.ObjectKey(), bytes.NewReader(blob), int64(len(blob)), ret); err != nil {
		t.Fatal(err)
	}
	rec := NewRetentionRecord(metamem.New())
	gc := func() GCStats {
		t.Helper()
		st, err := CollectGarbage(ctx, store, codec, GCOptions{ObjectLock: true, Record: rec})
		if err != nil {
			t.Fatalf("gc: %v", err)
		}
		return st
	}
	if st := gc(); st.Deleted != 3 || st.KeptLocked != 1 {
		t.Fatalf("gc: %+v, want 3 deleted and 1 kept locked", st)
	}
	for _, k := range plain {
		if vs := versionsOf(t, raw, bucket, k); len(vs) != 0 {
			t.Fatalf("gc left versions %v of %s", vs, k)
		}
	}
	if _, err := store.Stat(ctx, id.ObjectKey()); err != nil {
		t.Fatalf("the retained object after gc: %v", err)
	}
	deadline := ret.Until.Add(2 * time.Minute)
	for {
		st := gc()
		if st.Deleted == 1 {
			if time.Now().Before(ret.Until) {
				t.Fatalf("gc removed an object before its retention ended at %s", ret.Until)
			}
			break
		}
		if st.KeptLocked != 1 || time.Now().After(deadline) {
			t.Fatalf("gc after the retention ended at %s: %+v", ret.Until, st)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if vs := versionsOf(t, raw, bucket, id.ObjectKey()); len(vs) != 0 {
		t.Fatalf("versions %v left after the retention ended", vs)
	}
}

func TestLockEnd(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 17, 3, 0, time.UTC)
	for _, period := range []time.Duration{time.Second, 15 * time.Second, time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour, 10 * 365 * 24 * time.Hour} {
		end := LockEnd(at, period)
		g := LockGranule(period)
		if end.Before(at.Add(period)) || !end.Before(at.Add(period+g)) {
			t.Errorf("LockEnd(%s, %s) = %s: not within a granule (%s) after %s", at, period, end, g, at.Add(period))
		}
		if !LockEnd(at.Add(g/3), period).Equal(end) && !LockEnd(at.Add(-g/3), period).Equal(end) {
			t.Errorf("LockEnd for %s moves within a third of a granule either side", period)
		}
	}
	if LockGranule(30*24*time.Hour) != 24*time.Hour || LockGranule(time.Hour) != 6*time.Minute {
		t.Errorf("granules: %s %s", LockGranule(30*24*time.Hour), LockGranule(time.Hour))
	}
	for _, bad := range []time.Duration{-time.Hour, time.Millisecond, 101 * 365 * 24 * time.Hour} {
		if CheckLockPeriod(bad) == nil {
			t.Errorf("lock period %s accepted", bad)
		}
	}
}
