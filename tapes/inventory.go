package tapes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/names"
	"github.com/gatewayd/gatewayd/notify"
	"github.com/gatewayd/gatewayd/objstore"
)

// State is where a tape is in its life.
type State string

const (
	StateLibrary   State = "library"   // in a storage slot, writable
	StateDrive     State = "drive"     // in a drive (ReadOnly tells a retrieved tape)
	StateArchived  State = "archived"  // out of the library, in the archive storage class
	StateRetrieved State = "retrieved" // back from the archive in a slot, read-only
	// StateRetrieving: archived, its objects being restored from cold
	// storage; it goes to a slot, read-only, once every one is readable.
	StateRetrieving State = "retrieving"
	// StateDeleting: out of the library, its objects being deleted. A
	// tape whose delete failed midway stays so, listed, until a delete
	// asked again removes what is left and then its record.
	StateDeleting State = "deleting"
)

// Info describes one tape.
type Info struct {
	Barcode  string
	Capacity int64
	State    State
	ReadOnly bool
	// Place is the slot or drive holding the tape; Type 0 when archived.
	Place Element
	// Used and EOD as of the tape's last upload (Medium has live figures).
	Used     int64
	EOD      uint64
	Created  time.Time
	Archived time.Time `json:",omitzero"`
	// ArchivePending: the tape left the library but not all of its
	// objects are in the archive class yet (retried on every tick).
	ArchivePending bool `json:",omitempty"`
	// SweepPending: a gateway has uploaded to the tape and not closed
	// cleanly since, so an upload it left unfinished, or the deletes of
	// what the tape's index stopped naming, may have left objects in the
	// store that no index names; the next load for writing deletes them.
	SweepPending bool `json:",omitempty"`
	// WORM: a write-once tape; its index root says so too.
	WORM bool `json:",omitempty"`
	// Pool is the tape's pool ("": the library's ArchiveClass, no lock).
	Pool string `json:",omitempty"`
	// LockUntil and LockMode: the retention lock the tape's pool put on
	// it when it was archived; until then it is neither deleted nor
	// moved to another pool.
	LockUntil time.Time `json:",omitzero"`
	LockMode  LockMode  `json:",omitempty"`
	// Retrieval is the progress of the tape's retrieval while its state
	// is StateRetrieving.
	Retrieval *Retrieval `json:",omitempty"`
}

// CreateOptions describe the tapes Create makes.
type CreateOptions struct {
	Count  int
	Prefix string
	Size   int64
	WORM   bool   // write-once tapes
	Pool   string // an existing pool, or "" for none
}

// SpareRule keeps Count blank writable tapes in the slots, creating tapes
// of Size bytes with barcodes of Prefix when there are fewer.
type SpareRule struct {
	Count  int
	Prefix string
	Size   int64
	Pool   string `json:",omitempty"` // the pool of the tapes created (and counted)
}

// Errors of the inventory.
var (
	ErrNoTape   = errkind.Mark(errkind.NotFound, errors.New("tapes: no such tape"))
	ErrNoSlot   = errkind.Mark(errkind.Permanent, errors.New("tapes: no free slot"))
	ErrInDrive  = errkind.Mark(errkind.Permanent, errors.New("tapes: tape is in a drive"))
	ErrBadInput = errkind.Mark(errkind.Permanent, errors.New("tapes: invalid argument"))
)

// Tape sizes Create accepts.
const (
	MinTapeSize = 1 << 20
	MaxTapeSize = 1 << 50
)

const (
	keyGeometry = "tapes/geometry"
	keyTape     = "tapes/tape/"
	keySpare    = "tapes/spare"
)

var prefixRE = regexp.MustCompile(`^[A-Z0-9]{1,6}$`)

// Barcode returns the barcode of tape number n (1..9999) of prefix:
// prefix, four digits, "L5" (LTO-5).
func Barcode(prefix string, n int) string { return fmt.Sprintf("%s%04dL5", prefix, n) }

var barcodeRE = regexp.MustCompile(`^([A-Z0-9]{1,6})([0-9]{4})L5$`)

