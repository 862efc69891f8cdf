// Package stacks lets tests see where goroutines wait: a test that must
// act while another goroutine is blocked in a given call looks for it in
// the goroutines' stacks instead of sleeping.
package stacks

import (
	"runtime"
	"strings"
)

// Has says whether some goroutine's stack contains every one of parts.
func Has(parts ...string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(g, p)
		}
		if all {
			return true
		}
	}
	return false
}
