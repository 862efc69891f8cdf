package meta

import "sync"

// Gate is what every Store uses so that Close waits for the View and
// Update calls already running and refuses new ones with ErrClosed.
// The zero value is open.
type Gate struct {
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

// Enter registers a call; when it returns nil the caller must call Exit.
func (g *Gate) Enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	g.running.Add(1)
	return nil
}

// Exit ends a call registered by Enter.
func (g *Gate) Exit() { g.running.Done() }

// Close refuses new calls and waits for the running ones.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.running.Wait()
}
