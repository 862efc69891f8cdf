package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gatewayd/gatewayd/clock"
	"github.com/gatewayd/gatewayd/config"
	"github.com/gatewayd/gatewayd/health"
	"github.com/gatewayd/gatewayd/lease"
)

// holdLease takes the lease on the bucket prefix, before anything is
// written there, and renews it until stop is called. Losing it raises the
// store's fence, so writes stop at once; health subsystem "lease" says why.
// stop, called once the data path is closed, ends the renewals and
// releases the lease so that another gateway may take the prefix at once.
func holdLease(ctx context.Context, cfg *config.Config, store *OpenedStore, reg *health.Registry, c clock.Clock,
	takeOver bool, logger *slog.Logger) (stop func(), err error) {
	id, err := lease.LoadID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	rep := reg.Register("lease")
	logger = logger.With("subsystem", "lease")
	l, err := lease.Acquire(ctx, lease.Options{
		Store:      store.Lease,
		Holder:     lease.Holder{ID: id, Host: host, DataDir: dir, PID: os.Getpid()},
		TTL:        cfg.Store.LeaseTTL,
		TakeOver:   takeOver,
		Clock:      c,
		Logger:     logger,
		OnLost:     store.Fence.Raise,
		OnRegained: store.Fence.Lower,
		OnState: func(level int, msg string) {
			rep.Set([...]health.Level{health.OK, health.Warning, health.Error}[level], msg)
		},
	})
	if err != nil {
		if errors.Is(err, lease.ErrHeld) {
			return nil, err
		}
		return nil, fmt.Errorf("lease on %s: %w", store, err)
	}
	// Renewals go on while the data path closes after ctx ended.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(rctx); err != nil {
			logger.Error("lease lost", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
		store.Fence.Raise(errors.New("the gateway stopped"))
		// Bounded: with the store away, the lease simply expires.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if err := l.Release(rctx); err != nil {
			logger.Warn("could not release the lease; another gateway can take the prefix over once it expires", "err", err)
		}
	}, nil
}