// loadGeometry reads the library's geometry; fresh says meta has none yet
// and g is the options' (saveGeometry records it).
func (l *Library) loadGeometry(ctx context.Context) (g Geometry, fresh bool, err error) {
	want := Geometry{Slots: l.opts.Slots, Drives: l.opts.Drives, IE: 1}
	err = l.opts.Meta.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get([]byte(keyGeometry))
		if errors.Is(err, meta.ErrNotFound) {
			g, fresh = want, true
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &g)
	})
	if err != nil {
		return g, false, fmt.Errorf("tapes: library geometry: %w", err)
	}
	if g != want {
		l.log.Warn("tape library geometry is fixed at creation; options ignored", "slots", g.Slots, "drives", g.Drives)
	}
	return g, fresh, nil
}

func (l *Library) saveGeometry(ctx context.Context) error {
	b, _ := json.Marshal(l.geo)
	return l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte(keyGeometry), b) })
}

// adopt records in meta the tapes the store holds and meta does not know
// (a library opened on new metadata over an existing bucket): each goes to
// the lowest free slot, or is listed as archived when its index is in the
// archive class or no slot is free. Places in drives are not kept in the
// store: adopted tapes start in slots.
func (l *Library) adopt(ctx context.Context) ([]string, error) {
	var bcs []string
	err := objstore.ListDir(ctx, l.opts.Store, "tapes/", func(oi objstore.ObjectInfo, isPrefix bool) error {
		if bc := strings.TrimSuffix(strings.TrimPrefix(oi.Key, "tapes/"), "/"); isPrefix && barcodeRE.MatchString(bc) {
			bcs = append(bcs, bc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tapes: look for tapes in the store: %w", err)
	}
	inv, err := l.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	free := 0
	var adopted []string
	for _, bc := range bcs {
		if _, err := l.Info(ctx, bc); err == nil {
			continue
		}
		r, err := l.readRoot(ctx, bc)
		if err != nil {
			l.log.Warn("tape in the store not adopted", "tape", bc, "err", err)
			continue
		}
		oi, err := l.opts.Store.Stat(ctx, rootKey(bc))
		if err != nil {
			return adopted, err
		}
		for free < len(inv.Slots) && inv.Slots[free] != "" {
			free++
		}
		in := Info{Barcode: bc, Capacity: r.capacity, EOD: r.eod, Used: r.used, Created: l.opts.Clock.Now().UTC(), WORM: r.flags&rootWORM != 0}
		if _, classes := l.opts.Store.(objstore.StorageClasser); classes && oi.StorageClass == l.opts.ArchiveClass || free == len(inv.Slots) {
			in.State, in.Archived = StateArchived, in.Created
		} else {
			in.State, in.Place = StateLibrary, Element{ElementSlot, free}
			inv.Slots[free] = bc
		}
		if err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return putInfo(tx, in) }); err != nil {
			return adopted, err
		}
		adopted = append(adopted, bc)
	}
	if len(adopted) > 0 {
		l.log.Info("tapes found in the store adopted", "count", len(adopted))
	}
	return adopted, nil
}

func getInfo(tx meta.Txn, barcode string) (Info, error) {
	return getRecord[Info](tx, keyTape+barcode, "tape "+barcode, ErrNoTape)
}

// getRecord reads the JSON record at key; a missing one is an error
// wrapping notFound, and what names the record in errors.
func getRecord[T any](tx meta.Txn, key, what string, notFound error) (T, error) {
	var v T
	b, err := tx.Get([]byte(key))
	if errors.Is(err, meta.ErrNotFound) {
		return v, fmt.Errorf("%s: %w", what, notFound)
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, errkind.Mark(errkind.Corrupt, fmt.Errorf("%s: meta record: %w", what, err))
	}
	return v, nil
}

func putInfo(tx meta.Txn, in Info) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return tx.Set([]byte(keyTape+in.Barcode), b)
}

func listInfos(tx meta.Txn) ([]Info, error) { return listRecords[Info](tx, keyTape) }

