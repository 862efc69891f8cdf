package fileshare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testrand"

	"github.com/gatewayd/gatewayd/cache"
	"github.com/gatewayd/gatewayd/meta"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// env is a file share data path with a real log and cache on disk.
type env struct {
	t       testing.TB
	dir     string
	store   objstore.Store
	md      meta.Store
	log     *uploadbuffer.Log
	cache   *cache.Cache
	m       *Manager
	opts    func(*Options)
	logFS   vfs.FS // the log's filesystem (nil: the operating system's)
	cacheFS vfs.FS // the cache's filesystem (nil: the operating system's)
	// cacheCap is the cache's capacity (0: 256 MiB); a file not uploaded
	// holds a block of BlockSize.
	cacheCap int64
	// ctx is the start's (nil: context.Background()).
	ctx context.Context
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvOn is newEnv on the test's own store, started.
func newEnvOn(t testing.TB, store objstore.Store) *env {
	e := &env{t: t, dir: t.TempDir(), store: store, md: metamem.New()}
	t.Cleanup(e.close)
	e.start()
	return e
}

// newEnvWith is newEnv with opts applied to the manager's options at every
// start.
func newEnvWith(t testing.TB, opts func(*Options)) *env {
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: metamem.New(), opts: opts}
	t.Cleanup(e.close)
	e.start()
	return e
}

func (e *env) start() {
	var err error
	logFS := e.logFS
	if logFS == nil {
		logFS = vfs.Default
	}
	e.log, err = uploadbuffer.Open(logFS, filepath.Join(e.dir, "log"), uploadbuffer.Options{Capacity: 256 << 20})
	if err != nil {
		e.t.Fatal(err)
	}
	cacheFS := e.cacheFS
	if cacheFS == nil {
		cacheFS = vfs.Default
	}
	cacheCap := e.cacheCap
	if cacheCap == 0 {
		cacheCap = 256 << 20
	}
	e.cache, err = cache.Open(cacheFS, filepath.Join(e.dir, "cache"), cache.Options{Capacity: cacheCap})
	if err != nil {
		e.t.Fatal(err)
	}
	o := Options{Meta: e.md, Store: e.store, Cache: e.cache, Log: e.log, SettleTime: time.Hour, UploadInterval: time.Hour}
	if e.opts != nil {
		e.opts(&o)
	}
	ctx := e.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	e.m, err = New(ctx, o)
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.m != nil {
		e.m.Close()
		e.cache.Close()
		e.log.Close()
		e.m = nil
	}
}

func (e *env) restart() { e.close(); e.start() }

