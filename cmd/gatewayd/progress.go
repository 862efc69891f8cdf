package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/admin"
	"github.com/gatewayd/gatewayd/api/volumeapi"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/snapshots"
)

// progressBar draws one line, redrawn in place: a bar, percent, done of
// total, rate and ETA. Long operations (restore, hydration, snapshot
// uploads) draw it on stderr so stdout stays for their result.
type progressBar struct {
	w     io.Writer
	quiet bool
	// unit formats amounts (bytes by default).
	unit func(int64) string

	mu    sync.Mutex // draw and note come from different goroutines
	drawn bool
}

func bytesUnit(n int64) string { return config.ByteSize(n).Human() }

// draw shows done of total after elapsed; base is what was done before
// this run started (a resumed restore), which the rate leaves out.
func (b *progressBar) draw(done, total, base int64, elapsed time.Duration) {
	if b.quiet {
		return
	}
	unit := b.unit
	if unit == nil {
		unit = bytesUnit
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintf(b.w, "\r%s   ", progressLine(done, total, base, elapsed, unit))
	b.drawn = true
}

// note prints a line of its own above the bar.
func (b *progressBar) note(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
	fmt.Fprintln(b.w, msg)
}

// progressLine is the text of the bar.
func progressLine(done, total, base int64, elapsed time.Duration, unit func(int64) string) string {
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(min(done, total)) / float64(total)
	}
	rate := float64(done-base) / max(elapsed.Seconds(), 0.001)
	eta := "--"
	switch {
	case done >= total:
		eta = "0s"
	case rate > 0:
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	const width = 30
	filled := int(pct / 100 * width)
	return fmt.Sprintf("[%s%s] %5.1f%% %s / %s  %s/s  ETA %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		pct, unit(done), unit(total), unit(int64(rate)), eta)
}

// restore is the bar's update function for snapshots.RestoreToFile.
func (b *progressBar) restore(p snapshots.RestoreProgress) {
	b.draw(p.DoneBytes, p.TotalBytes, resumedBytes(p), p.Elapsed)
}

// done ends the bar's line.
func (b *progressBar) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

// isTerminal says whether w is a terminal, where a progress bar is drawn
// without being asked for.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// watchUploads draws the upload of a volume's pending chunks while a
// snapshot of it is taken: the most chunks seen pending is the total,
// what has gone since is done. The returned func stops it and ends the
// bar's line.
func watchUploads(ctx context.Context, c *admin.Client, name string, bar *progressBar) func() {
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		start := time.Now()
		var most int64
		for {
			var v volumeapi.VolumeStatus
			if err := c.Do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(name), nil, &v); err == nil {
				pending := int64(v.Stats.PendingChunks) * int64(v.ChunkSize)
				most = max(most, pending)
				if most > 0 {
					bar.draw(most-pending, most, 0, time.Since(start))
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(hydratePoll):
			}
		}
	}()
	return func() {
		cancel()
		<-stopped
		bar.done()
	}
}
