package notify_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	metabadger "github.com/gatewayd/gatewayd/meta/badger"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/notify/notifytest"
)

// BenchmarkPublish: events queued on badger by 4 publishers at once (the
// uploaders), each one synced (group commit shares the syncs).
func BenchmarkPublish(b *testing.B) {
	md, err := metabadger.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer md.Close()
	q, err := notify.Open(context.Background(), md, notify.Options{Webhooks: []notify.Webhook{{URL: "http://127.0.0.1:1/"}}, MaxQueued: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(4) // per CPU
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			e := notify.Event{ID: strconv.FormatInt(i, 10), Kind: notify.FileUploaded, Key: "docs/f" + strconv.FormatInt(i, 10), Size: notify.Size(i)}
			if err := q.Publish(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDeliver: queued events posted to a webhook on this host.
func BenchmarkDeliver(b *testing.B) {
	md, err := metabadger.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer md.Close()
	r := notifytest.NewReceiver(b, "")
	r.SetDown(true) // queue first, then time the posts
	q, err := notify.Open(context.Background(), md, notify.Options{Webhooks: []notify.Webhook{{URL: r.URL}}, MaxQueued: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	for i := range b.N {
		if err := q.Publish(context.Background(), notify.Event{Kind: notify.FileUploaded, Path: "/f" + strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	r.SetDown(false)
	q.Start()
	waitFor(r, b.N)
}
