package fileshare

import (
	"context"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/clock"
)

// A share's creation time keeps its sub-second part: a root without a
// marker has it for its times, and smbd takes a share whose root times are
// whole seconds for one that keeps only seconds, and rounds every time it
// reports.
func TestShareCreatedKeepsSubSeconds(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	e.opts = func(o *Options) { o.Clock = clock.NewFake(at) }
	e.restart()
	ctx := context.Background()
	if c := must[Config](t)(e.m.Create(ctx, Config{Name: "s"})); !c.Created.Equal(at) {
		t.Fatalf("created %v, want %v", c.Created, at)
	}
	e.restart()
	if a := must[Attr](t)(e.share("s").Stat(ctx, "")); !a.Mtime.Equal(at) || !a.Ctime.Equal(at) {
		t.Fatalf("the root's times after a restart: mtime %v ctime %v, want %v", a.Mtime, a.Ctime, at)
	}
}
