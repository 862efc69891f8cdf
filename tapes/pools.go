package tapes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/names"
	"github.com/gatewayd/gatewayd/objstore"
)

// LockMode is how firmly a pool's retention lock holds its archived tapes.
type LockMode string

const (
	// LockGovernance: a locked tape is deleted or moved to another pool
	// before its lock ends only when the caller says it bypasses
	// governance (tape delete --bypass-governance).
	LockGovernance LockMode = "governance"
	// LockCompliance: nobody deletes or moves a locked tape before its
	// lock ends.
	LockCompliance LockMode = "compliance"
)

// MaxLockDays is the longest retention lock a pool takes: 100 years.
const MaxLockDays = 36500

// Pool is a named group of tapes: the storage class its tapes are
// archived to and an optional retention lock that starts when a tape is
// archived (or moved into the pool while archived).
type Pool struct {
	Name         string
	StorageClass string
	Lock         LockMode `json:",omitempty"`
	LockDays     int      `json:",omitempty"`
	Created      time.Time
}

// Errors of pools and retention locks.
var (
	ErrNoPool   = errkind.Mark(errkind.NotFound, errors.New("tapes: no such pool"))
	ErrPoolUsed = errkind.Mark(errkind.Permanent, errors.New("tapes: pool has tapes"))
	ErrExists   = errkind.Mark(errkind.Permanent, errors.New("tapes: already exists"))
	// ErrLocked is returned by a delete or pool move of a tape whose
	// retention lock has not ended; the error says when it does.
	ErrLocked = errkind.Mark(errkind.Permanent, errors.New("tapes: tape is retention-locked"))
)

const keyPool = "tapes/pool/"

