// Command readload reads a file over NFSv3 with a fixed number of READs in
// flight on one TCP connection, for a fixed time, and prints the result as
// fio's JSON does (the fields bench/nfs/run.sh reads). It speaks raw ONC
// RPC: MOUNT's MNT, then LOOKUP of the file, then READs, each reply matched
// to its call by XID, in whatever order the server answers. Every reply's
// byte count is checked against what was asked (short only at the end of
// the file).
//
//	readload -nfs 127.0.0.1:2049 -mount 127.0.0.1:2049 -export /bench -file bench.bin \
//	    -bs 1048576 -qd 8 -seconds 10 [-random] -name NAME
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

func main() {
	nfsAddr := flag.String("nfs", "", "NFS server host:port")
	mountAddr := flag.String("mount", "", "MOUNT server host:port")
	export := flag.String("export", "", "export path")
	file := flag.String("file", "bench.bin", "file in the export")
	bs := flag.Int("bs", 1<<20, "bytes per READ")
	qd := flag.Int("qd", 8, "READs in flight")
	seconds := flag.Float64("seconds", 10, "how long")
	random := flag.Bool("random", false, "random offsets (aligned to bs), else sequential, wrapping")
	name := flag.String("name", "read", "job name")
	flag.Parse()
	if err := run(*nfsAddr, *mountAddr, *export, *file, *bs, *qd, time.Duration(*seconds*float64(time.Second)), *random, *name); err != nil {
		fmt.Fprintln(os.Stderr, "readload:", err)
		os.Exit(1)
	}
}

const (
	progNFS   = 100003
	progMount = 100005
)

type conn struct {
	c   net.Conn
	r   *bufio.Reader
	xid uint32
}

func dial(addr string) (*conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 1<<20), xid: rand.Uint32()}, nil
}

// authSys is an AUTH_SYS credential for root.
var authSys = func() []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0)    // stamp
	b = opaque(b, []byte("readload"))          // machine name
	b = binary.BigEndian.AppendUint32(b, 0)    // uid
	b = binary.BigEndian.AppendUint32(b, 0)    // gid
	return binary.BigEndian.AppendUint32(b, 0) // no more groups
}()

func opaque(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	b = append(b, v...)
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}

// send sends a call and returns its XID.
func (c *conn) send(prog, proc uint32, args []byte) (uint32, error) {
	c.xid++
	b := make([]byte, 4, 64+len(args))
	for _, v := range []uint32{c.xid, 0, 2, prog, 3, proc, 1} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = opaque(b, authSys)
	b = binary.BigEndian.AppendUint32(b, 0) // verifier AUTH_NONE
	b = binary.BigEndian.AppendUint32(b, 0)
	b = append(b, args...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4)|1<<31)
	_, err := c.c.Write(b)
	return c.xid, err
}

// reply reads a reply record into buf: its XID and its body after the
// accept_stat (which must be SUCCESS).
func (c *conn) reply(buf []byte) (uint32, []byte, error) {
	rec := buf[:0]
	for {
		var mark [4]byte
		if _, err := io.ReadFull(c.r, mark[:]); err != nil {
			return 0, nil, err
		}
		v := binary.BigEndian.Uint32(mark[:])
		n := int(v &^ (1 << 31))
		if cap(rec)-len(rec) < n {
			rec = append(rec, make([]byte, n)...)[:len(rec)]
		}
		rec = rec[:len(rec)+n]
		if _, err := io.ReadFull(c.r, rec[len(rec)-n:]); err != nil {
			return 0, nil, err
		}
		if v&(1<<31) != 0 {
			break
		}
	}
	if len(rec) < 24 {
		return 0, nil, errors.New("short reply")
	}
	xid := binary.BigEndian.Uint32(rec)
	if binary.BigEndian.Uint32(rec[8:]) != 0 {
		return xid, nil, fmt.Errorf("reply %d: denied", xid)
	}
	vlen := int(binary.BigEndian.Uint32(rec[16:]))
	p := 20 + (vlen+3)&^3
	if len(rec) < p+4 || binary.BigEndian.Uint32(rec[p:]) != 0 {
		return xid, nil, fmt.Errorf("reply %d: not SUCCESS", xid)
	}
	return xid, rec[p+4:], nil
}

