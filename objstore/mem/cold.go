package mem

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

// Cold is a Store that models S3's archive storage classes, for tests of
// what restores from them: an object in one of its classes is not read
// (Get), copied (Copy) or moved to another class (SetStorageClass) until
// it is restored. Restore asks for a restored copy; it is there Delay
// after the request (by the Now of ColdOptions, so a test moves time) and
// stays readable for the days asked, counted from then. Cold implements
// objstore.Restorer.
type Cold struct {
	*Store
	classes map[string]bool
	now     func() time.Time

	mu       sync.Mutex
	delay    time.Duration
	restores map[string]restoreReq
	requests int
}

type restoreReq struct {
	at   time.Time
	days int
	tier string
}

// ColdOptions describe the archive classes of a Cold store.
type ColdOptions struct {
	// Classes are the archive classes (default GLACIER and DEEP_ARCHIVE).
	Classes []string
	// Delay is how long a restore takes.
	Delay time.Duration
	// Now is the time (default time.Now).
	Now func() time.Time
}

// NewCold models archive classes over s.
func NewCold(s *Store, o ColdOptions) *Cold {
	if len(o.Classes) == 0 {
		o.Classes = []string{"GLACIER", "DEEP_ARCHIVE"}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Cold{Store: s, classes: map[string]bool{}, now: o.Now, delay: o.Delay, restores: map[string]restoreReq{}}
	for _, cl := range o.Classes {
		c.classes[cl] = true
	}
	return c
}

var _ objstore.Restorer = (*Cold)(nil)

// SetDelay changes how long the restores asked from now on take.
func (c *Cold) SetDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay = d
}

// Requests counts the restores asked for (repeats of one under way too).
func (c *Cold) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

// status is key's restore status for its class. c.mu held.
func (c *Cold) status(key, class string) objstore.RestoreStatus {
	st := objstore.RestoreStatus{StorageClass: class, Archived: c.classes[class]}
	r, ok := c.restores[key]
	if !st.Archived || !ok {
		return st
	}
	done := r.at.Add(c.delay)
	expiry := done.Add(time.Duration(r.days) * 24 * time.Hour)
	now := c.now()
	switch {
	case now.Before(done):
		st.Ongoing = true
	case now.Before(expiry):
		st.Expiry = expiry
	default:
		delete(c.restores, key) // the restored copy is gone
	}
	return st
}

// check returns the error of op on key when key is archived and not
// restored.
func (c *Cold) check(ctx context.Context, op, key string) (objstore.RestoreStatus, error) {
	oi, err := c.Store.Stat(ctx, key)
	if err != nil {
		return objstore.RestoreStatus{}, err
	}
	c.mu.Lock()
	st := c.status(key, oi.StorageClass)
	c.mu.Unlock()
	if !st.Readable() {
		return st, objstore.Archived(c, op, key)
	}
	return st, nil
}

// Get implements objstore.Store: an archived object reads only restored.
func (c *Cold) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if _, err := c.check(ctx, "get", key); err != nil {
		return nil, err
	}
	return c.Store.Get(ctx, key, offset, length)
}

// Copy implements objstore.Copier: an archived source copies only restored.
func (c *Cold) Copy(ctx context.Context, srcKey, dstKey string) error {
	if _, err := c.check(ctx, "copy", srcKey); err != nil {
		return err
	}
	return c.Store.Copy(ctx, srcKey, dstKey)
}

// SetStorageClass implements objstore.StorageClasser: an archived object
// leaves its class only restored (S3 copies it onto itself). The new
// object has no restored copy.
func (c *Cold) SetStorageClass(ctx context.Context, key, class string) error {
	st, err := c.check(ctx, "set storage class of", key)
	if err != nil {
		return err
	}
	if st.StorageClass == class {
		return nil
	}
	if err := c.Store.SetStorageClass(ctx, key, class); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.restores, key)
	c.mu.Unlock()
	return nil
}

// Restore implements objstore.Restorer. Asked again while a restore is
// under way it changes nothing; asked for a restored object it extends
// the copy's days from now, as S3 does.
func (c *Cold) Restore(ctx context.Context, key string, days int, tier string) error {
	if err := objstore.ValidTier(tier); err != nil {
		return err
	}
	if days < 1 {
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: restore %s: %d days", c, key, days))
	}
	oi, err := c.Store.Stat(ctx, key)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	st := c.status(key, oi.StorageClass)
	switch {
	case !st.Archived:
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: restore %s: storage class %q is not archived: %w", c, key, oi.StorageClass, objstore.ErrNotArchived))
	case st.Ongoing:
	case !st.Expiry.IsZero():
		r := c.restores[key]
		r.days = days + int(c.now().Sub(r.at.Add(c.delay))/(24*time.Hour))
		c.restores[key] = r
	default:
		c.restores[key] = restoreReq{at: c.now(), days: days, tier: tier}
	}
	return nil
}

// RestoreStatus implements objstore.Restorer.
func (c *Cold) RestoreStatus(ctx context.Context, key string) (objstore.RestoreStatus, error) {
	oi, err := c.Store.Stat(ctx, key)
	if err != nil {
		return objstore.RestoreStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status(key, oi.StorageClass), nil
}
