package fileshare

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	metamem "github.com/gatewayd/gatewayd/meta/mem"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/uploadbuffer"
	"github.com/gatewayd/gatewayd/vfs"
)

// countingMeta counts the metadata store's synced commits (on badger each
// is a sync), its unsynced commits and its syncs.
type countingMeta struct {
	*metamem.Store
	updates, unsynced, syncs atomic.Int64
}

func (c *countingMeta) Update(ctx context.Context, fn func(meta.Txn) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, fn)
}

func (c *countingMeta) UpdateUnsynced(ctx context.Context, fn func(meta.Txn) error) error {
	c.unsynced.Add(1)
	return c.Store.UpdateUnsynced(ctx, fn)
}

func (c *countingMeta) Sync(ctx context.Context) error {
	c.syncs.Add(1)
	return c.Store.Sync(ctx)
}

// countedShare starts a manager over a counting metadata store and
// returns it with its share "docs".
func countedShare(t *testing.T) (*env, *countingMeta, *Share) {
	md := &countingMeta{Store: metamem.New()}
	e := &env{t: t, dir: t.TempDir(), store: mem.New("fs"), md: md}
	t.Cleanup(e.close)
	e.start()
	must[Config](t)(e.m.Create(context.Background(), Config{Name: "docs"}))
	return e, md, e.share("docs")
}

// smallFileOps are the share calls a client's create, write of 4 KiB and
// close of a new file make.
var smallFileOps = map[string]func(ctx context.Context, s *Share, p string, data []byte) error{
	// NFSv3 (fio's libnfs engine, a Linux client): LOOKUP, CREATE, an
	// UNSTABLE WRITE, and the close's COMMIT.
	"nfs": func(ctx context.Context, s *Share, p string, data []byte) error {
		if _, err := s.Stat(ctx, p); !isNotExist(err) {
			return fmt.Errorf("lookup of a new file: %v", err)
		}
		if _, err := s.Create(ctx, p, 0o644, 1000, 100, true); err != nil {
			return err
		}
		if _, err := s.Write(ctx, p, data, 0, Buffered); err != nil {
			return err
		}
		return s.Sync(ctx)
	},
	// SMB through the view (frontends/smb/fuse.go): a create, a write
	// and the write time smbd sets at close (twice, the same time), each
	// written to the log when it returns, durable at smbd's fsync, which
	// a client's close does not ask for.
	"smb": func(ctx context.Context, s *Share, p string, data []byte) error {
		ctx = WithDurability(ctx, Written)
		if _, err := s.Create(ctx, p, 0o644, 1000, 100, true); err != nil {
			return err
		}
		if _, err := s.Write(ctx, p, data, 0, Written); err != nil {
			return err
		}
		mt := time.Unix(1700000000, 123456789)
		for range 2 {
			if _, err := s.SetAttr(ctx, p, SetAttr{Mtime: &mt}); err != nil {
				return err
			}
		}
		return nil
	},
}

type smallFileCounts struct {
	logSyncs, logRecords, metaUpdates float64
}

// countSmallFiles runs n small files of a protocol one after the other and
// returns the syncs of the upload buffer, its records and the metadata
// transactions per file.
func countSmallFiles(t *testing.T, proto string, n int) smallFileCounts {
	e, md, s := countedShare(t)
	ctx := context.Background()
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	data := make([]byte, 4096)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before, updates := e.log.Stats(), md.updates.Load()
	for i := range n {
		if err := smallFileOps[proto](ctx, s, fmt.Sprintf("d/small.%d", i), data); err != nil {
			t.Fatal(err)
		}
	}
	after := e.log.Stats()
	c := smallFileCounts{
		logSyncs:    float64(after.Syncs-before.Syncs) / float64(n),
		logRecords:  float64(after.Appends-before.Appends) / float64(n),
		metaUpdates: float64(md.updates.Load()-updates) / float64(n),
	}
	t.Logf("%s, %d files one after the other, per file: %.2f syncs of the upload buffer, %.2f records, %.2f metadata transactions",
		proto, n, c.logSyncs, c.logRecords, c.metaUpdates)
	return c
}

