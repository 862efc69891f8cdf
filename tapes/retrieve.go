package tapes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
)

// Retrieval is the progress of a tape's retrieval from cold storage: its
// objects are restored (objstore.Restorer), then moved back to the
// retrieve class, then the tape goes to a slot, read-only.
type Retrieval struct {
	Tier    string
	Started time.Time
	// Objects is how many objects the tape has; Readable how many of
	// them can be read now (restored, or never in an archive class);
	// Restoring how many restores are under way.
	Objects, Readable, Restoring int
	// Checked is when the library last looked.
	Checked time.Time `json:",omitzero"`
}

// restorer is the store's restore capability, nil without one.
func (l *Library) restorer() objstore.Restorer {
	if l.opts.Restorer != nil {
		return l.opts.Restorer
	}
	r, _ := l.opts.Store.(objstore.Restorer)
	return r
}

// Retrieve brings an archived tape back into the lowest free slot,
// read-only. Where the store restores archived objects (S3's GLACIER and
// DEEP_ARCHIVE), the tape is retrieving until every object is restored
// (see RetrieveTape); elsewhere it is retrieved at once.
func (l *Library) Retrieve(ctx context.Context, barcode string) (Info, error) {
	return l.RetrieveTape(ctx, barcode, "")
}

// RetrieveTape is Retrieve at a restore tier (objstore.TierStandard,
// TierBulk, TierExpedited; "" the library's RetrieveTier). With a store
// that restores, it asks a restore of every object of the tape and
// returns the tape retrieving; the library then looks every RetrievePoll
// (asking again for what is neither readable nor being restored, such as
// a restored copy that expired), and once every object is readable it
// moves them back to RetrieveClass and puts the tape in the lowest free
// slot, read-only. The state is kept in meta: a restart goes on where it
// was. Asked again for a tape retrieving, it looks at once and returns
// how far the retrieval is.
func (l *Library) RetrieveTape(ctx context.Context, barcode, tier string) (Info, error) {
	if tier == "" {
		tier = l.opts.RetrieveTier
	}
	if err := objstore.ValidTier(tier); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	l.invMu.Lock()
	in, err := l.Info(ctx, barcode)
	if err != nil {
		l.invMu.Unlock()
		return in, err
	}
	if in.State == StateRetrieving {
		l.invMu.Unlock()
		if err := l.advanceRetrieval(ctx, barcode); err != nil {
			return in, err
		}
		return l.Info(ctx, barcode)
	}
	if in.State != StateArchived {
		l.invMu.Unlock()
		return in, fmt.Errorf("%w: tape %s is %s, not archived", ErrBadInput, barcode, in.State)
	}
	if l.restorer() == nil {
		defer l.invMu.Unlock()
		return l.retrieved(ctx, in)
	}
	in.State, in.ArchivePending = StateRetrieving, false
	in.Retrieval = &Retrieval{Tier: tier, Started: l.opts.Clock.Now().UTC()}
	err = l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return putInfo(tx, in) })
	l.invMu.Unlock()
	if err != nil {
		return in, err
	}
	l.log.Info("tape retrieval started", "tape", barcode, "tier", tier)
	if err := l.advanceRetrieval(ctx, barcode); err != nil {
		l.log.Warn("tape retrieval", "tape", barcode, "err", err)
	}
	return l.Info(ctx, barcode)
}

