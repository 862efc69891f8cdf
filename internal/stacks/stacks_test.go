package stacks

import "testing"

func blockedHere(ready chan<- struct{}, release <-chan struct{}) {
	close(ready)
	<-release
}

func TestHas(t *testing.T) {
	ready, release := make(chan struct{}), make(chan struct{})
	go blockedHere(ready, release)
	<-ready
	if !Has("stacks.blockedHere(", "stacks.TestHas") {
		t.Error("a goroutine blocked in blockedHere, started by TestHas, is not found")
	}
	if Has("stacks.blockedHere(", "no.such.function") {
		t.Error("found a goroutine with a function none has")
	}
	close(release)
}