// A small file costs one durable step for each acknowledgement the client
// waits for, and no metadata transaction of its own: the inode and its
// path are in the create's record and reach the metadata store with those
// of other files.
func TestSmallFileSyncs(t *testing.T) {
	const n = 50
	nfs := countSmallFiles(t, "nfs", n)
	if nfs.logSyncs > 2 || nfs.metaUpdates > 0 {
		t.Errorf("nfs: %.2f syncs and %.2f metadata transactions a file, want at most 2 and 0", nfs.logSyncs, nfs.metaUpdates)
	}
	smb := countSmallFiles(t, "smb", n)
	if smb.logSyncs > 0 || smb.metaUpdates > 0 {
		t.Errorf("smb: %.2f syncs and %.2f metadata transactions a file, want 0 and 0", smb.logSyncs, smb.metaUpdates)
	}
}

// Creates, writes, SETATTRs and removes answered Written (the SMB view's)
// survive a kill -9 of the process at any moment without a sync of the
// log, and a power loss once a Sync (the view's fsync) has returned; a
// removed file's object is deleted by the next upload round.
func TestSmallFilesWrittenSurviveKill(t *testing.T) {
	ctx := context.Background()
	memFS := vfs.NewMem()
	e := &env{t: t, dir: "/d", store: mem.New("fs"), md: metamem.New(), logFS: memFS, cacheFS: memFS}
	e.start()
	defer e.close()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	wctx := WithDurability(ctx, Written)
	acked := map[string]smallFile{}
	type copies struct {
		what  string
		fs    *vfs.MemFS
		md    *metamem.Store
		store objstore.Store
		acked map[string]smallFile
	}
	var kills []copies
	syncs := e.log.Stats().Syncs
	for i := range 12 {
		p := fmt.Sprintf("d/f%d", i)
		a := must[Attr](t)(s.Create(wctx, p, 0o640, 1000, 100, true))
		f := smallFile{ino: a.Ino, data: []byte{}}
		acked[p] = f
		f.data = bytes.Repeat([]byte{byte(i + 1)}, 4096+i)
		must[Attr](t)(s.Write(wctx, p, f.data, 0, Written))
		acked[p] = f
		f.mtime = time.Unix(1700000000+int64(i), int64(i))
		must[Attr](t)(s.SetAttr(wctx, p, SetAttr{Mtime: &f.mtime}))
		acked[p] = f
		switch i {
		case 5: // an upload round among them: inodes to the table, objects up, a trim
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
			syncs = e.log.Stats().Syncs
		case 7, 10: // a remove of a file uploaded at that round: its object's delete waits for the next
			q := fmt.Sprintf("d/f%d", i-6)
			if err := s.Remove(wctx, q); err != nil {
				t.Fatal(err)
			}
			acked[q] = smallFile{removed: true}
			if _, err := e.store.Stat(ctx, "docs/"+q); err != nil {
				t.Errorf("%s's object after a remove answered Written: %v, want it kept until the round", q, err)
			}
		case 8: // a remove of a file not uploaded, its inode not in the table
			if err := s.Remove(wctx, p); err != nil {
				t.Fatal(err)
			}
			acked[p] = smallFile{removed: true}
		}
		if i%3 == 2 {
			kills = append(kills, copies{fmt.Sprintf("kill after file %d", i), memFS.Kill(), copyMeta(t, e.md), copyStore(t, e.store), maps.Clone(acked)})
		}
	}
	if got := e.log.Stats().Syncs - syncs; got != 0 {
		t.Errorf("%d syncs of the log for changes answered Written", got)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	checkSmallFiles(t, "without a crash", s, acked)
	kills = append(kills, copies{"power loss after a sync", memFS.Crash(), copyMeta(t, e.md), copyStore(t, e.store), maps.Clone(acked)})
	for _, k := range kills {
		e := &env{t: t, dir: "/d", store: k.store, md: k.md, logFS: k.fs, cacheFS: k.fs}
		e.start()
		s := e.share("docs")
		checkSmallFiles(t, k.what+", after replay", s, k.acked)
		if err := e.m.Flush(ctx, ""); err != nil {
			t.Fatalf("%s: flush: %v", k.what, err)
		}
		checkSmallFiles(t, k.what+", after the uploads", s, k.acked)
		e.restart()
		checkSmallFiles(t, k.what+", after the uploads and a restart", e.share("docs"), k.acked)
		for p, f := range k.acked {
			if _, err := e.store.Stat(ctx, "docs/"+p); f.removed && !objstore.IsNotFound(err) {
				t.Errorf("%s: %s was removed, its object after the uploads: %v", k.what, p, err)
			}
		}
		e.close()
	}
}

// Removes answered Written cost no sync of the log each, and the upload
// round that deletes their objects records them all done with one sync.
func TestWrittenRemovesDeletedInOneSync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	const n = 40
	for i := range n {
		p := fmt.Sprintf("f%d", i)
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
		must[Attr](t)(s.WriteAt(ctx, p, []byte(p), 0))
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	wctx := WithDurability(ctx, Written)
	syncs := e.log.Stats().Syncs
	for i := range n {
		if err := s.Remove(wctx, fmt.Sprintf("f%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.log.Stats().Syncs - syncs; got != 0 {
		t.Errorf("%d syncs of the log for %d removes answered Written, want 0", got, n)
	}
	if names := must[[]DirEntry](t)(s.ReadDir(ctx, "")); len(names) != 0 {
		t.Errorf("the share lists %d entries after the removes, want none", len(names))
	}
	syncs = e.log.Stats().Syncs
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := e.log.Stats().Syncs - syncs; got > 2 {
		t.Errorf("%d syncs of the log in the round deleting %d objects, want at most 2", got, n)
	}
	for i := range n {
		if _, err := e.store.Stat(ctx, fmt.Sprintf("docs/f%d", i)); !objstore.IsNotFound(err) {
			t.Errorf("f%d's object after the round: %v", i, err)
		}
	}
	if st := e.m.Stats(); st.Pending["docs"] != 0 {
		t.Errorf("%d changes pending after the round", st.Pending["docs"])
	}
	e.restart()
	s = e.share("docs")
	for i := range n {
		if _, err := s.Stat(ctx, fmt.Sprintf("f%d", i)); !isNotExist(err) {
			t.Errorf("f%d after a restart: %v", i, err)
		}
	}
}

// A remove answered Written changes the inode table without waiting for
// the metadata store's sync; the share's Sync (the view's fsync) syncs it,
// once.
func TestWrittenRemoveTableSyncedAtSync(t *testing.T) {
	e, md, s := countedShare(t)
	ctx := context.Background()
	for _, p := range []string{"a", "b"} {
		must[Attr](t)(s.Create(ctx, p, 0o644, 0, 0, true))
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	updates := md.updates.Load()
	if err := s.Remove(WithDurability(ctx, Written), "a"); err != nil {
		t.Fatal(err)
	}
	if u, n := md.updates.Load()-updates, md.unsynced.Load(); u != 0 || n != 1 {
		t.Errorf("a remove answered Written: %d synced and %d unsynced commits, want 0 and 1", u, n)
	}
	if err := s.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if u, n := md.updates.Load()-updates, md.unsynced.Load(); u != 1 || n != 1 {
		t.Errorf("a durable remove: %d synced and %d unsynced commits in all, want 1 and 1", u, n)
	}
	for range 2 {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := md.syncs.Load(); n != 1 {
		t.Errorf("%d syncs of the metadata store in two Syncs after a remove answered Written, want 1", n)
	}
}

// crashMeta is a metadata store whose every transaction that writes is a
// sync point: before it commits, hook may take a crash there.
type crashMeta struct {
	meta.Store
	hook func()
}

func (c *crashMeta) Update(ctx context.Context, fn func(meta.Txn) error) error {
	if c.hook != nil {
		c.hook()
	}
	return c.Store.Update(ctx, fn)
}

// copyMeta returns a copy of every key of md.
func copyMeta(t *testing.T, md meta.Store) *metamem.Store {
	out := metamem.New()
	var kvs [][2][]byte
	err := md.View(context.Background(), func(tx meta.Txn) error {
		return tx.Iterate(nil, func(k, v []byte) error {
			kvs = append(kvs, [2][]byte{k, v})
			return nil
		})
	})
	if err == nil {
		err = out.Update(context.Background(), func(tx meta.Txn) error {
			for _, kv := range kvs {
				if err := tx.Set(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		t.Error(err)
	}
	return out
}

// copyStore returns a copy of every object of st, with its metadata.
func copyStore(t *testing.T, st objstore.Store) objstore.Store {
	ctx := context.Background()
	out := mem.New("fs")
	var keys []string
	_ = st.List(ctx, "", func(oi objstore.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	for _, k := range keys {
		oi, err := st.Stat(ctx, k)
		if err != nil {
			continue // removed meanwhile
		}
		b, err := objstore.GetAll(ctx, st, k)
		if err != nil {
			continue
		}
		if err := out.PutMeta(ctx, k, bytes.NewReader(b), int64(len(b)), oi.Metadata); err != nil {
			t.Error(err)
		}
	}
	return out
}

// smallFile is what a client was told of a small file.
type smallFile struct {
	ino     uint64
	data    []byte
	mtime   time.Time // set by a SETATTR (zero: none acknowledged)
	removed bool
}

type smallCrash struct {
	fs    *vfs.MemFS
	md    *metamem.Store
	store objstore.Store
	acked map[string]smallFile
}

// smallFileRun creates files with a write and a SETATTR of their times
// each, with upload rounds and removes among them, taking a crash just
// before sync point crashAt (of the log, the cache, the metadata store;
// 0: none). It returns the crash and the number of sync points.
func smallFileRun(t *testing.T, crashAt int) (*smallCrash, int) {
	ctx := context.Background()
	memFS := vfs.NewMem()
	var (
		mu    sync.Mutex
		acked = map[string]smallFile{}
		syncs int
		cp    *smallCrash
		e     *env
		md    = &crashMeta{Store: metamem.New()}
		armed bool
	)
	crash := func() {
		mu.Lock()
		defer mu.Unlock()
		if !armed {
			return
		}
		syncs++
		if syncs != crashAt {
			return
		}
		// Power lost just before this sync: the disk, then the metadata
		// store and the object store, which only move on.
		cp = &smallCrash{fs: memFS.Crash(), md: copyMeta(t, md.Store), store: copyStore(t, e.store), acked: maps.Clone(acked)}
	}
	fs := vfs.NewErrorFS(memFS, func(op vfs.Op, _ string) error {
		if op == vfs.OpSync || op == vfs.OpSyncDir {
			crash()
		}
		return nil
	})
	e = &env{t: t, dir: "/d", store: mem.New("fs"), md: md, logFS: fs, cacheFS: fs}
	e.start()
	defer e.close()
	md.hook = crash
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	must[Attr](t)(s.Mkdir(ctx, "d", 0o755, 0, 0))
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	armed = true // crashes from here on
	mu.Unlock()
	ack := func(p string, f smallFile) {
		mu.Lock()
		acked[p] = f
		mu.Unlock()
	}
	for i := range 12 {
		p := fmt.Sprintf("d/f%d", i)
		a := must[Attr](t)(s.Create(ctx, p, 0o640, 1000, 100, true))
		f := smallFile{ino: a.Ino, data: []byte{}}
		ack(p, f)
		f.data = bytes.Repeat([]byte{byte(i + 1)}, 4096+i)
		must[Attr](t)(s.WriteAt(ctx, p, f.data, 0))
		ack(p, f)
		f.mtime = time.Unix(1700000000+int64(i), int64(i))
		must[Attr](t)(s.SetAttr(ctx, p, SetAttr{Mtime: &f.mtime}))
		ack(p, f)
		switch i % 4 {
		case 1: // an upload round: inodes to the table, objects up, a trim
			if err := e.m.Flush(ctx, ""); err != nil {
				t.Fatal(err)
			}
		case 2: // a remove of a file made before the last round
			q := fmt.Sprintf("d/f%d", i-2)
			if err := s.Remove(ctx, q); err != nil {
				t.Fatal(err)
			}
			ack(q, smallFile{removed: true})
		case 3: // a remove of a file not uploaded, its inode not in the table
			if err := s.Remove(ctx, p); err != nil {
				t.Fatal(err)
			}
			ack(p, smallFile{removed: true})
		}
	}
	md.hook = nil
	checkSmallFiles(t, "without a crash", s, acked)
	return cp, syncs
}

func checkSmallFiles(t *testing.T, what string, s *Share, acked map[string]smallFile) {
	t.Helper()
	ctx := context.Background()
	for p, f := range acked {
		a, err := s.Stat(ctx, p)
		if f.removed {
			if !isNotExist(err) {
				t.Errorf("%s: %s was removed, stat gives %+v, %v", what, p, a, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %s: %v", what, p, err)
			continue
		}
		if a.Ino != f.ino {
			t.Errorf("%s: %s has inode %d, was given %d", what, p, a.Ino, f.ino)
		}
		if got := readFile(t, s, p); !bytes.Equal(got, f.data) {
			t.Errorf("%s: %s holds %d bytes, %d acknowledged", what, p, len(got), len(f.data))
		}
		if !f.mtime.IsZero() && !a.Mtime.Equal(f.mtime) {
			t.Errorf("%s: %s has mtime %v, %v acknowledged", what, p, a.Mtime, f.mtime)
		}
		if got, err := s.PathOf(ctx, f.ino); err != nil || got != p {
			t.Errorf("%s: inode %d names %q (%v), want %s", what, f.ino, got, err, p)
		}
	}
}

// Every acknowledged create, write and SETATTR of a small file survives a
// power loss at any sync point of the log, the cache or the metadata
// store, with the inode it was given; a removed file stays removed.
func TestSmallFilesCrashAtEverySync(t *testing.T) {
	_, total := smallFileRun(t, 0)
	if total < 40 {
		t.Fatalf("only %d sync points", total)
	}
	for at := 1; at <= total; at++ {
		cp, _ := smallFileRun(t, at)
		if cp == nil {
			t.Fatalf("no crash at sync %d of %d", at, total)
		}
		what := fmt.Sprintf("crash at sync %d of %d", at, total)
		e := &env{t: t, dir: "/d", store: cp.store, md: cp.md, logFS: cp.fs, cacheFS: cp.fs}
		e.start()
		s := e.share("docs")
		checkSmallFiles(t, what+", after replay", s, cp.acked)
		// The replay's state uploads and its inodes reach the table; then
		// the files are what they were, from the store, after a restart.
		if err := e.m.Flush(context.Background(), ""); err != nil {
			t.Fatalf("%s: flush: %v", what, err)
		}
		checkSmallFiles(t, what+", after the uploads", s, cp.acked)
		e.restart()
		checkSmallFiles(t, what+", after the uploads and a restart", e.share("docs"), cp.acked)
		e.close()
		if t.Failed() {
			return
		}
	}
}

// Creation records of the earlier format (create, mkdir, symlink: the
// inode's mapping in the table before the record) are still replayed.
func TestOldCreateRecordsReplay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	mt := time.Unix(1700000000, 5)
	recs := map[string]record{
		"old-file": {typ: recCreate, attr: Attr{Mode: 0o600, UID: 7, GID: 8, Mtime: mt}},
		"old-dir":  {typ: recMkdir, attr: Attr{Mode: 0o750, Mtime: mt}},
		"old-link": {typ: recSymlink, attr: Attr{Mode: 0o777, Mtime: mt, Target: "old-file"}},
	}
	inos := map[string]uint64{}
	for p, r := range recs {
		inos[p] = must[uint64](t)(s.inode(ctx, p))
		r.share, r.ino = "docs", inos[p]
		if _, err := e.m.j.Append(ctx, r.encode(), func(uploadbuffer.LSN) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	e.restart()
	s = e.share("docs")
	for p, r := range recs {
		a, err := s.Stat(ctx, p)
		if err != nil {
			t.Fatalf("%s after replay: %v", p, err)
		}
		want := map[byte]FileType{recCreate: TypeFile, recMkdir: TypeDir, recSymlink: TypeSymlink}[r.typ]
		if a.Ino != inos[p] || a.Type != want || a.Mode != r.attr.Mode || !a.Mtime.Equal(mt) || a.Target != r.attr.Target {
			t.Errorf("%s after replay: %+v", p, a)
		}
	}
	if err := e.m.Flush(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if b, md := object(t, e.store, "docs/old-file"); len(b) != 0 || md[metaMode] != "600" {
		t.Errorf("old-file's object: %q %v", b, md)
	}
}

func TestNewRecordRoundTrip(t *testing.T) {
	mt := time.Unix(1700000000, 5)
	for _, r := range []record{
		{typ: recNew, share: "docs", ino: 9, path: "a/b", attr: Attr{Type: TypeFile, Mode: 0o644, UID: 1, GID: 2, Mtime: mt}},
		{typ: recNew, share: "docs", ino: 10, path: "a/c", attr: Attr{Type: TypeDir, Mode: 0o755, Mtime: mt}},
		{typ: recNew, share: "docs", ino: 11, path: "a/l", attr: Attr{Type: TypeSymlink, Mode: 0o777, Mtime: mt, Target: "b"}},
	} {
		got, err := decodeRecord(r.encode())
		if err != nil || got.path != r.path || got.ino != r.ino || got.attr.Type != r.attr.Type || got.attr.Mode != r.attr.Mode ||
			got.attr.UID != r.attr.UID || !got.attr.Mtime.Equal(mt) || got.attr.Target != r.attr.Target {
			t.Errorf("%+v decodes as %+v, %v", r, got, err)
		}
		b := r.encode()
		for n := range len(b) {
			if _, err := decodeRecord(b[:n]); err == nil {
				t.Errorf("%+v cut to %d bytes decodes", r, n)
			}
		}
	}
	bad := record{typ: recNew, share: "docs", ino: 9, path: "a", attr: Attr{Type: TypeFile, Mtime: mt}}.encode()
	bad[2+4+8+20] = 9 // no such kind
	if _, err := decodeRecord(bad); err == nil {
		t.Error("a new record of kind 9 decodes")
	}
}

// The inodes of many new files with long paths reach the table in as many
// transactions as their size needs, and their records are then released.
func TestManyLongPathInodesSaved(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must[Config](t)(e.m.Create(ctx, Config{Name: "docs"}))
	s := e.share("docs")
	dir := ""
	for i := range 4 {
		dir = joinPath(dir, strings.Repeat(string(rune('a'+i)), 240))
		must[Attr](t)(s.Mkdir(ctx, dir, 0o755, 0, 0))
	}
	const n = 1500 // about 3 MiB of table entries: more than one transaction
	inos := make([]uint64, n)
	for i := range n {
		inos[i] = must[Attr](t)(s.Create(ctx, joinPath(dir, fmt.Sprintf("file-%014d", i)), 0o644, 0, 0, true)).Ino
	}
	if err := s.saveInodes(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.needs(); ok {
		t.Fatal("records of creations still needed after the inodes were saved")
	}
	e.restart()
	s = e.share("docs")
	for i, ino := range inos {
		if p, err := s.PathOf(ctx, ino); err != nil || p != joinPath(dir, fmt.Sprintf("file-%014d", i)) {
			t.Fatalf("inode %d after a restart: %q, %v", ino, p, err)
		}
	}
}
