package vtl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gatewayd/gatewayd/frontends/iscsi/scsi"
)

// LibraryOptions describe a tape library.
type LibraryOptions struct {
	Shelf Shelf
	// Serial is the library's serial number: the changer's, and with
	// "-01", "-02", ... appended each drive's.
	Serial string
	// ChangerVendor and ChangerProduct default to STK L700.
	ChangerVendor, ChangerProduct string
	// Addresses default to DefaultAddresses.
	Addresses *Addresses
	Log       *slog.Logger
}

// Library is a medium changer and the drives of one Shelf, kept
// consistent: the changer loads a drive when it moves a tape in and
// unloads it before moving the tape out; a drive opens the Medium of the
// tape it was given and closes it on unload.
type Library struct {
	changer *Changer
	drives  []*Drive
}

// NewLibrary builds the changer and one drive per drive element of the
// shelf's inventory; tapes the inventory has in drives are loaded.
func NewLibrary(ctx context.Context, opts LibraryOptions) (*Library, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	inv, err := opts.Shelf.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("vtl: library inventory: %w", err)
	}
	l := &Library{}
	for i := range inv.Drives {
		l.drives = append(l.drives, NewDrive(DriveOptions{
			Shelf: opts.Shelf, Serial: fmt.Sprintf("%s-%02d", opts.Serial, i+1), Log: opts.Log,
		}))
	}
	l.changer, err = NewChanger(ctx, ChangerOptions{
		Shelf: opts.Shelf, Drives: l.drives, Vendor: opts.ChangerVendor, Product: opts.ChangerProduct,
		Serial: opts.Serial, Addresses: opts.Addresses, Log: opts.Log,
	})
	if err != nil {
		return nil, err
	}
	for i, barcode := range inv.Drives {
		if barcode == "" {
			continue
		}
		if err := l.drives[i].Insert(ctx, barcode); err != nil {
			opts.Log.Error("vtl: tape in a drive did not load", "barcode", barcode, "drive", i+1, "err", err)
		}
	}
	return l, nil
}

// Changer returns the library's medium changer.
func (l *Library) Changer() *Changer { return l.changer }

// Drives returns the library's drives in element order.
func (l *Library) Drives() []*Drive { return l.drives }

// LUNs is the library as one target's logical units: the changer at LUN
// 0, drive i at LUN i+1.
func (l *Library) LUNs() map[uint64]*scsi.LU {
	luns := map[uint64]*scsi.LU{0: l.changer.LU()}
	for i, d := range l.drives {
		luns[uint64(i+1)] = d.LU()
	}
	return luns
}

// DeviceTarget is one device of the library served as a target of its
// own, at LUN 0; Suffix tells the targets apart ("changer", "drive01",
// ...), for a target name such as <library iqn>-<suffix>.
type DeviceTarget struct {
	Suffix string
	LU     *scsi.LU
}

// DeviceTargets is the library as one target per device: the changer,
// then the drives in element order.
func (l *Library) DeviceTargets() []DeviceTarget {
	out := []DeviceTarget{{"changer", l.changer.LU()}}
	for i, d := range l.drives {
		out = append(out, DeviceTarget{fmt.Sprintf("drive%02d", i+1), d.LU()})
	}
	return out
}

// Close unloads every drive, closing the media of loaded tapes (the
// tapes stay in their drives).
func (l *Library) Close(ctx context.Context) error {
	var errs []error
	for _, d := range l.drives {
		errs = append(errs, d.Close(ctx))
	}
	return errors.Join(errs...)
}
