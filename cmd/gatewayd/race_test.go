//go:build race

package main

// raceEnabled: this test binary has the race detector; the daemons of the
// tests in raceTests have it then too (see raceDaemons).
const raceEnabled = true
