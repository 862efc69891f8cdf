// Command snapshots benchmarks gatewayd's snapshots against restic, both
// storing into the same MinIO server in one run, and measures how fast a
// volume restored from a snapshot answers its first read (lazy restore).
//
//	go run ./bench/snapshots                       # 1 GiB image; lazy restore at 1 GiB and 16 GiB
//	go run ./bench/snapshots -size 256M -lazy 256M # quick
//
// See bench/snapshots/README.md for what each row measures.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	enc "encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/internal/freeport"
	"github.com/gatewayd/gatewayd/internal/miniotest"
	"github.com/gatewayd/gatewayd/volume"
)

var (
	sizeFlag = flag.String("size", "1G", "volume image size for the gatewayd vs restic rows")
	lazyFlag = flag.String("lazy", "1G,16G", "volume sizes for the lazy-restore rows (comma-separated; empty: none)")
	workFlag = flag.String("work", "", "scratch directory (default: a new one under $TMPDIR)")
)

type bench struct {
	work, bin, dataDir, portal string
	minio                      *miniotest.Server
	s3args                     []string
	resticEnv                  []string
	daemon                     *exec.Cmd
}

func main() {
	log.SetFlags(0)
	flag.Parse()
	size := mustSize(*sizeFlag)
	b := &bench{}
	defer b.cleanup()
	b.setup()

	fmt.Printf("gatewayd vs restic, %s image, same MinIO (%s)\n\n", config.ByteSize(size), b.minio.Endpoint)
	img := filepath.Join(b.work, "image.img")
	writeImage(img, size, 1)

	// Full snapshot: gatewayd reads the image as a stored volume's disk.
	gwDisk := filepath.Join(b.work, "gw-disk.img")
	copyFile(img, gwDisk)
	// Timed from the volume's creation: the uploader may start on the
	// disk's chunks before the snapshot does.
	before := dirSize(filepath.Join(b.minio.BucketDir("bench"), "gw"))
	t0 := time.Now()
	b.gw("volume", "create", "--name", "img", "--kind", "stored", "--disk", gwDisk, "--size", fmt.Sprint(size))
	_, _, gwSnap := b.gwSnapshot("img", "gw")
	gwFull, gwFullBytes := time.Since(t0), dirSize(filepath.Join(b.minio.BucketDir("bench"), "gw"))-before
	rFull, rFullBytes := b.resticBackup(img)
	row("full snapshot", size, gwFull, gwFullBytes, rFull, rFullBytes)

	// Incremental: 1% of the image changed in 64 KiB extents at random
	// offsets, through iSCSI for gatewayd and in the file for restic.
	changes := randomExtents(size, 64<<10, size/100, 2)
	lun := b.attach("img")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	check(err)
	for _, c := range changes {
		lun.write(c.off, c.data)
		_, err := f.WriteAt(c.data, c.off)
		check(err)
	}
	check(f.Close())
	lun.close()
	gwInc, gwIncBytes, gwSnap2 := b.gwSnapshot("img", "gw")
	rInc, rIncBytes := b.resticBackup(img)
	row("incremental, 1% changed", size/100, gwInc, gwIncBytes, rInc, rIncBytes)

	// Full restore to a new file, checked against the image.
	want := fileHash(img)
	out := filepath.Join(b.work, "gw-restore.img")
	t0 = time.Now()
	b.gw("restore", gwSnap2, "--to", out, "--quiet", "--store", "s3://bench/gw", "--key-file", filepath.Join(b.dataDir, "master.key"))
	gwRestore := time.Since(t0)
	if fileHash(out) != want {
		log.Fatal("gatewayd restore differs from the image")
	}
	rdir := filepath.Join(b.work, "restic-restore")
	t0 = time.Now()
	b.restic("restore", "latest", "--target", rdir)
	rRestore := time.Since(t0)
	restored := findFile(rdir, "image.img")
	if fileHash(restored) != want {
		log.Fatal("restic restore differs from the image")
	}
	row("full restore", size, gwRestore, 0, rRestore, 0)
	_ = gwSnap
	check(os.Remove(out))
	check(os.RemoveAll(rdir))

	if *lazyFlag != "" {
		fmt.Printf("\nlazy restore: volume create --from-snapshot, then the first 4 KiB read over iSCSI\n\n")
		fmt.Printf("%-8s %-7s %14s %14s %16s\n", "size", "kind", "create (ms)", "first read (ms)", "hydrated in (s)")
		for i, s := range strings.Split(*lazyFlag, ",") {
			b.lazy(mustSize(s), i)
		}
	}
}

