package memory

import (
	"net/netip"
	"testing"

	"booted/internal/provider"
	"booted/internal/provider/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		p := New(netip.MustParseAddr("192.0.2.10"))
		return providertest.Subject{Provider: p, Spec: func(name string) provider.Spec { return provider.Spec{Name: name} }}
	})
}
