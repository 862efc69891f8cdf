package mem_test

import (
	"testing"

	"github.com/gatewayd/gatewayd/objstore"
	"github.com/gatewayd/gatewayd/objstore/mem"
	"github.com/gatewayd/gatewayd/objstore/objstoretest"
)

func TestConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store { return mem.New(t.Name()) })
}

func TestObjectLockConformance(t *testing.T) {
	objstoretest.RunObjectLock(t, func(t *testing.T) objstore.Store { return mem.NewLocked(t.Name()) })
}