// listRecords reads every JSON record under prefix, in key order.
func listRecords[T any](tx meta.Txn, prefix string) ([]T, error) {
	var out []T
	err := tx.Iterate([]byte(prefix), func(k, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return errkind.Mark(errkind.Corrupt, fmt.Errorf("meta record %s: %w", k, err))
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// Info returns what the library records about a tape, with live Used and
// EOD when the tape is loaded.
func (l *Library) Info(ctx context.Context, barcode string) (Info, error) {
	var in Info
	err := l.opts.Meta.View(ctx, func(tx meta.Txn) (err error) {
		in, err = getInfo(tx, barcode)
		return err
	})
	if err != nil {
		return in, err
	}
	l.live(&in)
	return in, nil
}

func (l *Library) live(in *Info) {
	l.mu.Lock()
	t := l.tapes[in.Barcode]
	l.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		in.Used, in.EOD = t.used, t.eod
		t.mu.Unlock()
	}
}

// List returns every tape, by barcode.
func (l *Library) List(ctx context.Context) ([]Info, error) {
	var out []Info
	err := l.opts.Meta.View(ctx, func(tx meta.Txn) (err error) {
		out, err = listInfos(tx)
		return err
	})
	for i := range out {
		l.live(&out[i])
	}
	return out, err
}

// recordUsage writes a tape's EOD and used bytes to meta (after an upload).
func (l *Library) recordUsage(ctx context.Context, barcode string, eod uint64, used int64) error {
	return l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		in, err := getInfo(tx, barcode)
		if err != nil {
			return err
		}
		in.EOD, in.Used = eod, used
		return putInfo(tx, in)
	})
}

// Create makes count blank tapes of size bytes, numbered after the highest
// number of prefix in use, in the lowest free slots, and returns their
// barcodes.
func (l *Library) Create(ctx context.Context, count int, prefix string, size int64) ([]string, error) {
	return l.CreateTapes(ctx, CreateOptions{Count: count, Prefix: prefix, Size: size})
}

// CreateTapes makes blank tapes as Create does, WORM or in a pool as o
// says.
func (l *Library) CreateTapes(ctx context.Context, o CreateOptions) ([]string, error) {
	l.invMu.Lock()
	defer l.invMu.Unlock()
	return l.create(ctx, o)
}

func (l *Library) create(ctx context.Context, o CreateOptions) ([]string, error) {
	count, prefix, size := o.Count, o.Prefix, o.Size
	if err := names.Check("barcode prefix", prefix); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("%w: barcode prefix %q: 1 to 6 upper-case letters or digits", ErrBadInput, prefix)
	}
	if size < MinTapeSize || size > MaxTapeSize {
		return nil, fmt.Errorf("%w: tape size %d: between %d and %d bytes", ErrBadInput, size, int64(MinTapeSize), int64(MaxTapeSize))
	}
	if count <= 0 || count > l.geo.Slots {
		return nil, fmt.Errorf("%w: count %d", ErrBadInput, count)
	}
	var infos []Info
	if err := l.opts.Meta.View(ctx, func(tx meta.Txn) (err error) {
		if o.Pool != "" {
			if _, err := getPool(tx, o.Pool); err != nil {
				return err
			}
		}
		infos, err = listInfos(tx)
		return err
	}); err != nil {
		return nil, err
	}
	used := make([]bool, l.geo.Slots)
	next := 1
	for _, in := range infos {
		if in.Place.Type == ElementSlot && in.Place.Index < len(used) {
			used[in.Place.Index] = true
		}
		if m := barcodeRE.FindStringSubmatch(in.Barcode); m != nil && m[1] == prefix {
			n, _ := strconv.Atoi(m[2])
			next = max(next, n+1)
		}
	}
	var slots []int
	for i := 0; i < len(used) && len(slots) < count; i++ {
		if !used[i] {
			slots = append(slots, i)
		}
	}
	if len(slots) < count {
		return nil, fmt.Errorf("%w: %d tapes asked, %d slots free", ErrNoSlot, count, len(slots))
	}
	if next+count-1 > 9999 {
		return nil, fmt.Errorf("%w: barcode numbers of prefix %s run out at 9999", ErrBadInput, prefix)
	}
	// A WORM tape's writes are retained from the first, its blank root.
	mode, retainFor, err := l.wormRetention(ctx, Info{WORM: o.WORM, Pool: o.Pool})
	if err != nil {
		return nil, err
	}
	var out []string
	for i, slot := range slots {
		bc := Barcode(prefix, next+i)
		// The index first: a tape in meta always has one in the store.
		if err := l.writeEmptyRoot(ctx, bc, size, o.WORM, mode, retainFor); err != nil {
			return out, fmt.Errorf("tape %s: %w", bc, err)
		}
		in := Info{Barcode: bc, Capacity: size, State: StateLibrary, Place: Element{ElementSlot, slot}, Created: l.opts.Clock.Now().UTC(),
			WORM: o.WORM, Pool: o.Pool}
		if err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return putInfo(tx, in) }); err != nil {
			return out, err
		}
		out = append(out, bc)
	}
	l.log.Info("tapes created", "count", len(out), "first", out[0], "size", size, "worm", o.WORM, "pool", o.Pool)
	return out, nil
}

