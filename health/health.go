// Package health is the registry where subsystems report whether they are
// working (tailscale's health package is the model). A subsystem registers a
// named Reporter once and sets its state as it changes; the admin API and
// `gatewayd status` read the whole picture with Snapshot.
//
// A warning is a degraded state the gateway survives (S3 slow, upload buffer
// filling up); an error is a state in which a subsystem cannot do its job.
package health

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/clock"
)

// Level is how healthy a subsystem is.
type Level int

const (
	OK Level = iota
	Warning
	Error
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return "unknown"
}

// MarshalText makes levels read as words in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level written by MarshalText.
func (l *Level) UnmarshalText(b []byte) error {
	for _, c := range []Level{OK, Warning, Error} {
		if c.String() == string(b) {
			*l = c
			return nil
		}
	}
	return fmt.Errorf("health: unknown level %q", b)
}

// State is one subsystem's reported state.
type State struct {
	Subsystem string    `json:"subsystem"`
	Level     Level     `json:"level"`
	Message   string    `json:"message,omitempty"`
	Since     time.Time `json:"since"`
}

// Registry holds the states of all subsystems. The zero value is not usable;
// call New.
type Registry struct {
	clock  clock.Clock
	mu     sync.Mutex
	states map[string]*State
}

// New returns an empty registry reading time from c (clock.Real{} if nil).
func New(c clock.Clock) *Registry {
	if c == nil {
		c = clock.Real{}
	}
	return &Registry{clock: c, states: make(map[string]*State)}
}

// Reporter sets the state of one subsystem.
type Reporter struct {
	r    *Registry
	name string
}

// Register adds subsystem name in state OK and returns its Reporter.
// Registering a name twice returns a Reporter for the same entry.
func (r *Registry) Register(name string) *Reporter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.states[name]; !ok {
		r.states[name] = &State{Subsystem: name, Level: OK, Since: r.clock.Now()}
	}
	return &Reporter{r: r, name: name}
}

// Set records the subsystem's level and message. Since changes only when the
// level or message does, so it tells how long a condition has lasted.
func (p *Reporter) Set(l Level, msg string) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	s := p.r.states[p.name]
	if s.Level != l || s.Message != msg {
		s.Level, s.Message, s.Since = l, msg, p.r.clock.Now()
	}
}

// OK marks the subsystem healthy.
func (p *Reporter) OK() { p.Set(OK, "") }

// Warn marks the subsystem degraded.
func (p *Reporter) Warn(msg string) { p.Set(Warning, msg) }

// Fail marks the subsystem as unable to work.
func (p *Reporter) Fail(msg string) { p.Set(Error, msg) }

// Snapshot returns every subsystem's state sorted by name, and the worst level.
func (r *Registry) Snapshot() ([]State, Level) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]State, 0, len(r.states))
	worst := OK
	for _, s := range r.states {
		out = append(out, *s)
		if s.Level > worst {
			worst = s.Level
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subsystem < out[j].Subsystem })
	return out, worst
}
