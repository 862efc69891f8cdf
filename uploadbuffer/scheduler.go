package uploadbuffer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Priorities of upload rounds: a flush (a snapshot's uploads, a recovery
// point, a file that must be in the store before a rename) goes before the
// background rounds. Workers always take an urgent unit first.
const (
	urgent = iota
	background
	nPriorities
)

// defaultYieldMax bounds how long a background upload waits for the
// appends queued before it (yieldToAppends).
const defaultYieldMax = 100 * time.Millisecond

// scheduler runs the journal's uploads: Parallel workers take units from
// one queue per priority. A unit asked for while it waits joins the wait
// (and is raised to the higher priority); a unit asked for while it
// uploads waits for that upload to end, then goes again, as it may have
// changed since it was read.
type scheduler struct {
	j *Journal

	mu      sync.Mutex
	work    *sync.Cond // workers wait here for a job
	idle    *sync.Cond // Pause waits here for running uploads to end
	queues  [nPriorities][]queued
	waiting map[string]*job // queued or blocked, not started, by key
	running map[string]bool
	blocked map[string]*job // taken from a queue while its key was running
	paused  int
	closed  bool

	gate sync.RWMutex // Pending runs under a read lock, Pause holds the lock

	ctx    context.Context // cancelled by Close: uploads under way stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // workers

	kick     chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
	started  bool
	stopOnce sync.Once

	// yieldMax bounds a background upload's wait for appends; negative:
	// no wait.
	yieldMax time.Duration
	// busy holds the one background upload that goes while appends wait.
	busy chan struct{}

	stats struct {
		rounds, uploads, errors, bytes, kicks, yields atomic.Uint64
		busyWaits                                     atomic.Uint64 // waits for the busy place
	}
}

type job struct {
	u       Unit
	prio    int
	started bool
	done    chan struct{}
	n       int64
	err     error
}

// queued is a queue entry; it is stale when its job was raised to another
// queue or has started.
type queued struct {
	j    *job
	prio int
}

func (s *scheduler) init(j *Journal) {
	s.j = j
	s.work = sync.NewCond(&s.mu)
	s.idle = sync.NewCond(&s.mu)
	s.waiting = map[string]*job{}
	s.running = map[string]bool{}
	s.blocked = map[string]*job{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.kick = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.loopDone = make(chan struct{})
	s.yieldMax = defaultYieldMax
	s.busy = make(chan struct{}, 1)
	for range j.opts.Parallel {
		s.wg.Add(1)
		go s.worker()
	}
}

// submit queues u at prio, or joins the job already waiting for its key.
func (s *scheduler) submit(u Unit, prio int) (*job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if jb := s.waiting[u.Key]; jb != nil {
		jb.u.Settled = jb.u.Settled || u.Settled
		if prio < jb.prio {
			jb.prio = prio
			if s.blocked[u.Key] != jb {
				s.queues[prio] = append(s.queues[prio], queued{jb, prio})
				s.work.Signal()
			}
		}
		return jb, nil
	}
	jb := &job{u: u, prio: prio, done: make(chan struct{})}
	s.waiting[u.Key] = jb
	s.queues[prio] = append(s.queues[prio], queued{jb, prio})
	s.work.Signal()
	return jb, nil
}

// next takes the next job to run, or nil once closed. s.mu held.
func (s *scheduler) next() *job {
	for {
		if s.closed {
			return nil
		}
		if s.paused == 0 {
			for p := range s.queues {
				for len(s.queues[p]) > 0 {
					q := s.queues[p][0]
					s.queues[p][0] = queued{}
					s.queues[p] = s.queues[p][1:]
					if q.j.started || q.prio != q.j.prio || s.blocked[q.j.u.Key] == q.j {
						continue // stale
					}
					if s.running[q.j.u.Key] {
						s.blocked[q.j.u.Key] = q.j
						continue
					}
					q.j.started = true
					delete(s.waiting, q.j.u.Key)
					s.running[q.j.u.Key] = true
					return q.j
				}
			}
		}
		s.work.Wait()
	}
}

func (s *scheduler) worker() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		jb := s.next()
		s.mu.Unlock()
		if jb == nil {
			return
		}
		release := func() {}
		if jb.prio == background {
			release = s.yieldToAppends()
		}
		jb.n, jb.err = s.j.c.Upload(s.ctx, jb.u)
		release()
		s.stats.uploads.Add(1)
		s.stats.bytes.Add(uint64(max(jb.n, 0)))
		if jb.err != nil {
			s.stats.errors.Add(1)
		}
		if pace := s.j.opts.Pace; pace != nil && jb.n > 0 {
			_ = pace(s.ctx, jb.n) // ends early only when the journal closes
		}
		s.mu.Lock()
		key := jb.u.Key
		delete(s.running, key)
		if b := s.blocked[key]; b != nil {
			delete(s.blocked, key)
			s.queues[b.prio] = append([]queued{{b, b.prio}}, s.queues[b.prio]...)
			s.work.Signal()
		}
		if len(s.running) == 0 {
			s.idle.Broadcast()
		}
		s.mu.Unlock()
		close(jb.done)
	}
}