// Delete removes a tape that is not in a drive, with all of its objects.
// A tape whose retention lock holds is refused (ErrLocked).
func (l *Library) Delete(ctx context.Context, barcode string) error {
	return l.DeleteTape(ctx, barcode, false)
}

// DeleteTape is Delete; bypass lifts a governance retention lock. The
// tape is recorded as deleting first, then its objects go (the index root
// first, so that no partial tape is ever opened or adopted), then its
// record: a delete that fails midway leaves the tape listed as deleting,
// and a delete asked again finishes it.
func (l *Library) DeleteTape(ctx context.Context, barcode string, bypass bool) error {
	l.invMu.Lock()
	defer l.invMu.Unlock()
	in, err := l.Info(ctx, barcode)
	if err != nil {
		return err
	}
	if in.State != StateDeleting {
		if err := l.startDelete(ctx, in, bypass); err != nil {
			return err
		}
	}
	if err := l.deleteObjects(ctx, barcode); err != nil {
		return fmt.Errorf("tape %s: delete objects: %w; the tape stays listed as %s until a delete asked again removes the rest", barcode, err, StateDeleting)
	}
	if err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Delete([]byte(keyTape + barcode)) }); err != nil {
		return err
	}
	l.trim()
	l.spareCheck()
	return nil
}

// startDelete checks that a tape may be deleted, drops its state in
// memory and records it as deleting, out of every element. l.invMu held.
func (l *Library) startDelete(ctx context.Context, in Info, bypass bool) error {
	barcode := in.Barcode
	if in.Place.Type == ElementDrive {
		return fmt.Errorf("tape %s: %w", barcode, ErrInDrive)
	}
	if err := l.checkLock(ctx, in, bypass); err != nil {
		return err
	}
	if err := l.objectsRetained(ctx, in); err != nil {
		return err
	}
	l.mu.Lock()
	if t := l.tapes[barcode]; t != nil {
		t.mu.Lock()
		busy := t.users > 0
		if !busy {
			t.gone = fmt.Errorf("tape %s: %w", barcode, ErrNoTape)
			t.ops, t.unlogged = nil, nil // its writes go with it
		}
		t.mu.Unlock()
		if busy {
			l.mu.Unlock()
			return fmt.Errorf("tape %s: %w (open)", barcode, ErrInDrive)
		}
		delete(l.tapes, barcode)
	}
	l.mu.Unlock()
	// Meta first: a deleting tape is not loaded, so replay skips its
	// writes, and its slot is free.
	in.State, in.Place, in.ArchivePending, in.Retrieval = StateDeleting, Element{}, false, nil
	if err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return putInfo(tx, in) }); err != nil {
		return err
	}
	l.log.Info("tape deleting", "tape", barcode)
	return nil
}

