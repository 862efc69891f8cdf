package fileshare

import (
	"context"
	"fmt"
	"testing"

	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore/mem"
)

// BenchmarkUploadEvents: small files uploaded by a flush, without
// notifications and with each upload's event queued (synced) on badger, in
// one run; the store in memory, so the event's share of the cost is at
// its largest.
func BenchmarkUploadEvents(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("events=%v", on), func(b *testing.B) {
			e := benchEventsEnv(b, on)
			ctx := context.Background()
			s := e.share("s")
			body := make([]byte, 4096)
			for i := range b.N {
				p := fmt.Sprintf("f%07d", i)
				must[Attr](b)(s.Create(ctx, p, 0o644, 0, 0, true))
				must[Attr](b)(s.WriteAt(ctx, p, body, 0))
			}
			b.ResetTimer()
			if err := e.m.Flush(ctx, ""); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRemoveEvents: removes of uploaded files, done in the store at
// once without notifications, and with them through the share log (a
// synced remove record, the delete, the event queued on badger, the
// removed record synced), in one run; the store in memory.
func BenchmarkRemoveEvents(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("events=%v", on), func(b *testing.B) {
			e := benchEventsEnv(b, on)
			ctx := context.Background()
			s := e.share("s")
			for i := range b.N {
				p := fmt.Sprintf("f%07d", i)
				must[Attr](b)(s.Create(ctx, p, 0o644, 0, 0, true))
				must[Attr](b)(s.WriteAt(ctx, p, []byte("gone soon"), 0))
			}
			if err := e.m.Flush(ctx, ""); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := s.Remove(ctx, fmt.Sprintf("f%07d", i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchEventsEnv is a share s on badger and a store in memory, with an
// event queue (its webhook never reached) when on.
func benchEventsEnv(b *testing.B, on bool) *env {
	md, err := metabadger.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { md.Close() })
	e := &env{t: b, dir: b.TempDir(), store: mem.New("fs"), md: md}
	if on {
		q, err := notify.Open(context.Background(), md, notify.Options{Webhooks: []notify.Webhook{{URL: "http://127.0.0.1:1/"}}, MaxQueued: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		e.opts = func(o *Options) { o.Events = q }
	}
	e.start()
	b.Cleanup(e.close)
	must[Config](b)(e.m.Create(context.Background(), Config{Name: "s", Prefix: "share/"}))
	return e
}
