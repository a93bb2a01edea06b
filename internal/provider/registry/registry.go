// Package registry maps the provider types an env file may name to their
// packages: one explicit table, no init() magic. Adding a provider means
// adding its package and one line to the table.
package registry

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"booted/internal/config"
	"booted/internal/pkgs"
	"booted/internal/provider"
	"booted/internal/provider/baremetal"
	"booted/internal/provider/local"
	"booted/internal/provider/qemu"
	"booted/internal/provider/static"
	"booted/internal/provider/vbox"
)

// factory is one provider: how to decode its section of the env file, how
// to open it, the commands it runs on this machine (with their Debian
// packages), and the image ID its instances run in the EC2 API ("": it
// makes no instances).
type factory struct {
	decode func(env *config.Env, d *config.Decoder) any
	open   func(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error)
	needs  pkgs.Need
	image  string
}

// providers is the table of provider types.
var providers = map[string]factory{
	"local":     {local.Decode, local.Open, local.Needs, "ami-local"},
	"static":    {static.Decode, static.Open, nil, ""},
	"vbox":      {vbox.Decode, vbox.Open, vbox.Needs, ""}, // VirtualBox itself is not a Debian package
	"qemu":      {qemu.Decode, qemu.Open, qemu.Needs, "ami-debian12"},
	"baremetal": {baremetal.Decode, baremetal.Open, baremetal.Needs, "ami-debian12"},
}

// Image returns the image ID the instances of a provider type run in the
// EC2 API, if it makes instances.
func Image(typ string) (string, bool) {
	img := providers[typ].image
	return img, img != ""
}

// Needs returns what the given provider types (every one, if none is
// given) run on this machine: for the test target's install.
func Needs(types ...string) pkgs.Need {
	if len(types) == 0 {
		types = Types()
	}
	var needs []pkgs.Need
	for _, t := range types {
		needs = append(needs, providers[t].needs)
	}
	return pkgs.Merge(needs...)
}

// planned are types the brief names that this booted does not have yet.
var planned = map[string]string{}

// Types returns the provider types, sorted.
func Types() []string {
	var out []string
	for t := range providers {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Registry decodes provider sections for config.Load.
type Registry struct{}

var _ config.Providers = Registry{}

// Decode decodes and validates the section of env's provider type.
func (Registry) Decode(env *config.Env, d *config.Decoder) any {
	p := env.Provider
	avail := strings.Join(Types(), ", ")
	f, ok := providers[p.Type]
	switch {
	case p.Type == "":
		d.Add(0, "provider.type", "missing: one of %s", avail)
		return nil
	case !ok && planned[p.Type] != "":
		d.Add(0, "provider.type", "%q: %s; use one of %s", p.Type, planned[p.Type], avail)
		return nil
	case !ok:
		d.Add(0, "provider.type", "%q is not a provider: use one of %s", p.Type, avail)
		return nil
	}
	// Roles may name providers of their own, each with its section.
	named := map[string]string{} // type → the first role naming it
	for _, rn := range slices.Sorted(maps.Keys(env.Roles)) {
		r := env.Roles[rn]
		if r == nil || r.Provider == "" || r.Provider == p.Type {
			continue
		}
		if _, ok := providers[r.Provider]; !ok {
			d.Add(0, "roles."+rn+".provider", "%q is not a provider: use one of %s", r.Provider, avail)
			continue
		}
		if named[r.Provider] == "" {
			named[r.Provider] = rn
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Others)) {
		if named[name] == "" {
			d.Add(p.Others[name].Line, "provider."+name, "the provider is %s and no role names %s: remove this section, set type: %s, or give a role provider: %s", p.Type, name, name, name)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(named)) {
		sub := *env
		sub.Provider = config.Provider{Type: t, Section: p.Others[t]}
		if set := providers[t].decode(&sub, d); set != nil {
			if env.Provider.Roles == nil {
				env.Provider.Roles = map[string]any{}
			}
			env.Provider.Roles[t] = set
		}
	}
	return f.decode(env, d)
}

// OpenRoles returns the providers env's roles name besides its own, by type.
func OpenRoles(ctx context.Context, env *config.Env, o provider.Options) (map[string]provider.Provider, error) {
	out := map[string]provider.Provider{}
	for _, t := range slices.Sorted(maps.Keys(env.Provider.Roles)) {
		sub := *env
		sub.Provider = config.Provider{Type: t, Settings: env.Provider.Roles[t]}
		p, err := providers[t].open(ctx, &sub, o)
		if err != nil {
			return nil, err
		}
		out[t] = p
	}
	return out, nil
}

// LoadEnv reads envs/NAME.yaml from dir, its provider section included.
func LoadEnv(dir, name string) (*config.Env, error) {
	return config.Load(dir, name, Registry{})
}

// Open returns the provider of env.
func Open(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
	f, ok := providers[env.Provider.Type]
	if !ok {
		return nil, fmt.Errorf("%s: provider %q is not available (use one of %s)", env.Path, env.Provider.Type, strings.Join(Types(), ", "))
	}
	return f.open(ctx, env, o)
}