// retrieved moves a tape's objects back to the retrieve class (retained
// while the tape's lock holds) and puts it
// in the lowest free slot, read-only. l.invMu held.
func (l *Library) retrieved(ctx context.Context, in Info) (Info, error) {
	inv, err := l.Inventory(ctx)
	if err != nil {
		return in, err
	}
	slot := -1
	for i, bc := range inv.Slots {
		if bc == "" {
			slot = i
			break
		}
	}
	if slot < 0 {
		return in, fmt.Errorf("tape %s: %w", in.Barcode, ErrNoSlot)
	}
	if err := l.setClass(ctx, in.Barcode, l.opts.RetrieveClass); err != nil {
		return in, err
	}
	// The class move is a copy onto itself: a new version, which the
	// lock retains as it did the archived one.
	if err := l.retainTape(ctx, in); err != nil {
		return in, err
	}
	in.State, in.Place, in.ReadOnly, in.ArchivePending, in.Retrieval = StateRetrieved, Element{ElementSlot, slot}, true, false, nil
	err = l.commitWithEvent(ctx, func(tx meta.Txn) error {
		cur, err := getInfo(tx, in.Barcode)
		if err != nil {
			return err
		}
		if cur.State != StateArchived && cur.State != StateRetrieving {
			return fmt.Errorf("%w: tape %s became %s", ErrBadInput, in.Barcode, cur.State)
		}
		return putInfo(tx, in)
	}, notify.TapeRetrieved, in, l.opts.Clock.Now())
	if err != nil {
		return in, err
	}
	l.log.Info("tape retrieved", "tape", in.Barcode, "slot", slot)
	return in, nil
}

// advanceRetrieval looks at every object of a retrieving tape: it asks a
// restore of each that is neither readable nor being restored, records
// the counts, and once every object is readable finishes the retrieval.
func (l *Library) advanceRetrieval(ctx context.Context, barcode string) error {
	rs := l.restorer()
	in, err := l.Info(ctx, barcode)
	if err != nil || in.State != StateRetrieving || rs == nil {
		return err
	}
	var keys []string
	if err := l.opts.Store.List(ctx, tapePrefix(barcode), func(oi objstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		return fmt.Errorf("tape %s: %w", barcode, err)
	}
	r := Retrieval{Tier: l.opts.RetrieveTier, Started: in.Archived}
	if in.Retrieval != nil {
		r = *in.Retrieval
	}
	r.Objects, r.Readable, r.Restoring = len(keys), 0, 0
	var firstErr error
	for _, k := range keys {
		st, err := rs.RestoreStatus(ctx, k)
		if err == nil && !st.Readable() && !st.Ongoing {
			if err = rs.Restore(ctx, k, l.opts.RestoreDays, r.Tier); err == nil {
				st.Ongoing = true
			}
		}
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("tape %s: %w", barcode, err)
			}
		case st.Readable():
			r.Readable++
		default:
			r.Restoring++
		}
	}
	r.Checked = l.opts.Clock.Now().UTC()
	l.invMu.Lock()
	defer l.invMu.Unlock()
	err = l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		cur, err := getInfo(tx, barcode)
		if err != nil || cur.State != StateRetrieving {
			return err
		}
		in = cur
		in.Retrieval = &r
		return putInfo(tx, in)
	})
	if err != nil || in.State != StateRetrieving || firstErr != nil {
		return errors.Join(err, firstErr)
	}
	if r.Readable < r.Objects {
		return nil
	}
	if _, err := l.retrieved(ctx, in); err != nil {
		return fmt.Errorf("tape %s: every object is restored: %w", barcode, err)
	}
	return nil
}

// advanceRetrievals advances every retrieving tape, every RetrievePoll
// (called on the uploader's tick), in a goroutine of its own: looking at
// every object of a tape takes a request each, which the uploads do not
// wait for.
func (l *Library) advanceRetrievals() {
	now := l.opts.Clock.Now()
	if now.Sub(l.retrievePolled) < l.opts.RetrievePoll || !l.retrieving.CompareAndSwap(false, true) {
		return
	}
	l.retrievePolled = now
	started := l.background(func(ctx context.Context) {
		defer l.retrieving.Store(false)
		infos, err := l.List(ctx)
		if err != nil {
			return
		}
		for _, in := range infos {
			if in.State != StateRetrieving {
				continue
			}
			if err := l.advanceRetrieval(ctx, in.Barcode); err != nil && ctx.Err() == nil {
				l.log.Warn("tape retrieval", "tape", in.Barcode, "err", err)
			}
		}
	})
	if !started {
		l.retrieving.Store(false)
	}
}
