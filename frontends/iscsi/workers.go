package iscsi

import "sync/atomic"

// Command goroutines. Each command runs in a goroutine of its own, so a
// slow one (an object store miss, a command waiting for a reservation or
// for its data) holds up no other. A goroutine starts with a small stack
// and a write's call chain (iSCSI, SCSI, volume, journal, cache) grows it
// several times; a goroutine per command paid that growth (copying the
// stack each time) on every command. So a session keeps the goroutines of
// finished commands, up to its command window, waiting for the next
// command: the stack they grew serves it.
//
// Nothing ever waits for a command goroutine to become free: a command
// that finds none idle starts a new one. So a command waiting for another
// (a task management function waiting for the tasks it aborts, a
// reservation) cannot deadlock the session.
type commandWorkers struct {
	work    chan *task   // unbuffered: a send succeeds only when a goroutine is idle
	idle    atomic.Int32 // goroutines waiting on work
	maxIdle int32
	busy    atomic.Int32 // commands their LU is running
}

// execute runs t on its LU in a command goroutine of the session: an idle
// one if there is one, else a new one.
func (ss *session) execute(t *task) {
	ss.workers.busy.Add(1)
	select {
	case ss.workers.work <- t:
	default:
		ss.wg.Add(1)
		go ss.commandLoop(t)
	}
}

// commandLoop runs t, then the commands handed to it while it is idle,
// until the session ends or enough other goroutines are idle.
func (ss *session) commandLoop(t *task) {
	defer ss.wg.Done()
	w := &ss.workers
	for {
		res := ss.run1(t)
		ss.workers.busy.Add(-1)
		ss.complete(t, res)
		t = nil
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		select {
		case t = <-w.work:
			w.idle.Add(-1)
		case <-ss.ctx.Done():
			w.idle.Add(-1)
			return
		}
	}
}