func row(name string, size int64, gw time.Duration, gwBytes int64, r time.Duration, rBytes int64) {
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	fmt.Printf("%-26s gatewayd %7.2fs %7.1f MB/s", name, gw.Seconds(), mbps(gw))
	if gwBytes > 0 {
		fmt.Printf(" stored %9s", config.ByteSize(gwBytes))
	}
	fmt.Printf(" | restic %7.2fs %7.1f MB/s", r.Seconds(), mbps(r))
	if rBytes > 0 {
		fmt.Printf(" stored %9s", config.ByteSize(rBytes))
	}
	fmt.Printf(" | speed ratio %.2fx\n", r.Seconds()/gw.Seconds())
}

func (b *bench) setup() {
	var err error
	b.work = *workFlag
	if b.work == "" {
		b.work, err = os.MkdirTemp("", "gatewayd-snapbench-")
		check(err)
	}
	b.bin = filepath.Join(b.work, "gatewayd")
	run(nil, "go", "build", "-o", b.bin, "./cmd/gatewayd")
	if _, err := exec.LookPath("restic"); err != nil {
		log.Fatal("restic not found: apt-get install restic")
	}
	b.minio, err = miniotest.StartServer()
	check(err)
	b.s3args = []string{"--s3-endpoint", b.minio.Endpoint, "--s3-path-style", "--s3-access-key", b.minio.AccessKey, "--s3-secret-key", b.minio.SecretKey}
	host := strings.TrimPrefix(b.minio.Endpoint, "http://")
	b.resticEnv = append(os.Environ(), "AWS_ACCESS_KEY_ID="+b.minio.AccessKey, "AWS_SECRET_ACCESS_KEY="+b.minio.SecretKey,
		"RESTIC_PASSWORD=bench", "RESTIC_REPOSITORY=s3:http://"+host+"/bench/restic", "RESTIC_CACHE_DIR="+filepath.Join(b.work, "restic-cache"))
	b.restic("init") // creates the bucket
	b.dataDir = filepath.Join(b.work, "gw-data")
	run(nil, b.bin, append([]string{"init", "--data-dir", b.dataDir, "--store", "s3://bench/gw"}, b.s3args...)...)
	b.portal, err = freeport.AddrErr()
	check(err)
	// Every listener on a free port or off: another server on the machine
	// must not break the run.
	b.daemon = exec.Command(b.bin, "serve", "--data-dir", b.dataDir, "--iscsi-listen", b.portal, "--nfs-listen", "", "--smb-listen", "")
	logf, err := os.Create(filepath.Join(b.work, "gatewayd.log"))
	check(err)
	b.daemon.Stderr = logf
	check(b.daemon.Start())
	for i := 0; ; i++ {
		if exec.Command(b.bin, "status", "--data-dir", b.dataDir).Run() == nil {
			break
		}
		if i > 300 {
			log.Fatal("gatewayd did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *bench) cleanup() {
	if b.daemon != nil && b.daemon.Process != nil {
		b.daemon.Process.Signal(os.Interrupt)
		b.daemon.Wait()
	}
	if b.minio != nil {
		b.minio.Stop()
	}
	if *workFlag == "" && b.work != "" {
		os.RemoveAll(b.work)
	}
}

func (b *bench) gw(args ...string) string {
	if args[0] == "restore" {
		args = append(args, b.s3args...)
	}
	return run(nil, b.bin, append(args, "--data-dir", b.dataDir)...)
}

func (b *bench) restic(args ...string) string { return run(b.resticEnv, "restic", args...) }

// gwSnapshot times `snapshot create` and the bytes the bucket grew by.
func (b *bench) gwSnapshot(vol, prefix string) (time.Duration, int64, string) {
	before := dirSize(filepath.Join(b.minio.BucketDir("bench"), prefix))
	t0 := time.Now()
	var si volume.SnapshotInfo
	check(json.Unmarshal([]byte(b.gw("snapshot", "create", vol, "-o", "json")), &si))
	d := time.Since(t0)
	return d, dirSize(filepath.Join(b.minio.BucketDir("bench"), prefix)) - before, si.ID
}

func (b *bench) resticBackup(path string) (time.Duration, int64) {
	dir := filepath.Join(b.minio.BucketDir("bench"), "restic")
	before := dirSize(dir)
	t0 := time.Now()
	b.restic("backup", "--quiet", path)
	return time.Since(t0), dirSize(dir) - before
}

// lazy snapshots a volume of size bytes, restores it as a cached and as a
// stored volume and times the first read and the hydration.
func (b *bench) lazy(size int64, n int) {
	img := filepath.Join(b.work, fmt.Sprintf("lazy%d.img", n))
	writeImage(img, size, uint64(10+n))
	name := fmt.Sprintf("lazy%d", n)
	b.gw("volume", "create", "--name", name, "--kind", "stored", "--disk", img, "--size", fmt.Sprint(size))
	_, _, snap := b.gwSnapshot(name, "gw")
	b.gw("volume", "delete", name)
	check(os.Remove(img))
	for _, kind := range []string{"cached", "stored"} {
		rname := fmt.Sprintf("%s-%s", name, kind)
		t0 := time.Now()
		b.gw("volume", "create", "--name", rname, "--kind", kind, "--from-snapshot", snap)
		created := time.Since(t0)
		lun := b.attach(rname)
		off := (size / 2 / 4096) * 4096 // the middle: far from where hydration starts
		lun.read(off, 4096)
		first := time.Since(t0)
		lun.close()
		hydrated := "-"
		if kind == "stored" {
			for {
				var st struct {
					Stats volume.Stats `json:"stats"`
				}
				check(json.Unmarshal([]byte(b.gw("volume", "info", rname, "-o", "json")), &st))
				if h := st.Stats.Hydration; h != nil && h.Complete {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			hydrated = fmt.Sprintf("%.1f", time.Since(t0).Seconds())
		}
		fmt.Printf("%-8s %-7s %14.0f %14.0f %16s\n", config.ByteSize(size), kind, ms(created), ms(first), hydrated)
		b.gw("volume", "delete", rname)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type lunConn struct {
	c   *initiator.Conn
	ctx context.Context
}

func (b *bench) attach(vol string) *lunConn {
	ctx := context.Background()
	c, err := initiator.Dial(ctx, b.portal, initiator.Options{TargetName: "iqn.2024-01.io.gatewayd:" + vol})
	check(err)
	c.Command(ctx, 0, make([]byte, 6), nil, 0) // the power-on unit attention
	return &lunConn{c, ctx}
}

func (l *lunConn) close() { l.c.Close() }

func (l *lunConn) cmd(op byte, off int64, data []byte, n int) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	enc.BigEndian.PutUint64(cdb[2:], uint64(off/512))
	enc.BigEndian.PutUint32(cdb[10:], uint32(n/512))
	readLen := n
	if data != nil {
		readLen = 0
	}
	r, err := l.c.Command(l.ctx, 0, cdb, data, readLen)
	if err != nil || r.Status != 0 {
		log.Fatalf("iSCSI %#x at %d: %v %+v", op, off, err, r)
	}
	return r.Data
}

func (l *lunConn) write(off int64, data []byte) { l.cmd(0x8a, off, data, len(data)) }
func (l *lunConn) read(off int64, n int) []byte { return l.cmd(0x88, off, nil, n) }

type extent struct {
	off  int64
	data []byte
}

func randomExtents(size, extentSize, total int64, seed uint64) []extent {
	r := rand.New(rand.NewPCG(seed, seed))
	var out []extent
	for done := int64(0); done < total; done += extentSize {
		off := r.Int64N((size-extentSize)/4096) * 4096
		data := make([]byte, extentSize)
		fill(r, data)
		out = append(out, extent{off, data})
	}
	return out
}

// writeImage writes a volume image that looks like a used disk: half
// random data, a quarter text-like (compressible), a quarter zeroes.
func writeImage(path string, size int64, seed uint64) {
	f, err := os.Create(path)
	check(err)
	defer f.Close()
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	buf := make([]byte, 4<<20)
	text := bytes.Repeat([]byte("2026-11-24T06:00:00Z INFO request served path=/api/v1/items status=200 bytes=5120\n"), len(buf)/80+1)[:len(buf)]
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		switch (off / int64(len(buf))) % 4 {
		case 0, 1:
			fill(r, buf[:n])
			_, err = f.WriteAt(buf[:n], off)
		case 2:
			_, err = f.WriteAt(text[:n], off)
		case 3:
			err = f.Truncate(max(off+n, size)) // zeroes, sparse
		}
		check(err)
	}
	check(f.Truncate(size))
}

func fill(r interface{ Uint64() uint64 }, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		enc.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
}

func copyFile(src, dst string) {
	in, err := os.Open(src)
	check(err)
	defer in.Close()
	out, err := os.Create(dst)
	check(err)
	_, err = io.Copy(out, in)
	check(err)
	check(out.Close())
}

func fileHash(path string) [32]byte {
	f, err := os.Open(path)
	check(err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	check(err)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func findFile(root, name string) string {
	var found string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name {
			found = p
		}
		return nil
	})
	if found == "" {
		log.Fatalf("%s not found under %s", name, root)
	}
	return found
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func run(env []string, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func mustSize(s string) int64 {
	v, err := config.ParseByteSize(strings.TrimSpace(s))
	check(err)
	return int64(v)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
