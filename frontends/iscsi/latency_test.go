package iscsi_test

import (
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/frontends/iscsi"
	"github.com/gatewayd/gatewayd/frontends/iscsi/initiator"
)

// Every command is timed under its class: READ and WRITE (of any CDB
// size) as read and write, the rest as other.
func TestLatencyByClass(t *testing.T) {
	var mu sync.Mutex
	n := map[string]int{}
	f := start(t, iscsi.Config{Latency: func(op string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if d > 0 {
			n[op]++
		}
	}}, iscsi.Auth{})
	c := dial(t, f, initiator.Options{})
	clearUA(t, c) // TEST UNIT READY
	data := make([]byte, 64<<10)
	good(t)(c.Command(ctx(t), 0, write16(8, uint32(len(data)/512)), data, 0))
	good(t)(c.Command(ctx(t), 0, read16(8, uint32(len(data)/512)), nil, len(data)))
	good(t)(c.Command(ctx(t), 0, read16(8, 1), nil, 512))
	// A command is counted just after its status is queued: wait for the
	// last one.
	want := map[string]int{"other": 1, "write": 1, "read": 2}
	for deadline := time.Now().Add(time.Minute); ; {
		mu.Lock()
		got := map[string]int{"other": n["other"], "write": n["write"], "read": n["read"]}
		extra := len(n) - 3
		mu.Unlock()
		if got["other"] == want["other"] && got["write"] == want["write"] && got["read"] == want["read"] && extra <= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("commands timed by class: %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
