package fileshare

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestSpecialFiles: FIFOs, sockets and block and character devices made
// with Mknod are shown at once with their type and numbers, survive a
// restart before their upload (replayed from the log), reach the store as
// empty objects with gwd-type and gwd-rdev, and are read back from the
// store alone, also after a rename and a chmod.
func TestSpecialFiles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "dev", 0o755, 0, 0))
	want := map[string]Attr{
		"dev/fifo":   {Type: TypeFIFO, Mode: 0o600},
		"dev/sock":   {Type: TypeSocket, Mode: 0o755},
		"dev/sda1":   {Type: TypeBlock, Mode: 0o660, Rdev: Device{8, 1}},
		"dev/random": {Type: TypeChar, Mode: 0o666, Rdev: Device{1, 4294967295}},
	}
	for p, w := range want {
		a, err := s.Mknod(ctx, p, w.Type, w.Mode, 7, 8, w.Rdev)
		if err != nil || a.Type != w.Type || a.Rdev != w.Rdev || a.Mode != w.Mode || a.UID != 7 || a.GID != 8 || a.Size != 0 {
			t.Fatalf("mknod %s: %+v %v", p, a, err)
		}
	}
	if _, err := s.Mknod(ctx, "dev/fifo", TypeFIFO, 0o600, 0, 0, Device{}); !errors.Is(err, ErrExist) {
		t.Fatalf("a second mknod of dev/fifo: %v", err)
	}
	if _, err := s.Mknod(ctx, "dev/file", TypeFile, 0o600, 0, 0, Device{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mknod of a regular file: %v", err)
	}
	check := func(when string) {
		t.Helper()
		for p, w := range want {
			a, err := s.Stat(ctx, p)
			if err != nil || a.Type != w.Type || a.Rdev != w.Rdev || a.Mode != w.Mode || a.UID != 7 || a.GID != 8 || a.Size != 0 {
				t.Fatalf("stat %s %s: %+v %v", p, when, a, err)
			}
		}
		var names []string
		for _, de := range must[[]DirEntry](t)(s.ReadDir(ctx, "dev")) {
			names = append(names, de.Name)
			if w := want["dev/"+de.Name]; de.Attr.Type != w.Type || de.Attr.Rdev != w.Rdev {
				t.Fatalf("listing of dev %s: %s: %+v", when, de.Name, de.Attr)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"fifo", "random", "sda1", "sock"}) {
			t.Fatalf("listing of dev %s: %v", when, names)
		}
	}
	check("at once")
	e.restart() // before the upload: replayed from the log
	s = e.share("docs")
	check("after a restart before the upload")

	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		b, md := object(t, e.store, "docs/"+p)
		rdev, hasRdev := md[metaRdev]
		if len(b) != 0 || md[metaType] != specialNames[w.Type] || md[metaUID] != "7" {
			t.Fatalf("object %s: %q %v", p, b, md)
		}
		switch w.Type {
		case TypeBlock, TypeChar:
			if rdev != map[string]string{"dev/sda1": "8,1", "dev/random": "1,4294967295"}[p] {
				t.Fatalf("object %s: gwd-rdev %q", p, rdev)
			}
		default:
			if hasRdev {
				t.Fatalf("object %s: gwd-rdev %q on a %s", p, rdev, md[metaType])
			}
		}
	}
	e.restart()
	s = e.share("docs")
	must[error](t)(nil, s.Refresh("", true))
	check("from the store after a restart")

	// A rename and a chmod keep the type and the numbers.
	must[error](t)(nil, s.Rename(ctx, "dev/sda1", "dev/disk"))
	mode := uint32(0o640)
	must[Attr](t)(s.SetAttr(ctx, "dev/disk", SetAttr{Mode: &mode}))
	delete(want, "dev/sda1")
	want["dev/disk"] = Attr{Type: TypeBlock, Mode: 0o640, Rdev: Device{8, 1}}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	e.restart()
	s = e.share("docs")
	must[error](t)(nil, s.Refresh("", true))
	if a, err := s.Stat(ctx, "dev/disk"); err != nil || a.Type != TypeBlock || a.Rdev != (Device{8, 1}) || a.Mode != 0o640 {
		t.Fatalf("dev/disk after a rename, a chmod and a restart: %+v %v", a, err)
	}
}

// TestSpecialRecord: the new record of a device carries its numbers after
// the path, byte for byte as docs/format.md says; FIFOs and sockets carry
// nothing there, and a device record without its 8 bytes is corrupt.
func TestSpecialRecord(t *testing.T) {
	now := time.Unix(0, 5)
	rec := record{typ: recNew, share: "d", ino: 9, path: "x", attr: Attr{Type: TypeChar, Mode: 0o666, Mtime: now, Rdev: Device{1, 3}}}
	b := rec.encode()
	want := []byte{11, 1, 'd', 0, 0, 0, 0, 0, 0, 0, 9,
		0, 0, 1, 0xb6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5,
		7, 0, 1, 'x', 0, 0, 0, 1, 0, 0, 0, 3}
	if !slices.Equal(b, want) {
		t.Fatalf("encoded:\n %v\nwant\n %v", b, want)
	}
	got, err := decodeRecord(b)
	if err != nil || got.attr.Type != TypeChar || got.attr.Rdev != (Device{1, 3}) || got.path != "x" || got.attr.Target != "" {
		t.Fatalf("decoded: %+v %v", got, err)
	}
	if _, err := decodeRecord(b[:len(b)-1]); err == nil {
		t.Fatal("a device record cut short decoded")
	}
	for typ, kind := range map[FileType]byte{TypeFIFO: 4, TypeSocket: 5, TypeBlock: 6} {
		rec.attr.Type = typ
		b := rec.encode()
		if b[31] != kind {
			t.Fatalf("kind of %d: %d", typ, b[31])
		}
		if got, err := decodeRecord(b); err != nil || got.attr.Type != typ {
			t.Fatalf("decoded %d: %+v %v", typ, got, err)
		}
	}
	rec.attr.Type = TypeBlock
	if b := rec.encode(); len(b) != len(want) {
		t.Fatalf("block device record: %d bytes", len(b))
	}
	rec.attr.Type = TypeFIFO
	if _, err := decodeRecord(append(rec.encode(), 0)); err == nil {
		t.Fatal("a FIFO record with trailing bytes decoded")
	}
}
