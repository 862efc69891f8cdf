package fileshare

import "sync"

// cacheDrops drops the cached blocks of removed files beside the removes,
// not on their way: closing and unlinking a file's chunk files and reading
// its cache directory was a quarter of gatewayd's CPU in an SMB remove
// (the view's unlink, which smbd and its client wait for; BENCHMARKS.md).
// A removed file's inode is never given again, so its cache volume is
// nobody else's meanwhile; a share's deletion waits for the drops first,
// since a share made again under its name numbers its inodes anew. After
// a crash the cache starts empty, so a drop that did not run loses
// nothing.
type cacheDrops struct {
	mu    sync.Mutex
	queue []string      // volumes to drop
	done  chan struct{} // closed when the running dropper ends; nil: none runs
}

// dropLater drops volume's cached blocks soon, in the background.
func (m *Manager) dropLater(volume string) {
	d := &m.cacheDrops
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(d.queue, volume)
	if d.done != nil {
		return // the running dropper takes it
	}
	done := make(chan struct{})
	d.done = done
	go func() {
		defer close(done)
		for {
			d.mu.Lock()
			q := d.queue
			d.queue = nil
			if len(q) == 0 {
				d.done = nil
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			for _, v := range q {
				_ = m.opts.Cache.DropVolume(v)
			}
		}
	}()
}

// waitDrops returns once the volumes queued before it are dropped.
func (m *Manager) waitDrops() {
	d := &m.cacheDrops
	for {
		d.mu.Lock()
		done := d.done
		d.mu.Unlock()
		if done == nil {
			return
		}
		<-done
	}
}
