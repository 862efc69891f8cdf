// Command tapebench writes and reads a tape through an iSCSI tape library
// the way a backup server does: it moves a tape from a storage slot into
// the first empty drive with the changer, switches the drive to
// variable-block mode in the buffered mode asked for (-buffered 1, the
// default of LTO drives, or 0), writes records of one size with WRITE(6),
// a filemark (which, buffered, makes them durable and is timed with
// them), rewinds and reads every record back with READ(6), checking each
// one, one command at a time (tape I/O is sequential). It prints one
// JSON line per phase. It speaks SCSI through gatewayd's own initiator,
// so it runs the same against gatewayd and against tgtd.
//
//	tapebench -addr 127.0.0.1:3260 -target IQN -changer 0 -drive 1 -bs 256K -size 4G
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
	"github.com/gatewayd/gatewayd/internal/tapeclient"
	"github.com/gatewayd/gatewayd/internal/testrand"
)

func main() {
	log.SetFlags(0)
	addr := flag.String("addr", "127.0.0.1:3260", "target portal")
	target := flag.String("target", "", "target IQN")
	changerLUN := flag.Int("changer", 0, "changer LUN")
	driveLUN := flag.Int("drive", 1, "tape drive LUN (the first drive element of the changer)")
	bsFlag := flag.String("bs", "256K", "record size (K, M suffixes)")
	sizeFlag := flag.String("size", "4G", "bytes to write and read (M, G suffixes)")
	label := flag.String("label", "", "name of the run in the output")
	buffered := flag.Int("buffered", 1, "buffered mode to select: 1 (records durable at the filemark) or 0 (each record durable when acknowledged)")
	flag.Parse()
	bs64, err := config.ParseByteSize(*bsFlag)
	bs := int(bs64)
	if err != nil || bs <= 0 || bs > 1<<24-1 {
		log.Fatalf("tapebench: bad -bs %q", *bsFlag)
	}
	size, err := config.ParseByteSize(*sizeFlag)
	if err != nil || int64(size) < int64(bs) {
		log.Fatalf("tapebench: bad -size %q", *sizeFlag)
	}
	ctx := context.Background()
	c, err := initiator.Dial(ctx, *addr, initiator.Options{TargetName: *target,
		MaxBurstLength: 1 << 20, FirstBurstLength: 256 << 10, MaxRecvDataSegmentLength: 256 << 10, ImmediateData: true})
	if err != nil {
		log.Fatalf("tapebench: login: %v", err)
	}
	defer c.Close()
	changer := tapeclient.Changer{Device: tapeclient.Device{Conn: c, LUN: uint64(*changerLUN)}}
	drive := tapeclient.Drive{Device: tapeclient.Device{Conn: c, LUN: uint64(*driveLUN)}}
	if err := changer.Ready(ctx); err != nil {
		log.Fatalf("tapebench: changer: %v", err)
	}
	// The drive at LUN n is the changer's n-th drive element (both
	// gatewayd's and tgtd's libraries number them so); empty it first.
	drives, err := changer.Elements(ctx, 4)
	must(err)
	if *driveLUN < 1 || *driveLUN > len(drives) {
		log.Fatalf("tapebench: -drive %d: the changer has %d drives", *driveLUN, len(drives))
	}
	dst := drives[*driveLUN-1]
	if dst.Full {
		if drive.Ready(ctx) == nil { // loaded: unload it (an unloaded tape is still in the drive)
			must(drive.Unload(ctx))
		}
		free, err := changer.FirstEmpty(ctx, 2)
		must(err)
		must(changer.Move(ctx, dst.Address, free.Address))
	}
	slot, err := changer.FirstFull(ctx, 2)
	must(err)
	must(changer.Move(ctx, slot.Address, dst.Address))
	must(drive.Ready(ctx))
	if *buffered != 0 && *buffered != 1 {
		log.Fatalf("tapebench: -buffered %d: 0 or 1", *buffered)
	}
	must(drive.SelectMode(ctx, byte(*buffered), 0))
	must(drive.Rewind(ctx))

	records := int64(size) / int64(bs)
	base := testrand.Bytes(7, bs)
	rec := func(i int64) []byte {
		b := bytes.Clone(base)
		binary.BigEndian.PutUint64(b, uint64(i))
		return b
	}
	start := time.Now()
	for i := int64(0); i < records; i++ {
		if err := drive.Write(ctx, rec(i)); err != nil {
			log.Fatalf("tapebench: WRITE(6) of record %d: %v", i, err)
		}
	}
	must(drive.WriteFilemarks(ctx, 1))
	report(*label, "write", bs, *buffered, records, time.Since(start))

	must(drive.Rewind(ctx))
	start = time.Now()
	for i := int64(0); i < records; i++ {
		data, err := drive.Read(ctx, bs)
		if err != nil {
			log.Fatalf("tapebench: READ(6) of record %d: %v", i, err)
		}
		if !bytes.Equal(data, rec(i)) {
			log.Fatalf("tapebench: record %d read back differs", i)
		}
	}
	report(*label, "read", bs, *buffered, records, time.Since(start))
	must(drive.Unload(ctx))
	must(changer.Move(ctx, dst.Address, slot.Address))
}

func report(label, phase string, bs, buffered int, records int64, d time.Duration) {
	mb := float64(int64(bs)*records) / 1e6
	out, _ := json.Marshal(map[string]any{"label": label, "phase": phase, "record_bytes": bs, "buffered_mode": buffered,
		"records": records, "seconds": d.Seconds(), "mb_per_s": mb / d.Seconds()})
	fmt.Println(string(out))
}

func must(err error) {
	if err != nil {
		log.Fatalf("tapebench: %v", err)
	}
}
