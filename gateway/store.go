package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/fenced"
	"github.com/gatewayd/gatewayd/objstore/limiter"
	"github.com/gatewayd/gatewayd/objstore/localdir"
	"github.com/gatewayd/gatewayd/objstore/retry"
	"github.com/gatewayd/gatewayd/objstore/s3"
)

// OpenedStore is the gateway's object store with its decorators.
type OpenedStore struct {
	objstore.Store                  // fenced(retry(limiter(base)))
	Limiter        *limiter.Limiter // to change bandwidth limits at runtime
	URL            config.StoreURL  // what it was opened from
	// Fence stops every write through Store when the gateway loses its
	// lease on the prefix (lowered until then).
	Fence *fenced.Fence
	// Lease is where the lease itself is written: retry(base), neither
	// fenced nor queued behind data transfers in the limiter.
	Lease objstore.Store
	// Base is the store underneath the decorators, for the capabilities
	// they do not carry (objstore.Restorer).
	Base objstore.Store
}

// String names the store as the configuration does (file://DIR, s3://BUCKET/PREFIX).
func (s *OpenedStore) String() string { return s.URL.String() }

// ReadRange reads through the decorated store, so its retry policy covers
// a body that breaks mid-transfer (objstore.RangeReader).
func (s *OpenedStore) ReadRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	return objstore.ReadRange(ctx, s.Store, key, offset, length)
}

// OpenStore opens the configured object store: the base store (checking
// that an S3 bucket exists and is reachable), wrapped in the concurrency and
// bandwidth limiter, the retry policy and the fence that the lease on the
// prefix raises when it is lost.
func OpenStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*OpenedStore, error) {
	u, err := cfg.ParseStoreURL()
	if err != nil {
		return nil, err
	}
	var base objstore.Store
	switch u.Scheme {
	case "file":
		if err := os.MkdirAll(u.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("object store directory: %w", err)
		}
		base, err = localdir.Open(u.Dir)
	case "s3":
		s3cfg := cfg.Store.S3
		base, err = s3.Open(ctx, s3.Config{
			Bucket:          u.Bucket,
			Prefix:          u.Prefix,
			Endpoint:        s3cfg.Endpoint,
			Region:          s3cfg.Region,
			PathStyle:       s3cfg.PathStyle,
			AccessKeyID:     s3cfg.AccessKeyID,
			SecretAccessKey: s3cfg.SecretAccessKey,
			StorageClass:    s3cfg.StorageClass,
			PartSize:        int64(s3cfg.PartSize),
		}, logger.With("subsystem", "s3"))
	}
	if err != nil {
		return nil, err
	}
	lim := limiter.New(base, limiter.Options{
		MaxInFlight:         cfg.Store.MaxConcurrent,
		UploadBytesPerSec:   int64(cfg.Store.UploadLimit),
		DownloadBytesPerSec: int64(cfg.Store.DownloadLimit),
	})
	retryOpts := retry.Options{
		MaxAttempts: cfg.Store.Retry.MaxAttempts,
		BaseDelay:   cfg.Store.Retry.BaseDelay,
		MaxDelay:    cfg.Store.Retry.MaxDelay,
		Logger:      logger.With("subsystem", "objstore"),
	}
	fence := fenced.New(retry.New(lim.Store(), retryOpts))
	return &OpenedStore{Store: fence.Store(), Limiter: lim, URL: u, Fence: fence, Lease: retry.New(base, retryOpts), Base: base}, nil
}

// OpenedStore is an objstore.Retainer through its decorators, so that
// snapshots and tapes reach the bucket's Object Lock with the store they
// are given (the embedded Store's other optional interfaces are not
// visible through the embedding).
var _ objstore.Retainer = (*OpenedStore)(nil)

// ObjectLock implements objstore.Retainer.
func (s *OpenedStore) ObjectLock(ctx context.Context) (objstore.LockConfig, error) {
	return objstore.ObjectLock(ctx, s.Store)
}

// PutRetained implements objstore.Retainer.
func (s *OpenedStore) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	return objstore.PutRetained(ctx, s.Store, key, r, size, ret)
}

// Retain implements objstore.Retainer.
func (s *OpenedStore) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	return objstore.Retain(ctx, s.Store, key, ret)
}

// Retention implements objstore.Retainer.
func (s *OpenedStore) Retention(ctx context.Context, key string) (objstore.Retention, error) {
	return objstore.GetRetention(ctx, s.Store, key)
}

// Purge implements objstore.Retainer.
func (s *OpenedStore) Purge(ctx context.Context, key string) error {
	return objstore.Purge(ctx, s.Store, key)
}