func (e *env) share(name string) *Share {
	e.t.Helper()
	s, err := e.m.Get(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func readFile(t testing.TB, s *Share, p string) []byte {
	t.Helper()
	a := must[Attr](t)(s.Stat(context.Background(), p))
	buf := make([]byte, a.Size)
	n, err := s.ReadAt(context.Background(), p, buf, 0)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return buf[:n]
}

func object(t testing.TB, st objstore.Store, key string) ([]byte, map[string]string) {
	t.Helper()
	b, err := objstore.GetAll(context.Background(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	oi, err := st.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return b, oi.Metadata
}

func TestFilesAreObjects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "a", 0o750, 1000, 100))
	f := must[Attr](t)(s.Create(ctx, "a/f.txt", 0o640, 1000, 100, true))
	if _, err := s.Create(ctx, "a/f.txt", 0o640, 1000, 100, true); !errors.Is(err, ErrExist) {
		t.Fatalf("exclusive create of an existing file: %v", err)
	}
	// Write across a block boundary, overwrite, append.
	want := testrand.Bytes(1, BlockSize+5000)
	must[Attr](t)(s.WriteAt(ctx, "a/f.txt", want, 0))
	copy(want[100:], []byte("overwritten"))
	must[Attr](t)(s.WriteAt(ctx, "a/f.txt", []byte("overwritten"), 100))
	want = append(want, []byte("appended")...)
	a := must[Attr](t)(s.WriteAt(ctx, "a/f.txt", []byte("appended"), int64(len(want)-8)))
	if a.Size != int64(len(want)) || a.Ino != f.Ino {
		t.Fatalf("attr after writes %+v (ino %d)", a, f.Ino)
	}
	if got := readFile(t, s, "a/f.txt"); !bytes.Equal(got, want) {
		t.Fatal("read back differs before upload")
	}
	// Durable but not uploaded yet: the object does not exist yet, and the
	// share still lists the file.
	if _, err := e.store.Stat(ctx, "docs/a/f.txt"); !objstore.IsNotFound(err) {
		t.Fatalf("object of a new file before its upload: %v", err)
	}
	if ents := must[[]DirEntry](t)(s.ReadDir(ctx, "a")); len(ents) != 1 || ents[0].Name != "f.txt" || ents[0].Attr.Size != int64(len(want)) {
		t.Fatalf("listing before the upload: %+v", ents)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	b, md := object(t, e.store, "docs/a/f.txt")
	if !bytes.Equal(b, want) || md[metaMode] != "640" || md[metaUID] != "1000" || md[metaGID] != "100" {
		t.Fatalf("object after upload: %d bytes, metadata %v", len(b), md)
	}
	if _, md := object(t, e.store, "docs/a/"); md[metaMode] != "750" {
		t.Fatalf("directory marker metadata %v", md)
	}
	// Truncate and extend; chmod; chown.
	size := int64(10)
	mode := uint32(0o600)
	uid := uint32(7)
	must[Attr](t)(s.SetAttr(ctx, "a/f.txt", SetAttr{Size: &size}))
	size = 20
	a = must[Attr](t)(s.SetAttr(ctx, "a/f.txt", SetAttr{Size: &size, Mode: &mode, UID: &uid}))
	if a.Size != 20 || a.Mode != 0o600 || a.UID != 7 {
		t.Fatalf("after truncate, extend, chmod, chown: %+v", a)
	}
	want = append(append([]byte(nil), want[:10]...), make([]byte, 10)...)
	if got := readFile(t, s, "a/f.txt"); !bytes.Equal(got, want) {
		t.Fatalf("after truncate and extend: %q", got)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if b, md := object(t, e.store, "docs/a/f.txt"); !bytes.Equal(b, want) || md[metaMode] != "600" || md[metaUID] != "7" {
		t.Fatalf("object after truncate: %q %v", b, md)
	}
	// chmod of a clean file goes straight to the object's metadata.
	mode = 0o444
	must[Attr](t)(s.SetAttr(ctx, "a/f.txt", SetAttr{Mode: &mode}))
	if b, md := object(t, e.store, "docs/a/f.txt"); !bytes.Equal(b, want) || md[metaMode] != "444" {
		t.Fatalf("object after chmod: %q %v", b, md)
	}

	// Rename a file and a directory: inodes follow, objects move.
	if err := s.Rename(ctx, "a/f.txt", "a/g.txt"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.PathOf(ctx, f.Ino); err != nil || p != "a/g.txt" {
		t.Fatalf("inode %d after rename: %q %v", f.Ino, p, err)
	}
	must[Attr](t)(s.Mkdir(ctx, "a/sub", 0o755, 0, 0))
	must[Attr](t)(s.Create(ctx, "a/sub/x", 0o644, 0, 0, true))
	must[Attr](t)(s.WriteAt(ctx, "a/sub/x", []byte("pending"), 0)) // not uploaded yet
	if err := s.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.PathOf(ctx, f.Ino); err != nil || p != "b/g.txt" {
		t.Fatalf("inode %d after directory rename: %q %v", f.Ino, p, err)
	}
	if got := readFile(t, s, "b/sub/x"); string(got) != "pending" {
		t.Fatalf("file moved with its directory reads %q", got)
	}
	var keys []string
	_ = e.store.List(ctx, "docs/", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if want := []string{"docs/b/", "docs/b/g.txt", "docs/b/sub/", "docs/b/sub/x"}; !equalStrings(keys, want) {
		t.Fatalf("objects after renames %q, want %q", keys, want)
	}
	entries := must[[]DirEntry](t)(s.ReadDir(ctx, "b"))
	if len(entries) != 2 || entries[0].Name != "g.txt" || entries[1].Name != "sub" || entries[1].Attr.Type != TypeDir {
		t.Fatalf("readdir b: %+v", entries)
	}
	// Remove: a non-empty directory is refused.
	if err := s.Remove(ctx, "b/sub"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rmdir of a non-empty directory: %v", err)
	}
	if err := s.Remove(ctx, "b/sub/x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "b/sub"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "b/sub"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat after rmdir: %v", err)
	}
	// Symlinks are objects flagged in metadata, put by the uploader.
	must[Attr](t)(s.Symlink(ctx, "b/link", "g.txt", 0, 0))
	if tgt, err := s.Readlink(ctx, "b/link"); err != nil || tgt != "g.txt" {
		t.Fatalf("readlink %q %v", tgt, err)
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if b, md := object(t, e.store, "docs/b/link"); string(b) != "g.txt" || md[metaType] != "symlink" {
		t.Fatalf("symlink object %q %v", b, md)
	}
	// Everything pending went up: a restart replays nothing.
	e.restart()
	if n := len(e.m.files); n != 0 {
		t.Fatalf("%d files pending after everything was uploaded and a restart", n)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Writes acknowledged but not uploaded survive a restart (the log is
// replayed), inodes stay, and the upload then happens.
func TestWritesSurviveRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
	s := e.share("s")
	f := must[Attr](t)(s.Create(ctx, "f", 0o644, 0, 0, true))
	want := testrand.Bytes(2, 3*BlockSize+123)
	for off := 0; off < len(want); off += 70000 {
		must[Attr](t)(s.WriteAt(ctx, "f", want[off:min(off+70000, len(want))], int64(off)))
	}
	size := int64(len(want) - 100)
	must[Attr](t)(s.SetAttr(ctx, "f", SetAttr{Size: &size}))
	want = want[:size]
	e.restart()
	s = e.share("s")
	if a := must[Attr](t)(s.Stat(ctx, "f")); a.Ino != f.Ino || a.Size != size {
		t.Fatalf("after restart: %+v, want inode %d size %d", a, f.Ino, size)
	}
	if got := readFile(t, s, "f"); !bytes.Equal(got, want) {
		t.Fatal("data after restart differs")
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if b, _ := object(t, e.store, "share/f"); !bytes.Equal(b, want) {
		t.Fatal("object after replay and upload differs")
	}
}

// Objects put, changed or deleted directly in the store show up once the
// cached view is refreshed; the share reads ranges of large objects.
func TestObjectsFromOtherApplications(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "s"}))
	s := e.share("s")
	if got := must[[]DirEntry](t)(s.ReadDir(ctx, "")); len(got) != 0 {
		t.Fatalf("new share lists %+v", got)
	}
	if _, err := s.Stat(ctx, "dir"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat of nothing: %v", err)
	}
	big := testrand.Bytes(3, 5*BlockSize)
	if err := objstore.PutBytes(ctx, e.store, "s/dir/big.bin", big); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "dir"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("a new object is visible before refresh or the TTL: %v", err)
	}
	if err := s.Refresh("", false); err != nil {
		t.Fatal(err)
	}
	a := must[Attr](t)(s.Stat(ctx, "dir/big.bin"))
	if a.Size != int64(len(big)) || a.Mode != 0o644 {
		t.Fatalf("object without metadata: %+v", a)
	}
	if d := must[Attr](t)(s.Stat(ctx, "dir")); d.Type != TypeDir || d.Mode != 0o755 {
		t.Fatalf("implicit directory: %+v", d)
	}
	buf := make([]byte, 4096)
	if _, err := s.ReadAt(ctx, "dir/big.bin", buf, 3*BlockSize+10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, big[3*BlockSize+10:3*BlockSize+10+4096]) {
		t.Fatal("range read differs")
	}
	if st := e.cache.Stats(); st.Used != BlockSize {
		t.Fatalf("a 4 KiB read of a 5 MiB object cached %d bytes, want one block", st.Used)
	}
	// Overwritten in the store: after a refresh the new bytes are read,
	// not the blocks cached from the old object.
	big2 := testrand.Bytes(4, 5*BlockSize)
	if err := objstore.PutBytes(ctx, e.store, "s/dir/big.bin", big2); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh("dir", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAt(ctx, "dir/big.bin", buf, 3*BlockSize+10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, big2[3*BlockSize+10:3*BlockSize+10+4096]) {
		t.Fatal("read after the object was overwritten in the store gives the old data")
	}
	if err := e.store.Delete(ctx, "s/dir/big.bin"); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh("dir", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "dir/big.bin"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("deleted object still there after refresh: %v", err)
	}
}

func TestShareConfig(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, bad := range []Config{{Name: ""}, {Name: "a/b"}, {Name: "x", Prefix: "chunks/"}, {Name: "x", Prefix: "/abs/"},
		{Name: "x", Prefix: "noslash"}, {Name: "x", Squash: "some"}, {Name: "x", Clients: []string{"nonsense"}}} {
		if _, err := e.m.Create(ctx, bad); err == nil {
			t.Fatalf("share %+v accepted", bad)
		}
	}
	must[Config](t)(e.m.Create(ctx, Config{Name: "a", Prefix: "data/a/", ReadOnly: true, Clients: []string{"127.0.0.1/32"}, Squash: "root"}))
	if _, err := e.m.Create(ctx, Config{Name: "b", Prefix: "data/"}); err == nil {
		t.Fatal("overlapping prefix accepted")
	}
	s := e.share("a")
	if _, err := s.Create(ctx, "f", 0o644, 0, 0, true); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("create on a read-only share: %v", err)
	}
	c := s.Config()
	if uid, gid := c.MapOwner(0, 0); uid != 65534 || gid != 65534 {
		t.Fatalf("root squash maps 0 to %d:%d", uid, gid)
	}
	if uid, _ := c.MapOwner(1000, 1000); uid != 1000 {
		t.Fatal("root squash mapped a user")
	}
	e.restart()
	if got := e.m.List(); len(got) != 1 || got[0].Prefix != "data/a/" || !got[0].ReadOnly {
		t.Fatalf("shares after restart: %+v", got)
	}
	if err := e.m.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if len(e.m.List()) != 0 {
		t.Fatal("share survived delete")
	}
}

// A random sequence of operations, with uploads, flushes and restarts in
// between, always leaves the share, and after a flush the objects, equal
// to a model of what was written.
func TestRandomizedAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			// Each seed has its own share and store, and waits far
			// more than it computes (under load the four took 86 s of
			// CPU in 1,800 s side by side): they run side by side.
			t.Parallel()
			e := newEnv(t)
			// Uploads in the background too, racing the operations.
			e.opts = func(o *Options) { o.SettleTime, o.UploadInterval = time.Millisecond, 3*time.Millisecond }
			e.restart()
			ctx := context.Background()
			must[Config](t)(e.m.Create(ctx, Config{Name: "m"}))
			r := rand.New(rand.NewPCG(seed, seed))
			model := map[string][]byte{} // file path -> content
			dirs := map[string]bool{"": true}
			names := []string{"a", "b", "c"}
			pick := func() string {
				p := names[r.IntN(len(names))]
				if r.IntN(3) == 0 {
					p = names[r.IntN(len(names))] + "/" + p
				}
				return p
			}
			for step := range 300 {
				s := e.share("m")
				p := pick()
				_, isFile := model[p]
				switch op := r.IntN(10); {
				case op < 2 && !isFile && !dirs[p] && dirs[parentOf(p)]:
					must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
					model[p] = []byte{}
				case op < 5 && isFile:
					off := r.IntN(len(model[p]) + 3*BlockSize/2 + 1)
					d := testrand.Bytes(r.Uint64(), 1+r.IntN(BlockSize+100))
					must[Attr](t)(s.WriteAt(ctx, p, d, int64(off)))
					if need := off + len(d); need > len(model[p]) {
						model[p] = append(model[p], make([]byte, need-len(model[p]))...)
					}
					copy(model[p][off:], d)
				case op == 5 && isFile:
					size := int64(r.IntN(len(model[p]) + BlockSize))
					must[Attr](t)(s.SetAttr(ctx, p, SetAttr{Size: &size}))
					if int(size) <= len(model[p]) {
						model[p] = model[p][:size]
					} else {
						model[p] = append(model[p], make([]byte, int(size)-len(model[p]))...)
					}
				case op == 6 && isFile:
					to := pick()
					if _, exists := model[to]; to == p || dirs[to] || !dirs[parentOf(to)] || exists {
						continue
					}
					if err := s.Rename(ctx, p, to); err != nil {
						t.Fatalf("step %d: rename %s to %s: %v", step, p, to, err)
					}
					model[to] = model[p]
					delete(model, p)
				case op == 7 && isFile:
					if err := s.Remove(ctx, p); err != nil {
						t.Fatalf("step %d: remove %s: %v", step, p, err)
					}
					delete(model, p)
				case op == 8 && !isFile && !dirs[p] && !strings.Contains(p, "/"):
					must[Attr](t)(s.Mkdir(ctx, p, 0o755, 0, 0))
					dirs[p] = true
				case op == 9:
					switch r.IntN(3) {
					case 0:
						if err := e.m.Flush(ctx, ""); err != nil {
							t.Fatal(err)
						}
					case 1:
						e.restart()
					default:
						if err := e.m.round(ctx, false, nil); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			check := func(what string) {
				s := e.share("m")
				for p, want := range model {
					if got := readFile(t, s, p); !bytes.Equal(got, want) {
						t.Fatalf("%s: %s has %d bytes, the model %d (first difference at %d)", what, p, len(got), len(want), firstDiff(got, want))
					}
				}
				// The listings name exactly the model's files (and its
				// directories).
				if err := s.Refresh("", true); err != nil {
					t.Fatal(err)
				}
				listed := map[string]bool{}
				var walk func(dir string)
				walk = func(dir string) {
					for _, e := range must[[]DirEntry](t)(s.ReadDir(context.Background(), dir)) {
						p := joinPath(dir, e.Name)
						if e.Attr.Type == TypeDir {
							walk(p)
							continue
						}
						listed[p] = true
						if int(e.Attr.Size) != len(model[p]) {
							t.Fatalf("%s: %s listed with %d bytes, the model %d", what, p, e.Attr.Size, len(model[p]))
						}
					}
				}
				walk("")
				for p := range model {
					if !listed[p] {
						t.Fatalf("%s: %s not listed", what, p)
					}
				}
				if len(listed) != len(model) {
					t.Fatalf("%s: %d files listed, the model has %d", what, len(listed), len(model))
				}
			}
			check("end")
			e.restart()
			check("after restart")
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
			for p, want := range model {
				if b, _ := object(t, e.store, "m/"+p); !bytes.Equal(b, want) {
					t.Fatalf("object m/%s has %d bytes, the model %d", p, len(b), len(want))
				}
			}
			var keys []string
			_ = e.store.List(ctx, "m/", func(oi objstore.ObjectInfo) error {
				if !strings.HasSuffix(oi.Key, "/") {
					keys = append(keys, oi.Key)
				}
				return nil
			})
			if len(keys) != len(model) {
				t.Fatalf("store holds %d files %q, the model %d", len(keys), keys, len(model))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
