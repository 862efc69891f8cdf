package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsBelowEphemeralAndFree(t *testing.T) {
	ps, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	top := ephemeralStart()
	for _, p := range ps {
		if p < lowest || p >= top {
			t.Errorf("port %d outside %d-%d", p, lowest, top-1)
		}
		if seen[p] {
			t.Errorf("port %d twice", p)
		}
		seen[p] = true
		// Free now: a server can bind it.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestPortInUseSkipped(t *testing.T) {
	// Hold every port of a small range but one: Ports finds the one.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for p := lowest; p < lowest+50; p++ {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			held = append(held, l)
		}
	}
	for range 200 {
		ps, err := Ports(1)
		if err != nil {
			t.Fatal(err)
		}
		if ps[0] < lowest+50 {
			t.Fatalf("port %d is held", ps[0])
		}
	}
}
