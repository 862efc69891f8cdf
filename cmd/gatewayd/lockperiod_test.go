package main

import (
	"testing"
	"time"
)

// TestLockPeriodFlag: --lock takes whole days or a Go duration from 1s to
// 100 years; anything else, a count of days whose nanoseconds overflow
// included, is refused rather than turned into another period.
func TestLockPeriodFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "1s": time.Second, "36500d": 36500 * 24 * time.Hour,
	} {
		var l lockPeriod
		if err := l.Set(in); err != nil || time.Duration(l) != want {
			t.Errorf("--lock %s: %v %v, want %v", in, time.Duration(l), err, want)
		}
	}
	for _, in := range []string{"0d", "0s", "-1d", "-5h", "d", "1.5d", "36501d", "213504d", "4294967295d", "100000d", "876001h", "1ms", "30x"} {
		var l lockPeriod
		if err := l.Set(in); err == nil {
			t.Errorf("--lock %s accepted as %v", in, time.Duration(l))
		}
	}
}