// deleteObjects removes every object of a tape, every version of each (on
// a bucket with Object Lock a delete only hides an object; its lock has
// ended by now), the index root first.
func (l *Library) deleteObjects(ctx context.Context, barcode string) error {
	root := rootKey(barcode)
	keys := []string{root}
	if err := l.opts.Store.List(ctx, tapePrefix(barcode), func(oi objstore.ObjectInfo) error {
		if oi.Key != root {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := objstore.Purge(ctx, l.opts.Store, k); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Archive takes a tape out of the library (as moving it to the
// import/export element does): its data is uploaded, the tape is listed as
// archived and its objects move to the archive storage class, where the
// store has storage classes. If that move fails the tape is still
// archived; the move is retried on every tick and the error returned.
func (l *Library) Archive(ctx context.Context, barcode string) error {
	l.invMu.Lock()
	defer l.invMu.Unlock()
	in, err := l.Info(ctx, barcode)
	if err != nil {
		return err
	}
	return l.archive(ctx, in)
}

func (l *Library) archive(ctx context.Context, in Info) error {
	if in.State == StateArchived || in.State == StateRetrieving {
		return fmt.Errorf("tape %s: %w", in.Barcode, errArchived)
	}
	if in.State == StateDeleting {
		return fmt.Errorf("tape %s: %w (being deleted)", in.Barcode, ErrNoTape)
	}
	l.mu.Lock()
	t := l.tapes[in.Barcode]
	l.mu.Unlock()
	if t != nil {
		t.wmu.Lock()
		err := t.flush(ctx, true)
		if err == nil {
			t.mu.Lock()
			if len(t.ops) > 0 || len(t.unlogged) > 0 || len(t.sealed) > 0 || len(t.open.data) > 0 {
				err = fmt.Errorf("tape %s: data still waits for upload", in.Barcode)
			} else {
				t.gone = fmt.Errorf("tape %s: %w", in.Barcode, errArchived)
			}
			t.mu.Unlock()
		}
		t.wmu.Unlock()
		if err != nil {
			return err
		}
		l.mu.Lock()
		delete(l.tapes, in.Barcode)
		l.mu.Unlock()
		in.EOD, in.Used = t.eod, t.used
	}
	_, pool, err := l.archiveClass(ctx, in.Pool)
	if err != nil {
		return err
	}
	in.State, in.Place, in.ReadOnly, in.Retrieval = StateArchived, Element{}, false, nil
	in.Archived = l.opts.Clock.Now().UTC()
	lockFor(&in, pool, in.Archived)
	classes := l.hasClasses()
	in.ArchivePending = classes
	if err := l.commitWithEvent(ctx, func(tx meta.Txn) error { return putInfo(tx, in) }, notify.TapeArchived, in, in.Archived); err != nil {
		return err
	}
	l.log.Info("tape archived", "tape", in.Barcode)
	l.spareCheck()
	if classes {
		return l.finishArchive(ctx, in.Barcode)
	}
	return nil
}

// hasClasses says whether the store has storage classes.
func (l *Library) hasClasses() bool {
	_, ok := l.opts.Store.(objstore.StorageClasser)
	return ok
}

// setClass moves every object of a tape to class. S3 copies no object of
// an archive class that is not restored (a class change is a copy onto
// itself): where the store restores (objstore.Restorer), such an object
// is restored first, at MoveTier, and moved once its restored copy is
// readable; until every object is moved the error wraps errRestoring.
func (l *Library) setClass(ctx context.Context, barcode, class string) error {
	sc, ok := l.opts.Store.(objstore.StorageClasser)
	if !ok {
		return nil
	}
	var objs []objstore.ObjectInfo
	err := l.opts.Store.List(ctx, tapePrefix(barcode), func(oi objstore.ObjectInfo) error {
		if oi.StorageClass != class && !(class == "STANDARD" && oi.StorageClass == "") {
			objs = append(objs, oi)
		}
		return nil
	})
	if err != nil {
		return err
	}
	rs := l.restorer()
	restoring, asked := 0, 0
	for _, oi := range objs {
		if rs != nil && objstore.ArchiveClasses[oi.StorageClass] {
			st, err := rs.RestoreStatus(ctx, oi.Key)
			if err != nil {
				return fmt.Errorf("tape %s: storage class %s: %w", barcode, class, err)
			}
			if !st.Readable() {
				if !st.Ongoing {
					if err := rs.Restore(ctx, oi.Key, l.opts.RestoreDays, l.opts.MoveTier); err != nil {
						return fmt.Errorf("tape %s: storage class %s: restore %s first: %w", barcode, class, oi.Key, err)
					}
					asked++
				}
				restoring++
				continue
			}
		}
		if err := sc.SetStorageClass(ctx, oi.Key, class); err != nil {
			return fmt.Errorf("tape %s: storage class %s: %w", barcode, class, err)
		}
	}
	if restoring > 0 {
		if asked > 0 {
			l.log.Info("tape objects restored to change their storage class", "tape", barcode, "class", class, "asked", asked, "tier", l.opts.MoveTier)
		}
		return fmt.Errorf("tape %s: storage class %s: %d of %d objects to move are being restored (%s tier) first: %w",
			barcode, class, restoring, len(objs), l.opts.MoveTier, errRestoring)
	}
	return nil
}

// errRestoring: a class move waits for restores (setClass).
var errRestoring = errors.New("the move waits for them")

func (l *Library) finishArchive(ctx context.Context, barcode string) error {
	in, err := l.Info(ctx, barcode)
	if err != nil {
		return err
	}
	class, _, err := l.archiveClass(ctx, in.Pool)
	if err != nil {
		return err
	}
	if err := l.setClass(ctx, barcode, class); err != nil {
		// The objects stay where they are until a retry moves them (once
		// restored): the tape's lock holds on them meanwhile, once per
		// lock.
		if !l.retainedUntil(barcode, in.LockUntil) {
			if rerr := l.retainTape(ctx, in); rerr != nil {
				return errors.Join(err, rerr)
			}
			l.setRetainedUntil(barcode, in.LockUntil)
		}
		return err
	}
	if err := l.retainTape(ctx, in); err != nil {
		return err
	}
	return l.opts.Meta.Update(ctx, func(tx meta.Txn) error {
		in, err := getInfo(tx, barcode)
		if err != nil || in.State != StateArchived {
			return err
		}
		in.ArchivePending = false
		return putInfo(tx, in)
	})
}

// finishArchives retries unfinished moves to the archive class: at once
// those that failed, every RetrievePoll those that wait for restores.
func (l *Library) finishArchives(ctx context.Context) {
	l.invMu.Lock()
	defer l.invMu.Unlock()
	infos, err := l.List(ctx)
	if err != nil {
		return
	}
	now := l.opts.Clock.Now()
	for _, in := range infos {
		if !in.ArchivePending {
			continue
		}
		l.mu.Lock()
		at, waits := l.movePolled[in.Barcode]
		l.mu.Unlock()
		if waits && now.Sub(at) < l.opts.RetrievePoll {
			continue
		}
		err := l.finishArchive(ctx, in.Barcode)
		l.mu.Lock()
		if errors.Is(err, errRestoring) {
			if l.movePolled == nil {
				l.movePolled = map[string]time.Time{}
			}
			l.movePolled[in.Barcode] = now
		} else {
			delete(l.movePolled, in.Barcode)
		}
		l.mu.Unlock()
		switch {
		case err == nil:
			l.log.Info("tape objects moved to their archive class", "tape", in.Barcode)
		case errors.Is(err, errRestoring):
			l.log.Debug("archive class move", "tape", in.Barcode, "err", err)
		case ctx.Err() == nil:
			l.log.Warn("archive tape", "tape", in.Barcode, "err", err)
		}
	}
}

// SetSpareRule sets the automatic creation rule (Count 0 turns it off) and
// applies it at once.
func (l *Library) SetSpareRule(ctx context.Context, r SpareRule) error {
	if r.Count < 0 || r.Count > l.geo.Slots {
		return fmt.Errorf("%w: spare count %d", ErrBadInput, r.Count)
	}
	if r.Count > 0 && (!prefixRE.MatchString(r.Prefix) || r.Size < MinTapeSize || r.Size > MaxTapeSize) {
		return fmt.Errorf("%w: spare rule prefix %q size %d", ErrBadInput, r.Prefix, r.Size)
	}
	if r.Pool != "" {
		if _, err := l.Pool(ctx, r.Pool); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(r)
	if err := l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte(keySpare), b) }); err != nil {
		return err
	}
	return l.ensureSpares(ctx)
}

// SpareRule returns the automatic creation rule.
func (l *Library) SpareRule(ctx context.Context) (SpareRule, error) {
	var r SpareRule
	err := l.opts.Meta.View(ctx, func(tx meta.Txn) error {
		b, err := tx.Get([]byte(keySpare))
		if errors.Is(err, meta.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &r)
	})
	return r, err
}

// ensureSpares creates blank tapes until the rule's count of blank
// writable tapes sits in the slots, as far as free slots allow.
func (l *Library) ensureSpares(ctx context.Context) error {
	r, err := l.SpareRule(ctx)
	if err != nil || r.Count == 0 {
		return err
	}
	l.invMu.Lock()
	defer l.invMu.Unlock()
	infos, err := l.List(ctx)
	if err != nil {
		return err
	}
	blank, occupied := 0, 0
	for _, in := range infos {
		if in.Place.Type == ElementSlot {
			occupied++
			if !in.ReadOnly && in.EOD == 0 && in.Pool == r.Pool {
				blank++
			}
		}
	}
	n := min(r.Count-blank, l.geo.Slots-occupied)
	if n <= 0 {
		return nil
	}
	_, err = l.create(ctx, CreateOptions{Count: n, Prefix: r.Prefix, Size: r.Size, Pool: r.Pool})
	if err != nil {
		l.log.Warn("create spare tapes", "err", err)
	}
	return err
}

// Inventory implements Shelf: the barcode in every slot, drive and
// import/export element.
func (l *Library) Inventory(ctx context.Context) (Inventory, error) {
	inv := Inventory{Slots: make([]string, l.geo.Slots), Drives: make([]string, l.geo.Drives), IE: make([]string, l.geo.IE)}
	infos, err := l.List(ctx)
	if err != nil {
		return inv, err
	}
	for _, in := range infos {
		switch {
		case in.Place.Type == ElementSlot && in.Place.Index < len(inv.Slots):
			inv.Slots[in.Place.Index] = in.Barcode
		case in.Place.Type == ElementDrive && in.Place.Index < len(inv.Drives):
			inv.Drives[in.Place.Index] = in.Barcode
		}
	}
	return inv, nil
}

func (l *Library) checkElement(e Element) error {
	n := 0
	switch e.Type {
	case ElementSlot:
		n = l.geo.Slots
	case ElementDrive:
		n = l.geo.Drives
	case ElementIE:
		n = l.geo.IE
	}
	if e.Index < 0 || e.Index >= n {
		return fmt.Errorf("%w: element type %d index %d", ErrBadInput, e.Type, e.Index)
	}
	return nil
}

// Move implements Shelf: the tape in from is now in to. Moving a tape to
// the import/export element archives it.
func (l *Library) Move(ctx context.Context, from, to Element) error {
	if err := l.move(ctx, from, to); err != nil {
		return err
	}
	if err := l.ensureSpares(ctx); err != nil {
		l.log.Warn("spare tapes", "err", err)
	}
	return nil
}

func (l *Library) move(ctx context.Context, from, to Element) error {
	if err := l.checkElement(from); err != nil {
		return err
	}
	if err := l.checkElement(to); err != nil {
		return err
	}
	l.invMu.Lock()
	defer l.invMu.Unlock()
	infos, err := l.List(ctx)
	if err != nil {
		return err
	}
	var src *Info
	for i := range infos {
		if infos[i].Place == from && from.Type != ElementIE {
			src = &infos[i]
		}
	}
	if src == nil {
		return ErrSourceEmpty
	}
	if from == to {
		return nil
	}
	for _, in := range infos {
		if in.Place == to && to.Type != ElementIE {
			return ErrDestinationFull
		}
	}
	if to.Type == ElementIE {
		return l.archive(ctx, *src)
	}
	in := *src
	in.Place = to
	switch {
	case to.Type == ElementDrive:
		in.State = StateDrive
	case in.ReadOnly:
		in.State = StateRetrieved
	default:
		in.State = StateLibrary
	}
	return l.opts.Meta.Update(ctx, func(tx meta.Txn) error { return putInfo(tx, in) })
}
