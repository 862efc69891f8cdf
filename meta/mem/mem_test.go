package mem

import (
	"testing"

	"github.com/gatewayd/gatewayd/meta"
	"github.com/gatewayd/gatewayd/meta/metatest"
)

func TestConformance(t *testing.T) {
	metatest.Run(t, func(t *testing.T) meta.Store { return New() })
}
