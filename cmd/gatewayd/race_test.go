//go:build race

package main

// raceEnabled: this test binary has the race detector, and so does the
// daemon it builds, so that the code joining frontends, uploaders and the
// admin API is race-checked in the end-to-end tests too.
const raceEnabled = true
