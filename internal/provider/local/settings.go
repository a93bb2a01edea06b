package local

import (
	"net/netip"

	"booted/internal/config"
)

// Settings is the provider.local section of an env file.
type Settings struct {
	// Subnet of the environment's bridge, e.g. 10.77.0.0/24. The bridge takes
	// the first address; hosts get addresses from .10 upwards.
	Subnet string `yaml:"subnet"`
}

// Decode decodes and validates the provider.local section of env.
func Decode(env *config.Env, d *config.Decoder) any {
	s := &Settings{}
	n := env.Provider.Section
	if n == nil {
		d.Add(0, "provider.local", "missing: the local provider needs `local: {subnet: 10.77.0.0/24}`")
		return nil
	}
	d.Decode(n, "provider.local", s)
	if d.Broken("provider.local") {
		return nil
	}
	if pfx, err := netip.ParsePrefix(s.Subnet); err != nil || !pfx.Addr().Is4() {
		d.Add(0, "provider.local.subnet", "%q is not an IPv4 subnet such as 10.77.0.0/24", s.Subnet)
	} else if pfx.Bits() < 16 || pfx.Bits() > 28 {
		d.Add(0, "provider.local.subnet", "prefix length /%d: use /16 to /28", pfx.Bits())
	}
	return s
}

// Gateway returns the bridge's address (the first of the subnet).
func (s *Settings) Gateway() (netip.Prefix, error) { return config.GatewayOf(s.Subnet) }

// DefaultCallback: local hosts phone home to the bridge's address.
func (s *Settings) DefaultCallback() (string, bool) {
	gw, err := s.Gateway()
	if err != nil {
		return "", true
	}
	return gw.Addr().String(), true
}
