package fileshare

import (
	"context"
	"sync"
	"sync/atomic"
)

// Changes to a share made through one path are news to the frontends
// that let their clients cache what changed: the SMB view (the kernel's
// page cache and the oplocks smbd grants) and NFSv4.1's read delegations.
// Each subscribes to a share's changes, any number of them beside one
// another: OnWrite for a file's content, attributes or name changed
// through the share by another frontend, OnChange (objectevents.go) for
// changes seen in the bucket.

// A ChangeSource names a frontend that changes files through a share, so
// that the changes it makes itself (QuietChanges) are not reported back
// to its own subscription.
type ChangeSource struct{ name string }

// NewChangeSource returns a source named name (for messages).
func NewChangeSource(name string) *ChangeSource { return &ChangeSource{name: name} }

func (c *ChangeSource) String() string { return c.name }

// subscriber is one callback of a subscription list.
type subscriber struct {
	src *ChangeSource // its changes are not reported to it; nil: none are its
	fn  func(p string)
}

// subscribers is a share's list of callbacks for one kind of change. The
// list is replaced whole on every (rare) change of it, so calling the
// callbacks takes no lock.
type subscribers struct {
	mu   sync.Mutex // orders add and remove
	list atomic.Pointer[[]*subscriber]
}

// add subscribes fn and returns what ends the subscription.
func (l *subscribers) add(src *ChangeSource, fn func(p string)) (stop func()) {
	sub := &subscriber{src: src, fn: fn}
	l.mu.Lock()
	defer l.mu.Unlock()
	var list []*subscriber
	if old := l.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, sub)
	l.list.Store(&list)
	var once sync.Once
	return func() { once.Do(func() { l.remove(sub) }) }
}

func (l *subscribers) remove(sub *subscriber) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.list.Load()
	if old == nil {
		return
	}
	list := make([]*subscriber, 0, len(*old))
	for _, s := range *old {
		if s != sub {
			list = append(list, s)
		}
	}
	l.list.Store(&list)
}

// call calls every subscriber but the source's own with p.
func (l *subscribers) call(src *ChangeSource, p string) {
	list := l.list.Load()
	if list == nil {
		return
	}
	for _, s := range *list {
		if src == nil || s.src != src {
			s.fn(p)
		}
	}
}

// OnWrite subscribes fn to be called with the path of a file whose
// content, attributes or name change through the share: after a write,
// or a change of its size, mode, owner or times; before it is removed,
// renamed (with its old name) or replaced by a rename, while its path
// still leads to it (InodeOf). Changes made with a context that
// QuietChanges marked as src's are not reported. fn is called with no
// lock of the share held; it must not block. stop ends the subscription.
func (s *Share) OnWrite(src *ChangeSource, fn func(p string)) (stop func()) {
	return s.onWrite.add(src, fn)
}

type quietKey struct{}

// QuietChanges returns ctx marking the changes made with it as src's: src
// knows of them already, so the share does not call src's own
// subscriptions back for them (the others hear of them).
func QuietChanges(ctx context.Context, src *ChangeSource) context.Context {
	return context.WithValue(ctx, quietKey{}, src)
}

// wrote calls the share's write subscribers for a change of p's content
// made with ctx.
func (s *Share) wrote(ctx context.Context, p string) {
	src, _ := ctx.Value(quietKey{}).(*ChangeSource)
	s.onWrite.call(src, p)
}

// InodeOf returns the inode of p if the share holds it in memory (it does
// for every file a client has open), without asking the metadata store.
func (s *Share) InodeOf(p string) (uint64, bool) {
	s.inoMu.Lock()
	defer s.inoMu.Unlock()
	ino, ok := s.byPath[p]
	return ino, ok
}