// yieldToAppends puts the foreground first: before a background upload it
// waits while appends are queued or committing (Log.Yield), so that their
// group commit does not compete with the upload's hashing, encryption and
// I/O. If appends were waiting (writes go on), background uploads go one
// at a time, each after a wait for the appends of up to yieldMax more:
// the other workers leave the CPUs and the disk to the writes. Under
// pressure (the log over half full, or the client's Pressure) it does not
// wait at all: then the uploads are what frees the space appends wait
// for, and they must drain at full parallelism. A flush's units never
// wait: a snapshot or a recovery point is a foreground operation. It
// returns what the worker calls once the upload has ended.
func (s *scheduler) yieldToAppends() (release func()) {
	release = func() {}
	if s.yieldMax < 0 || s.j.underPressure() {
		return release
	}
	waited, err := s.j.log.yield(s.ctx, s.yieldMax)
	if !waited || err != nil {
		return release
	}
	s.stats.yields.Add(1)
	release = s.busyUpload()
	deadline := time.Now().Add(s.yieldMax)
	for !s.j.underPressure() {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		waited, err := s.j.log.yield(s.ctx, left)
		if !waited || err != nil {
			break
		}
		s.stats.yields.Add(1)
	}
	return release
}

// busyUpload takes the one place for a background upload while writes go
// on, and returns its release. It waits for the upload holding it, not
// for appends: the wait is as long as one upload at most, and ends when
// pressure comes (looked at every yieldMax).
func (s *scheduler) busyUpload() (release func()) {
	select {
	case s.busy <- struct{}{}:
		return func() { <-s.busy }
	default:
	}
	s.stats.busyWaits.Add(1)
	tick := time.NewTicker(max(s.yieldMax, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case s.busy <- struct{}{}:
			return func() { <-s.busy }
		case <-tick.C:
			if s.j.underPressure() {
				return func() {}
			}
		case <-s.ctx.Done():
			return func() {}
		}
	}
}

