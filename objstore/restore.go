package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/errkind"
)

// Restorer is implemented by stores with archive storage classes whose
// objects cannot be read until they are restored: S3's GLACIER and
// DEEP_ARCHIVE (RestoreObject, and HeadObject's x-amz-restore). It is
// found by type assertion on the store underneath the decorators: a
// restore is a request, not a transfer, and its callers poll
// RestoreStatus until it is done, so they retry on their own.
type Restorer interface {
	// Restore asks for a readable copy of an archived object for days
	// days, at tier (TierStandard, TierBulk or TierExpedited). It returns
	// once the store took the request; a restore already under way is
	// no error.
	Restore(ctx context.Context, key string, days int, tier string) error
	// RestoreStatus says whether the object can be read now, and if
	// not, whether a restore is under way.
	RestoreStatus(ctx context.Context, key string) (RestoreStatus, error)
}

// Restore tiers: how fast an archived object is restored, and at what
// cost (S3: minutes for Expedited, hours for Standard and Bulk).
const (
	TierStandard  = "Standard"
	TierBulk      = "Bulk"
	TierExpedited = "Expedited"
)

// ValidTier checks a tier name.
func ValidTier(tier string) error {
	switch tier {
	case TierStandard, TierBulk, TierExpedited:
		return nil
	}
	return errkind.Mark(errkind.Permanent, fmt.Errorf("restore tier %q: Standard, Bulk or Expedited", tier))
}

// RestoreStatus is where an object stands with restores.
type RestoreStatus struct {
	StorageClass string
	// Archived: the object is in an archive class and reads only while
	// a restored copy exists.
	Archived bool
	// Ongoing: a restore is under way.
	Ongoing bool
	// Expiry is when the restored copy goes away; zero when there is
	// none (or the object is not archived).
	Expiry time.Time
}

// Readable says whether the object can be read (and copied) now.
func (s RestoreStatus) Readable() bool {
	return !s.Archived || !s.Ongoing && !s.Expiry.IsZero()
}

// ArchiveClasses are the storage classes whose objects must be restored
// before they are read.
var ArchiveClasses = map[string]bool{"GLACIER": true, "DEEP_ARCHIVE": true}

// ErrArchived is wrapped by the error of a read or copy of an archived
// object that is not restored (S3's 403 InvalidObjectState).
var ErrArchived = errors.New("object is in an archive storage class and not restored")

// ErrNotArchived is wrapped by the error of a restore of an object that
// is not in an archive class.
var ErrNotArchived = errors.New("object is not in an archive storage class")

// Archived returns the error of an operation on an archived object.
func Archived(s fmt.Stringer, op, key string) error {
	return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: %s %s: %w", s, op, key, ErrArchived))
}

// ParseRestoreHeader reads S3's x-amz-restore header:
// `ongoing-request="true"` while a restore runs,
// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`
// once the copy is readable. An empty header is no restore.
func ParseRestoreHeader(h string) (ongoing bool, expiry time.Time, err error) {
	if strings.TrimSpace(h) == "" {
		return false, time.Time{}, nil
	}
	m := restoreHeaderRE.FindAllStringSubmatch(h, -1)
	if len(m) == 0 {
		return false, time.Time{}, fmt.Errorf("x-amz-restore %q: no fields", h)
	}
	seen := false
	for _, kv := range m {
		switch kv[1] {
		case "ongoing-request":
			seen = true
			ongoing = kv[2] == "true"
		case "expiry-date":
			expiry, err = http.ParseTime(kv[2])
			if err != nil {
				return false, time.Time{}, fmt.Errorf("x-amz-restore %q: expiry-date: %w", h, err)
			}
		}
	}
	if !seen {
		return false, time.Time{}, fmt.Errorf("x-amz-restore %q: no ongoing-request", h)
	}
	return ongoing, expiry, nil
}

var restoreHeaderRE = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)

// FormatRestoreHeader writes the header ParseRestoreHeader reads (for
// stores and proxies that model S3).
func FormatRestoreHeader(ongoing bool, expiry time.Time) string {
	if ongoing {
		return `ongoing-request="true"`
	}
	return fmt.Sprintf(`ongoing-request="false", expiry-date="%s"`, expiry.UTC().Format(http.TimeFormat))
}
