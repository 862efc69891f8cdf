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
			md, err := metabadger.Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer md.Close()
			e := &env{t: b, dir: b.TempDir(), store: mem.New("fs"), md: md}
			if on {
				q, err := notify.Open(context.Background(), md, notify.Options{Webhooks: []notify.Webhook{{URL: "http://127.0.0.1:1/"}}, MaxQueued: 1 << 30})
				if err != nil {
					b.Fatal(err)
				}
				e.opts = func(o *Options) { o.Events = q }
			}
			e.start()
			defer e.close()
			ctx := context.Background()
			must[Config](b)(e.m.Create(ctx, Config{Name: "s", Prefix: "share/"}))
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
