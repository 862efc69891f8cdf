package tapes

import "context"

// Referenced returns the keys of the objects a tape's stored index needs
// (its root, its pages, the segments holding its records) and those it may
// keep (live segments that only filemarks name).
func (l *Library) Referenced(ctx context.Context, barcode string) (need, may map[string]bool, err error) {
	r, err := l.readRoot(ctx, barcode)
	if err != nil {
		return nil, nil, err
	}
	refs := map[string]bool{rootKey(barcode): true}
	for i, p := range r.pages {
		refs[pageKey(barcode, uint32(i), p.gen)] = true
	}
	t := newTape(l, barcode, r, true)
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := uint64(0); i < t.eod; i++ {
		e, err := t.entry(ctx, i)
		if err != nil {
			return nil, nil, err
		}
		if !e.filemark() {
			refs[segKey(barcode, e.seg)] = true
		}
	}
	may = map[string]bool{}
	for _, r := range t.runs {
		for s := r.first; s <= r.last; s++ {
			may[segKey(barcode, s)] = true
		}
	}
	return refs, may, nil
}

// SetCrashHook sets the hook run once a tape's state change and its
// event are committed, with the event's kind.
func SetCrashHook(f func(point string)) { crashHook = f }
