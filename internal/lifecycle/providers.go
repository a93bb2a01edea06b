// Package lifecycle is a host's life as booted drives it. Providers is
// where a host's provider is resolved, once for every caller, with the
// one rule of whether a host phones home.
package lifecycle

import (
	"context"
	"maps"
	"slices"
	"strings"

	"booted/internal/config"
	"booted/internal/provider"
)

// Providers are an environment's providers: its own and its roles', by
// type (the environment's type among them).
type Providers struct {
	Env    *config.Env
	ByType map[string]provider.Provider
	// Site turns a host's own provider into the one the controller sees
	// (a site's host: through its conductors); nil: the provider itself.
	Site func(name string, p provider.Provider) provider.Provider
}

// Own returns the provider of host name as this machine has it: its
// role's, or the environment's.
func (p *Providers) Own(name string) provider.Provider {
	if own, ok := p.ByType[p.Env.ProviderOf(name)]; ok {
		return own
	}
	return p.ByType[p.Env.Provider.Type]
}

// Of returns the provider of host name as the controller acts on it.
func (p *Providers) Of(name string) provider.Provider {
	if p.Site == nil {
		return p.Own(name)
	}
	return p.Site(name, p.Own(name))
}

// All returns the environment's provider, then its roles' by type.
func (p *Providers) All() []provider.Provider {
	out := []provider.Provider{p.ByType[p.Env.Provider.Type]}
	for _, t := range slices.Sorted(maps.Keys(p.ByType)) {
		if t != p.Env.Provider.Type {
			out = append(out, p.ByType[t])
		}
	}
	return out
}

// TypeOf is the type prov was opened as.
func (p *Providers) TypeOf(prov any) string {
	for t, q := range p.ByType {
		if any(q) == prov {
			return t
		}
	}
	return p.Env.Provider.Type
}

// KnownKeys is the one rule of whether host name phones home: not when
// its own provider knows its key beforehand (static's known_hosts: it is
// pinned instead), else it does.
func (p *Providers) KnownKeys(name string) (provider.KnownKeys, bool) {
	k, ok := p.Own(name).(provider.KnownKeys)
	return k, ok
}

// AnyPhonesHome says whether some provider of the environment has hosts
// that phone home (then the controller's nginx must be up).
func (p *Providers) AnyPhonesHome() bool {
	for _, prov := range p.All() {
		if _, known := prov.(provider.KnownKeys); !known {
			return true
		}
	}
	return false
}

// List returns the hosts every provider made, each from the provider of
// its role, by name.
func (p *Providers) List(ctx context.Context) ([]provider.Instance, error) {
	if len(p.ByType) <= 1 {
		return p.ByType[p.Env.Provider.Type].List(ctx)
	}
	var out []provider.Instance
	for t, prov := range p.ByType {
		insts, err := prov.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, in := range insts {
			if p.Env.ProviderOf(in.Name) == t {
				out = append(out, in)
			}
		}
	}
	slices.SortFunc(out, func(a, b provider.Instance) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
