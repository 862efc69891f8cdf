package fileshare

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
)

func sameXattrs(t *testing.T, s *Share, p string, want map[string][]byte, when string) {
	t.Helper()
	got, err := s.Xattrs(context.Background(), p)
	if err != nil {
		t.Fatalf("%s: xattrs of %q: %v", when, p, err)
	}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("%s: xattrs of %q: %q, want %q", when, p, got, want)
	}
	for k, v := range want {
		if b, err := s.Xattr(context.Background(), p, k); err != nil || !bytes.Equal(b, v) {
			t.Fatalf("%s: xattr %s of %q: %q %v, want %q", when, k, p, b, err, v)
		}
	}
}

// Extended attributes are durable when set (a restart replays them), go
// up with the file into its object's metadata, byte for byte as
// docs/format.md says, or into a sidecar object when they do not fit, and
// a second gateway on the bucket reads them back.
func TestXattrsKeptWithTheFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "f", []byte("data"), 0))
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "big", 0o644, 0, 0, true))
	small := map[string][]byte{"user.a": []byte("xy")}
	large := map[string][]byte{"security.NTACL": bytes.Repeat([]byte{7}, 3000), "user.DOSATTRIB": {0, 1, 2}}
	before := must[Attr](t)(s.Stat(ctx, "f"))
	if err := s.SetXattr(ctx, "f", "user.a", []byte("xy"), XattrCreate); err != nil {
		t.Fatal(err)
	}
	// What NFS sees stays: the mode, the owner, the size and the mtime.
	if a := must[Attr](t)(s.Stat(ctx, "f")); a.Mode != before.Mode || a.UID != before.UID || a.GID != before.GID || a.Size != before.Size || !a.Mtime.Equal(before.Mtime) {
		t.Fatalf("after setxattr: %+v, before %+v", a, before)
	}
	if err := s.SetXattr(ctx, "f", "user.a", []byte("zz"), XattrCreate); !errors.Is(err, ErrExist) {
		t.Fatalf("create of an existing name: %v, want ErrExist", err)
	}
	if err := s.SetXattr(ctx, "f", "user.none", []byte("zz"), XattrReplace); !errors.Is(err, ErrNoXattr) {
		t.Fatalf("replace of a missing name: %v, want ErrNoXattr", err)
	}
	if _, err := s.Xattr(ctx, "f", "user.none"); !errors.Is(err, ErrNoXattr) {
		t.Fatalf("get of a missing name: %v, want ErrNoXattr", err)
	}
	for _, p := range []string{"d", ""} {
		for k, v := range small {
			if err := s.SetXattr(ctx, p, k, v, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, v := range large {
		if err := s.SetXattr(ctx, "big", k, v, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetXattr(ctx, "big", "user.gone", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveXattr(ctx, "big", "user.gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveXattr(ctx, "big", "user.gone"); !errors.Is(err, ErrNoXattr) {
		t.Fatalf("remove of a missing name: %v, want ErrNoXattr", err)
	}
	want := map[string]map[string][]byte{"f": small, "d": small, "": small, "big": large}
	check := func(s *Share, when string) {
		t.Helper()
		for p, w := range want {
			sameXattrs(t, s, p, w, when)
		}
	}
	check(s, "set")
	e.restart() // nothing uploaded: the log has them
	s = e.share("s")
	check(s, "after a restart")
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	check(s, "uploaded")

	// The object metadata, byte for byte.
	enc := append([]byte{1, 6}, "user.a"...)
	enc = append(enc, 0, 0, 0, 2, 'x', 'y')
	for _, key := range []string{"share/f", "share/d/", "share/"} {
		_, md := object(t, e.store, key)
		if got, w := md[metaXattr], base64.StdEncoding.EncodeToString(enc); got != w {
			t.Fatalf("%s: gwd-xattr %q, want %q", key, got, w)
		}
	}
	if b, _ := object(t, e.store, "share/f"); string(b) != "data" {
		t.Fatalf("share/f holds %q", b)
	}
	_, md := object(t, e.store, "share/big")
	bigEnc := encodeXattrs(large)
	sum := sha256.Sum256(bigEnc)
	ref := hex.EncodeToString(sum[:])
	if md[metaXattrRef] != ref || md[metaXattr] != "" {
		t.Fatalf("share/big: metadata %q, want gwd-xattr-ref %s alone", md, ref)
	}
	if b, _ := object(t, e.store, "xattrs/"+ref[:2]+"/"+ref); !bytes.Equal(b, bigEnc) {
		t.Fatal("the sidecar does not hold the encoded set")
	}

	// A chmod and a rename keep them.
	mode := uint32(0o600)
	must[Attr](t)(s.SetAttr(ctx, "big", SetAttr{Mode: &mode}))
	if err := s.Rename(ctx, "f", "d/g"); err != nil {
		t.Fatal(err)
	}
	delete(want, "f")
	want["d/g"] = small
	check(s, "after a chmod and a rename")

	// A second gateway on the bucket, with no local state, reads them.
	e2 := &env{t: t, dir: t.TempDir(), store: e.store, md: metamem.New()}
	t.Cleanup(e2.close)
	e2.start()
	must[Config](t)(e2.m.Create(ctx, Config{Name: "s2", Prefix: "share/"}))
	check(e2.share("s2"), "on a second gateway")

	// A sidecar changed behind the gateway is reported corrupt, never
	// read as attributes.
	e3 := &env{t: t, dir: t.TempDir(), store: e.store, md: metamem.New()}
	t.Cleanup(e3.close)
	e3.start()
	must[Config](t)(e3.m.Create(ctx, Config{Name: "s3", Prefix: "share/"}))
	if err := e.store.Put(ctx, "xattrs/"+ref[:2]+"/"+ref, bytes.NewReader([]byte{1}), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e3.share("s3").Xattrs(ctx, "big"); !errkind.IsCorrupt(err) {
		t.Fatalf("a changed sidecar: %v, want a corrupt error", err)
	}
}

func TestXattrLimitsAndRecords(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	must[Attr](t)(s.Symlink(ctx, "l", "f", 0, 0))
	if err := s.SetXattr(ctx, "f", strings.Repeat("n", MaxXattrName+1), nil, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a long name: %v", err)
	}
	if err := s.SetXattr(ctx, "f", "user.v", make([]byte, MaxXattrValue+1), 0); !errors.Is(err, ErrXattrTooBig) {
		t.Fatalf("a long value: %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := s.SetXattr(ctx, "f", "user."+strings.Repeat("v", i+1), make([]byte, MaxXattrValue), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetXattr(ctx, "f", "user.vvvv", make([]byte, MaxXattrValue), 0); !errors.Is(err, ErrXattrTooBig) {
		t.Fatalf("a set over the limit: %v", err)
	}
	if err := s.SetXattr(ctx, "l", "user.a", nil, 0); !errors.Is(err, ErrNotSupp) {
		t.Fatalf("a symlink's: %v", err)
	}
	// An empty value is a value.
	if err := s.SetXattr(ctx, "f", "user.empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Xattr(ctx, "f", "user.empty"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, err)
	}
	// Records: the whole set, decoded back; a bad set is corrupt.
	rec := record{typ: recXattrs, share: "s", ino: 9, data: encodeXattrs(map[string][]byte{"user.a": []byte("b")})}
	r, err := decodeRecord(rec.encode())
	if err != nil || r.typ != recXattrs || !bytes.Equal(r.data, rec.data) {
		t.Fatalf("decoded %+v %v", r, err)
	}
	for _, bad := range [][]byte{{}, {2}, {1, 0}, {1, 1, 'a', 0, 0, 0, 5, 'x'}, append(encodeXattrs(map[string][]byte{"b": nil}), 1, 'a', 0, 0, 0, 0)} {
		rec.data = bad
		if _, err := decodeRecord(rec.encode()); !errkind.IsCorrupt(err) {
			t.Fatalf("record with set %x: %v, want corrupt", bad, err)
		}
	}
	// Metadata that does not decode is kept as found by a chmod, and
	// reported when read.
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	must[Attr](t)(s.Create(ctx, "o", 0o644, 0, 0, true))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	mp := e.store.(interface {
		SetMeta(context.Context, string, map[string]string) error
	})
	if err := mp.SetMeta(ctx, "share/o", map[string]string{metaXattr: "!!"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh("", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Xattrs(ctx, "o"); !errkind.IsCorrupt(err) {
		t.Fatalf("bad metadata: %v, want corrupt", err)
	}
	mode := uint32(0o600)
	must[Attr](t)(s.SetAttr(ctx, "o", SetAttr{Mode: &mode}))
	if _, md := object(t, e.store, "share/o"); md[metaXattr] != "!!" {
		t.Fatalf("bad metadata after a chmod: %q", md)
	}
}