// round lists the client's pending units, uploads those that are due (all
// of them with all set, or under pressure) and pick accepts, waits for them
// and trims the log. It returns the first error.
func (j *Journal) round(ctx context.Context, prio int, all bool, pick func(Unit) bool) error {
	s := &j.sched
	s.stats.rounds.Add(1)
	s.gate.RLock()
	units, err := j.c.Pending(ctx)
	s.gate.RUnlock()
	errs := []error{err}
	all = all || j.underPressure()
	now := j.opts.Clock.Now()
	var jobs []*job
	for _, u := range units {
		settled := all || now.Sub(u.Changed) >= j.opts.SettleTime
		if !settled && !u.Ready || pick != nil && !pick(u) {
			continue
		}
		u.Settled = settled
		jb, err := s.submit(u, prio)
		if err != nil {
			errs = append(errs, err)
			break
		}
		jobs = append(jobs, jb)
	}
	for _, jb := range jobs {
		select {
		case <-jb.done:
			errs = append(errs, jb.err)
		case <-ctx.Done():
			return ctx.Err() // the uploads go on without this waiter
		}
	}
	j.Trim()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Flush uploads now, before any background upload, every pending unit
// pick accepts (all if pick is nil), settled or not, and trims the log.
// It returns the first error.
func (j *Journal) Flush(ctx context.Context, pick func(Unit) bool) error {
	return j.round(ctx, urgent, true, pick)
}

// Round runs one background round now: the units that are due (or all,
// under pressure), then a trim.
func (j *Journal) Round(ctx context.Context) error {
	return j.round(ctx, background, false, nil)
}

// Kick makes the background loop run a round now.
func (j *Journal) Kick() {
	select {
	case j.sched.kick <- struct{}{}:
		j.sched.stats.kicks.Add(1)
	default:
	}
}

// Start starts the background loop: a round every Interval of the clock,
// and at once when kicked (Kick; Append kicks when the log is over half
// full), each followed by AfterRound.
func (j *Journal) Start() {
	s := &j.sched
	s.mu.Lock()
	started := s.started
	s.started = true
	s.mu.Unlock()
	if started {
		return
	}
	go j.loop()
}

func (j *Journal) loop() {
	s := &j.sched
	defer close(s.loopDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := j.opts.Clock.After(j.opts.Interval)
	for {
		ticked := false
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-tick:
			ticked = true
		}
		err := j.round(ctx, background, false, nil)
		if err != nil && ctx.Err() == nil {
			j.lg.Warn("upload round", "journal", j.opts.Name, "err", err)
		}
		if j.opts.AfterRound != nil && ctx.Err() == nil {
			j.opts.AfterRound(ctx, RoundResult{Err: err, Tick: ticked})
		}
		if ticked {
			// Armed again only now: a test that sees the clock waited on
			// knows the round and its housekeeping are done.
			tick = j.opts.Clock.After(j.opts.Interval)
		}
	}
}

// Stop stops the background loop and waits for its round to end. Flush
// and Round still work until Close.
func (j *Journal) Stop() {
	s := &j.sched
	s.stopOnce.Do(func() { close(s.stop) })
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		<-s.loopDone
	}
}

// Close stops the loop and the workers; uploads under way are cancelled
// and waiting ones fail with ErrClosed. The log is the caller's to close.
func (j *Journal) Close() {
	j.Stop()
	s := &j.sched
	s.cancel()
	s.mu.Lock()
	s.closed = true
	s.work.Broadcast()
	var left []*job
	for _, jb := range s.waiting {
		left = append(left, jb)
	}
	s.waiting, s.blocked = map[string]*job{}, map[string]*job{}
	s.queues = [nPriorities][]queued{}
	s.mu.Unlock()
	s.wg.Wait()
	for _, jb := range left {
		jb.err = ErrClosed
		close(jb.done)
	}
}

// Pause waits for the uploads and unit listings under way to end and
// holds new ones back until resume is called (a volume being deleted).
func (j *Journal) Pause() (resume func()) {
	s := &j.sched
	s.gate.Lock()
	s.mu.Lock()
	s.paused++
	for len(s.running) > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.paused--
			s.work.Broadcast()
			s.mu.Unlock()
			s.gate.Unlock()
		})
	}
}

// JournalStats are a journal's figures, one set for every service.
type JournalStats struct {
	Name           string // JournalOptions.Name
	Rounds, Kicks  uint64
	Yields         uint64 // waits of background uploads for queued appends
	Uploads        uint64 // units uploaded (attempts)
	UploadErrors   uint64
	UploadedBytes  uint64
	Queued         int // units waiting for a worker
	Running        int // units uploading now
	Pins           int // log positions pinned
	LogUsed        int64
	LogCapacity    int64
	NextLSN, Trim  LSN // the next record's LSN; where the trim rule stands
	ReplayFinished bool
	Log            Stats // the log's counters: appends, syncs, trims, replay
}

// Stats returns the journal's figures.
func (j *Journal) Stats() JournalStats {
	s := &j.sched
	st := JournalStats{
		Name:   j.opts.Name,
		Rounds: s.stats.rounds.Load(), Kicks: s.stats.kicks.Load(), Uploads: s.stats.uploads.Load(),
		UploadErrors: s.stats.errors.Load(), UploadedBytes: s.stats.bytes.Load(), Yields: s.stats.yields.Load(),
		LogUsed: j.log.Used(), LogCapacity: j.log.Capacity(), NextLSN: j.log.NextLSN(), Trim: j.TrimPoint(),
		ReplayFinished: j.replayed.Load(), Log: j.log.Stats(),
	}
	s.mu.Lock()
	st.Queued, st.Running = len(s.waiting), len(s.running)
	s.mu.Unlock()
	j.pinMu.Lock()
	st.Pins = len(j.pins)
	j.pinMu.Unlock()
	return st
}
