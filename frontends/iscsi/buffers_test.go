package iscsi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
)

// watchingDisk is a memDisk that checks each write's buffer stays as it
// was for the whole WriteAt call, reading it again after the copy (and
// after letting other goroutines run): a buffer the target handed to
// another command while this one still used it shows there, and to the
// race detector. hold, when set, keeps the write to block holdLBA in
// WriteAt, whatever its context says, until closed; entered tells it got
// there.
type watchingDisk struct {
	memDisk
	holdOff int64
	hold    chan struct{}
	entered chan struct{}

	mu   sync.Mutex
	errs []error
}

func (d *watchingDisk) WriteAt(ctx context.Context, p []byte, off int64) error {
	before := append([]byte(nil), p...)
	if d.hold != nil && off == d.holdOff {
		close(d.entered)
		<-d.hold
	}
	if err := d.memDisk.WriteAt(ctx, p, off); err != nil {
		return err
	}
	for range 3 {
		runtime.Gosched()
		if !bytes.Equal(p, before) {
			d.mu.Lock()
			d.errs = append(d.errs, fmt.Errorf("the data-out buffer of the write at byte %d changed while the write ran", off))
			d.mu.Unlock()
			return nil
		}
	}
	return nil
}

func (d *watchingDisk) WriteThrough(ctx context.Context, p []byte, off int64) error {
	return d.WriteAt(ctx, p, off)
}

func (d *watchingDisk) check(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, err := range d.errs {
		t.Error(err)
	}
}

func startWatching(t *testing.T, d *watchingDisk) *fixture {
	t.Helper()
	return serve(t, iscsi.Config{}, d, &d.memDisk, iscsi.Target{ReuseDataOut: true})
}

// pattern fills b with bytes that name the writer, its round and the
// byte's position, so any mix-up between two writes' buffers shows.
func pattern(b []byte, writer, round int) {
	for i := 0; i < len(b); i += 8 {
		binary.BigEndian.PutUint64(b[i:], uint64(writer)<<48|uint64(round)<<32|uint64(i))
	}
}

// TestReusedBuffersNeverShared: with data-out buffers reused
// (Target.ReuseDataOut), concurrent writes of every shape — all
// immediate data, immediate data and R2Ts, R2Ts alone, several Data-Out
// PDUs per burst — each keep their own buffer until they complete, and
// the disk holds exactly what each wrote last. A buffer returned to its
// pool while a write still reads it fails the watching disk's check or,
// under -race, the race detector.
func TestReusedBuffersNeverShared(t *testing.T) {
	d := &watchingDisk{memDisk: memDisk{b: make([]byte, 64<<20)}}
	f := startWatching(t, d)
	sizes := []int{4096, 512, 64 << 10, 64<<10 + 4096, 200 << 10, 1 << 20}
	const writers, rounds = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, f, initiator.Options{ImmediateData: w%2 == 0, InitialR2T: w%4 == 3,
				FirstBurstLength: 64 << 10, MaxBurstLength: 128 << 10, MaxRecvDataSegmentLength: 32 << 10})
			clearUA(t, c)
			base := uint64(w) * (4 << 20) / 512 // each writer its own 4 MiB
			for r := range rounds {
				data := make([]byte, sizes[(w+r)%len(sizes)])
				pattern(data, w, r)
				lba := base + uint64(r%4)*(1<<20)/512
				res, err := c.Command(ctx(t), 0, write16(lba, uint32(len(data)/512)), data, 0)
				if err != nil || res.Status != 0 {
					errs <- fmt.Errorf("writer %d round %d: %v %+v", w, r, err, res)
					return
				}
				res, err = c.Command(ctx(t), 0, read16(lba, uint32(len(data)/512)), nil, len(data))
				if err != nil || res.Status != 0 || !bytes.Equal(res.Data, data) {
					errs <- fmt.Errorf("writer %d round %d: read back differs from what was written (%v)", w, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d.check(t)
}

// TestAbortedWriteKeepsItsBuffer: a write whose backend call outlasts an
// ABORT TASK keeps its buffer until the call returns, while other writes
// take buffers from the pool meanwhile.
func TestAbortedWriteKeepsItsBuffer(t *testing.T) {
	d := &watchingDisk{memDisk: memDisk{b: make([]byte, 64<<20)}, holdOff: 512 * 1000,
		hold: make(chan struct{}), entered: make(chan struct{})}
	f := startWatching(t, d)
	c := dial(t, f, initiator.Options{ImmediateData: true})
	clearUA(t, c)
	cctx, cancel := context.WithCancel(ctx(t))
	stuck := make(chan error, 1)
	held := make([]byte, 4096)
	pattern(held, 99, 0)
	go func() {
		_, err := c.Command(cctx, 0, write16(1000, 8), held, 0)
		stuck <- err
	}()
	select {
	case <-d.entered:
	case <-ctx(t).Done():
		t.Fatal("the write never reached the disk")
	}
	// The held write is this connection's second task.
	aborted := make(chan error, 1)
	go func() {
		code, err := c.TaskManagement(ctx(t), 1, 0, 2)
		if err == nil && code != 0 {
			err = fmt.Errorf("ABORT TASK answered %d", code)
		}
		aborted <- err
	}()
	// Other writes of the same size run meanwhile, on another session.
	other := dial(t, f, initiator.Options{ImmediateData: true})
	clearUA(t, other)
	for r := range 32 {
		data := make([]byte, 4096)
		pattern(data, 1, r)
		good(t)(other.Command(ctx(t), 0, write16(uint64(r)*8, 8), data, 0))
	}
	close(d.hold)
	if err := <-aborted; err != nil {
		t.Fatal(err)
	}
	cancel()
	<-stuck
	d.check(t)
	if !bytes.Equal(d.b[512*1000:512*1000+4096], held) {
		t.Fatal("the held write's data changed on its way to the disk")
	}
}
