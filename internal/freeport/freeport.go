// Package freeport finds TCP ports on 127.0.0.1 for servers a test or a
// benchmark starts on a port it must name (smbd, MinIO, a webhook
// receiver).
//
// A port from listening on port 0 is an ephemeral one: once the probe
// closes it, the kernel may hand the same port to any other socket that
// binds port 0 or connects out, and on a machine running many tests at
// once one did, before the server it was meant for could bind it (smbd
// then found its port taken and a stranger answering in its place). The
// ports here come from below the kernel's ephemeral range, which only
// servers asking for them by number use.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the lowest port handed out: above the well-known and most
// registered service ports.
const lowest = 20000

// Ports returns n distinct ports that nothing listens on now. They are
// held open until the last is found, so none is returned twice.
func Ports(n int) ([]int, error) {
	top := ephemeralStart()
	if top <= lowest+n {
		return nil, fmt.Errorf("freeport: no room below the ephemeral range (starts at %d)", top)
	}
	var ports []int
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts == 1000 {
			return nil, fmt.Errorf("freeport: no free port in %d-%d after %d tries", lowest, top-1, attempts)
		}
		p := lowest + rand.IntN(top-lowest)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		defer l.Close()
		ports = append(ports, p)
	}
	return ports, nil
}

// Addr returns 127.0.0.1:port for a port nothing listens on now.
func Addr(t testing.TB) string {
	t.Helper()
	a, err := AddrErr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// AddrErr is Addr for callers without a testing.TB.
func AddrErr() (string, error) {
	p, err := Ports(1)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0])), nil
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if p, err := strconv.Atoi(f[0]); err == nil && p > 0 {
				return p
			}
		}
	}
	return 32768 // Linux's default
}