func (c *conn) call(prog, proc uint32, args []byte) ([]byte, error) {
	xid, err := c.send(prog, proc, args)
	if err != nil {
		return nil, err
	}
	got, body, err := c.reply(nil)
	if err == nil && got != xid {
		err = fmt.Errorf("reply to %d, not %d", got, xid)
	}
	return body, err
}

func u32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

func run(nfsAddr, mountAddr, export, file string, bs, qd int, d time.Duration, random bool, name string) error {
	m, err := dial(mountAddr)
	if err != nil {
		return err
	}
	body, err := m.call(progMount, 1, opaque(nil, []byte(export)))
	m.c.Close()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	if u32(body) != 0 {
		return fmt.Errorf("mount: status %d", u32(body))
	}
	root := body[8 : 8+u32(body[4:])]
	c, err := dial(nfsAddr)
	if err != nil {
		return err
	}
	defer c.c.Close()
	body, err = c.call(progNFS, 3, opaque(opaque(nil, root), []byte(file)))
	if err != nil || u32(body) != 0 {
		return fmt.Errorf("lookup %s: %v (status %d)", file, err, u32(body))
	}
	fh := body[8 : 8+u32(body[4:])]
	rest := body[8+(len(fh)+3)&^3:]
	if u32(rest) != 1 {
		return errors.New("lookup: no attributes")
	}
	size := int64(binary.BigEndian.Uint64(rest[4+20:]))
	blocks := size / int64(bs)
	if blocks == 0 {
		return fmt.Errorf("%s: %d bytes, less than one READ", file, size)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	next := int64(0)
	offset := func() int64 {
		if random {
			return rng.Int64N(blocks) * int64(bs)
		}
		off := next
		next = (next + 1) % blocks
		return off * int64(bs)
	}
	inflight := map[uint32]int64{}
	read := func() error {
		off := offset()
		args := opaque(nil, fh)
		args = binary.BigEndian.AppendUint64(args, uint64(off))
		args = binary.BigEndian.AppendUint32(args, uint32(bs))
		xid, err := c.send(progNFS, 6, args)
		inflight[xid] = off
		return err
	}
	start := time.Now()
	end := start.Add(d)
	var ios, bytes int64
	buf := make([]byte, bs+4096)
	for range qd {
		if err := read(); err != nil {
			return err
		}
	}
	for len(inflight) > 0 {
		xid, body, err := c.reply(buf)
		if err != nil {
			return err
		}
		if _, ok := inflight[xid]; !ok {
			return fmt.Errorf("reply to %d: not in flight", xid)
		}
		delete(inflight, xid)
		if u32(body) != 0 {
			return fmt.Errorf("read: status %d", u32(body))
		}
		p := 4
		if u32(body[p:]) == 1 {
			p += 4 + 84
		} else {
			p += 4
		}
		n := int64(u32(body[p:]))
		if n != int64(bs) {
			return fmt.Errorf("read: %d bytes, asked %d", n, bs)
		}
		ios++
		bytes += n
		if time.Now().Before(end) {
			if err := read(); err != nil {
				return err
			}
		}
	}
	secs := time.Since(start).Seconds()
	out := map[string]any{"jobs": []any{map[string]any{
		"jobname": name, "error": 0, "job_runtime": int64(secs * 1000),
		"read": map[string]any{"io_bytes": bytes, "total_ios": ios, "bw_bytes": float64(bytes) / secs, "iops": float64(ios) / secs},
	}}}
	return json.NewEncoder(os.Stdout).Encode(out)
}
