package badger

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/meta/metatest"
)

func TestConformance(t *testing.T) {
	metatest.Run(t, func(t *testing.T) meta.Store {
		s, err := Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestReopenKeepsDataAndLockIsExclusive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte("volume/1"), []byte("cached 10GiB")) }); err != nil {
		t.Fatal(err)
	}
	want := "metadata directory " + dir + " is in use by another gatewayd"
	if _, err := Open(dir, nil); err == nil || err.Error() != want || !errkind.IsPermanent(err) {
		t.Fatalf("second open of a live directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(ctx, func(tx meta.Txn) error {
		v, err := tx.Get([]byte("volume/1"))
		if err != nil {
			return err
		}
		if string(v) != "cached 10GiB" {
			t.Fatalf("after reopen: %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recorder keeps every log record it is handed.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// badger's warnings and errors reach the injected logger; its info and
// debug chatter (it logs several lines on every open and close) does not.
func TestBadgerLogsGoToSlogAtWarningAndAbove(t *testing.T) {
	rec := &recorder{}
	logger := slog.New(rec)
	if _, ok := options(t.TempDir(), logger).Logger.(slogAdapter); !ok {
		t.Fatal("badger would log to its own stderr logger, not to slog")
	}

	s, err := Open(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(context.Background(), func(tx meta.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	for _, r := range rec.records {
		if r.Level < slog.LevelWarn {
			t.Errorf("badger logged below warning: %s %q", r.Level, r.Message)
		}
	}
	rec.records = nil
	rec.mu.Unlock()

	options(t.TempDir(), logger).Logger.Warningf("value log %d truncated\n", 3)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.records) != 1 || rec.records[0].Level != slog.LevelWarn || rec.records[0].Message != "value log 3 truncated" {
		t.Fatalf("warning not routed to slog: %+v", rec.records)
	}
}

// Figures for the docs: one fsynced commit, and a read.
func BenchmarkUpdate(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	value := make([]byte, 100)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set([]byte(fmt.Sprintf("k/%08d", i)), value) }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateParallel(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		value := make([]byte, 100)
		for pb.Next() {
			key := []byte(fmt.Sprintf("k/%08d", n.Add(1)))
			if err := s.Update(ctx, func(tx meta.Txn) error { return tx.Set(key, value) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkView(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Update(ctx, func(tx meta.Txn) error {
		for i := 0; i < 10000; i++ {
			if err := tx.Set([]byte(fmt.Sprintf("k/%08d", i)), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := s.View(ctx, func(tx meta.Txn) error {
			_, err := tx.Get([]byte(fmt.Sprintf("k/%08d", i%10000)))
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// A GC round with nothing worth rewriting is quiet: it must not warn every
// ten minutes on an idle gateway.
func TestValueLogGCWithNothingToDoIsQuiet(t *testing.T) {
	rec := &recorder{}
	s, err := Open(t.TempDir(), slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := make([]byte, 2<<20) // above the value threshold: stored in the value log
	for i := 0; i < 3; i++ {
		if err := s.Update(context.Background(), func(tx meta.Txn) error { return tx.Set([]byte("big"), big[:1<<20+i]) }); err != nil {
			t.Fatal(err)
		}
	}
	s.collectValueLog()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.records {
		t.Errorf("gc logged %s %q", r.Level, r.Message)
	}
	if err := s.View(context.Background(), func(tx meta.Txn) error {
		v, err := tx.Get([]byte("big"))
		if err == nil && len(v) != 1<<20+2 {
			err = fmt.Errorf("value of %d bytes after gc", len(v))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