var (
	poolRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	classRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,31}$`)
)

func getPool(tx meta.Txn, name string) (Pool, error) {
	return getRecord[Pool](tx, keyPool+name, "pool "+name, ErrNoPool)
}

// CreatePool records a new pool.
func (l *Library) CreatePool(ctx context.Context, p Pool) (Pool, error) {
	if err := names.Check("pool name", p.Name); err != nil {
		return p, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	if !poolRE.MatchString(p.Name) {
		return p, fmt.Errorf("%w: pool name %q: 1 to 64 letters, digits, '-' or '_'", ErrBadInput, p.Name)
	}
	p.Lock = LockMode(strings.ToLower(string(p.Lock)))
	if !classRE.MatchString(p.StorageClass) {
		return p, fmt.Errorf("%w: storage class %q: upper-case, such as GLACIER or DEEP_ARCHIVE", ErrBadInput, p.StorageClass)
	}
	switch {
	case p.Lock == "" && p.LockDays != 0:
		return p, fmt.Errorf("%w: a lock of %d days needs a lock mode (governance or compliance)", ErrBadInput, p.LockDays)
	case p.Lock != "" && p.Lock != LockGovernance && p.Lock != LockCompliance:
		return p, fmt.Errorf("%w: lock mode %q: governance or compliance", ErrBadInput, p.Lock)
	case p.Lock != "" && (p.LockDays < 1 || p.LockDays > MaxLockDays):
		return p, fmt.Errorf("%w: lock of %d days: 1 to %d", ErrBadInput, p.LockDays, MaxLockDays)
	}
	p.Created = l.opts.Clock.Now().UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return p, err
	}
	err = l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		if _, err := getPool(tx, p.Name); err == nil {
			return fmt.Errorf("pool %s: %w", p.Name, ErrExists)
		} else if !errors.Is(err, ErrNoPool) {
			return err
		}
		return tx.Set([]byte(keyPool+p.Name), b)
	})
	if err == nil {
		l.log.Info("tape pool created", "pool", p.Name, "class", p.StorageClass, "lock", p.Lock, "days", p.LockDays)
	}
	return p, err
}

// Pools lists the pools by name.
func (l *Library) Pools(ctx context.Context) ([]Pool, error) {
	var out []Pool
	err := l.opts.Meta.View(ctx, func(tx meta.Txn) (err error) {
		out, err = listRecords[Pool](tx, keyPool)
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Pool returns one pool.
func (l *Library) Pool(ctx context.Context, name string) (Pool, error) {
	var p Pool
	err := l.opts.Meta.View(ctx, func(tx meta.Txn) (err error) {
		p, err = getPool(tx, name)
		return err
	})
	return p, err
}

// DeletePool removes a pool no tape belongs to.
func (l *Library) DeletePool(ctx context.Context, name string) error {
	l.invMu.Lock()
	defer l.invMu.Unlock()
	return l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		if _, err := getPool(tx, name); err != nil {
			return err
		}
		infos, err := listInfos(tx)
		if err != nil {
			return err
		}
		n := 0
		for _, in := range infos {
			if in.Pool == name {
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("pool %s: %w (%d); delete them or move them to another pool first", name, ErrPoolUsed, n)
		}
		return tx.Delete([]byte(keyPool + name))
	})
}

// checkLock refuses to let a tape go (deleted, or moved to another pool)
// while its retention lock holds; bypass lifts a governance lock.
func (l *Library) checkLock(ctx context.Context, in Info, bypass bool) error {
	if !in.LockUntil.After(l.opts.Clock.Now()) {
		return nil
	}
	if in.LockMode == LockGovernance && bypass {
		// The bucket's Object Lock, if any, retains the tape's objects
		// as long: gatewayd never bypasses it.
		if lc, err := objstore.ObjectLock(ctx, l.opts.Store); err != nil || lc.Enabled {
			return fmt.Errorf("tape %s: %w until %s: the bucket's Object Lock retains its objects (%v)", in.Barcode, ErrLocked, in.LockUntil.UTC().Format(time.RFC3339), err)
		}
		l.log.Warn("tape retention lock bypassed", "tape", in.Barcode, "until", in.LockUntil)
		return nil
	}
	how := ""
	if in.LockMode == LockGovernance {
		how = "; a governance lock may be bypassed explicitly"
	}
	return fmt.Errorf("tape %s: %w (%s) until %s%s", in.Barcode, ErrLocked, in.LockMode, in.LockUntil.UTC().Format(time.RFC3339), how)
}

// retainTape puts the tape's lock on its objects where the bucket has
// Object Lock: each is retained (S3 Object Lock, in the lock's mode) at
// least until the lock ends, so that nobody holding the bucket's keys
// deletes or overwrites it before. Called once the objects are in their
// archive class (a class move writes a new version, retained anew).
func (l *Library) retainTape(ctx context.Context, in Info) error {
	if !in.LockUntil.After(l.opts.Clock.Now()) {
		return nil
	}
	lc, err := objstore.ObjectLock(ctx, l.opts.Store)
	if err != nil || !lc.Enabled {
		return err
	}
	ret := objstore.Retention{Mode: retentionMode(in.LockMode), Until: in.LockUntil}
	var keys []string
	if err := l.opts.Store.List(ctx, tapePrefix(in.Barcode), func(oi objstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := objstore.ExtendRetention(ctx, l.opts.Store, k, ret); err != nil {
			return fmt.Errorf("tape %s: retain %s: %w", in.Barcode, k, err)
		}
	}
	return nil
}

// retainedUntil says whether retainTape put a lock ending at until on
// the tape's objects as they were before a class move that failed.
func (l *Library) retainedUntil(barcode string, until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.retainedBefore[barcode]
	return ok && u.Equal(until)
}

func (l *Library) setRetainedUntil(barcode string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retainedBefore == nil {
		l.retainedBefore = map[string]time.Time{}
	}
	l.retainedBefore[barcode] = until
}

// wormRetention is how a WORM tape's writes are retained: in its pool's
// lock mode for the pool's days from each write, where the pool has a lock
// and the bucket Object Lock (0 otherwise).
func (l *Library) wormRetention(ctx context.Context, in Info) (objstore.RetentionMode, time.Duration, error) {
	if !in.WORM || in.ReadOnly || in.Pool == "" {
		return "", 0, nil
	}
	p, err := l.Pool(ctx, in.Pool)
	if err != nil || p.Lock == "" {
		return "", 0, err
	}
	lc, err := objstore.ObjectLock(ctx, l.opts.Store)
	if err != nil || !lc.Enabled {
		return "", 0, err
	}
	return retentionMode(p.Lock), time.Duration(p.LockDays) * 24 * time.Hour, nil
}

func retentionMode(m LockMode) objstore.RetentionMode {
	if m == LockCompliance {
		return objstore.Compliance
	}
	return objstore.Governance
}

// objectsRetained refuses to delete a tape while the bucket's Object Lock
// retains its index root (a WORM tape's writes are retained from when
// they are made): the delete would fail halfway.
func (l *Library) objectsRetained(ctx context.Context, in Info) error {
	if !in.WORM {
		return nil
	}
	ret, err := objstore.GetRetention(ctx, l.opts.Store, rootKey(in.Barcode))
	if err != nil || !ret.Holds(l.opts.Clock.Now()) {
		return err
	}
	return fmt.Errorf("tape %s: %w: the bucket's Object Lock retains its objects (%s)", in.Barcode, ErrLocked, ret)
}

// lockFor starts the retention lock of pool on a tape archived (or moved
// into the pool) at now. A lock that still holds is kept where it ends
// later, and a compliance one stays compliance.
func lockFor(in *Info, p Pool, now time.Time) {
	if p.Lock == "" {
		return
	}
	until := now.Add(time.Duration(p.LockDays) * 24 * time.Hour).UTC()
	if !in.LockUntil.After(now) {
		in.LockUntil, in.LockMode = until, p.Lock
		return
	}
	if until.After(in.LockUntil) {
		in.LockUntil = until
	}
	if in.LockMode != LockCompliance {
		in.LockMode = p.Lock
	}
}

// archiveClass is the storage class a tape of pool is archived to.
func (l *Library) archiveClass(ctx context.Context, pool string) (string, Pool, error) {
	if pool == "" {
		return l.opts.ArchiveClass, Pool{}, nil
	}
	p, err := l.Pool(ctx, pool)
	if err != nil {
		return "", p, err
	}
	return p.StorageClass, p, nil
}

// AssignPool moves a tape to another pool ("" the library's default).
// An archived tape's objects move to the new pool's storage class and the
// new pool's lock starts; a tape whose lock holds is refused (bypass lifts
// a governance lock). Where archived objects must be restored before they
// change class (S3), the move asks the restores and returns the tape with
// ArchivePending: its objects move once restored (see setClass), looked
// at every RetrievePoll, or at once when the tape is assigned again to
// the pool it is moving to.
func (l *Library) AssignPool(ctx context.Context, barcode, pool string, bypass bool) (Info, error) {
	l.invMu.Lock()
	defer l.invMu.Unlock()
	in, err := l.Info(ctx, barcode)
	if err != nil {
		return in, err
	}
	if in.Pool == pool {
		if in.State == StateArchived && in.ArchivePending {
			return l.finishMove(ctx, in)
		}
		return in, nil
	}
	class, p, err := l.archiveClass(ctx, pool)
	if err != nil {
		return in, err
	}
	if in.State == StateRetrieving || in.State == StateDeleting {
		return in, fmt.Errorf("%w: tape %s is %s", ErrBadInput, barcode, in.State)
	}
	if err := l.checkLock(ctx, in, bypass); err != nil {
		return in, err
	}
	in.Pool = pool
	if in.State == StateArchived {
		if bypass {
			in.LockUntil, in.LockMode = time.Time{}, ""
		}
		lockFor(&in, p, l.opts.Clock.Now())
		in.ArchivePending = l.hasClasses()
	}
	if err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return putInfo(tx, in) }); err != nil {
		return in, err
	}
	l.log.Info("tape moved to pool", "tape", barcode, "pool", pool, "class", class)
	if in.State == StateArchived && in.ArchivePending {
		return l.finishMove(ctx, in)
	}
	return in, nil
}

// finishMove moves an archived tape's objects to its pool's class now, as
// far as they can be: a move that waits for restores is no error.
// l.invMu held.
func (l *Library) finishMove(ctx context.Context, in Info) (Info, error) {
	err := l.finishArchive(ctx, in.Barcode)
	if err != nil && !errors.Is(err, errRestoring) {
		return in, fmt.Errorf("tape %s: in pool %s; its objects move to the pool's class later: %w", in.Barcode, in.Pool, err)
	}
	if err != nil {
		l.log.Info("tape's class move waits for restores", "tape", in.Barcode, "err", err)
	}
	return l.Info(ctx, in.Barcode)
}
