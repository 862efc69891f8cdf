package volume

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/snapshots"
)

// The patch crash tests kill a real writer process (SIGKILL) at the two
// moments the order of patch uploads is about: after a patch is in the
// store and before the chunk map names it, and after a compaction is
// recorded in the map and before garbage collection removes the patches
// it superseded. Every acknowledged write must read back after a restart,
// and garbage collection must remove exactly the patches nothing names.

const (
	patchCrashEnvDir   = "GATEWAYD_VOLUME_PATCH_CRASH_DIR"
	patchCrashEnvStage = "GATEWAYD_VOLUME_PATCH_CRASH_STAGE"
	patchCrashSize     = 1 * mib
)

// patchCrashOptions: uploads only when the child drains, so each stage is
// reached in one known place.
func patchCrashOptions(o *Options) { o.UploadInterval, o.SettleTime = time.Hour, time.Hour }

// The child: a volume of whole uploaded chunks, then three 4 KiB writes to
// chunk 1, each uploaded as a patch, then a recovery point, which compacts
// the chunk. The stage's hook says so and stops the child there.
func init() {
	dir := os.Getenv(patchCrashEnvDir)
	if dir == "" {
		return
	}
	stage := os.Getenv(patchCrashEnvStage)
	st := openCrashStateWith(fatalTB{}, dir, patchCrashOptions)
	block := func() {
		fmt.Println("stage", stage)
		select {}
	}
	switch stage {
	case "patch-put":
		st.m.afterPatchPut = block
	case "compacted":
		st.m.afterCompaction = block
	}
	ctx := context.Background()
	_, err := st.m.Create(ctx, CreateOptions{Name: "p", Kind: Cached, Size: patchCrashSize, ChunkSize: crashChunk})
	childCheck(err)
	v, err := st.m.Get("p")
	childCheck(err)
	childCheck(v.WriteAt(ctx, pattern(1, patchCrashSize), 0))
	childCheck(st.m.Drain(ctx))
	for i := range 3 {
		seed, off := uint64(10+i), int64(crashChunk+4096*(2*i+1))
		childCheck(v.WriteAt(ctx, pattern(seed, 4096), off))
		fmt.Println("ack", seed, off)
		childCheck(st.m.Drain(ctx))
	}
	childCheck(st.m.RecoveryPoint(ctx, "p"))
	fmt.Println("done")
	select {}
}

func listPatches(t *testing.T, store objstore.Store) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := store.List(context.Background(), "patches/", func(oi objstore.ObjectInfo) error {
		out[oi.Key] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPatchCrash(t *testing.T) {
	for _, stage := range []string{"patch-put", "compacted"} {
		t.Run(stage, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			cmd, sc := startCrashChild(t, patchCrashEnvDir+"="+dir, patchCrashEnvStage+"="+stage)
			shadow := pattern(1, patchCrashSize)
			killed := false
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				switch {
				case len(f) == 3 && f[0] == "ack":
					seed, _ := strconv.ParseUint(f[1], 10, 64)
					off, _ := strconv.ParseInt(f[2], 10, 64)
					copy(shadow[off:], pattern(seed, 4096))
				case len(f) == 2 && f[0] == "stage" && f[1] == stage:
					_ = cmd.Process.Kill()
					killed = true
				default:
					_ = cmd.Process.Kill()
					t.Fatalf("child: %s", sc.Text())
				}
			}
			_ = cmd.Wait()
			if !killed {
				t.Fatal("the child ended before the stage")
			}

			st := openCrashStateWith(t, dir, patchCrashOptions)
			defer func() { st.close() }()
			v, err := st.m.Get("p")
			if err != nil {
				t.Fatal(err)
			}
			store := st.m.opts.Store
			ent := entryOf(t, v, 1)
			patches := listPatches(t, store)
			switch stage {
			case "patch-put":
				// The patch is in the store, the map does not name it.
				if !ent.whole() || len(patches) != 1 {
					t.Fatalf("after a kill between the put and the map: entry with %d patches, %d patch objects", len(ent.patches), len(patches))
				}
			case "compacted":
				// The map names the compacted chunk; the three patches it
				// superseded are still in the store.
				if !ent.whole() || len(patches) != 3 {
					t.Fatalf("after a kill after the compaction: entry with %d patches, %d patch objects", len(ent.patches), len(patches))
				}
			}
			// The acknowledged writes read back (replayed from the log, or
			// from the store), before and after garbage collection.
			mustEqual(t, "after the kill", readAll(t, v, 64*kib), shadow)
			gc, err := st.m.CollectGarbage(ctx, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if left := listPatches(t, store); len(left) != 0 {
				t.Fatalf("patches nothing names survived garbage collection: %v (%+v)", left, gc)
			}
			if err := st.m.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			// Uploads resume over the new map; everything they name stays.
			ent = entryOf(t, v, 1)
			if stage == "patch-put" && len(ent.patches) == 0 {
				t.Fatal("the replayed write did not go up as a patch")
			}
			if _, err := st.m.CollectGarbage(ctx, 0, false); err != nil {
				t.Fatal(err)
			}
			for _, id := range ent.ids() {
				key := id.ObjectKey()
				if len(ent.patches) > 0 && id != ent.base {
					key = snapshots.PatchKey(id)
				}
				if _, err := store.Stat(ctx, key); err != nil {
					t.Fatalf("%s named by the map: %v", key, err)
				}
			}
			st.close()
			st = openCrashStateWith(t, dir, patchCrashOptions) // the cache starts empty: reads go to the store
			v, err = st.m.Get("p")
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "from the store after garbage collection", readAll(t, v, 64*kib), shadow)
		})
	}
}
