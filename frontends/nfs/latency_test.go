package nfs

import (
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/fileshare"
	"github.com/gatewayd/gatewayd/internal/nfstest"
)

// calls counts the calls the server timed, by procedure.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) observe(proc string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.n[proc]++
	}
}

func (c *calls) count(proc string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[proc]
}

// Every call of a client's session is timed under its procedure's name,
// large WRITEs and READs (records longer than a socket read) included.
// Only the last call's count could lag its reply; it is a LOOKUP.
func TestLatencyByProcedure(t *testing.T) {
	f := start(t, fileshare.Config{Name: "docs"})
	v, unmount := f.mount("docs")
	defer unmount()
	nfstest.Operations(t, v)
	for _, proc := range []string{"MNT", "MKDIR", "LOOKUP", "WRITE", "READ", "RENAME", "GETATTR", "SETATTR",
		"READDIRPLUS", "REMOVE", "RMDIR"} {
		if f.calls.count(proc) == 0 {
			t.Errorf("no %s call timed", proc)
		}
	}
	if n := f.calls.count("other"); n != 0 {
		t.Errorf("%d calls timed as other", n)
	}
}
